"""Harness settings of a profile and the places a run reads from and writes to.

A profile (``configs/profiles/<profile>.yaml``) fixes the datasets a run covers by default and
the protocol: the significance reference,
seeds, split seed and cold fraction, masking, the list length asked of ranking methods, and the
bootstrap used for CIs. Only the ``default`` profile writes into the committed ``results/``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmark import registry
from benchmark.config import PROFILES, build_config, require_at_least, require_each, require_range
from benchmark.errors import BenchmarkError

DATASET_CONFIG_DIR = registry.CONFIG_DIR / "datasets"
PROFILE_CONFIG_DIR = registry.CONFIG_DIR / "profiles"
DEFAULT_RESULTS_DIR = registry.REPO_ROOT / "results"
GPU_RESULTS_DIR = registry.REPO_ROOT / "results-gpu"  # the `gpu` profile's committed results
RUNS_DIR = registry.REPO_ROOT / "runs"  # where runs write by default (git-ignored)


@dataclass(frozen=True)
class HarnessSettings:
    """Protocol settings of a profile (``configs/profiles/<profile>.yaml``)."""

    datasets: list[str] = field(default_factory=lambda: ["ml-100k"])  # what --all runs
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
    # Comparison families fixed in advance: {family: [methods]}; Holm's m is the number of
    # listed members (methods to come included), so one method's results never change another
    # family's p-values. Empty: every method present forms one family.
    families: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        require_each("seeds", self.seeds, 0, non_empty=True)
        if not self.datasets or not all(isinstance(d, str) and d for d in self.datasets):
            raise BenchmarkError(f"datasets must be a non-empty list of dataset names or paths, "
                                 f"got {self.datasets!r}")
        require_at_least("split_seed", self.split_seed, 0)
        require_at_least("bootstrap_seed", self.bootstrap_seed, 0)
        # A cold set above half the catalogue would leave the warm items a minority.
        require_range("cold_fraction", self.cold_fraction, 0, 0.5, low_open=True)
        for key in ("top_k", "eval_batch_size", "bootstrap_resamples"):
            require_at_least(key, getattr(self, key), 1)
        require_at_least("max_users", self.max_users, 1, optional=True)
        require_at_least("threads", self.threads, 1, optional=True)
        seen: dict[str, str] = {}
        for family, members in self.families.items():
            if not isinstance(members, list) or not members:
                raise BenchmarkError(f"families.{family} must be a non-empty list of methods")
            for m in members:
                if m in seen:
                    raise BenchmarkError(f"method {m!r} is in two comparison families "
                                         f"({seen[m]} and {family})")
                seen[m] = family


def harness_settings(profile: str, overrides: dict[str, Any] | None = None) -> HarnessSettings:
    """The profile's settings, with ``--set harness.key=value`` overrides on top."""
    if profile not in PROFILES:
        raise BenchmarkError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    path = PROFILE_CONFIG_DIR / f"{profile}.yaml"
    data = yaml.safe_load(path.read_text()) if path.exists() else {}
    layers = [(str(path.relative_to(registry.REPO_ROOT)), data or {})]
    if overrides:
        layers.append(("--set harness.*", overrides))
    return build_config(HarnessSettings, layers)


def default_cache_dir() -> Path:
    """``$BENCHMARK_CACHE``, else ``.cache/`` in the repository."""
    return Path(os.environ.get("BENCHMARK_CACHE", registry.REPO_ROOT / ".cache"))


def results_dir_for(profile: str, given: Path | None, cache_dir: Path) -> Path:
    """Where a run writes: ``--results-dir`` if given, else ``runs/<profile>/`` for the
    default and gpu profiles (git-ignored, its own REPORT.md inside), else the cache. The
    committed reference (results/, results-gpu/) changes only when ``--results-dir`` names it:
    a user's run never overwrites it by accident."""
    if given is not None:
        return Path(given)
    if profile in ("default", "gpu"):
        return RUNS_DIR / profile
    return cache_dir / f"results-{profile}"


def reference_results_dir(profile: str, cache_dir: Path) -> Path:
    """The profile's reference results: results/ (default), results-gpu/ (gpu), else the
    profile's folder in the cache. Plans read recorded compute here; `tune` writes here."""
    if profile == "default":
        return DEFAULT_RESULTS_DIR
    if profile == "gpu":
        return GPU_RESULTS_DIR
    return cache_dir / f"results-{profile}"
