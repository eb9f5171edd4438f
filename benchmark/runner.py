"""Run a method on a dataset under a protocol and seed; write its result files.

One run = load data -> split -> resolve config -> fit (with the harness's validation callback)
-> full-ranking evaluation of every test case -> result JSON + per-user CSV. A finished run is
stored in the cache under a key of everything that determines it, so an interrupted
``--all`` resumes without recomputing what finished (the copy reports the original fit time).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmark import provenance, registry
from benchmark.adapter import RunContext, TrainData, TransferCorpus, method_phase
from benchmark.cache import Cache, stable_hash
from benchmark.code_fingerprint import HARNESS_MODULE, canonical, method_fingerprint
from benchmark.config import build_config, method_layers, to_dict
from benchmark.data import Dataset
from benchmark.datasets import dataset_fingerprint, load_dataset
from benchmark.errors import BenchmarkError
from benchmark.evaluation import HEADLINE, evaluate, metric_values
from benchmark.results import (
    NOT_FINISHED,
    SCHEMA_VERSION,
    install,
    jsonable,
    per_user_table,
    portable_source,
    result_harness,
    run_problem,
    slice_metrics,
    write_run,
)
from benchmark.settings import (
    DATASET_CONFIG_DIR,
    HarnessSettings,
    default_cache_dir,
    harness_settings,
    results_dir_for,
)
from benchmark.splits import PROTOCOLS, Cases, Split, eval_user_sample, make_split

# --------------------------------------------------------------------------- methods


def resolve_config(method: str, profile: str, overrides: dict[str, Any],
                   dataset: str | None = None) -> tuple[type, Any]:
    """The method's class and its config: dataclass defaults < YAML < its ``datasets.<dataset>``
    block < its ``profiles.<profile>`` block < --set."""
    cls = registry.adapter_class(method)  # checks the adapter contract (Config included)
    base, variant = registry.split_variant(method)
    if variant is None:
        layers = method_layers(method, registry.method_yaml(method), profile, overrides, dataset)
    else:  # `tiger@rqvae_native`: the base's layers, then the index, then --set for either name
        scoped = {k: v for k, v in overrides.items() if not k.startswith(f"{method}.")}
        scoped |= {f"{base}.{k[len(method) + 1:]}": v for k, v in overrides.items()
                   if k.startswith(f"{method}.")}
        layers = method_layers(base, registry.method_yaml(base), profile, scoped, dataset)
        layers.insert(-1, (f"method name {method}",
                           {"semantic_ids.source": f"published:{variant}"}))
    return cls, build_config(cls.Config, layers)


def check_needs(method: str, cls: type, dataset: Dataset) -> None:
    """Refuse a method whose needs this dataset cannot meet (the contract check at
    registration already refused needs the runner does not know)."""
    needs = frozenset(getattr(cls, "needs", frozenset()))
    if "item_text" in needs and not dataset.catalog.has_text:
        raise BenchmarkError(
            f"method {method!r} needs item text, but dataset {dataset.name!r} has none "
            "(a RecBole .item file or an Amazon meta_ file)")


def transfer_corpus(method: str, cls: type, config: Any, dataset: Dataset,
                    settings: HarnessSettings) -> TransferCorpus | None:
    """The source dataset's training data for a method with the ``transfer_corpus`` need whose
    ``transfer_from`` is set (None otherwise): its leave-one-out training sequences only, never
    its validation or test targets, and its catalogue, loaded with the profile's ``max_users``.
    ``transfer_from: auto`` is the one dataset under configs/datasets/ other than ``dataset``;
    the dataset under test itself is refused."""
    needs = frozenset(getattr(cls, "needs", frozenset()))
    if "transfer_corpus" not in needs:
        return None
    source = getattr(config, "transfer_from", None)
    if source is None:
        return None
    if source == "auto":
        others = [p.stem for p in sorted(DATASET_CONFIG_DIR.glob("*.yaml"))
                  if p.stem != dataset.name]
        if len(others) != 1:
            raise BenchmarkError(
                f"method {method!r}: transfer_from: auto means the one shipped dataset other than "
                f"{dataset.name!r}, but there are {len(others)} ({', '.join(others)}); "
                "set transfer_from to a dataset name or path")
        source = others[0]
    if source == dataset.name:
        raise _self_transfer(method, source)
    return _load_corpus(method, source, dataset, settings.max_users, needs)


def _self_transfer(method: str, source: str) -> BenchmarkError:
    return BenchmarkError(f"method {method!r} transfers from {source!r}, the dataset under "
                          "test; transfer_from must name another dataset")


def _content(dataset: Dataset) -> str:
    """Hash of a dataset's interactions and catalogue, whatever its name or path."""
    inter = dataset.interactions
    return stable_hash([inter["user"].to_numpy(), inter["item"].to_numpy(),
                        dataset.catalog.fingerprint()])


