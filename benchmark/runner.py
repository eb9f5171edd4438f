"""Run a method on a dataset under a protocol and seed; write its result files.

One run = load data -> split -> resolve config -> fit (with the harness's validation callback)
-> full-ranking evaluation of every test case -> result JSON + per-user CSV. A finished run is
stored in the cache under a key of everything that determines it, so an interrupted
``--all`` resumes without recomputing what finished (the copy reports the original fit time).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmark import registry
from benchmark.adapter import KNOWN_NEEDS, RunContext, TrainData
from benchmark.cache import Cache, atomic_write_text, stable_hash
from benchmark.config import PROFILES, build_config, method_layers, to_dict
from benchmark.data import Dataset, Preprocessing, load_amazon2023, load_atomic, load_ml100k
from benchmark.errors import BenchmarkError
from benchmark.evaluation import (
    HEADLINE,
    evaluate,
    history_buckets,
    metric_values,
    popularity_buckets,
)
from benchmark.splits import PROTOCOLS, Split, make_split
from benchmark.statistics import bootstrap_ci

SCHEMA_VERSION = 2  # 2: training.curve holds {examples, seconds, valid_ndcg10} points
RUNNER_VERSION = 2  # bump when a change here alters results, to invalidate cached runs
DATASET_CONFIG_DIR = registry.CONFIG_DIR / "datasets"
PROFILE_CONFIG_DIR = registry.CONFIG_DIR / "profiles"
DEFAULT_RESULTS_DIR = registry.REPO_ROOT / "results"


@dataclass(frozen=True)
class HarnessSettings:
    """Protocol settings of a profile (``configs/profiles/<profile>.yaml``)."""

    reference: str = "sasrec_id"  # significance reference; `popularity` when it has no results
    fallback_reference: str = "popularity"
    seeds: list[int] = field(default_factory=lambda: [0])
    split_seed: int = 0  # draws the cold set; independent of the model seed
    cold_fraction: float = 0.1
    mask_history: bool = True
    top_k: int = 20  # list length asked of ranking (generative) methods
    eval_batch_size: int = 256
    bootstrap_resamples: int = 1000
    bootstrap_seed: int = 0
    max_users: int | None = None  # evaluate only the first N users (smoke profile)
    threads: int | None = None  # torch threads; None = torch's default
    peers: list[str] = field(default_factory=list)  # run by --with-peers or by name, not --all


def harness_settings(profile: str, overrides: dict[str, Any] | None = None) -> HarnessSettings:
    if profile not in PROFILES:
        raise BenchmarkError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    path = PROFILE_CONFIG_DIR / f"{profile}.yaml"
    data = yaml.safe_load(path.read_text()) if path.exists() else {}
    layers = [(str(path.relative_to(registry.REPO_ROOT)), data or {})]
    if overrides:
        layers.append(("--set harness.*", overrides))
    return build_config(HarnessSettings, layers)


# --------------------------------------------------------------------------- datasets


@lru_cache(maxsize=8)
def load_dataset(name_or_path: str, meta: str | None = None, max_users: int | None = None) -> Dataset:
    """A dataset by config name (``configs/datasets/<name>.yaml``) or by path.

    A path ending in ``.jsonl``/``.jsonl.gz`` is Amazon Reviews 2023 (meta file beside it or
    ``meta``); a ``.inter`` file or a folder holding one is a RecBole atomic dataset.
    """
    cfg_path = DATASET_CONFIG_DIR / f"{name_or_path}.yaml"
    if cfg_path.exists():
        cfg = yaml.safe_load(cfg_path.read_text()) or {}
        loader = cfg.pop("loader", None)
        prep = build_config(Preprocessing, [(str(cfg_path), cfg.pop("preprocessing", {}) or {})])
        path = cfg.pop("path", None)
        meta = cfg.pop("meta", meta)
        if cfg:
            raise BenchmarkError(f"{cfg_path}: unknown keys {sorted(cfg)}")
        if loader == "recbole_ml100k":
            dataset = load_ml100k(prep)
        elif loader == "atomic":
            dataset = load_atomic(path, name_or_path, prep)
        elif loader == "amazon2023":
            dataset = load_amazon2023(path, meta, name_or_path, prep)
        else:
            raise BenchmarkError(f"{cfg_path}: unknown loader {loader!r}")
    else:
        path = Path(name_or_path)
        if not path.exists():
            known = ", ".join(p.stem for p in sorted(DATASET_CONFIG_DIR.glob("*.yaml")))
            raise BenchmarkError(
                f"dataset {name_or_path!r} is neither a known name ({known}) nor an existing path")
        prep = Preprocessing()
        if path.name.endswith((".jsonl", ".jsonl.gz")):
            stem = path.name.removesuffix(".gz").removesuffix(".jsonl")
            dataset = load_amazon2023(path, meta, stem, prep)
        else:
            dataset = load_atomic(path, path.stem, prep)
    if max_users is not None and max_users < dataset.n_users:
        dataset = _first_users(dataset, max_users)
    return dataset


def _first_users(dataset: Dataset, n: int) -> Dataset:
    """Keep the first ``n`` users (smoke profile); the catalogue is kept whole."""
    inter = dataset.interactions[dataset.interactions["user"] < n].reset_index(drop=True)
    stats = dict(dataset.stats, n_users=n, n_interactions=int(len(inter)), subsampled_users=n)
    return Dataset(dataset.name, inter, dataset.user_ids[:n], dataset.catalog, stats)


def dataset_fingerprint(dataset: Dataset) -> str:
    inter = dataset.interactions
    return stable_hash([dataset.name, inter["user"].to_numpy(), inter["item"].to_numpy(),
                        dataset.catalog.fingerprint()])


# --------------------------------------------------------------------------- methods


def resolve_config(method: str, profile: str, overrides: dict[str, Any]) -> tuple[type, Any]:
    cls = registry.adapter_class(method)
    config_cls = getattr(cls, "Config", None)
    if config_cls is None or not dataclasses.is_dataclass(config_cls):
        raise BenchmarkError(f"method {method!r}: its class needs a `Config` dataclass")
    layers = method_layers(method, registry.method_yaml(method), profile, overrides)
    return cls, build_config(config_cls, layers)


def check_needs(method: str, cls: type, dataset: Dataset) -> None:
    needs = frozenset(getattr(cls, "needs", frozenset()))
    unknown = needs - KNOWN_NEEDS
    if unknown:
        raise BenchmarkError(f"method {method!r} declares unknown needs {sorted(unknown)}")
    if "item_text" in needs and not dataset.catalog.has_text:
        raise BenchmarkError(
            f"method {method!r} needs item text, but dataset {dataset.name!r} has none "
            "(a RecBole .item file or an Amazon meta_ file)")


# --------------------------------------------------------------------------- environment


def _package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("torch", "numpy", "pandas", "scipy", "transformers", "peft",
                 "sentence-transformers", "recbole", "vector-quantize-pytorch", "scikit-learn"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=registry.REPO_ROOT,
                             capture_output=True, text=True, timeout=5)
        # Dirty = uncommitted changes to anything but the run's own outputs (results/ and
        # REPORT.md change as a multi-method run goes, and say nothing about the code).
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":(exclude)results", ":(exclude)REPORT.md"],
                               cwd=registry.REPO_ROOT, capture_output=True, text=True, timeout=5)
        if out.returncode == 0:
            return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def _hardware(device: str) -> dict[str, Any]:
    import torch

    info = {"machine": platform.machine(), "processor": platform.processor() or None,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "device": device}
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _peak_rss_mb() -> float:
    # ru_maxrss is the process's peak so far (KiB on Linux): an upper bound for this run.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------- one run


@dataclass
class RunRequest:
    method: str
    dataset: str = "ml-100k"
    protocol: str = "loo"
    seed: int = 0
    profile: str = "default"
    overrides: dict[str, Any] = field(default_factory=dict)
    meta: str | None = None
    results_dir: Path | None = None
    cache_dir: Path | None = None
    show_progress: bool = True
    harness_overrides: dict[str, Any] = field(default_factory=dict)


def default_cache_dir() -> Path:
    return Path(os.environ.get("BENCHMARK_CACHE", registry.REPO_ROOT / ".cache"))


def results_dir_for(profile: str, given: Path | None, cache_dir: Path) -> Path:
    """Only the default profile writes into results/; others into the cache (or --results-dir)."""
    if given is not None:
        return Path(given)
    return DEFAULT_RESULTS_DIR if profile == "default" else cache_dir / f"results-{profile}"


def prepare(req: RunRequest, settings: HarnessSettings) -> tuple[Dataset, Split]:
    if req.protocol not in PROTOCOLS:
        raise BenchmarkError(f"unknown protocol {req.protocol!r}; known: {', '.join(PROTOCOLS)}")
    dataset = load_dataset(req.dataset, req.meta, settings.max_users)
    split = make_split(dataset, req.protocol, settings.cold_fraction, settings.split_seed)
    return dataset, split


def _progress(show: bool, desc: str):
    from tqdm.auto import tqdm

    def wrap(iterable):
        return tqdm(iterable, desc=desc, leave=False, disable=not show)

    return wrap


def fit_adapter(req: RunRequest, settings: HarnessSettings, dataset: Dataset, split: Split
                ) -> tuple[Any, RunContext, float]:
    """Build the adapter from its resolved config and fit it on ``split``'s training data.

    Returns the adapter, its context (stop reason, validation curve) and the fit seconds, which
    count checkpoints loaded from the cache at their original training time.
    """
    import torch

    cls, config = resolve_config(req.method, req.profile, req.overrides)
    check_needs(req.method, cls, dataset)
    torch.manual_seed(req.seed)
    np.random.seed(req.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cache = Cache(req.cache_dir or default_cache_dir())
    ctx = RunContext(
        seed=req.seed, device=device, cache=cache, protocol=req.protocol,
        catalog_hash=dataset.catalog.fingerprint(), train_hash=split.train_fingerprint(),
        show_progress=req.show_progress,
    )
    train = TrainData(dataset.n_items, split.train, dataset.catalog, split.item_counts())
    adapter = cls(config)

    def validate() -> float:
        if len(split.valid) == 0:
            return 0.0
        out = evaluate(adapter, split.valid, dataset.n_items, mask_history=settings.mask_history,
                       k=settings.top_k, batch_size=settings.eval_batch_size)
        value = float(metric_values(out.ranks, out.list_length)[HEADLINE].mean())
        ctx.add_point(value)
        return value

    ctx.started = time.perf_counter()
    adapter.fit(train, validate, ctx)
    return adapter, ctx, ctx.elapsed()


def run_key(req: RunRequest, settings: HarnessSettings, dataset: Dataset, split: Split,
            config: Any, cls: type) -> str:
    module = sys.modules.get(cls.__module__)
    return stable_hash({
        "runner": RUNNER_VERSION, "dataset": dataset_fingerprint(dataset),
        "split": split.fingerprint(), "method": req.method, "class": cls.__qualname__,
        "module_version": getattr(module, "VERSION", 0), "config": to_dict(config),
        "seed": req.seed, "mask_history": settings.mask_history, "top_k": settings.top_k,
        "bootstrap": [settings.bootstrap_resamples, settings.bootstrap_seed],
    })


def run(req: RunRequest) -> Path:
    """Run one (method, dataset, protocol, seed); return the path of its result JSON."""
    import torch

    settings = harness_settings(req.profile, req.harness_overrides)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    dataset, split = prepare(req, settings)
    cls, config = resolve_config(req.method, req.profile, req.overrides)
    cache_dir = req.cache_dir or default_cache_dir()
    out_dir = results_dir_for(req.profile, req.results_dir, cache_dir)
    target = out_dir / dataset.name / req.protocol / req.method / f"seed{req.seed}.json"
    key = run_key(req, settings, dataset, split, config, cls)
    cached = cache_dir / "runs" / key
    if (cached / "result.json").exists() and (cached / "per_user.csv").exists():
        _install(cached, target)
        return target

    adapter, ctx, fit_seconds = fit_adapter(req, settings, dataset, split)
    progress = _progress(req.show_progress, f"{req.method} test")
    ev = evaluate(adapter, split.test, dataset.n_items, mask_history=settings.mask_history,
                  k=settings.top_k, batch_size=settings.eval_batch_size, progress=progress)
    trainable, total = (adapter.parameter_counts() if hasattr(adapter, "parameter_counts")
                        else (0, 0))
    diagnostics = adapter.diagnostics() if hasattr(adapter, "diagnostics") else {}
    per_user, slices, edges = _per_user_table(dataset, split, ev.ranks)
    result = {
        "schema_version": SCHEMA_VERSION,
        "dataset": {"name": dataset.name, "fingerprint": dataset_fingerprint(dataset),
                    "stats": dataset.stats},
        "protocol": req.protocol,
        "split_hash": split.fingerprint(),
        "cold_set_hash": split.cold_fingerprint(),
        "cold_set_size": int(len(split.cold_items)),
        "n_valid_cases": len(split.valid),
        "n_test_cases": len(split.test),
        "method": req.method,
        "adapter": f"{cls.__module__}:{cls.__qualname__}",
        "profile": req.profile,
        "config": to_dict(config),
        "seed": req.seed,
        "harness": {**to_dict(settings), "ties": "pessimistic", "ranking": "full catalogue",
                    "history_bucket_edges": edges},
        "output": getattr(adapter, "output", "scores"),
        "list_length": ev.list_length,
        "duplicate_rate": ev.duplicate_rate,
        "environment": {"versions": _package_versions(), "git_commit": _git_commit(),
                        "hardware": _hardware(ctx.device), "platform": platform.platform()},
        "timing": {"fit_seconds": fit_seconds, "inference_seconds": ev.seconds},
        "peak_rss_mb": _peak_rss_mb(),
        "parameters": {"trainable": int(trainable), "total": int(total)},
        "training": {"stop_reason": ctx.stop_reason, "examples_seen": ctx.examples_seen,
                     "curve": ctx.curve},
        "metrics": _slice_metrics(per_user, slices, ev.list_length, settings),
        "diagnostics": _jsonable(diagnostics),
    }
    cached.mkdir(parents=True, exist_ok=True)
    per_user.to_csv(cached / "per_user.csv.tmp", index=False)
    os.replace(cached / "per_user.csv.tmp", cached / "per_user.csv")
    atomic_write_text(cached / "result.json", json.dumps(result, indent=1, sort_keys=False))
    _install(cached, target)
    return target


def headline(result_path: Path) -> str:
    """One line for the console: NDCG@10 with its CI, and the fit time."""
    result = json.loads(Path(result_path).read_text())
    m = result["metrics"]["all"]["all"][HEADLINE]
    lo, hi = m["ci95"]
    return (f"{HEADLINE} {m['mean']:.4f} [{lo:.4f}, {hi:.4f}]  "
            f"fit {result['timing']['fit_seconds']:.1f}s")


def _install(cached: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached / "per_user.csv", target.with_suffix(".per_user.csv"))
    shutil.copyfile(cached / "result.json", target)


def _per_user_table(dataset: Dataset, split: Split, ranks: np.ndarray):
    import pandas as pd

    lengths = np.array([len(h) for h in split.test.histories])
    hist_labels, edges = history_buckets(lengths)
    pop = popularity_buckets(split.item_counts())
    targets = split.test.targets
    cold = np.isin(targets, split.cold_items)
    table = pd.DataFrame({
        "user_id": [dataset.user_ids[u] for u in split.test.users],
        "target_item_id": [dataset.catalog.item_ids[i] for i in targets],
        "rank": pd.array([int(r) if np.isfinite(r) else None for r in ranks], dtype="Int64"),
        "history_bucket": hist_labels,
        "popularity_bucket": pop[targets],
        "cold_item": cold if split.protocol == "cold_item" else [None] * len(targets),
    })
    slices: dict[str, dict[str, np.ndarray]] = {"all": {"all": np.ones(len(targets), bool)}}
    slices["history_bucket"] = {b: hist_labels == b for b in ("short", "medium", "long")}
    slices["popularity_bucket"] = {b: pop[targets] == b for b in ("head", "torso", "tail")}
    if split.protocol == "cold_item":
        slices["cold_item"] = {"cold": cold, "warm": ~cold}
    return table, slices, edges


def ranks_from_table(table) -> np.ndarray:
    """Per-user ranks back from a per-user file (empty = miss = inf)."""
    return table["rank"].astype("Float64").fillna(np.inf).to_numpy(dtype=np.float64)


def _slice_metrics(per_user, slices, list_length, settings: HarnessSettings) -> dict:
    values = metric_values(ranks_from_table(per_user), list_length)
    out: dict[str, dict[str, Any]] = {}
    for slice_name, buckets in slices.items():
        out[slice_name] = {}
        for bucket, mask in buckets.items():
            entry: dict[str, Any] = {"n": int(mask.sum())}
            for metric, v in values.items():
                sub = v[mask]
                lo, hi = bootstrap_ci(sub, seed=settings.bootstrap_seed,
                                      n_resamples=settings.bootstrap_resamples)
                entry[metric] = {"mean": float(sub.mean()) if len(sub) else None,
                                 "ci95": [lo, hi] if len(sub) else None}
            out[slice_name][bucket] = entry
    return out


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj
