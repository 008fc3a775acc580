"""Trust: models that cannot do what is asked are refused, and results that are not what they seem say so — in
the Attribution's warnings, which the console, HTML and saved file show."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

import seqexplain as se
from seqexplain.cli import app
from seqexplain.errors import InputError, ModelLoadError, UnsupportedError


class MaskIgnoringLM(torch.nn.Module):
    """Takes attention_mask (through **kwargs) and ignores it."""

    seqexplain_kind = "causal"

    def __init__(self, vocab: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(vocab, 16)
        self.out = torch.nn.Linear(16, vocab)

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.emb

    def forward(self, input_ids=None, inputs_embeds=None, **kwargs):
        x = self.emb(input_ids) if inputs_embeds is None else inputs_embeds
        h = torch.cumsum(x, dim=1) / torch.arange(1, x.shape[1] + 1).view(1, -1, 1)
        return SimpleNamespace(logits=self.out(torch.tanh(h)))


class NoEmbeddingsLM(MaskIgnoringLM):
    def get_input_embeddings(self):  # type: ignore[override]
        raise NotImplementedError


def test_a_model_that_ignores_the_mask_is_refused_by_behaviour(bpe):
    w = se.load_model(MaskIgnoringLM(len(bpe)), bpe)
    se.explain(w, "The cat sat on the", " mat", "gradient_norm")  # gradients need no mask
    for method in ("occlusion", "greedy"):
        with pytest.raises(UnsupportedError, match="ignores its attention mask"):
            se.explain(w, "The cat sat on the", " mat", method)


def test_a_model_that_honours_the_mask_passes_the_check(no_attention_lm):
    w = no_attention_lm()
    se.explain(w, "The cat sat on the", " mat", "occlusion")
    assert w._keep_verified is True


class WindowLM(MaskIgnoringLM):
    """Honours its mask but reads only the token at each position and the one before it (a window of two, as a
    sliding attention window does): dropping the first token changes nothing the last one reads."""

    def forward(self, input_ids=None, inputs_embeds=None, attention_mask=None):  # type: ignore[override]
        x = self.emb(input_ids) if inputs_embeds is None else inputs_embeds
        if attention_mask is not None:
            x = x * attention_mask.unsqueeze(-1).to(x.dtype)
        before = torch.nn.functional.pad(x, (0, 0, 1, 0))[:, :-1]
        return SimpleNamespace(logits=self.out(torch.tanh(x + before)))


def test_a_model_reading_a_window_passes_the_mask_check(bpe):
    w = se.load_model(WindowLM(len(bpe)), bpe)
    attr = se.explain(w, "The cat sat on the", " mat", "occlusion")
    assert w._keep_verified is True
    p0 = w.encode("The cat sat on the", " mat").target_positions[0]
    scores = attr.scores[0, :p0].tolist()
    assert p0 > 3 and scores[:p0 - 2] == [0.0] * (p0 - 2) and scores[p0 - 1] != 0.0


def test_no_input_embeddings_is_a_clear_error_for_gradients(bpe):
    w = se.load_model(NoEmbeddingsLM(len(bpe)), bpe)
    with pytest.raises(UnsupportedError, match="get_input_embeddings"):
        se.explain(w, "The cat sat on the", " mat", "gradient_norm")


def test_forcing_the_wrong_kind_is_an_error_unless_allowed(gpt2_dir):
    with pytest.raises(ModelLoadError, match="initialised at random"):
        se.load_model(gpt2_dir, kind="classifier")
    w = se.load_model(gpt2_dir, kind="classifier", allow_new_head=True)
    assert w.kind == "classifier"
    out = _cli(["explain", "-m", gpt2_dir, "-t", "a fine film", "--kind", "classifier", "--method", "occlusion"])
    assert out.exit_code == 2 and "--allow-new-head" in out.output and "Traceback" not in out.output
    # allowed, every result says its head is untrained (a result looked like a trained classifier's)
    for attr in (se.explain(w, "a fine film", None, "occlusion"),
                 *se.explain_many(w, ["a fine film", "a dull one"], "gradient_norm", progress=False)):
        assert any("initialised at random (score.weight; allow_new_head)" in m for m in attr.warnings), attr.warnings
    assert not se.explain(se.load_model(gpt2_dir), "The cat", " sat", "occlusion").warnings
    # the warning names the folder, and belongs to that wrapper: the module wrapped again (e.g. after training its
    # head) does not carry it
    assert f"were not in {gpt2_dir}" in w.model_warnings[0]
    assert se.load_model(w.model, w.tokenizer, kind="classifier").model_warnings == ()


def test_target_without_its_leading_space_is_warned_everywhere(gpt2, tmp_path):
    w = se.load_model(*gpt2)
    attr = se.explain(w, "The capital of France is", "Paris", "gradient_norm")
    assert any("leading space" in m for m in attr.warnings), attr.warnings
    assert not se.explain(w, "The capital of France is", " Paris", "gradient_norm").warnings
    attr.save(tmp_path / "a.json")
    saved = json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))
    assert any("leading space" in m for m in saved["warnings"])


def test_leading_space_warning_shows_the_joined_text(gpt2):
    """A prompt ending mid-word ("...the m" + "at.") means the target without a space: the warning says what the
    joined text is and offers the spaced form only as the other reading (it said "did you mean ' at.'")."""
    attr = se.explain(se.load_model(*gpt2), "The cat sat on the m", "at.", "gradient_norm")
    found = [m for m in attr.warnings if "leading space" in m]
    assert len(found) == 1 and "continues the prompt's last word ('...at sat on the mat.')" in found[0], found
    assert "if it is the next word, give ' at.'" in found[0] and "did you mean" not in found[0]
    multi = se.explain(se.load_model(*gpt2), "Question: capital?\nAnswer:", "Paris", "gradient_norm")
    assert all("\n" not in m for m in multi.warnings), multi.warnings  # the prompt's newline shown as \n


def test_cut_off_and_failed_searches_are_warned(gpt2):
    w = se.load_model(*gpt2)
    greedy = se.explain(w, "The cat sat on the mat and the dog", " sat", "greedy", max_size=1)
    if not all(greedy.rationale.reached):
        assert any("without the model predicting the target" in m for m in greedy.warnings)
    exhaustive = se.explain(w, "The cat sat on the mat and the dog", " sat", "exhaustive", max_size=1)
    assert exhaustive.rationale.bound_hit == [not r for r in exhaustive.rationale.reached]
    if not all(exhaustive.rationale.reached):
        assert any("search bound" in m for m in exhaustive.warnings)


def test_truncation_says_how_much_was_cut(gpt2):
    w = se.load_model(*gpt2)
    attr = se.explain(w, "The cat sat on the mat. " * 60, " dog", "gradient_norm", truncate=True)
    assert any("truncated:" in m and "were cut" in m for m in attr.warnings), attr.warnings


@pytest.mark.parametrize("kwargs,message", [
    ({"text": 123}, "must be a string, not int"),
    ({"text": "The cat \udcff sat"}, "not valid Unicode"),
    ({"text": "The cat", "target": " \udcff"}, "not valid Unicode"),
    ({"text": "The cat", "target": None, "max_new_tokens": 0}, "max_new_tokens must be a positive"),
])
def test_bad_texts_are_one_line_errors(gpt2, kwargs, message):
    w = se.load_model(*gpt2)
    args = {"target": " sat", **kwargs}
    with pytest.raises(InputError, match=message):
        se.explain(w, args.pop("text"), args.pop("target"), "gradient_norm", **args)


def test_text_of_nothing_but_special_tokens_is_an_error(bert):
    w = se.load_model(*bert)
    with pytest.raises(InputError, match=r"special tokens only \(\[CLS\] \[SEP\]\)"):
        se.explain(w, "\u200b", None, "occlusion")


def test_undecodable_cli_text_is_a_clean_error(gpt2_dir):
    out = _cli(["explain", "-m", gpt2_dir, "-t", "The cat \udcff", "--target", " sat", "--method", "occlusion"])
    assert out.exit_code == 2 and "not valid Unicode" in out.output and "Traceback" not in out.output


def test_no_transformers_loading_noise(gpt2_dir):
    out = _cli(["explain", "-m", gpt2_dir, "-t", "The cat", "--target", " sat", "--method", "occlusion"])
    assert out.exit_code == 0, out.output
    assert "Loading weights" not in out.output and "git+https" not in out.output


def _cli(argv: list) -> object:
    from typer.testing import CliRunner

    return CliRunner().invoke(app, [str(a) for a in argv])


@pytest.mark.parametrize(("name", "text", "target", "remedy"), [
    ("gpt2", "The cat sat. " * 60, " mat", "pass truncate=True (CLI: --truncate) to cut the prompt's oldest tokens"),
    ("bert", "a fine film " * 40, "positive", "pass truncate=True (CLI: --truncate) to cut its end"),
    ("bart", "The cat sat.", "le chat " * 80, "give a shorter one (truncate cuts the source only)"),
])
def test_too_long_says_what_truncate_would_cut(request, name, text, target, remedy):
    """The error before the user opts in said "the oldest context tokens" for every kind; a classifier's input
    loses its end, and a translation target is never cut."""
    w = se.load_model(*request.getfixturevalue(name))
    with pytest.raises(se.errors.InputError) as err:
        se.explain(w, text, target, "gradient_norm")
    assert str(err.value).endswith(remedy), str(err.value)
    if name != "bart":
        attr = se.explain(w, text, target, "gradient_norm", truncate=True)
        side = "the oldest" if name == "gpt2" else "the end"
        assert any(m.startswith("truncated:") and side in m for m in attr.warnings), attr.warnings
