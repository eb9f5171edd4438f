"""Bad input as a demanding user gives it: one line `error: ...` naming what to fix, status 2.

A bug of ours is one line `error: internal error: ...`, status 1; `--debug` adds the traceback.
No failed run leaves a result file behind.
"""

import sys
from pathlib import Path

import pytest
from conftest import one_line

from benchmark import registry, runner
from benchmark.cli import main
from benchmark.config import PROFILES

BOOM = '''\
from dataclasses import dataclass

import torch

from benchmark import register
from benchmark.adapter import AdapterBase
from benchmark.errors import BenchmarkError


@register("boom")
class Boom(AdapterBase):
    @dataclass
    class Config:
        where: str = "nowhere"  # the call that raises

    def fit(self, train, validate, ctx):
        self.n = train.n_items
        if self.config.where == "fit":
            raise RuntimeError("fit went wrong")
        if self.config.where == "on_purpose":
            raise BenchmarkError("boom: the data has no prices")
        validate()
        ctx.report_stop("no_training")

    def score(self, users):
        if self.config.where == "score":
            raise ValueError("score went wrong")
        return torch.zeros(len(users), self.n)

    def diagnostics(self):
        if self.config.where == "diagnostics":
            raise RuntimeError("diagnostics went wrong")
        return {}


@register("boom_ranking")
class BoomRanking(Boom):
    output = "ranking"

    def rank(self, users, k):
        raise IndexError("rank went wrong")
'''


@pytest.fixture
def external(tmp_path, monkeypatch):
    """Write adapter modules under tmp_path; whatever they register is forgotten afterwards."""
    monkeypatch.setattr(registry, "_CLASSES", dict(registry._CLASSES))
    monkeypatch.setattr(registry, "_EXTRA_CONFIG_DIRS", list(registry._EXTRA_CONFIG_DIRS))
    before = set(sys.modules)

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    yield write
    for module in set(sys.modules) - before:
        if module.startswith("external_adapter_"):
            del sys.modules[module]


def result_files(tmp_path) -> list[Path]:
    return sorted((tmp_path / "results").rglob("*.json"))


# --------------------------------------------------------------------------- adapters


def test_adapter_module_with_a_syntax_error(external, smoke, capsys):
    path = external("broken.py", "from benchmark import register\n\ndef f(:\n    pass\n")
    code, err = one_line(["--adapter-module", str(path), "--methods", "popularity", *smoke],
                         capsys)
    assert code == 2
    assert err.startswith(f"error: adapter module '{path}' cannot be imported: SyntaxError: ")
    assert err.endswith("(broken.py, line 3)")


def test_adapter_module_that_raises_on_import(external, smoke, capsys):
    path = external("needs_gpu.py", "import os\nraise RuntimeError('no GPU here')\n")
    code, err = one_line(["--adapter-module", str(path), "--methods", "popularity", *smoke],
                         capsys)
    assert code == 2
    assert err == (f"error: adapter module '{path}' cannot be imported: "
                   "RuntimeError: no GPU here (needs_gpu.py, line 2)")
    assert "external_adapter_needs_gpu" not in sys.modules


@pytest.mark.parametrize("method, where, message", [
    ("boom", "fit", "method 'boom' failed in fit: RuntimeError: fit went wrong"),
    ("boom", "score", "method 'boom' failed in score: ValueError: score went wrong"),
    ("boom", "diagnostics",
     "method 'boom' failed in diagnostics: RuntimeError: diagnostics went wrong"),
    ("boom_ranking", "nowhere", "method 'boom_ranking' failed in rank: IndexError: rank went wrong"),
    ("boom", "on_purpose", "boom: the data has no prices"),  # a BenchmarkError passes unchanged
])
def test_a_failing_method_is_named_with_the_phase(method, where, message, external, smoke,
                                                  tmp_path, capsys):
    path = external("boom.py", BOOM)
    code, err = one_line(["--adapter-module", str(path), "--methods", method,
                          "--set", f"where={where}", *smoke], capsys)
    assert (code, err) == (2, f"error: {message}")
    assert result_files(tmp_path) == []


