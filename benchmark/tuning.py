"""Choose a method's settings on validation: ``python -m benchmark tune METHOD --grid k=a,b``.

Every point of the grid is fitted on the split's training data (early stopping on validation, as
in a run) and then evaluated once more on the validation cases, never on the test cases. The
objective is validation NDCG@10 over every validation case; under ``cold_item`` that includes the
``cold_valid`` cases (targets in the cold-validation set C_v, docs/protocol.md Splits step 6), so
cold-start settings are chosen without looking at the ``cold_item`` test slice. The warm and
``cold_valid`` values are recorded beside the objective.

The record goes to ``<results>/<dataset>/tuning/<method>.<protocol>.json``; ``report`` prints
what validation chose. The choice itself is copied into the method's YAML by hand (the
``datasets.<name>`` block for a dataset's own settings), with a comment naming the record:
``tune`` never edits configuration. Fitted models land in the checkpoint cache, so the run with
the chosen settings afterwards reuses the grid point's training.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmark import provenance
from benchmark.cache import atomic_write_bytes
from benchmark.config import parse_overrides
from benchmark.errors import BenchmarkError
from benchmark.evaluation import HEADLINE, evaluate, metric_values
from benchmark.results import TUNING_VERSION
from benchmark.runner import RunRequest, fit_adapter, prepare, resolve_config
from benchmark.settings import harness_settings


@dataclass(frozen=True)
class Grid:
    """``key -> candidate values``, in the order given; points are their Cartesian product."""

    axes: dict[str, list[Any]]

    @classmethod
    def parse(cls, specs: list[str]) -> Grid:
        """``["dropout=0.2,0.5", "max_len=20,50"]`` -> a grid (values parsed as YAML)."""
        axes: dict[str, list[Any]] = {}
        for spec in specs:
            key, eq, values = spec.partition("=")
            key = key.strip()
            if not eq or not key or not values.strip():
                raise BenchmarkError(f"--grid expects KEY=V1,V2,..., got {spec!r}")
            if key in axes:
                raise BenchmarkError(f"--grid names {key!r} twice")
            parsed = [parse_overrides([f"{key}={v.strip()}"])[key] for v in values.split(",")]
            axes[key] = parsed
        if not axes:
            raise BenchmarkError("tune needs at least one --grid KEY=V1,V2,...")
        return cls(axes)

    def points(self) -> list[dict[str, Any]]:
        keys = list(self.axes)
        return [dict(zip(keys, combo)) for combo in itertools.product(*self.axes.values())]


def validation_metrics(adapter, split, n_items: int, settings) -> dict[str, Any]:
    """NDCG@10 of the fitted ``adapter`` over all validation cases, the warm ones and the
    ``cold_valid`` ones (targets in C_v), with their counts."""
    out = evaluate(adapter, split.valid, n_items, mask_history=settings.mask_history,
                   k=settings.top_k, batch_size=settings.eval_batch_size)
    values = metric_values(out.ranks, out.list_length)[HEADLINE]
    cold = np.isin(split.valid.targets, split.cold_valid_items)

    def mean(mask: np.ndarray) -> float | None:
        return float(values[mask].mean()) if mask.any() else None

    return {"valid_ndcg10": mean(np.ones(len(values), bool)), "valid_ndcg10_warm": mean(~cold),
            "valid_ndcg10_cold_valid": mean(cold), "n_valid": int(len(values)),
            "n_cold_valid": int(cold.sum())}


def tune(method: str, dataset: str, protocol: str, grid: Grid, *, seed: int = 0,
         profile: str = "default", overrides: dict[str, Any] | None = None,
         results_dir: Path, cache_dir: Path | None = None, show_progress: bool = True,
         echo=print, threads: int | None = None) -> Path:
    """Fit every grid point, evaluate it on validation, write the record; return its path.
    ``threads`` overrides the profile's torch threads (speed only)."""
    settings = harness_settings(profile, {"threads": threads} if threads else None)
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    rows = []
    base = dict(overrides or {})
    name = None
    for point in grid.points():  # every point's config is checked before anything is fitted
        resolve_config(method, profile, {**base, **point})
    for point in grid.points():
        req = RunRequest(method=method, dataset=dataset, protocol=protocol, seed=seed,
                         profile=profile, overrides={**base, **point}, cache_dir=cache_dir,
                         show_progress=show_progress)
        data, split = prepare(req, settings)
        name = data.name
        started = time.perf_counter()
        adapter, ctx, fit_seconds = fit_adapter(req, settings, data, split)
        row = {"settings": point, **validation_metrics(adapter, split, data.n_items, settings),
               "fit_seconds": round(fit_seconds, 2), "stop_reason": ctx.stop_reason,
               "examples_seen": ctx.examples_seen,
               "wall_seconds": round(time.perf_counter() - started, 2),
               # the validation curve, so two points compare at equal training compute
               "curve": ctx.curve}
        rows.append(row)
        echo(f"{json.dumps(point)}: valid NDCG@10 {_fmt(row['valid_ndcg10'])} "
             f"(warm {_fmt(row['valid_ndcg10_warm'])}, cold_valid "
             f"{_fmt(row['valid_ndcg10_cold_valid'])}), fit {fit_seconds:.0f} s")
    best = max(rows, key=lambda r: (r["valid_ndcg10"] or 0.0))  # first point wins a tie
    record = {
        "tuning_version": TUNING_VERSION, "method": method, "dataset": name,
        "protocol": protocol, "seed": seed, "profile": profile, "fixed_overrides": base,
        "objective": f"validation {HEADLINE} over every validation case"
                     + (" (warm and cold_valid together)" if protocol == "cold_item" else ""),
        "grid": grid.axes, "rows": rows, "chosen": best["settings"],
        "environment": provenance.environment("cpu"),
    }
    path = Path(results_dir) / name / "tuning" / f"{method}.{protocol}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(record, indent=1) + "\n").encode())
    echo(f"chosen on validation: {json.dumps(best['settings'])}; record: {path}")
    return path


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"
