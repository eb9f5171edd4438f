"""No silent no-op, no silent early exit: an empty selection, an unknown command, a method that
calls sys.exit(), a `recommend` that would list seen items or rank NaN are all named errors or
named shortfalls; and an error about an external method's YAML names that file."""

import json
import signal
import sys

import pytest
from conftest import one_line

from benchmark import cli, registry
from benchmark.cli import COMMANDS, main

FAKES = '''\
import os
import signal
import sys
from dataclasses import dataclass

import numpy as np
import torch

from benchmark import register
from benchmark.adapter import AdapterBase
from benchmark.config import require_positive


@register("exiter")
class Exiter(AdapterBase):
    """Leaves the process (or is interrupted) in the call named by `where`."""

    @dataclass
    class Config:
        where: str = "nowhere"
        code: int | None = 0

    def _maybe(self, call):
        if self.config.where == call:
            sys.exit(self.config.code)
        if self.config.where == call + "_ctrl_c":
            raise KeyboardInterrupt
        if self.config.where == call + "_sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
            import time
            time.sleep(30)  # the handler raises long before

    def fit(self, train, validate, ctx):
        self.n = train.n_items
        self._maybe("fit")
        ctx.report_stop("no_training")

    def score(self, users):
        self._maybe("score")
        return torch.zeros(len(users), self.n)


@register("exiter_ranking")
class ExiterRanking(Exiter):
    output = "ranking"

    def rank(self, users, k):
        self._maybe("rank")
        return torch.full((len(users), k), -1)


@register("nan_scorer")
class NaNScorer(AdapterBase):
    @dataclass
    class Config:
        fill: float = float("nan")

    def fit(self, train, validate, ctx):
        self.n = train.n_items
        ctx.report_stop("no_training")

    def score(self, users):
        return torch.full((len(users), self.n), self.config.fill)


@register("history_ranker")
class HistoryRanker(NaNScorer):
    """Lists the user's own history first, then a -1 pad, then one unseen item."""

    output = "ranking"

    def rank(self, users, k):
        rows = []
        for history in users.histories:
            unseen = [i for i in range(self.n) if i not in set(history.tolist())]
            row = [*history[:3].tolist(), -1, unseen[0], history[0]][:k]
            rows.append(row + [-1] * (k - len(row)))
        return torch.as_tensor(np.array(rows))


@register("ext_m")
class External(NaNScorer):
    @dataclass
    class Config:
        lr: float = 0.1

        def __post_init__(self):
            require_positive("lr", self.lr)


@register("ext_child")
class ExternalChild(External):
    pass
'''


@pytest.fixture
def fakes(tmp_path, monkeypatch):
    """The adapters above as an --adapter-module file; whatever it registers is forgotten."""
    monkeypatch.setattr(registry, "_CLASSES", dict(registry._CLASSES))
    monkeypatch.setattr(registry, "_EXTRA_CONFIG_DIRS", list(registry._EXTRA_CONFIG_DIRS))
    before = set(sys.modules)
    folder = tmp_path / "ext"
    folder.mkdir()
    path = folder / "fakes.py"
    path.write_text(FAKES)
    yield path
    for module in set(sys.modules) - before:
        if module.startswith("external_adapter_"):
            del sys.modules[module]


def result_files(tmp_path) -> list[str]:
    return sorted(p.relative_to(tmp_path / "results").as_posix()
                  for p in (tmp_path / "results").rglob("seed*.json"))


# --------------------------------------------------------------------------- 1: empty lists


@pytest.mark.parametrize("option, value, message", [
    ("--seeds", "", "--seeds names no seed, got ''"),
    ("--seeds", " ", "--seeds names no seed, got ' '"),
    ("--seeds", ",", "--seeds expects comma-separated integers, got ''"),
    ("--methods", "", "--methods names no method, got ''; known methods: "),
    ("--methods", ",", "--methods names no method, got ','; known methods: "),
    ("--dataset", "", "--dataset names no dataset, got ''"),
])
def test_an_empty_selection_is_an_error_not_a_default_or_nothing(option, value, message, smoke,
                                                                  tmp_path, capsys):
    args = ["--methods", "popularity", *smoke,
            # were an empty --dataset to fall back on the profile's, it would run this one
            "--set", f"harness.datasets=[{smoke[1]}]", f"{option}={value}"]
    code, err = one_line(args, capsys)
    assert code == 2 and err.startswith(f"error: {message}")
    assert result_files(tmp_path) == []


# --------------------------------------------------------------------------- 2: commands


@pytest.mark.parametrize("argv", [["frobnicate"], ["--debug", "frobnicate", "--all"],
                                  ["popularity", "--all"]])
def test_an_unknown_command_names_itself(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    name = argv[1] if argv[0] == "--debug" else argv[0]
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        f"error: unknown command {name!r}; commands: {', '.join(COMMANDS)} "
        "(see `python -m benchmark --help`)\n")