def _load_corpus(method: str, source: str, target: Dataset, max_users: int | None,
                 needs: frozenset[str]) -> TransferCorpus:
    data = load_dataset(source, None, max_users)
    if data.name == target.name or _content(data) == _content(target):
        raise _self_transfer(method, source)
    if "item_text" in needs and not data.catalog.has_text:
        raise BenchmarkError(f"method {method!r} needs item text, but its transfer source "
                             f"{data.name!r} has none")
    split = make_split(data, "loo")  # only `train` leaves this function
    train = TrainData(data.n_items, split.train, data.catalog, split.item_counts())
    return TransferCorpus(data.name, train, split.train_fingerprint(), data.catalog.fingerprint())


# --------------------------------------------------------------------------- one run


@dataclass
class RunRequest:
    """One (method, dataset, protocol, seed) to run, and where its files go."""

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


def prepare(req: RunRequest, settings: HarnessSettings) -> tuple[Dataset, Split]:
    """The request's dataset and its split under the request's protocol."""
    if req.protocol not in PROTOCOLS:
        raise BenchmarkError(f"unknown protocol {req.protocol!r}; known: {', '.join(PROTOCOLS)}")
    dataset = load_dataset(req.dataset, req.meta, settings.max_users)
    split = make_split(dataset, req.protocol, settings.cold_fraction, settings.split_seed)
    if dataset.eval_sample is not None:
        split = split.restrict(eval_users(dataset, settings))
    return dataset, split


