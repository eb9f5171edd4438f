"""Tiny datasets written by the tests, in the formats the loaders read."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

# The one numba user here is ranx (tests/test_evaluation.py's cross-check): compiling its
# kernels took 50 s of CI per run, for 50 users. Interpreted, the same ranx code runs in seconds
# and the comparison is unchanged. Set before anything imports numba (it reads this at import).
os.environ.setdefault("NUMBA_DISABLE_JIT", "1")

# Tiny models train fastest on one thread, and CI has two cores shared with pytest itself.
torch.set_num_threads(1)

GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance"]


def write_atomic(folder: Path, name: str, rows: list[tuple], items: list[tuple] | None = None
                 ) -> Path:
    """RecBole atomic files: rows of (user, item, rating, timestamp); items of (id, title, year, genres)."""
    folder.mkdir(parents=True, exist_ok=True)
    inter = folder / f"{name}.inter"
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    lines += [f"{u}\t{i}\t{r}\t{t}" for u, i, r, t in rows]
    inter.write_text("\n".join(lines) + "\n")
    if items is not None:
        lines = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
        lines += [f"{i}\t{title}\t{year}\t{genres}" for i, title, year, genres in items]
        (folder / f"{name}.item").write_text("\n".join(lines) + "\n")
    return inter


def synthetic_rows(n_users: int = 40, n_items: int = 30, length: int = 12, seed: int = 0):
    """Users walk a cycle over the items from a random start: a learnable sequential pattern."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, n_users + 1):
        start = int(rng.integers(n_items))
        for t in range(length):
            rows.append((u, (start + t) % n_items + 1, float(rng.integers(1, 6)), 1000 + 10 * t))
    items = [(i, f"Movie {i}", 1990 + i % 10, GENRES[i % 5] + (" Comedy" if i % 3 == 0 else ""))
             for i in range(1, n_items + 1)]
    return rows, items


@pytest.fixture
def tiny_atomic(tmp_path: Path) -> Path:
    rows, items = synthetic_rows()
    return write_atomic(tmp_path / "tiny", "tiny", rows, items)


def write_amazon(folder: Path, category: str = "Video_Games", gz: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    reviews, metas = [], []
    for i in range(12):
        metas.append({"parent_asin": f"B{i:03d}", "title": f"Game {i}", "store": f"Studio {i % 3}",
                      "categories": ["Video Games", ["PC", "Console"][i % 2]],
                      "features": [f"feature {i}a", f"feature {i}b"],
                      "description": [f"A game about {i}."], "price": None})
    for u in range(8):
        for t in range(5):
            reviews.append({"user_id": f"U{u}", "parent_asin": f"B{int(rng.integers(12)):03d}",
                            "rating": 5.0, "timestamp": 1_600_000_000_000 + 1000 * t,
                            "text": "fine"})
    suffix = ".jsonl.gz" if gz else ".jsonl"
    opener = gzip.open if gz else open
    path = folder / f"{category}{suffix}"
    with opener(path, "wt") as fh:
        fh.write("\n".join(json.dumps(r) for r in reviews) + "\n")
    with opener(folder / f"meta_{category}{suffix}", "wt") as fh:
        fh.write("\n".join(json.dumps(m) for m in metas) + "\n")
    return path


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def smoke_fit(method: str, protocol: str, dataset: Path, cache_dir: Path, **overrides):
    """Fit ``method`` at the smoke profile on a dataset file, as the runner does;
    returns (adapter, run context, dataset, split)."""
    from benchmark import runner
    from benchmark.settings import harness_settings

    req = runner.RunRequest(method=method, dataset=str(dataset), protocol=protocol,
                            profile="smoke", cache_dir=cache_dir, show_progress=False,
                            overrides=overrides)
    settings = harness_settings("smoke")
    data, split = runner.prepare(req, settings)
    adapter, ctx, _ = runner.fit_adapter(req, settings, data, split)
    return adapter, ctx, data, split


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module: tiny models train ~40x slower with two threads on a
    loaded 2-core machine. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def written_metrics(per_user_csv: Path, list_length: int | None = None) -> dict:
    """The ``metrics`` the runner writes into a result JSON for a per-user file: the writer's
    :func:`benchmark.results.slice_metrics` over the slices :func:`~benchmark.results.per_user_table`
    builds (all, history and popularity buckets; tied and cold targets where filled). For
    hand-made result files, which the report cross-checks against their per-user file."""
    from types import SimpleNamespace

    import pandas as pd

    from benchmark.results import slice_metrics

    table = pd.read_csv(per_user_csv, dtype={"user_id": str, "target_item_id": str})

    def true(column: str) -> np.ndarray:
        if column not in table:
            return np.zeros(len(table), dtype=bool)
        return (table[column].astype(str) == "True").to_numpy()

    slices = {"all": {"all": np.ones(len(table), dtype=bool)}}
    for column, buckets in (("history_bucket", ("short", "medium", "long")),
                            ("popularity_bucket", ("head", "torso", "tail"))):
        slices[column] = {b: (table[column].astype(str) == b).to_numpy() for b in buckets}
    if "tied_target" in table and table["tied_target"].notna().any():
        slices["tied_target"] = {"tied": true("tied_target"), "untied": ~true("tied_target")}
    if "cold_item" in table and table["cold_item"].notna().any():
        cold, cold_valid = true("cold_item"), true("cold_valid")
        slices["cold_item"] = {"cold": cold, "cold_valid": cold_valid, "warm": ~cold & ~cold_valid}
    settings = SimpleNamespace(bootstrap_seed=0, bootstrap_resamples=20)
    return slice_metrics(table, slices, list_length, settings)


@pytest.fixture
def smoke(tiny_atomic, cache_dir, tmp_path):
    """Arguments of a fast CLI run on the tiny dataset, results under tmp_path/results."""
    return ["--dataset", str(tiny_atomic), "--profile", "smoke", "--cache-dir", str(cache_dir),
            "--results-dir", str(tmp_path / "results"), "--protocol", "loo", "--no-progress",
            "--no-report"]


def one_line(args, capsys) -> tuple[int, str]:
    """Run the CLI; the exit status and the single line it printed on stderr."""
    from benchmark.cli import main

    code = main(args)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return code, err.rstrip("\n")