@pytest.mark.parametrize("argv", [["--all"], ["--debug", "--all"], ["--methods", "x"],
                                  ["--profile", "smoke", "--methods", "x"],
                                  ["--debug", "--profile", "smoke", "--all", "--debug"],
                                  ["run", "--methods", "x"]])
def test_options_first_still_mean_run(argv, monkeypatch):
    seen = []
    monkeypatch.setattr(cli, "cmd_run", lambda args: seen.append(args) or 0)
    assert main(argv) == 0
    assert seen[0].command == "run" and (seen[0].all or seen[0].methods == "x")


def test_help_says_what_a_first_argument_may_be():
    text = " ".join(cli.build_parser().format_help().split())
    assert "neither an option nor a command is an error" in text


# --------------------------------------------------------------------------- 3: YAML paths


def test_an_external_methods_yaml_error_names_that_file(fakes, smoke, capsys):
    yaml_path = (fakes.parent / "ext_m.yaml").resolve()
    args = ["--adapter-module", str(fakes), "--methods", "ext_m", *smoke]
    yaml_path.write_text("lrr: 0.5\n")
    assert one_line(args, capsys) == (
        2, f"error: {yaml_path}: unknown config key 'lrr'; known keys: lr")
    yaml_path.write_text("lr: -1\n")  # refused by the Config's own check
    assert one_line(args, capsys) == (
        2, f"error: {yaml_path}: config key 'lr'=-1.0: must be > 0")
    yaml_path.write_text("profiles: {fast: {lr: 1}}\n")
    code, err = one_line(args, capsys)
    assert code == 2 and err.startswith(f"error: {yaml_path}: `profiles:` keys must be ")


def test_a_bad_key_inherited_through_include_names_the_file_that_holds_it(fakes, smoke, capsys):
    parent = (fakes.parent / "ext_base.yaml").resolve()
    child = (fakes.parent / "ext_child.yaml").resolve()
    parent.write_text("lr: 0.2\nprofiles:\n  smoke: {epochz: 3}\n")
    child.write_text("include: ext_base\nprofiles:\n  smoke: {lr: 0.5}\n")
    args = ["--adapter-module", str(fakes), "--methods", "ext_child", *smoke]
    assert one_line(args, capsys) == (
        2, f"error: {parent} profiles.smoke: unknown config key 'epochz'; known keys: lr")
    parent.write_text("lr: 0.2\n")
    child.write_text("include: ext_base\nprofiles:\n  smoke: {lr: 0}\n")
    assert one_line(args, capsys) == (
        2, f"error: {child} profiles.smoke: config key 'lr'=0.0: must be > 0")


def test_a_shipped_yaml_knows_which_file_of_its_include_chain_set_a_key():
    data = registry.method_yaml("sasrec_id_bce")  # `include: sasrec_id`, plus `loss: bce`
    assert data.source("loss").name == "sasrec_id_bce.yaml"
    assert data.source("profiles", "smoke", "hidden").name == "sasrec_id.yaml"
    assert data.source("datasets", "amazon-scientific", "lr").name == "sasrec_id.yaml"


# --------------------------------------------------------------------------- 4: sys.exit()


@pytest.mark.parametrize("method, where, code, message", [
    ("exiter", "fit", 0, "method 'exiter' failed in fit: it called sys.exit(0)"),
    ("exiter", "fit", None, "method 'exiter' failed in fit: it called sys.exit()"),
    ("exiter", "score", 0, "method 'exiter' failed in score: it called sys.exit(0)"),
    ("exiter_ranking", "rank", 3, "method 'exiter_ranking' failed in rank: it called sys.exit(3)"),
])
def test_sys_exit_in_a_method_fails_that_method_not_the_invocation(method, where, code, message,
                                                                   fakes, smoke, tmp_path,
                                                                   capsys):
    # The exiting method first: it fails with one line, popularity still runs and keeps its result
    code_set = "null" if code is None else str(code)
    status, err = one_line(["--adapter-module", str(fakes), "--methods", f"{method},popularity",
                            "--set", f"{method}.where={where}", "--set",
                            f"{method}.code={code_set}", *smoke], capsys)
    assert (status, err) == (2, f"error: {message}")
    assert result_files(tmp_path) == ["tiny/loo/popularity/seed0.json"]


@pytest.mark.parametrize("where, status, line", [
    ("fit_ctrl_c", 130, "interrupted; finished runs are cached and will be reused"),
    ("score_ctrl_c", 130, "interrupted; finished runs are cached and will be reused"),
    ("fit_sigterm", 128 + signal.SIGTERM, "terminated; finished runs are cached and will be reused"),
])
def test_ctrl_c_and_sigterm_in_a_method_keep_their_status(where, status, line, fakes, smoke,
                                                          capsys):
    handler = signal.getsignal(signal.SIGTERM)
    assert one_line(["--adapter-module", str(fakes), "--methods", "exiter", "--set",
                     f"where={where}", *smoke], capsys) == (status, line)
    assert signal.getsignal(signal.SIGTERM) == handler


