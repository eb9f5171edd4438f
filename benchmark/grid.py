"""The grid of a run: its jobs (dataset x protocol x method x seed), the order they may run in,
and their serial execution in this process (the default executor).

Several jobs of one grid build the same artefact inside their fits, through the cache: the
SASRec-ID checkpoint that RA-Rec takes as its ID model, Recformer's pretraining, the text
embeddings and semantic IDs, the SID-LLM's and SAID's stage 1. :data:`SHARED_ARTEFACTS` says
which methods build which, and how far each is shared. From it :func:`dependencies` makes one
job of each group the artefact's builder and every other job of the group wait for it, so a
parallel executor never starts two jobs that would both build it; the serial executor runs the
grid in its given order and needs none of this.

What guarantees that an artefact is never built twice at once is the cache's lock per artefact
and per run (``benchmark.cache``, ``fcntl.flock`` on ``<cache>/locks/``): a second job that
wants it waits and then loads it, whatever the order. The dependencies add two things on top:
a waiting job does not hold a worker idle, and a cluster whose shared file system does not
carry flock across nodes still builds each declared artefact once. A dependency is an order,
not an input: a job whose builder failed still runs (it builds the artefact itself).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.errors import BenchmarkError

# artefact: (methods whose fits build or load it, the preferred builder first;
#            the job coordinates its cache key shares, i.e. the jobs that share one copy)
SHARED_ARTEFACTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # fit_sasrec_id: one checkpoint key for sasrec_id and RA-Rec's ID model (training data).
    "SASRec-ID checkpoint": (("sasrec_id", "ra_rec", "ra_rec_hard"),
                             ("dataset", "protocol", "seed")),
    # Recformer's pretraining and its item vectors (training data; both variants).
    "Recformer pretraining": (("recformer", "recformer_pretrained"),
                              ("dataset", "protocol", "seed")),
    # recformer_transfer's pretraining on the source dataset and this catalogue's item vectors
    # from it: keyed by the source's `loo` training data, config and seed, so the protocols of
    # one dataset under test and seed share one copy. (Where the keys agree it is also the
    # checkpoint recformer/recformer_pretrained build on the source under `loo`; a scope names
    # the job's own dataset only, so that sharing is left to the cache's lock.)
    "Recformer transfer pretraining": (("recformer_transfer",), ("dataset", "seed")),
    # MiniLM item embeddings and the RQ-VAE codes over them: item text and config only (the
    # semantic-ID seed is a config key), so one copy serves every protocol and run seed.
    "text embeddings + semantic IDs": (("sasrec_sid", "sid_llm"), ("dataset",)),
    "SID-LLM stage 1": (("sid_llm",), ("dataset", "seed")),  # item text, codes, run seed
    "SAID stage 1": (("said",), ("dataset", "seed")),  # item text and run seed
    "SAID MiniLM table": (("said_minilm",), ("dataset",)),  # item text only
}


@dataclass(frozen=True, order=True)
class Job:
    """One cell of the grid."""

    dataset: str
    protocol: str
    method: str
    seed: int

    def label(self) -> str:
        return f"{self.method} {self.dataset} {self.protocol} seed{self.seed}"


def dependencies(jobs: Sequence[Job]) -> dict[Job, frozenset[Job]]:
    """For every job, the jobs that must finish before it starts: for each shared artefact and
    each group of jobs that share one copy of it, the builder (the preferred method's job that
    comes first in ``jobs``) before the others."""
    after: dict[Job, set[Job]] = {job: set() for job in jobs}
    position = {job: i for i, job in enumerate(jobs)}
    for methods, scope in SHARED_ARTEFACTS.values():
        groups: dict[tuple, list[Job]] = {}
        for job in jobs:
            if job.method in methods:
                groups.setdefault(tuple(getattr(job, c) for c in scope), []).append(job)
        for group in groups.values():
            builder = min(group, key=lambda j: (methods.index(j.method), position[j]))
            for job in group:
                if job != builder:
                    after[job].add(builder)
    return {job: frozenset(before) for job, before in after.items()}


def schedule(jobs: Sequence[Job]) -> list[Job]:
    """``jobs`` in phases that respect :func:`dependencies`: first every job that waits for
    none, builders of shared artefacts ahead (others wait for them), then the jobs that waited
    for those, and so on; otherwise the given order."""
    before = dependencies(jobs)
    awaited = set().union(*before.values())
    done: set[Job] = set()
    order: list[Job] = []
    while len(order) < len(jobs):
        ready = sorted((j for j in jobs if j not in done and before[j] <= done),
                       key=lambda j: j not in awaited)  # stable: the given order otherwise
        if not ready:  # SHARED_ARTEFACTS orders two methods both ways for one scope
            stuck = sorted(j.label() for j in jobs if j not in done)
            raise BenchmarkError(f"job dependencies form a cycle among: {', '.join(stuck)}")
        order.extend(ready)
        done.update(ready)
    return order


@dataclass(frozen=True)
class GridRun:
    """What every job of one run shares: the profile, overrides, places, and how each job
    becomes a :class:`benchmark.runner.RunRequest`."""

    profile: str
    results_dir: Path
    cache_dir: Path
    method_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    harness_overrides: dict[str, Any] = field(default_factory=dict)
    meta: str | None = None
    show_progress: bool = True
    adapter_modules: tuple[str, ...] = ()  # --adapter-module, loaded again by remote workers

    def request(self, job: Job, show_progress: bool | None = None) -> Any:
        from benchmark.runner import RunRequest

        return RunRequest(
            method=job.method, dataset=job.dataset, protocol=job.protocol, seed=job.seed,
            profile=self.profile, overrides=self.method_overrides.get(job.method, {}),
            meta=self.meta, results_dir=self.results_dir, cache_dir=self.cache_dir,
            show_progress=self.show_progress if show_progress is None else show_progress,
            harness_overrides=self.harness_overrides)


def finished_line(job: Job, path: Path, outcome: str | None = None,
                  took: float | None = None, planned: float | None = None) -> str:
    """The console line of a finished job: method, dataset, protocol, seed, headline, whether
    it was computed or reused from the cache, and (when given) its wall-clock seconds beside
    the plan's expectation, so a user sees how far the plan is off on this machine."""
    from benchmark.results import headline

    line = (f"{job.method:20s} {path.parts[-4]:18s} {job.protocol:9s} seed{job.seed}: "
            f"{headline(path)}" + (f"  ({outcome})" if outcome else ""))
    if took is not None:
        line += f"  took {took:.1f} s"
        if planned is not None:
            line += f", planned {planned:.1f} s"
    return line