@pytest.mark.parametrize("position", ["before", "after"])
def test_debug_shows_the_original_traceback(position, external, smoke, capsys):
    path = external("boom.py", BOOM)
    args = ["--adapter-module", str(path), "--methods", "boom", "--set", "where=fit", *smoke]
    args = ["--debug", *args] if position == "before" else ["run", "--debug", *args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert 'boom.py", line 19, in fit' in err and "RuntimeError: fit went wrong" in err
    assert err.splitlines()[-1] == "error: method 'boom' failed in fit: RuntimeError: fit went wrong"


def test_a_bug_of_ours_is_an_internal_error(smoke, monkeypatch, capsys):
    def broken(*args, **kwargs):
        return 1 / 0

    monkeypatch.setattr(runner, "prepare", broken)
    code, err = one_line(["--methods", "popularity", *smoke], capsys)
    assert (code, err) == (1, "error: internal error: ZeroDivisionError: division by zero "
                              "(rerun with --debug for the traceback)")
    assert main(["--debug", "--methods", "popularity", *smoke]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "return 1 / 0" in err
    assert err.splitlines()[-1] == "error: internal error: ZeroDivisionError: division by zero"


@pytest.mark.parametrize("argv", [["list", "--debug"], ["--debug", "list"]])
def test_every_command_accepts_debug(argv, capsys):
    assert main(argv) == 0
    assert "popularity" in capsys.readouterr().out


def test_a_usage_error_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["recommend", "--user", "1", "--seed", "x"])
    code = exit_info.value.code
    err = capsys.readouterr().err
    assert code == 2 and err == ("error: argument --seed: invalid int value: 'x' "
                                 "(see `python -m benchmark recommend --help`)\n")


# --------------------------------------------------------------------------- seeds and config


@pytest.mark.parametrize("seeds, message", [
    ("0,abc", "--seeds expects comma-separated integers, got 'abc'"),
    ("0,-1", "--seeds expects integers >= 0, got -1"),
])
def test_seeds_must_be_non_negative_integers(seeds, message, smoke, tmp_path, capsys):
    code, err = one_line(["--methods", "popularity", f"--seeds={seeds}", *smoke], capsys)
    assert (code, err) == (2, f"error: {message}")
    assert result_files(tmp_path) == []


@pytest.mark.parametrize("overrides, message", [
    (["max_epochs=-1"], "--set: config key 'max_epochs'=-1: must be >= 1"),
    (["hidden=0"], "--set: config key 'hidden'=0: must be >= 1"),
    (["hidden=64", "n_heads=3"], "--set: config key 'hidden'=64: must be divisible by n_heads (3)"),
    # hidden comes from the YAML's smoke block: both layers are named
    (["n_heads=3"], "configs/methods/sasrec_id.yaml profiles.smoke and --set: "
                    "config key 'hidden'=16: must be divisible by n_heads (3)"),
    (["dropout=2"], "--set: config key 'dropout'=2.0: must be in [0, 1)"),
    (["lr=nan"], "--set: config key 'lr'=nan: must be a finite number"),
    (["harness.threads=0"], "--set harness.*: config key 'threads'=0: must be >= 1 (or null)"),
    (["harness.cold_fraction=0.9"],
     "--set harness.*: config key 'cold_fraction'=0.9: must be in (0, 0.5]"),
])
def test_a_value_that_would_train_nonsense_fails_before_the_data_loads(
        overrides, message, cache_dir, tmp_path, capsys):
    sets = [arg for value in overrides for arg in ("--set", value)]
    # No such dataset: the config is refused before the data is looked at.
    code, err = one_line(["--methods", "sasrec_id", "--dataset", "/no/such.inter", "--profile",
                          "smoke", "--cache-dir", str(cache_dir), "--results-dir",
                          str(tmp_path / "results"), *sets], capsys)
    assert (code, err) == (2, f"error: {message}")


def test_every_selected_config_is_checked_before_the_first_job(tiny_atomic, cache_dir, tmp_path,
                                                              capsys):
    code, err = one_line(["--methods", "popularity,sasrec_id", "--set", "sasrec_id.dropout=2",
                          "--dataset", str(tiny_atomic), "--profile", "smoke", "--cache-dir",
                          str(cache_dir), "--results-dir", str(tmp_path / "results")], capsys)
    assert (code, err) == (2, "error: --set: config key 'dropout'=2.0: must be in [0, 1)")
    assert result_files(tmp_path) == []  # popularity, first in line, did not run either


def test_a_nested_semantic_id_config_is_checked_with_its_method(cache_dir, capsys):
    code, err = one_line(["--methods", "sasrec_sid", "--set", "semantic_ids={levels: 0}",
                          "--dataset", "/no/such.inter", "--profile", "smoke", "--cache-dir",
                          str(cache_dir)], capsys)
    assert (code, err) == (2, "error: --set: config key 'semantic_ids'={'levels': 0}: "
                              "config key 'levels'=0: must be >= 1")


@pytest.mark.parametrize("profile", PROFILES)
def test_every_shipped_config_is_valid_under_every_profile(profile):
    from benchmark.settings import harness_settings

    harness_settings(profile)
    for method in registry.available():
        runner.resolve_config(method, profile, {})  # raises BenchmarkError on a bad value


# --------------------------------------------------------------------------- recommend


@pytest.fixture
def no_fitting(monkeypatch):
    """The checks must come before any model is loaded or trained."""
    monkeypatch.setattr(runner, "fit_adapter",
                        lambda *a, **k: pytest.fail("fitted before checking the request"))


@pytest.mark.parametrize("extra, message", [
    (["--user", "3", "-k", "5000"],
     "-k must be between 1 and the number of items in tiny (30), got 5000"),
    (["--user", "3", "-k", "-3"],
     "-k must be between 1 and the number of items in tiny (30), got -3"),
    (["--user", "nosuchuser"], "unknown user 'nosuchuser' in tiny (ids look like '1')"),
    (["--user", "3", "--prompt", "comedy"], "method 'item_knn' cannot be steered by a prompt"),
])
def test_recommend_refuses_before_fitting(extra, message, tiny_atomic, cache_dir, no_fitting,
                                          capsys):
    code, err = one_line(["recommend", "--method", "item_knn", *extra, "--dataset",
                          str(tiny_atomic), "--profile", "smoke", "--cache-dir", str(cache_dir),
                          "--no-progress"], capsys)
    assert (code, err) == (2, f"error: {message}")


def test_chat_refuses_a_method_that_cannot_talk_and_an_unknown_user(tiny_atomic, cache_dir,
                                                                    no_fitting, capsys):
    args = ["--dataset", str(tiny_atomic), "--profile", "smoke", "--cache-dir", str(cache_dir)]
    assert one_line(["chat", "--method", "item_knn", *args], capsys) == (
        2, "error: method 'item_knn' cannot chat")
    assert one_line(["chat", "--method", "sid_llm", "--user", "nobody", *args], capsys) == (
        2, "error: unknown user 'nobody' in tiny (ids look like '1')")


# --------------------------------------------------------------------------- files


def test_an_unwritable_results_dir_is_named(smoke, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory\n")
    code, err = one_line(["--methods", "popularity", *smoke, "--results-dir",
                          str(blocker / "sub")], capsys)
    assert code == 2
    assert err.startswith(f"error: cannot write {blocker / 'sub'}")
    assert err.endswith(": Not a directory; choose another --results-dir")


@pytest.mark.parametrize("method", ["popularity", "sasrec_id"])  # sasrec_id writes in fit()
def test_an_unwritable_cache_dir_is_named(method, smoke, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory\n")
    code, err = one_line(["--methods", method, *smoke, "--cache-dir", str(blocker / "cache")],
                         capsys)
    assert code == 2
    assert err.startswith(f"error: cannot write {blocker / 'cache'}")
    assert err.endswith(": Not a directory; choose another --cache-dir")
    assert result_files(tmp_path) == []


def test_report_on_a_missing_results_dir(tmp_path, capsys):
    missing = tmp_path / "nothing"
    assert one_line(["report", "--results-dir", str(missing)], capsys) == (
        2, f"error: {missing}: no such results directory")