def test_sys_exit_on_import_of_an_adapter_module_is_an_error(tmp_path, smoke, capsys,
                                                             monkeypatch):
    monkeypatch.setattr(registry, "_EXTRA_CONFIG_DIRS", list(registry._EXTRA_CONFIG_DIRS))
    path = tmp_path / "leaves.py"
    path.write_text("import sys\nsys.exit(0)\n")
    assert one_line(["--adapter-module", str(path), "--methods", "popularity", *smoke],
                    capsys) == (2, f"error: adapter module '{path}' cannot be imported: "
                                   "SystemExit: 0 (leaves.py, line 2)")


# --------------------------------------------------------------------------- 5: recommend


def _recommend(args, capsys, tiny_atomic, cache_dir):
    code = main(["recommend", "--user", "3", "--dataset", str(tiny_atomic), "--profile", "smoke",
                 "--cache-dir", str(cache_dir), "--no-progress", *args])
    captured = capsys.readouterr()
    listed = [line.split(". ", 1)[1].strip() for line in captured.out.splitlines()
              if line.startswith("  ") and ". " in line]
    return code, captured.out, captured.err, listed


def _history_titles(tiny_atomic, user="3") -> set[str]:
    rows = [line.split("\t") for line in tiny_atomic.read_text().splitlines()[1:]]
    return {f"Movie {item}" for u, item, *_ in rows if u == user}


def test_recommend_never_lists_a_seen_item_even_when_k_exceeds_the_unseen(tiny_atomic,
                                                                          cache_dir, capsys):
    seen = _history_titles(tiny_atomic)
    assert len(seen) == 12  # of 30 items: 18 unseen
    code, out, err, listed = _recommend(["--method", "popularity", "-k", "30"], capsys,
                                        tiny_atomic, cache_dir)
    assert code == 0, err
    assert len(listed) == 18 and len(set(listed)) == 18 and not set(listed) & seen
    assert "(only 18 of the 30 items asked for: the other 12 items are in the user's history)" \
        in out.splitlines()


def test_recommend_explains_only_when_asked_and_only_for_a_method_that_talks(tiny_atomic,
                                                                             cache_dir, capsys):
    code, out, err, _ = _recommend(["--method", "popularity", "-k", "3"], capsys, tiny_atomic,
                                   cache_dir)
    assert code == 0 and "Why:" not in out
    code, _, err, _ = _recommend(["--method", "popularity", "--explain"], capsys, tiny_atomic,
                                 cache_dir)
    assert code != 0 and "cannot explain its picks" in err


@pytest.mark.parametrize("fill", ["-.inf", ".inf"])
def test_recommend_ranks_infinite_scores_like_the_evaluator(fill, fakes, tiny_atomic, cache_dir,
                                                            capsys):
    code, _, err, listed = _recommend(["--adapter-module", str(fakes), "--method", "nan_scorer",
                                       "--set", f"fill={fill}", "-k", "25"], capsys,
                                      tiny_atomic, cache_dir)
    assert code == 0, err
    assert len(listed) == 18 and not set(listed) & _history_titles(tiny_atomic)


def test_recommend_refuses_nan_scores_as_the_evaluator_does(fakes, smoke, tiny_atomic, cache_dir,
                                                            capsys):
    run_status, run_err = one_line(["--adapter-module", str(fakes), "--methods", "nan_scorer",
                                    *smoke], capsys)
    code = main(["recommend", "--adapter-module", str(fakes), "--method", "nan_scorer", "--user",
                 "3", "--dataset", str(tiny_atomic), "--profile", "smoke", "--cache-dir",
                 str(cache_dir), "--no-progress"])
    captured = capsys.readouterr()
    notice, err = captured.err.rstrip("\n").split("\n", 1)  # what it fits, then the error
    assert notice.startswith("recommend: fitting nan_scorer on tiny (loo, seed 0")
    assert (code, err) == (run_status, run_err) == (2, "error: the adapter returned NaN scores")
    assert "Recommended" not in captured.out


def test_recommend_drops_history_items_and_pads_from_a_ranked_list(fakes, tiny_atomic,
                                                                   cache_dir, capsys):
    code, out, err, listed = _recommend(["--adapter-module", str(fakes), "--method",
                                         "history_ranker", "-k", "6"], capsys, tiny_atomic,
                                        cache_dir)
    assert code == 0, err
    assert len(listed) == 1 and not set(listed) & _history_titles(tiny_atomic)
    assert ("(only 1 of the 6 items asked for: rank() returned 6, of which 5 were history "
            "items, -1 pads or repeats)") in out.splitlines()


def test_a_trailing_comma_and_explicit_seeds_still_run(smoke, tmp_path, capsys):
    assert main(["--methods", "popularity,", "--seeds", "0", *smoke]) == 0
    capsys.readouterr()
    result = json.loads((tmp_path / "results" / "tiny" / "loo" / "popularity" / "seed0.json")
                        .read_text())
    assert result["method"] == "popularity"
