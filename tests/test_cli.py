"""End to end through the CLI on the smoke profile: results, report, resume, determinism, errors."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from benchmark.cli import main

BASELINES = "popularity,random,item_knn"


def _run(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_smoke_run_writes_results_and_report(tiny_atomic, tmp_path, cache_dir, capsys):
    out = tmp_path / "results"
    code, stdout, err = _run(["--methods", BASELINES, "--dataset", str(tiny_atomic), "--profile",
                              "smoke", "--results-dir", str(out), "--cache-dir", str(cache_dir),
                              "--no-progress"], capsys)
    assert code == 0, err
    for protocol in ("loo", "cold_item"):
        for method in BASELINES.split(","):
            result = json.loads((out / "tiny" / protocol / method / "seed0.json").read_text())
            table = pd.read_csv(out / "tiny" / protocol / method / "seed0.per_user.csv")
            assert list(table.columns[:3]) == ["user_id", "target_item_id", "rank"]
            assert {"history_bucket", "popularity_bucket", "cold_item"} <= set(table.columns)
            assert result["protocol"] == protocol and result["method"] == method
            assert result["dataset"]["stats"]["n_users"] == 40
            for key in ("split_hash", "config", "environment", "timing", "parameters",
                        "training", "metrics", "peak_rss_mb"):
                assert key in result
            # a reader recomputes the headline metric from the per-user file alone
            import numpy as np

            ranks = table["rank"].fillna(np.inf).to_numpy(float)
            ndcg = np.where(ranks <= 10, 1 / np.log2(ranks + 1), 0).mean()
            assert ndcg == pytest.approx(result["metrics"]["all"]["all"]["NDCG@10"]["mean"])
        if protocol == "cold_item":
            assert result["cold_set_size"] == 3 and result["cold_set_hash"]
            assert "cold_item" in result["metrics"]
    report = (out / "REPORT.md").read_text()
    assert "## tiny — leave-one-out (`loo`)" in report and "cold-start items" in report
    assert "item_knn" in report and "[95% CI]" in report
    assert (out / "plots" / "tiny_loo_ndcg10.png").stat().st_size > 1000
    # the report leads with its Summary; diagnostics and runs go to the details file it links
    assert report.index("## Summary") < report.index("## Findings")
    details = (out / "REPORT-details.md").read_text()
    assert "## Runs" in details and "## Runs" not in report and "REPORT-details.md" in report


def test_a_run_covers_the_profiles_datasets_unless_one_is_named(tmp_path, cache_dir, capsys):
    from conftest import synthetic_rows, write_atomic

    paths = []
    for name, seed in (("alpha", 0), ("beta", 1)):
        rows, items = synthetic_rows(n_users=20, seed=seed)
        paths.append(write_atomic(tmp_path / name, name, rows, items))
    out = tmp_path / "results"
    common = ["--methods", "popularity", "--protocol", "loo", "--profile", "smoke",
              "--results-dir", str(out), "--cache-dir", str(cache_dir), "--no-progress",
              "--no-report", "--set", f"harness.datasets=[{paths[0]}, {paths[1]}]"]
    code, _, err = _run(common, capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["alpha", "beta"]
    code, _, err = _run([*common, "--dataset", str(paths[0]), "--results-dir",
                         str(tmp_path / "one")], capsys)
    assert code == 0, err
    assert [p.name for p in (tmp_path / "one").iterdir()] == ["alpha"]


def test_rerun_is_identical_and_resumes_from_cache(tiny_atomic, tmp_path, cache_dir, capsys):
    args = ["--methods", "random,item_knn", "--dataset", str(tiny_atomic), "--profile", "smoke",
            "--protocol", "loo", "--cache-dir", str(cache_dir), "--no-progress", "--no-report"]
    assert main(args + ["--results-dir", str(tmp_path / "a")]) == 0
    runs = list((cache_dir / "runs").iterdir())
    stamps = {p: (p / "result.json").stat().st_mtime_ns for p in runs}
    assert main(args + ["--results-dir", str(tmp_path / "b")]) == 0
    # the second invocation reused the finished runs: nothing was rewritten
    assert {p: (p / "result.json").stat().st_mtime_ns for p in runs} == stamps
    for method in ("random", "item_knn"):
        a = (tmp_path / "a" / "tiny" / "loo" / method / "seed0.per_user.csv").read_text()
        b = (tmp_path / "b" / "tiny" / "loo" / method / "seed0.per_user.csv").read_text()
        assert a == b
    # a fresh cache recomputes from scratch and still gives the same ranks
    assert main(args + ["--results-dir", str(tmp_path / "c"), "--cache-dir",
                        str(tmp_path / "cache2")]) == 0
    for method in ("random", "item_knn"):
        a = (tmp_path / "a" / "tiny" / "loo" / method / "seed0.per_user.csv").read_text()
        c = (tmp_path / "c" / "tiny" / "loo" / method / "seed0.per_user.csv").read_text()
        assert a == c
    capsys.readouterr()


@pytest.mark.parametrize("args, message", [
    (["--methods", "nope"], "unknown method 'nope'; known methods: "),
    (["--methods", "popularity", "--dataset", "/no/such/file.inter"], "neither a known name"),
    (["--methods", "item_knn", "--set", "neighbour_grd=[1]"], "unknown config key 'neighbour_grd'"),
    (["--methods", "item_knn", "--set", "shrink=abc"], "expected a number"),
])
def test_bad_input_gives_one_line_error(args, message, capsys, cache_dir, tiny_atomic):
    full = args + ["--profile", "smoke", "--cache-dir", str(cache_dir), "--no-progress"]
    if "--dataset" not in args:
        full += ["--dataset", str(tiny_atomic)]
    code, _, err = _run(full, capsys)
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_malformed_data_file_error_names_path_and_line(tmp_path, capsys, cache_dir):
    bad = tmp_path / "bad.inter"
    bad.write_text("user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n1\t2\n")
    code, _, err = _run(["--methods", "popularity", "--dataset", str(bad), "--profile", "smoke",
                         "--cache-dir", str(cache_dir)], capsys)
    assert code == 2 and "bad.inter:3: expected 3 tab-separated fields" in err
    assert "Traceback" not in err


def test_empty_after_filtering_is_a_clear_error(tmp_path, capsys, cache_dir):
    from conftest import write_atomic

    path = write_atomic(tmp_path / "few", "few", [(1, 1, 5, 1), (1, 2, 5, 2)])
    code, _, err = _run(["--methods", "popularity", "--dataset", str(path), "--profile", "smoke",
                         "--cache-dir", str(cache_dir)], capsys)
    assert code == 2 and "empty after filtering" in err


def test_list_and_help_run_as_a_user_would():
    out = subprocess.run([sys.executable, "-m", "benchmark", "list"], capture_output=True,
                         text=True, check=True).stdout
    for name in ("popularity", "random", "item_knn"):
        assert name in out
    assert "ml-100k" in out
    help_text = subprocess.run([sys.executable, "-m", "benchmark", "run", "--help"],
                               capture_output=True, text=True, check=True).stdout
    assert "--with-peers" in help_text and "--protocol" in help_text


def test_recommend_prints_real_titles_for_any_scoring_method(tiny_atomic, cache_dir, capsys):
    from benchmark.data import Preprocessing, load_atomic

    code, out, err = _run(["recommend", "--method", "item_knn", "--user", "3", "--dataset",
                           str(tiny_atomic), "--profile", "smoke", "--cache-dir", str(cache_dir),
                           "-k", "5", "--no-progress"], capsys)
    assert code == 0, err
    titles = {a["title"] for a in load_atomic(tiny_atomic, "t", Preprocessing()).catalog.attributes}
    listed = [line.split(". ", 1)[1].strip() for line in out.splitlines() if ". " in line]
    assert len(listed) == 5 and set(listed) <= titles
    code, _, err = _run(["recommend", "--method", "item_knn", "--user", "3", "--prompt", "comedy",
                         "--dataset", str(tiny_atomic), "--profile", "smoke", "--cache-dir",
                         str(cache_dir), "--no-progress"], capsys)
    assert code == 2 and "cannot be steered" in err


def test_commit_is_dirty_for_code_changes_but_not_for_run_outputs(tmp_path, monkeypatch):
    from benchmark import provenance, registry

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    for name in ("code.py", "REPORT.md", "results/r.json"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("v1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    monkeypatch.setattr(registry, "REPO_ROOT", tmp_path)
    clean = provenance.git_commit()
    assert clean and not clean.endswith("+dirty")
    (tmp_path / "REPORT.md").write_text("v2\n")
    (tmp_path / "results" / "r.json").write_text("v2\n")
    assert provenance.git_commit() == clean  # a run rewriting its outputs is not a code change
    (tmp_path / "code.py").write_text("v2\n")
    assert provenance.git_commit() == clean + "+dirty"


def test_sigterm_stops_the_child_process_a_run_is_waiting_on(tmp_path):
    """`kill <pid>` of an invocation must not leave its subprocess (a RecBole training) running
    as an orphan: SIGTERM unwinds like Ctrl-C, and the invocation exits with 143."""
    pid_file = tmp_path / "child.pid"
    child = (f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
             "time.sleep(120)")
    script = ("import subprocess, sys\nimport benchmark.cli as cli\n"
              f"cli.cmd_list = lambda args: subprocess.run([sys.executable, '-c', {child!r}])\n"
              "sys.exit(cli.main(['list']))\n")
    outer = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    child_pid = None
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()):
            assert time.monotonic() < deadline and outer.poll() is None, outer.stderr.read()
            time.sleep(0.05)
        child_pid = int(pid_file.read_text())
        outer.send_signal(signal.SIGTERM)
        assert outer.wait(timeout=60) == 128 + signal.SIGTERM
        assert "terminated; finished runs are cached" in outer.stderr.read()
        with pytest.raises(ProcessLookupError):  # reaped by the invocation before it exited
            os.kill(child_pid, 0)
    finally:
        outer.kill()
        if child_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child_pid, signal.SIGKILL)
