"""The grid on Ray: ``python -m benchmark --all --executor ray [--ray-address A] [--ray-workers N]``.

Every job (dataset x protocol x method x seed) is one Ray task whose body is the serial path's
own :func:`benchmark.runner.run`, so a finished run is copied from the cache, a rerun resumes,
and per-user results equal a serial run's on the same machine with the same threads. Decisions:

- Where: a local Ray instance started for the run and shut down after it (the default), or an
  existing cluster (``--ray-address``, e.g. ``auto`` on a node of it, or ``HEAD_IP:6379``).
  Ray is imported only here, and only for ``--executor ray``.
- CPUs: a task reserves ``harness.threads`` CPUs (1 when the profile leaves it unset, and then
  torch takes the ``OMP_NUM_THREADS`` Ray sets, one), and the runner sets torch's threads.
- GPU: a task reserves one GPU when its method sets ``wants_gpu`` (``benchmark.adapter``) and
  the cluster has a GPU when the grid starts. On a CPU-only cluster such a request could never
  be met and the task would wait forever, so there nothing asks for one and those methods run
  on CPU, as serially. A task without a reserved GPU is not hidden from the node's GPUs (Ray
  2.60 leaves ``CUDA_VISIBLE_DEVICES`` alone when a task asks for none), so, as in a serial
  run, it uses one if torch sees it; those are the small models.
- Concurrency: at most ``--ray-workers`` jobs at once (default: the cluster's CPUs divided by
  the CPUs a job reserves); a local instance gets exactly that many job slots of CPUs. A job
  is submitted only when the jobs it depends on (:func:`benchmark.grid.dependencies`) have
  finished, successfully or not, so a job never holds a slot while waiting for an artefact.
- Shared places: a task first checks that it can create a file in the cache and the results
  directories (:func:`check_writable`; every node must mount them at the same path) and fails
  with the path and the node's name when it cannot.
- Failures: a failed job is reported with its method and error and the others go on; the
  report is written only when every job finished. Ray retries a task whose worker process died
  (its default); the run's lock and atomic writes make that safe. An exception is not retried.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmark.errors import BenchmarkError, one_line
from benchmark.grid import GridRun, Job, dependencies, finished_line, schedule

INSTALL = 'pip install -e ".[ray]"'


def import_ray() -> Any:
    """The ``ray`` module, or a BenchmarkError that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise BenchmarkError(f"--executor ray needs Ray, which cannot be imported "
                             f"({one_line(exc)}); install it with {INSTALL}") from None
    return ray


def check_writable(paths: Sequence[Path]) -> None:
    """Create and delete a file in each of ``paths`` (made if missing); a BenchmarkError naming
    the path and this node if that fails."""
    for path in paths:
        try:
            Path(path).mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=path, prefix=".write-check.")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise BenchmarkError(
                f"node {socket.gethostname()} cannot write {path}: "
                f"{exc.strerror or one_line(exc)}; with --executor ray the cache and results "
                "directories must be on a file system that every Ray node mounts at the same "
                "path") from None


_loaded_modules: set[str] = set()  # --adapter-module imports done in this worker process


def run_job(request: Any, adapter_modules: Sequence[str] = ()) -> tuple[str, str]:
    """The body of one Ray task: check the shared places, load outside methods, run the job;
    returns the path of its result JSON and whether it was computed or reused."""
    from benchmark import registry, runner

    check_writable([request.cache_dir, request.results_dir])
    for module in adapter_modules:
        if module not in _loaded_modules:
            registry.load_external(module)
            _loaded_modules.add(module)
    path, outcome = runner.run_with_outcome(request)
    return str(path), outcome


def run_ray(jobs: Sequence[Job], run: GridRun, *, threads: int | None,
            address: str | None = None, workers: int | None = None, progress: bool = True,
            describe_error: Callable[[BaseException], str] = one_line,
            expected: dict[Job, float] | None = None) -> list[tuple[Job, str]]:
    """Run ``jobs`` as Ray tasks (see the module docstring); returns the failed jobs, each with
    its error line (``describe_error`` of what the job raised). Each finished job's line gives
    its seconds from submission and, with ``expected`` (:mod:`benchmark.plan`), the plan's."""
    ray = import_ray()
    cpus = threads or 1
    started = not ray.is_initialized()
    if started and address is None:
        ray.init(num_cpus=workers * cpus if workers else None, include_dashboard=False)
    elif started:
        ray.init(address=address)
    try:
        resources = ray.cluster_resources()
        slots = workers or max(1, int(resources.get("CPU", cpus) // cpus))
        return _drive(ray, jobs, run, threads, resources.get("GPU", 0), slots, progress,
                      describe_error, expected or {})
    finally:
        if started:
            ray.shutdown()


def task_resources(method: str, threads: int | None, cluster_gpus: float) -> dict[str, int]:
    """What a job's task reserves: ``harness.threads`` CPUs (1 if unset); one GPU if the method
    wants one and the cluster has one, else none (a request no node can meet waits forever)."""
    from benchmark import registry

    wants = getattr(registry.adapter_class(method), "wants_gpu", False)
    return {"num_cpus": threads or 1, "num_gpus": 1 if wants and cluster_gpus >= 1 else 0}


def _drive(ray: Any, jobs: Sequence[Job], run: GridRun, threads: int | None,
           cluster_gpus: float, slots: int, progress: bool,
           describe_error: Callable[[BaseException], str], expected: dict[Job, float]
           ) -> list[tuple[Job, str]]:
    """Submit ready jobs up to ``slots`` at a time, collect each as it finishes."""
    from tqdm.auto import tqdm

    task = ray.remote(run_job)
    before = dependencies(jobs)
    waiting = schedule(jobs)
    running: dict[Any, Job] = {}
    submitted: dict[Any, float] = {}
    settled: set[Job] = set()
    failed: list[tuple[Job, str]] = []
    bar = tqdm(total=len(jobs), desc="runs", disable=not progress)

    def status() -> str:
        return (f"finished {len(settled) - len(failed)}, running {len(running)}, "
                f"failed {len(failed)}")

    while waiting or running:
        for job in [j for j in waiting if before[j] <= settled][:slots - len(running)]:
            waiting.remove(job)
            ref = task.options(**task_resources(job.method, threads, cluster_gpus),
                               name=f"benchmark {job.label()}").remote(
                run.request(job, show_progress=False), run.adapter_modules)
            running[ref] = job
            submitted[ref] = time.perf_counter()
        bar.set_postfix_str(status())
        done, _ = ray.wait(list(running), num_returns=1)
        for ref in done:
            job = running.pop(ref)
            settled.add(job)
            took = time.perf_counter() - submitted.pop(ref)
            try:
                path, outcome = ray.get(ref)
                tqdm.write(finished_line(job, Path(path), outcome, took=took,
                                         planned=expected.get(job)))
            except Exception as exc:
                # A RayTaskError carries what the job raised as its `cause`.
                message = describe_error(getattr(exc, "cause", None) or exc)
                failed.append((job, message))
                tqdm.write(f"failed: {job.label()}: {message}", file=sys.stderr)
            bar.update(1)
    bar.set_postfix_str(status())
    bar.close()
    return failed
