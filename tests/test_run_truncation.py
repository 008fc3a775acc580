"""Corpus runs over examples longer than the model takes: skipped with a reason, or (``data.truncate``) cut with
warnings that count the tokens really cut, and plausibility that does not score a gold rationale the cut removed."""

from __future__ import annotations

import json
import re

import pyarrow.parquet as pq
import pytest
from run_helpers import SENTENCES, config_dict, tiny_classifier, write_config
from transformers import AutoTokenizer

from seqexplain.runs.config import read_config
from seqexplain.runs.runner import run
from seqexplain.runs.store import RunStore
from seqexplain.runs.summary import summarize

LONG = " ".join(SENTENCES * 2)  # far more than the tiny classifier's 64 positions


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("runtrunc")
    records = [{"text": SENTENCES[i], "label": i % 2, "id": f"s{i}", "rationale": [[0, len(SENTENCES[i].split()[0])]]}
               for i in range(4)]
    # the long example's gold rationale is its last word, beyond the model's positions
    records.insert(2, {"text": LONG, "label": 1, "id": "long", "rationale": [[len(LONG) - 3, len(LONG)]]})
    data = base / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return tiny_classifier(base / "model"), data


def _run(tmp_path, setup, name, **data):
    model, path = setup
    raw = config_dict(model, path, tmp_path / name, methods=[{"name": "gradient_norm"}],
                      metrics={"faithfulness": {"enabled": False}}, data=data)
    cfg = read_config(write_config(tmp_path / f"{name}.yaml", raw))
    result = run(cfg, progress=False)
    rows = {r["id"]: r for r in pq.read_table(tmp_path / name / "results.parquet").to_pylist()}
    return cfg, result, rows


def _cut_counts(warnings):
    return [tuple(map(int, m.groups())) for w in warnings if (m := re.match(r"truncated: (\d+) of (\d+)", w))]


def test_over_the_models_maximum_is_skipped_or_cut(tmp_path, setup):
    _, result, rows = _run(tmp_path, setup, "skip")
    assert result.manifest["n_skipped"] == 1 and "long" not in rows
    assert result.manifest["shards"][0]["skipped"] == [
        {"index": 2, "id": "long", "reason": "longer than the model's maximum length"}]
    _, _, rows = _run(tmp_path, setup, "cut", truncate=True)
    n_full = len(AutoTokenizer.from_pretrained(str(setup[0]))(LONG)["input_ids"])
    assert len(rows["long"]["tokens"]) == 64 and _cut_counts(rows["long"]["warnings"]) == [(n_full - 64, n_full)]


def test_cut_to_max_length_keeps_the_count_of_the_models_cut(tmp_path, setup):
    """An example cut first to the model's positions and then to ``data.max_length``: the warnings together count
    every token cut from the full text (an independent tokenisation of it)."""
    _, _, rows = _run(tmp_path, setup, "short", truncate=True, max_length=6)
    n_full = len(AutoTokenizer.from_pretrained(str(setup[0]))(LONG)["input_ids"])
    long = rows["long"]
    assert len(long["tokens"]) == 6
    counts = _cut_counts(long["warnings"])
    assert counts[0] == (n_full - 64, n_full) and sum(c for c, _ in counts) == n_full - 6


def test_gold_rationale_cut_away_is_not_scored(tmp_path, setup):
    """The long example's gold word lies past the cut: its row holds no plausibility numbers and says why, and the
    corpus token F1 (macro: the mean of the examples' F1) is over the other examples only, recomputed here from
    the stored predicted and gold positions."""
    cfg, result, rows = _run(tmp_path, setup, "gold", truncate=True)
    long = rows.pop("long")
    assert long["gold_positions"] == [] and long["token_f1"] is None and long["predicted_rationale"] is None
    assert any("gold rationale covers no token" in w for w in long["warnings"])
    f1s = []
    for row in rows.values():
        pred, gold = set(row["predicted_rationale"]), set(row["gold_positions"])
        assert gold
        f1s.append(2 * len(pred & gold) / (len(pred) + len(gold)))
        assert row["token_f1"] == pytest.approx(f1s[-1])
    store = RunStore(result.folder, result.config_hash, result.n_items, cfg.shard_size)
    plaus = summarize(store, cfg).plausibility["gradient_norm"]
    assert plaus["examples"] == 4
    assert plaus["token_f1_macro"] == pytest.approx(sum(f1s) / len(f1s))


def test_causal_lm_cut_to_max_length_keeps_the_context_next_to_the_target(tmp_path, gpt2_dir):
    """A language model's target continues its text, so ``data.max_length`` cuts the oldest tokens (as the adapter's
    own truncation does): the explained text is the end of the prompt, whose tokens are the last ones of the full
    prompt's, and the gold rationale ("park") is found in it. It used to cut the end: "A dog ran" → " then slept"."""
    text, target = "A dog ran in the park and", " then slept"
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"text": text, "target": target, "id": "a", "rationale": [[17, 21]]}) + "\n")
    raw = config_dict(gpt2_dir, data, tmp_path / "out", methods=[{"name": "gradient_norm"}],
                      metrics={"faithfulness": {"enabled": False}},
                      data={"target_field": "target", "max_length": 12, "truncate": True})
    run(read_config(write_config(tmp_path / "c.yaml", raw)), progress=False)
    row = pq.read_table(tmp_path / "out" / "results.parquet").to_pylist()[0]
    tok = AutoTokenizer.from_pretrained(str(gpt2_dir))
    full_prompt = tok.convert_ids_to_tokens(tok(text)["input_ids"])
    n_prompt = row["segments"].count("source")
    assert len(row["tokens"]) <= 12 and text.endswith(row["text"]) and row["target_text"] == target
    assert row["tokens"][n_prompt:] == tok.convert_ids_to_tokens(tok(target)["input_ids"])
    assert row["tokens"][1:n_prompt] == full_prompt[len(full_prompt) - n_prompt + 1:]  # the first may lose its space
    start = row["text"].index("park")
    assert row["gold_positions"] == [j for j, o in enumerate(row["offsets"][:n_prompt])
                                     if o is not None and o[0] < start + 4 and start < o[1]]
    assert row["gold_positions"] and any("(the oldest)" in w and "max_length=12" in w for w in row["warnings"])
