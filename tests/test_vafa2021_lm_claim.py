"""vafa2021's compatibility fine-tune folder (``<out>/compatible-<steps>steps``) is claimed for its base model,
settings and data: the folder name holds only the step count, so a --quick run and a full one with as many steps, or
two quick recipes (their tiny models' tokenizers are trained on different texts), or other LoRA settings, would
resume each other's adapters and reuse each other's cached held-out losses. Tiny random Llama, tiny text files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seqexplain.errors import InputError
from seqexplain.experiments.vafa2021_lm_models import (
    LoadedModel,
    _quick_tokenizer,
    compatibility_note,
    compatible_finetune,
)
from seqexplain.experiments.vafa2021_lm_settings import settings
from seqexplain.runs.claims import DATA_KEY, LATE_KEY, weights_fingerprint

pytest.importorskip("peft")

LINES = ["the cat sat on the mat and looked at the dog", "a dog ran in the park with a red ball",
         "the river flows past the old mill in the valley", "people walked to the market on a sunny day"]


def _wikitext(root: Path, first: str = "") -> Path:
    """``root/wikitext2/{valid,test}.txt`` in WikiText's layout (headings, blank lines, paragraphs); ``first``: a
    paragraph put before the others in valid.txt."""
    (root / "wikitext2").mkdir(parents=True)
    body = "\n".join(f" = Section {i} = \n\n {LINES[i % 4]} {LINES[(i + 1) % 4]} . \n" for i in range(24))
    (root / "wikitext2" / "valid.txt").write_text(first + body, encoding="utf-8")
    (root / "wikitext2" / "test.txt").write_text(body[::-1], encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def tokenizer():
    return _quick_tokenizer(LINES * 3, vocab_size=300)


def _llama(tokenizer, seed: int):
    """A fresh tiny random causal LM (built from a config; its weights drawn with ``seed``)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(num_hidden_layers=1, hidden_size=16, intermediate_size=32, num_attention_heads=2,
                      num_key_value_heads=1, vocab_size=len(tokenizer), max_position_embeddings=64,
                      pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    return LlamaForCausalLM(cfg).eval()


def test_weights_fingerprint_tells_weights_apart(tokenizer):
    import hashlib

    a, b = _llama(tokenizer, 0), _llama(tokenizer, 1)
    assert weights_fingerprint(a) == weights_fingerprint(_llama(tokenizer, 0)) != weights_fingerprint(b)
    one = a.model.norm.weight  # oracle: the hash of a module holding one tensor, by hand
    norm = a.model.norm
    want = hashlib.sha256(f"weight|{one.dtype}|{tuple(one.shape)}|".encode() + one.detach().numpy().tobytes())
    assert weights_fingerprint(norm) == want.hexdigest()


def test_compatible_folder_refuses_another_base_model_settings_or_data(tokenizer, tmp_path):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    root, folder = _wikitext(tmp_path / "data"), tmp_path / "out" / "compatible-3steps"
    s = settings(True, 0)

    def finetune(seed: int = 0, data: Path = root, **overrides):
        return compatible_finetune(_llama(tokenizer, seed), tokenizer, folder, data, settings(True, 0, **overrides),
                                   progress=False, base="tiny")

    _, first = finetune()
    assert first["steps"] == s.train_steps and first["warnings"] == []
    _, again = finetune()  # the same base model, settings and data: resumed, the held-out check reused
    assert again["held_out"] == first["held_out"] and again["loss_last"] == first["loss_last"]
    with pytest.raises(InputError, match=r"other base model, settings or data \(base_model\.weights_sha256\); use"):
        finetune(seed=1)  # the same architecture with other weights (before: its cached losses and adapters reused)
    with pytest.raises(InputError, match=r"\(settings\.lora_alpha\)"):
        finetune(lora_alpha=2 * s.lora_alpha)  # same adapter shapes: before, resumed silently
    with pytest.raises(InputError, match=r"settings\.eval_rows\); use"):  # (the held-out rows differ too)
        finetune(eval_rows=2)  # before: the cached held-out losses of 4 rows reported for 2
    with pytest.raises(InputError, match=rf"\({DATA_KEY}: the data read now differ"):
        finetune(data=_wikitext(tmp_path / "other", first=" the first paragraph of another version . \n"))
    _, moved = finetune(data=_wikitext(tmp_path / "moved"))  # the same data in another folder is the same data
    assert moved["held_out"] == first["held_out"] and moved["warnings"] == []
    claim = json.loads((folder / "training.json").read_text(encoding="utf-8"))
    assert claim["base_model"]["name"] == "tiny" and claim["settings"]["lora_alpha"] == s.lora_alpha


def test_compatible_folder_made_before_the_claim_warns(tokenizer, tmp_path):
    root, folder = _wikitext(tmp_path / "data"), tmp_path / "compatible-3steps"
    compatible_finetune(_llama(tokenizer, 0), tokenizer, folder, root, settings(True, 0), progress=False, base="tiny")
    (folder / "training.json").unlink()  # as the recipe left it before the claim
    with pytest.warns(UserWarning, match="could not be checked"):
        _, summary = compatible_finetune(_llama(tokenizer, 0), tokenizer, folder, root, settings(True, 0),
                                         progress=False, base="tiny")
    assert len(summary["warnings"]) == 1 and "base_model" in summary["warnings"][0]
    note = compatibility_note(LoadedModel(None, "tiny", {"compatible": summary}))  # type: ignore[arg-type]
    assert f"Warning: {summary['warnings'][0]}" in note  # the tables' note says it too
    claim = json.loads((folder / "training.json").read_text(encoding="utf-8"))
    assert claim[LATE_KEY] == sorted(["base_model", "settings", DATA_KEY])
    with pytest.raises(InputError, match="weights_sha256"):  # checked from now on
        compatible_finetune(_llama(tokenizer, 1), tokenizer, folder, root, settings(True, 0), progress=False,
                            base="tiny")


def test_two_quick_recipes_share_no_compatible_folder_through_the_cli(runner, tmp_path):
    """``lambada --quick --compatible`` then ``analogies --quick --compatible`` into one --out: both pick
    ``compatible-3steps``, but each quick tiny Llama has a tokenizer trained on its own recipe's texts. Before, the
    second resumed the first's adapters and reported its held-out losses; now it exits 2 naming the base model."""
    from seqexplain.cli import app
    from seqexplain.data.paths import data_root

    root = data_root()
    missing = [f for f in ("annotated_lambada", "questions_words", "wikitext2") if not (root / f).is_dir()]
    if missing:
        pytest.skip(f"needs the data folder(s) {', '.join(missing)} under {root}")
    base = ["--out", str(tmp_path), "--quick", "--compatible", "--limit", "1", "--methods", "greedy", "--no-progress",
            "--data-root", str(root)]
    first = runner.invoke(app, ["reproduce", "vafa2021", "lambada", *base])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, ["reproduce", "vafa2021", "analogies", *base])
    assert second.exit_code == 2, second.output
    assert "compatible-3steps holds a compatibility fine-tune of other base model" in second.output
    assert "base_model.tokenizer_sha256" in second.output and "Traceback" not in second.output