def run_serial(jobs: Sequence[Job], run: GridRun, progress: bool = True,
               expected: dict[Job, float] | None = None) -> None:
    """Run the jobs one after another in this process, in the given order.

    With ``expected`` (seconds per job, :mod:`benchmark.plan`), the progress bar counts expected
    seconds rather than jobs, so its rate and ETA weigh a long job as long from the first one.

    A job whose method's own code fails (a MethodError: an exception or ``sys.exit()`` in its
    fit, score or rank) ends that job, and the others still run; then the failure is raised (one
    failure as itself, several as one error after each is printed), so the invocation exits 2.
    Any other error stops the grid. Finished runs stay cached, so the same command resumes.
    """
    import sys

    from tqdm.auto import tqdm

    from benchmark import runner
    from benchmark.errors import MethodError
    from benchmark.progress import job_label

    failed: list[MethodError] = []
    weight = expected or {}
    if expected:
        known = sorted(v for v in expected.values() if v)
        fallback = known[len(known) // 2] if known else 60.0  # a job with no record: median
        weight = {job: max(expected.get(job) or fallback, 1.0) for job in jobs}
        bar = tqdm(total=round(sum(weight.values())), desc="runs (expected s)", unit="s",
                   disable=not progress)
    else:
        bar = tqdm(total=len(jobs), desc="runs", disable=not progress)
    for job in jobs:
        bar.set_postfix_str(job.label())
        started = time.perf_counter()
        try:
            with job_label(job.label()):
                path, outcome = runner.run_with_outcome(run.request(job))
        except MethodError as exc:
            failed.append(exc)
            continue
        finally:
            bar.update(round(weight[job]) if weight else 1)
        tqdm.write(finished_line(job, path, outcome, took=time.perf_counter() - started,
                                 planned=(expected or {}).get(job)))
    bar.close()
    if len(failed) == 1:
        raise failed[0]
    if failed:
        for exc in failed:
            print(f"error: {exc}", file=sys.stderr)
        raise BenchmarkError(f"{len(failed)} of {len(jobs)} jobs failed (named above); "
                             "finished runs are cached, so the same command resumes")
