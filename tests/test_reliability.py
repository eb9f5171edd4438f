"""No corrupt file and no silent wrong number: concurrent writers, a full disk, damaged cache
entries, and result files that disagree with themselves."""

import errno
import json
import os
import pickle
import re
import threading

import pandas as pd
import pytest
from conftest import written_metrics

from benchmark import results
from benchmark.adapter import RunContext
from benchmark.cache import Cache
from benchmark.cli import main
from benchmark.errors import BenchmarkError
from benchmark.models.training import get_or_train

USERS = [f"u{i:02d}" for i in range(60)]  # over 50: scipy's Wilcoxon test is quick, not exact


def _pair(n=60, rank=3):
    table = pd.DataFrame({"user_id": USERS[:n], "target_item_id": [f"i{k}" for k in range(n)],
                          "rank": [rank] * n})
    result = {"schema_version": 2, "n_test_cases": n, "rank": rank, "method": "m", "seed": 0,
              **{k: {} for k in ("dataset", "harness", "environment", "timing", "training")}}
    return table, result


def _leftovers(folder):
    """Temporary files a writer left behind (each writer's own, uniquely named)."""
    return [p.name for p in folder.rglob("*") if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------- concurrent writers


def _two_at_once(monkeypatch, work):
    """Run ``work(i)`` in two threads that both finish writing their temporary files before
    either renames one into place: the interleaving that broke a fixed temporary name."""
    barrier = threading.Barrier(2, timeout=10)
    real_replace = os.replace
    first = threading.local()

    def replace(src, dst):
        if not getattr(first, "done", False):
            first.done = True
            barrier.wait()
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    errors = []

    def target(i):
        try:
            work(i)
        except Exception as exc:  # reported below, with the other thread's
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_two_writers_of_one_run_folder_both_succeed(tmp_path, monkeypatch):
    run_dir = tmp_path / "runs" / "abc"
    pairs = [_pair(rank=3), _pair(rank=5)]
    errors = _two_at_once(monkeypatch, lambda i: results.write_run(run_dir, *pairs[i]))
    assert errors == []  # was FileNotFoundError: per_user.csv.tmp -> per_user.csv
    result, table = results.read_run(run_dir / "result.json", run_dir / "per_user.csv")
    assert result["rank"] in (3, 5) and len(table) == 60
    assert _leftovers(tmp_path) == []


def test_two_installs_of_one_result_both_succeed(tmp_path, monkeypatch):
    run_dir = tmp_path / "runs" / "abc"
    results.write_run(run_dir, *_pair())
    target = tmp_path / "results" / "toy" / "loo" / "m" / "seed0.json"
    assert _two_at_once(monkeypatch, lambda i: results.install(run_dir, target)) == []
    assert target.read_bytes() == (run_dir / "result.json").read_bytes()
    assert (target.with_suffix(".per_user.csv").read_bytes()
            == (run_dir / "per_user.csv").read_bytes())
    assert _leftovers(tmp_path) == []


def test_one_key_is_built_once_while_the_other_caller_waits(tmp_path):
    cache, built = Cache(tmp_path), []

    def build():
        built.append(1)
        threading.Event().wait(0.3)  # long enough for the other thread to find no entry
        return {"value": 42}

    values = []
    threads = [threading.Thread(target=lambda: values.append(cache.get_or_build("k", [1], build)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert values == [{"value": 42}] * 2 and len(built) == 1


def test_a_lock_is_reentrant_within_a_thread(tmp_path):
    cache = Cache(tmp_path)
    with cache.lock("run-x"), cache.lock("run-x"):  # a second flock here would block forever
        pass
    assert (tmp_path / "locks" / "run-x.lock").exists()


# --------------------------------------------------------------------------- full disk


@pytest.fixture
def full_disk(monkeypatch):
    """Every os.write puts down half its bytes, then fails as a full disk does."""
    real_write = os.write

    def write(fd, data):
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def arm():
        monkeypatch.setattr(os, "write", write)

    return arm


def test_a_full_disk_leaves_no_run_file(tmp_path, full_disk):
    run_dir = tmp_path / "runs" / "abc"
    full_disk()
    with pytest.raises(BenchmarkError, match=r"could not write .*per_user\.csv: No space left"):
        results.write_run(run_dir, *_pair())
    assert list(run_dir.iterdir()) == []  # neither file, and no temporary file
    assert results.run_problem(run_dir) == results.NOT_FINISHED


def test_a_full_disk_leaves_the_previous_result_in_place(tmp_path, full_disk):
    old, new = tmp_path / "runs" / "old", tmp_path / "runs" / "new"
    results.write_run(old, *_pair(rank=3))
    results.write_run(new, *_pair(rank=5))
    target = tmp_path / "results" / "toy" / "loo" / "m" / "seed0.json"
    results.install(old, target)
    before = {p.name: p.read_bytes() for p in target.parent.iterdir()}
    full_disk()
    with pytest.raises(BenchmarkError, match=r"could not write .*seed0\.per_user\.csv: No space "
                                             r"left on device; the file there \(if any\) is "
                                             r"unchanged"):
        results.install(new, target)
    assert {p.name: p.read_bytes() for p in target.parent.iterdir()} == before


def test_a_full_disk_under_the_cli_is_one_line_and_no_result(tiny_atomic, tmp_path, cache_dir,
                                                            capsys, monkeypatch):
    """The results folder is full (the cache is not): no seed0.json, empty or otherwise."""
    out = tmp_path / "results"
    real_write = os.write

    def write(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(out)):
            real_write(fd, bytes(data[:100]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    if not os.path.exists("/proc/self/fd"):
        pytest.skip("needs /proc to tell which file a descriptor writes")
    monkeypatch.setattr(os, "write", write)
    code = main(["--methods", "popularity", "--protocol", "loo", "--dataset", str(tiny_atomic),
                 "--profile", "smoke", "--cache-dir", str(cache_dir), "--results-dir", str(out),
                 "--no-progress", "--no-report"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: could not write ") and err.count("\n") == 1
    assert "No space left on device" in err
    assert [p for p in out.rglob("*") if p.is_file()] == []
    # the finished run is in the cache, whole: with space again, it is copied, not recomputed
    monkeypatch.setattr(os, "write", real_write)
    assert main(["--methods", "popularity", "--protocol", "loo", "--dataset", str(tiny_atomic),
                 "--profile", "smoke", "--cache-dir", str(cache_dir), "--results-dir", str(out),
                 "--no-progress", "--no-report"]) == 0
    results.read_run(out / "tiny" / "loo" / "popularity" / "seed0.json",
                     out / "tiny" / "loo" / "popularity" / "seed0.per_user.csv")


# --------------------------------------------------------------------------- damaged cache entries


def test_a_truncated_pickle_is_rebuilt(tmp_path, capsys):
    cache = Cache(tmp_path)
    assert cache.get_or_build("emb", [1], lambda: list(range(100))) == list(range(100))
    path = next((tmp_path / "emb").glob("*.pkl"))
    path.write_bytes(path.read_bytes()[:20])
    assert cache.get_or_build("emb", [1], lambda: ["rebuilt"]) == ["rebuilt"]
    err = capsys.readouterr().err
    assert f"warning: cache entry {path} is damaged" in err and "rebuilding it" in err
    assert err.count("\n") == 1
    assert pickle.loads(path.read_bytes()) == ["rebuilt"]


def test_a_truncated_checkpoint_is_retrained(tmp_path, capsys):
    import torch

    def ctx():
        return RunContext(seed=0, device="cpu", cache=Cache(tmp_path), protocol="loo",
                          catalog_hash="c", train_hash="t", show_progress=False)

    trained = []

    def train():
        trained.append(1)
        return {"w": torch.ones(50)}

    assert get_or_train(ctx(), "toy", ["k"], train)[1] is False
    state, cached = get_or_train(ctx(), "toy", ["k"], train)
    assert cached and len(trained) == 1
    path = next((tmp_path / "toy").glob("*.pt"))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    state, cached = get_or_train(ctx(), "toy", ["k"], train)
    assert not cached and len(trained) == 2 and torch.equal(state["w"], torch.ones(50))
    err = capsys.readouterr().err
    assert f"warning: cache entry {path} is damaged" in err and err.count("\n") == 1
    assert get_or_train(ctx(), "toy", ["k"], train)[1] is True  # the rewrite loads


def _cut_rows(path):
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-5]) + "\n")


RUN_DAMAGE = {
    "truncated JSON": (lambda run: (run / "result.json").write_text(
        (run / "result.json").read_text()[:500]), "not a readable result JSON"),
    "no per-user file": (lambda run: (run / "per_user.csv").unlink(),
                         "per-user file per_user.csv is missing"),
    "short per-user file": (lambda run: _cut_rows(run / "per_user.csv"),
                            "35 rows, but result.json says n_test_cases = 40"),
}


@pytest.mark.parametrize("case", list(RUN_DAMAGE))
def test_a_damaged_finished_run_is_recomputed(tiny_atomic, tmp_path, cache_dir, capsys, case):
    damage, why = RUN_DAMAGE[case]
    args = ["--methods", "item_knn", "--protocol", "loo", "--dataset", str(tiny_atomic),
            "--profile", "smoke", "--cache-dir", str(cache_dir), "--no-progress", "--no-report"]
    assert main(args + ["--results-dir", str(tmp_path / "a")]) == 0
    (run,) = (cache_dir / "runs").iterdir()
    damage(run)
    capsys.readouterr()
    assert main(args + ["--results-dir", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    assert f"warning: cached run {run} is damaged" in err and why in err and "recomputing" in err
    assert results.is_complete(run)
    rel = "tiny/loo/item_knn/seed0.per_user.csv"
    assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


# --------------------------------------------------------------------------- strict report


def write_seed(root, method, ranks, users=USERS, seed=0, n_test_cases=None, list_length=None):
    """One seed of one method as the runner writes it (the fields the report reads, and the
    metrics of those ranks; a ``list_length``: a method that returns top-K lists)."""
    folder = root / "toy" / "loo" / method
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["user_id,target_item_id,rank,history_bucket,popularity_bucket,cold_item"]
    lines += [f"{u},i{n},{'' if r is None else r},short,head," for n, (u, r) in
              enumerate(zip(users, ranks))]
    csv = folder / f"seed{seed}.per_user.csv"
    csv.write_text("\n".join(lines) + "\n")
    result = {
        "schema_version": 2, "method": method, "seed": seed, "protocol": "loo",
        "profile": "default", "split_hash": "abc", "cold_set_hash": None, "cold_set_size": 0,
        "n_valid_cases": len(users), "n_test_cases": n_test_cases or len(users),
        "list_length": list_length, "output": "scores" if list_length is None else "ranking",
        "metrics": written_metrics(csv, list_length),
        "dataset": {"name": "toy", "stats": {"n_users": 60, "n_items": 90, "n_interactions": 200}},
        "harness": {"mask_history": True, "top_k": 20},
        "environment": {"git_commit": "0123456789ab", "hardware": {"device": "cpu",
                                                                   "torch_threads": 2}},
        "timing": {"fit_seconds": 1.0, "inference_seconds": 0.5}, "peak_rss_mb": 100.0,
        "parameters": {"trainable": 0},
        "training": {"stop_reason": "epoch_cap", "examples_seen": 0, "curve": []},
        "diagnostics": {},
    }
    (folder / f"seed{seed}.json").write_text(json.dumps(result))
    return folder / f"seed{seed}.json"


def _cut_to(n):
    def cut(path):
        csv = path.with_suffix(".per_user.csv")
        csv.write_text("\n".join(csv.read_text().splitlines()[: n + 1]) + "\n")
    return cut


def _rank(value):
    def set_rank(path):
        csv = path.with_suffix(".per_user.csv")
        lines = csv.read_text().splitlines()
        cells = lines[3].split(",")
        cells[2] = value
        lines[3] = ",".join(cells)
        csv.write_text("\n".join(lines) + "\n")
    return set_rank


def _trailing(path):
    path.write_bytes(path.read_bytes() + b'ch_seconds": 0.5}}\n')


DAMAGE = {
    "cut per-user file": (_cut_to(6), r"seed0\.per_user\.csv: 6 rows, but seed0\.json says "
                                      r"n_test_cases = 60"),
    "missing per-user file": (lambda p: p.with_suffix(".per_user.csv").unlink(),
                              r"its per-user file seed0\.per_user\.csv is missing"),
    "truncated JSON": (lambda p: p.write_text(p.read_text()[:40]), r"not a readable result JSON"),
    "JSON with trailing bytes": (_trailing, r"not a readable result JSON \(Extra data"),
    "non-numeric rank": (_rank("abc"), r"line 4: rank 'abc' is neither empty \(a miss\) nor an "
                                       r"integer >= 1"),
    "rank 0": (_rank("0"), r"line 4: rank '0' is neither empty"),
    "fractional rank": (_rank("2.5"), r"line 4: rank '2.5' is neither empty"),
    "misaligned users": (None, r"1 of its 60 users are not among the 60 users of "
                               r"sasrec_id/seed0\.json"),
}


@pytest.fixture
def no_plots(monkeypatch):
    """The report without its bar charts: seconds per report, and not what these tests look
    at."""
    from benchmark import report_tables

    monkeypatch.setattr(report_tables, "_plots", lambda *args: [])


@pytest.fixture(params=list(DAMAGE))
def damaged(request, tmp_path, no_plots):
    """A results folder: a sound reference (sasrec_id), a sound `weak`, and a damaged `bad`."""
    root = tmp_path / "results"
    write_seed(root, "sasrec_id", [3] * 60)
    write_seed(root, "weak", [7] * 60)
    damage, message = DAMAGE[request.param]
    if damage is None:
        bad = write_seed(root, "bad", [1] * 60, users=USERS[1:] + ["u99"])
    else:
        bad = write_seed(root, "bad", [1] * 60)
        damage(bad)
    return root, bad, message


def test_report_stops_at_a_file_it_cannot_trust(damaged, capsys):
    root, bad, message = damaged
    code = main(["report", "--results-dir", str(root)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: ") and str(bad.parent) in err
    assert re.search(message, err), err
    assert "report --lenient" in err
    assert not (root / "REPORT.md").exists()


def test_report_lenient_skips_it_and_says_so(damaged, capsys):
    root, bad, message = damaged
    assert main(["report", "--results-dir", str(root), "--lenient"]) == 0
    err = capsys.readouterr().err
    assert f"warning: skipped {bad}: " in err and re.search(message, err), err
    text = (root / "REPORT.md").read_text()
    skipped = text.split("## Skipped files")[1].split("\n## ")[0]
    assert "`toy/loo/bad/seed0.json`" in skipped and re.search(message.replace("|", r"\|"), skipped)
    # the sound methods are reported and compared as if the damaged file were not there
    leaderboard = text.split("\n## toy — ")[1]
    assert "| **sasrec_id** " in leaderboard and "| weak " in leaderboard
    assert "| bad " not in leaderboard
    assert "Reference for significance: **sasrec_id**." in text
    assert "### Paired tests against sasrec_id" in text


def test_a_damaged_seed_leaves_the_methods_other_seeds(tmp_path, capsys, no_plots):
    root = tmp_path / "results"
    write_seed(root, "sasrec_id", [3] * 60)
    write_seed(root, "strong", [1] * 60, seed=0)
    write_seed(root, "strong", [7] * 60, seed=1)
    _cut_to(9)(root / "toy" / "loo" / "strong" / "seed1.json")
    assert main(["report", "--results-dir", str(root), "--lenient"]) == 0
    text = (root / "REPORT.md").read_text()
    assert "`toy/loo/strong/seed1.json`" in text
    # only seed 0 is left: rank 1 for everyone, NDCG@10 = 1 with one seed
    assert "single seed" in text and "± 0.0000" not in text
    assert "skipped" in capsys.readouterr().err


def test_results_that_agree_are_read_as_written(tmp_path):
    root = tmp_path / "results"
    path = write_seed(root, "m", [1, None, *range(3, 61)], list_length=60)
    result, table = results.read_run(path, path.with_suffix(".per_user.csv"))
    assert result["n_test_cases"] == 60 and list(table["user_id"]) == USERS
    assert table["rank"].isna().sum() == 1 and table["rank"].dropna().tolist()[:2] == [1, 3]
    assert results.load_results(root).skipped == []
