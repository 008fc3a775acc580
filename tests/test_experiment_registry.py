"""The experiment registry: every entry resolves, its options reach its runner, unused options are refused, and a
paper following the module protocol is added with one entry (CLI command included)."""

from __future__ import annotations

import importlib
import inspect
import sys
import types
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from seqexplain.cli import app
from seqexplain.cli_reproduce import reproduce_command
from seqexplain.errors import InputError, UnsupportedError
from seqexplain.experiments import registry
from seqexplain.experiments.registry import PAPERS, Experiment, Option, Paper, check_options, resolve, run_experiment


@pytest.mark.parametrize("paper", list(PAPERS.values()), ids=lambda p: p.name)
def test_every_entry_resolves_and_its_options_are_runner_keywords(paper: Paper) -> None:
    declared = {o.name for o in paper.options}
    assert len(declared) == len(paper.options)
    assert len({e.name for e in paper.experiments}) == len(paper.experiments)
    for exp in paper.experiments:
        assert set(exp.options) <= declared, exp.name
        params = inspect.signature(resolve(paper, exp)).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())  # settings overrides
        for keyword in [*exp.options.values(), *exp.fixed]:
            assert takes_any or keyword in params, f"{paper.name} {exp.name}: {keyword}"
    if paper.module is not None:  # the module's own list of experiments agrees with the registry
        listed = importlib.import_module(paper.module).EXPERIMENTS
        assert {e.name: e.description for e in paper.experiments} == dict(listed)
    for option in paper.options:  # an option no experiment uses would be dead
        assert any(option.name in e.options for e in paper.experiments), option.name


def test_method_choices_are_the_recipes_methods() -> None:
    from seqexplain.experiments import vafa2021_lm_settings, vafa2021_translation
    from seqexplain.experiments.eraser_movies import evaluate

    choices = set(PAPERS["vafa2021"].option("methods").choices)
    assert choices == set(vafa2021_lm_settings.ALL_METHODS) | set(vafa2021_translation.BASELINES)
    assert PAPERS["eraser_movies"].option("methods").choices == evaluate.METHODS


def test_option_checks() -> None:
    paper = PAPERS["vafa2021"]
    lam, majority = paper.experiment("lambada"), paper.experiment("majority_class")
    assert check_options(paper, lam, {"limit": 3, "methods": "greedy, gradient_norm", "compatible": False}) == {
        "limit": 3, "methods": ("greedy", "gradient_norm")}
    with pytest.raises(InputError, match=r"--limit is not used by vafa2021 majority_class \(it takes no extra"):
        check_options(paper, majority, {"limit": 3})
    with pytest.raises(InputError, match=r"--compatible is not used by vafa2021 lambada_compatible"):
        check_options(paper, paper.experiment("lambada_compatible"), {"compatible": True})
    with pytest.raises(InputError, match=r"--methods: 'bogus' is not one of"):
        check_options(paper, lam, {"methods": "greedy,bogus"})
    with pytest.raises(InputError, match=r"--limit must be at least 0, got -1"):
        check_options(paper, lam, {"limit": -1})
    assert check_options(paper, paper.experiment("translation_train"), {"no_resume": True}) == {"resume": False}
    with pytest.raises(InputError, match="unknown experiment 'nope' of vafa2021"):
        paper.experiment("nope")
    with pytest.raises(InputError, match="unknown paper"):
        run_experiment("nobody2099", "x", "out")


def test_cli_refuses_an_option_the_experiment_does_not_use(tmp_path: Path) -> None:
    out = tmp_path / "o"
    result = CliRunner().invoke(app, ["reproduce", "vafa2021", "majority_class", "--out", str(out), "--limit", "3"])
    assert result.exit_code == 2 and "--limit is not used by vafa2021 majority_class" in result.stderr
    assert not out.exists()  # refused before the folder is made
    result = CliRunner().invoke(app, ["reproduce", "vafa2021", "lambada", "--out", str(out), "--ig-steps", "0"])
    assert result.exit_code == 2 and "--ig-steps must be at least 1" in result.stderr


def test_a_protocol_paper_is_one_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A module with ``EXPERIMENTS`` and ``run(experiment, out, *, quick, data_root, seed, **options)``: one
    :class:`Paper` gives the Python call and the CLI command, options checked and renamed."""
    calls: list[tuple] = []
    module = types.ModuleType("seqexplain_fake_paper")
    module.EXPERIMENTS = {"tables": "Table 1", "probe": "a probe"}  # type: ignore[attr-defined]

    def run(experiment, out, *, quick, data_root, seed, **options):
        calls.append((experiment, out, quick, data_root, seed, options))
        return {"markdown": f"| {experiment} |"}

    module.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "seqexplain_fake_paper", module)
    paper = Paper("fake2099", "Fake et al. (2099).", module="seqexplain_fake_paper",
                  experiments=(Experiment("tables", "Table 1"), Experiment("probe", "a probe", options={"limit": "n"})),
                  options=(Option("limit", int, "How many.", minimum=1),))
    assert {e.name: e.description for e in paper.experiments} == module.EXPERIMENTS
    monkeypatch.setitem(registry.PAPERS, paper.name, paper)
    run_experiment("fake2099", "probe", tmp_path, seed=4, limit=2)
    assert calls[-1] == ("probe", tmp_path, False, None, 4, {"n": 2})
    cli = typer.Typer()
    cli.command("fake2099")(reproduce_command(paper))
    cli.command("other")(lambda: None)  # a group, so the paper's name is a subcommand as under ``reproduce``
    result = CliRunner().invoke(cli, ["fake2099", "tables", "--out", str(tmp_path / "t"), "--quick", "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert calls[-1] == ("tables", tmp_path / "t", True, None, 2, {}) and "| tables |" in result.stdout
    with pytest.raises(InputError, match="--limit is not used by fake2099 tables"):
        run_experiment("fake2099", "tables", tmp_path, limit=2)


def test_a_missing_module_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    paper = Paper("gone2099", "Gone.", module="seqexplain_no_such_module", experiments=(Experiment("x", "x"),))
    with pytest.raises(UnsupportedError, match="gone2099 reproduction is not available"):
        resolve(paper, paper.experiments[0])


@pytest.mark.parametrize("paper", ["snell2021 sst2", "ger2021 sst2", "bujel2021 fce", "verwimp2018"])
def test_a_seed_outside_the_rngs_range_is_refused_before_any_work(tmp_path: Path, paper: str) -> None:
    """numpy, scikit-learn and Python's RNGs take seeds in 0..2**32-1 (the recipes add offsets): a negative seed
    crashed with a traceback (ger2021 only after training its first models); now exit 2 and no folder."""
    out = tmp_path / "o"
    for seed in ("-1", str(2**31)):
        result = CliRunner().invoke(app, ["reproduce", *paper.split(), "--quick", "--out", str(out), "--seed", seed])
        assert result.exit_code == 2 and "--seed must be" in result.stderr and "Traceback" not in result.output
        assert not out.exists()
    with pytest.raises(InputError, match="--seed must be"):
        run_experiment(*paper.split()[:2] if " " in paper else (paper, None), out, quick=True, seed=-1)