def eval_users(dataset: Dataset, settings: HarnessSettings) -> np.ndarray:
    """Indices of the dataset's evaluation users (its YAML's ``eval_users``)."""
    if dataset.eval_sample is None:
        return np.arange(dataset.n_users)
    return eval_user_sample(dataset.sequences(), dataset.eval_sample, dataset.eval_seed)


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

    cls, config = resolve_config(req.method, req.profile, req.overrides, dataset.name)
    check_needs(req.method, cls, dataset)
    transfer = transfer_corpus(req.method, cls, config, dataset, settings)
    torch.manual_seed(req.seed)
    np.random.seed(req.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cache = Cache(req.cache_dir or default_cache_dir())
    ctx = RunContext(
        seed=req.seed, device=device, cache=cache, protocol=req.protocol,
        catalog_hash=dataset.catalog.fingerprint(), train_hash=split.train_fingerprint(),
        show_progress=req.show_progress, transfer=transfer,
    )
    train = TrainData(dataset.n_items, split.train, dataset.catalog, split.item_counts())
    with method_phase(req.method, "init"):
        adapter = cls(config)
    # A YAML variant (sasrec_id_bce) shares its class: errors and messages name the variant.
    adapter.registered_name = req.method

    cold_valid = np.isin(split.valid.targets, split.cold_valid_items)

    def validate(cases: int | None = None) -> float:
        """NDCG@10 over every validation case, or over a seeded sample of ``cases`` of them
        (the same sample at every call of the run: for methods whose one pass over every
        case costs minutes, e.g. beam search; the point records how many cases it used)."""
        if len(split.valid) == 0:
            return 0.0
        valid, cold = split.valid, cold_valid
        if cases is not None and 0 < cases < len(valid):
            idx = validation_sample(len(valid), cases, settings.split_seed)
            valid = Cases(valid.users[idx], [valid.histories[i] for i in idx],
                          valid.targets[idx])
            cold = cold[idx]
        out = evaluate(adapter, valid, dataset.n_items, mask_history=settings.mask_history,
                       k=settings.top_k, batch_size=settings.eval_batch_size)
        values = metric_values(out.ranks, out.list_length)[HEADLINE]
        value = float(values.mean())
        # The objective is every validation case; the cold_valid slice is recorded beside it.
        ctx.add_point(value, float(values[cold].mean()) if cold.any() else None,
                      cases=len(valid) if len(valid) < len(split.valid) else None)
        return value

    ctx.started = time.perf_counter()
    with method_phase(req.method, "fit"):
        adapter.fit(train, validate, ctx)
    return adapter, ctx, ctx.elapsed()


def validation_sample(n_cases: int, cases: int, seed: int) -> np.ndarray:
    """Sorted indices of ``cases`` of ``n_cases`` validation cases, fixed by the split seed."""
    return np.sort(np.random.default_rng([seed, cases]).choice(n_cases, cases, replace=False))


def run_key(req: RunRequest, settings: HarnessSettings, dataset: Dataset, split: Split,
            config: Any, cls: type, code: str) -> str:
    """Cache key of a finished run: everything that determines its result (the code by its
    canonical fingerprint, :mod:`benchmark.code_fingerprint`), never the commit; for a method
    given a transfer corpus, the source dataset's fingerprints too."""
    key = {
        "code": canonical(code), "dataset": dataset_fingerprint(dataset),
        "split": split.fingerprint(), "method": req.method, "class": cls.__qualname__,
        "config": to_dict(config), "seed": req.seed, "mask_history": settings.mask_history,
        "top_k": settings.top_k,
        "bootstrap": [settings.bootstrap_resamples, settings.bootstrap_seed],
    }
    transfer = transfer_corpus(req.method, cls, config, dataset, settings)
    if transfer is not None:  # absent otherwise: every other run keeps its key
        key["transfer"] = transfer.fingerprint()
    return stable_hash(key)


COMPUTED, REUSED = "computed", "reused from the cache"


def run(req: RunRequest) -> Path:
    """Run one (method, dataset, protocol, seed); return the path of its result JSON."""
    return run_with_outcome(req)[0]


def run_with_outcome(req: RunRequest) -> tuple[Path, str]:
    """Run one (method, dataset, protocol, seed): the path of its result JSON, and whether it
    was ``COMPUTED`` or ``REUSED`` (copied from a finished run in the cache).

    Concurrent invocations on one cache take the run's lock around check -> fit -> write: the
    second waits for the first, then copies its finished run. A cached run that does not read
    back whole is recomputed.
    """
    import torch

    started = time.perf_counter()
    settings = harness_settings(req.profile, req.harness_overrides)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    dataset, split = prepare(req, settings)
    cls, config = resolve_config(req.method, req.profile, req.overrides, dataset.name)
    cache_dir = req.cache_dir or default_cache_dir()
    out_dir = results_dir_for(req.profile, req.results_dir, cache_dir)
    target = out_dir / dataset.name / req.protocol / req.method / f"seed{req.seed}.json"
    code = method_fingerprint(cls.__module__)
    key = run_key(req, settings, dataset, split, config, cls, code)
    cached = cache_dir / "runs" / key
    waiting = (f"waiting for another invocation running {req.method} {dataset.name} "
               f"{req.protocol} seed{req.seed} on cache {cache_dir}")
    with Cache(cache_dir).lock(f"run-{key}", waiting=waiting):
        problem = run_problem(cached)
        if problem is None:
            install(cached, target)
            return target, REUSED
        if problem != NOT_FINISHED:
            print(f"warning: cached run {cached} is damaged ({problem}); recomputing it",
                  file=sys.stderr)
        _compute(req, settings, dataset, split, cls, config, cached, code, started)
        install(cached, target)
    return target, COMPUTED


def _compute(req: RunRequest, settings: HarnessSettings, dataset: Dataset, split: Split,
             cls: type, config: Any, cached: Path, code: str, started: float) -> None:
    """Fit, evaluate on the test cases, and write the finished run into ``cached``; its
    ``timing.total_seconds`` counts from ``started`` (the job's start: data, split, code
    fingerprint, fit, test, diagnostics), what a plan of a later run expects a job to take."""
    adapter, ctx, fit_seconds = fit_adapter(req, settings, dataset, split)
    progress = _progress(req.show_progress, f"{req.method} test")
    # A ranking method may ask for a longer test list than the harness's top_k (TIGER's beam
    # writes 100 items, so HR@100 is defined); validation keeps top_k.
    k = max(settings.top_k, int(getattr(adapter, "list_length", 0) or 0))
    ev = evaluate(adapter, split.test, dataset.n_items, mask_history=settings.mask_history,
                  k=k, batch_size=settings.eval_batch_size, progress=progress)
    with method_phase(req.method, "diagnostics"):
        trainable, total = (adapter.parameter_counts() if hasattr(adapter, "parameter_counts")
                            else (0, 0))
        diagnostics = adapter.diagnostics() if hasattr(adapter, "diagnostics") else {}
    per_user, slices, edges = per_user_table(dataset, split, ev.ranks)
    result = {
        "schema_version": SCHEMA_VERSION,
        "dataset": {"name": dataset.name, "fingerprint": dataset_fingerprint(dataset),
                    "stats": {**dataset.stats,
                              "source": portable_source(dataset.stats.get("source"))}},
        "protocol": req.protocol,
        "split_hash": split.fingerprint(),
        "cold_set_hash": split.cold_fingerprint(),
        "cold_set_size": int(len(split.cold_items)),
        "cold_valid_set_hash": split.cold_valid_fingerprint(),
        "cold_valid_set_size": int(len(split.cold_valid_items)),
        "n_valid_cold_valid": int(np.isin(split.valid.targets, split.cold_valid_items).sum()),
        "eval_users": ("all" if dataset.eval_sample is None else
                       {"sample": dataset.eval_sample, "seed": dataset.eval_seed}),
        "n_valid_cases": len(split.valid),
        "n_test_cases": len(split.test),
        "method": req.method,
        "adapter": f"{cls.__module__}:{cls.__qualname__}",
        "code": {"fingerprint": code, "covers": [cls.__module__, HARNESS_MODULE]},
        "profile": req.profile,
        "config": to_dict(config),
        "seed": req.seed,
        "harness": {**result_harness(settings), "ties": "pessimistic",
                    "ranking": "full catalogue", "history_bucket_edges": edges},
        "output": getattr(adapter, "output", "scores"),
        "list_length": ev.list_length,
        "duplicate_rate": ev.duplicate_rate,
        "environment": provenance.environment(ctx.device),
        "timing": {"fit_seconds": fit_seconds, "inference_seconds": ev.seconds},
        "peak_rss_mb": provenance.peak_rss_mb(),
        "parameters": {"trainable": int(trainable), "total": int(total)},
        "training": {"stop_reason": ctx.stop_reason, "examples_seen": ctx.examples_seen,
                     "curve": ctx.curve},
        "metrics": slice_metrics(per_user, slices, ev.list_length, settings),
        "diagnostics": jsonable(diagnostics),
    }
    result["timing"]["total_seconds"] = time.perf_counter() - started
    write_run(cached, per_user, result)
