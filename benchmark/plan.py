"""What a run will cost before it starts, from the compute recorded in committed results.

Every result JSON records its fit and inference seconds, the hardware it ran on, and (since
December 2026) ``total_seconds``: the job's whole wall-clock time, set-up included. A job's
expected time is the recorded time of the committed result of the same method, dataset, protocol
and seed (seeds differ: early stopping ends them at different epochs), else the mean over that
group's seeds (else the other protocol's), taken from the reference results folder whatever
folder the run writes to. When the job's resolved config is known (the CLI passes it), only
records made with the same settings count: a seed recorded with other settings (a YAML that has
changed since, a ``--set``) gives way to the group's seeds that match; where none match, the
plan still uses the record and names the settings that differ under its line (a TIGER run at
patience 10 took 60-77 minutes where its patience-5 records said 11). Settings a record
predates are not counted as differences. A result from before ``total_seconds`` counts fit +
inference plus the job's set-up (loading the data, splitting, fingerprinting the code), which
the CLI measures on this machine before it prints the plan (:func:`setup_seconds`).

The reference results were recorded two runs at a time, one thread each, with a warm cache; a
user's ``--all`` runs alone at the profile's threads from an empty cache. So a calibration run
made under a user's conditions (``tools/plan_calibration.py``, :data:`CALIBRATION`) sets the
expected time of the jobs it finished, and the median ratio of its times to the recorded ones
scales every other recorded time. A method with no recorded run has no estimate: the plan says
so rather than guess. The plan names where each estimate comes from, and every finished job
prints its actual time beside the planned one.

:func:`cheap_first` orders a grid by expected time (unknown last), so the quick results arrive
first; the cache's locks keep shared artefacts safe in any order.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.code_status import flat_settings

Settings = dict[str, str]  # a config as benchmark.code_status.flat_settings gives it


@dataclass(frozen=True)
class Record:
    seconds: list[float]  # expected seconds, one per result file
    hardware: str  # the recording hardware, as "<device>, <n> cores, <t> threads"
    by_seed: dict[int, float] = field(default_factory=dict)  # seed -> its seconds
    # seeds whose seconds are fit + inference only (results from before total_seconds)
    without_setup: frozenset[int] = frozenset()
    mean_without_setup: float = 0.0  # the share of ``seconds`` that leave set-up out
    calibrated: frozenset[int] = frozenset()  # seeds the calibration run measured
    ratio: float = 1.0  # the calibration ratio applied to the other seeds
    calibration: str = ""  # the calibration run's hardware
    ran_at: dict[int, int] = field(default_factory=dict)  # seed -> position in the calibration run
    settings: dict[int, Settings] = field(default_factory=dict)  # seed -> its recorded config

    def matching(self, settings: Settings | None) -> list[int]:
        """The recorded seeds whose settings agree with ``settings`` (every seed when None)."""
        return [s for s in self.by_seed if not differing(self.settings.get(s, {}), settings)]

    def source(self, seeds: Sequence[int]) -> str:
        """Where the expected times of these seeds come from, in words."""
        if self.calibrated and set(seeds) <= self.calibrated:
            return f"measured by the calibration run on {self.calibration}"
        scaled = f" x {self.ratio:.2f} (calibration ratio)" if self.ratio != 1.0 else ""
        return f"recorded on {self.hardware}{scaled}"


def differing(recorded: Settings, settings: Settings | None) -> list[tuple[str, str, str]]:
    """(key, recorded value, value now) for each setting both hold with different values."""
    if not settings:
        return []
    return [(k, v, settings[k]) for k, v in sorted(recorded.items())
            if k in settings and settings[k] != v]


def _hardware(result: dict[str, Any]) -> str:
    hw = (result.get("environment") or {}).get("hardware") or {}
    text = f"{hw.get('device', '?')}, {hw.get('cpu_count', '?')} cores"
    return text + (f", {hw['torch_threads']} threads" if hw.get("torch_threads") else "")


CALIBRATION = Path("timing") / "plan-calibration.json"  # inside the reference results folder
MIN_RATIO_SECONDS = 20.0  # jobs shorter than this are mostly set-up: left out of the ratio


def _result_rows(results_dir: Path) -> list[tuple[tuple[str, str, str], int | None, float,
                                                   bool, str, Settings]]:
    """(key, seed, seconds, leaves set-up out, hardware, settings) of every readable result
    file."""
    rows = []
    for path in sorted(Path(results_dir).glob("*/*/*/seed*.json")):
        try:
            result = json.loads(path.read_text())
            timing = result.get("timing") or {}
            whole = timing.get("total_seconds")
            fit = float(timing.get("fit_seconds") or 0)
            # A model served from the checkpoint cache records its reload as the fit; its
            # training curve keeps the seconds the training took.
            curve = (result.get("training") or {}).get("curve") or []
            trained = max([float(p.get("seconds") or 0) for p in curve], default=0.0)
            total = (float(whole) if whole is not None else
                     fit + float(timing.get("inference_seconds") or 0)) + max(trained - fit, 0.0)
            settings = flat_settings(result.get("config") or {})
        except (OSError, ValueError, TypeError, AttributeError):
            continue  # the report refuses damaged files; a plan just skips them
        seed = path.stem.removeprefix("seed")
        rows.append(((path.parts[-4], path.parts[-3], path.parts[-2]),
                     int(seed) if seed.isdigit() else None, total, whole is None,
                     _hardware(result), settings))
    return rows


def _job_key(text: str) -> tuple[str, str, str, int]:
    dataset, protocol, method, seed = text.split("/")
    return dataset, protocol, method, int(seed.removeprefix("seed"))


def read_calibration(results_dir: Path) -> tuple[dict[tuple[str, str, str, int], float], str,
                                                 list[tuple[str, str, str, int]]]:
    """The calibration run's job seconds {(dataset, protocol, method, seed): s}, its hardware
    and the order its jobs ran in; empty when the reference folder has none
    (:func:`write_calibration`)."""
    path = Path(results_dir) / CALIBRATION
    try:
        data = json.loads(path.read_text())
        jobs = {_job_key(k): float(v) for k, v in data["jobs"].items()}
        order = [_job_key(k) for k in data.get("order", [])]
        return jobs, str(data.get("hardware", "?")), order
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return {}, "", []


def write_calibration(run_dir: Path, output: Path, note: str = "") -> dict[str, Any]:
    """Record the whole-job seconds of every result in ``run_dir`` that has them (a run of
    ``--all`` on an idle machine, empty cache, the profile's threads: the conditions of a
    user's first run) as the plan's calibration."""
    jobs, hardware, commits, finished = {}, set(), set(), {}
    for path in sorted(Path(run_dir).glob("*/*/*/seed*.json")):
        result = json.loads(path.read_text())
        seconds = (result.get("timing") or {}).get("total_seconds")
        if seconds is None:
            continue
        name = "/".join(path.parts[-4:-1]) + "/" + path.stem
        jobs[name] = round(float(seconds), 2)
        finished[name] = path.stat().st_mtime  # a result is written when its job ends
        hardware.add(_hardware(result))
        commits.add((result.get("environment") or {}).get("git_commit"))
    if not jobs:
        raise ValueError(f"{run_dir}: no result records total_seconds")
    data = {"what": "whole-job seconds of a calibration run; the plan expects these jobs to "
                    "take as long, and scales the other recorded times by the median ratio",
            "note": note, "hardware": ", ".join(sorted(hardware)),
            "commits": sorted(c for c in commits if c), "jobs": jobs,
            "order": sorted(finished, key=finished.get)}
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return data


def calibration_ratio(rows: list, calibrated: dict) -> float:
    """Median of calibrated / recorded seconds over the jobs both have (recorded at least
    MIN_RATIO_SECONDS); 1.0 when there are none."""
    ratios = sorted(calibrated[(*key, seed)] / seconds for key, seed, seconds, *_ in rows
                    if seed is not None and (*key, seed) in calibrated
                    and seconds >= MIN_RATIO_SECONDS)
    if not ratios:
        return 1.0
    mid = len(ratios) // 2
    return ratios[mid] if len(ratios) % 2 else (ratios[mid - 1] + ratios[mid]) / 2


def recorded(results_dir: Path) -> dict[tuple[str, str, str], Record]:
    """(dataset, protocol, method) -> the seconds the plan expects, and where they come from.

    A job measured by the calibration run (:data:`CALIBRATION`) is expected to take its
    measured time; every other recorded time is scaled by the calibration's median ratio, since
    the reference results were recorded under other conditions (two runs at a time, one thread
    each, a warm cache)."""
    rows = _result_rows(results_dir)
    calibrated, calibration_hw, order = read_calibration(results_dir)
    ratio = calibration_ratio(rows, calibrated)
    by_seed: dict[tuple[str, str, str], dict[int, float]] = defaultdict(dict)
    extra: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    partial: dict[tuple[str, str, str], set[int]] = defaultdict(set)
    hardware: dict[tuple[str, str, str], str] = {}
    measured: dict[tuple[str, str, str], set[int]] = defaultdict(set)
    settings: dict[tuple[str, str, str], dict[int, Settings]] = defaultdict(dict)
    for key, seed, seconds, without, hw, config in rows:
        hardware.setdefault(key, hw)
        if seed is None:
            extra[key].append(seconds * ratio)
            continue
        settings[key][seed] = config
        if (*key, seed) not in calibrated:
            by_seed[key][seed] = seconds * ratio
            if without:
                partial[key].add(seed)
    for (dataset, protocol, method, seed), seconds in calibrated.items():
        key = (dataset, protocol, method)
        by_seed[key][seed] = seconds
        partial[key].discard(seed)
        measured[key].add(seed)
    ran_at: dict[tuple[str, str, str], dict[int, int]] = defaultdict(dict)
    for position, (dataset, protocol, method, seed) in enumerate(order):
        ran_at[(dataset, protocol, method)][seed] = position
    out = {}
    for key in set(by_seed) | set(extra):
        values = [*by_seed[key].values(), *extra[key]]
        out[key] = Record(values, hardware.get(key, calibration_hw), dict(by_seed[key]),
                          frozenset(partial[key]), len(partial[key]) / len(values),
                          frozenset(measured[key]), ratio, calibration_hw, dict(ran_at[key]),
                          dict(settings[key]))
    return out


def _record(records: dict, dataset: str, protocol: str, method: str) -> Record | None:
    """The record a job is planned from: its own protocol's, else the other protocol's; a
    ``<method>@<index>`` run with no record of its own is planned like its base method."""
    other = "cold_item" if protocol == "loo" else "loo"
    base = method.split("@", 1)[0]
    for p, name in ((protocol, method), (other, method), (protocol, base), (other, base)):
        rec = records.get((dataset, p, name))
        if rec and rec.seconds:
            return rec
    return None


def _lookup(records: dict, dataset: str, protocol: str, method: str, seed: int | None,
            settings: Settings | None = None) -> tuple[float, float] | None:
    """(recorded seconds, share of them that leave set-up out) of a job, or None. With the
    job's ``settings``: its own seed's record if made with them, else the mean over the seeds
    that were, else (none were) as without them."""
    rec = _record(records, dataset, protocol, method)
    if rec is None:
        return None
    same = rec.matching(settings)
    if seed is not None and seed in rec.by_seed and (seed in same or not same):
        return rec.by_seed[seed], float(seed in rec.without_setup)
    if same and len(same) < len(rec.by_seed):
        return (sum(rec.by_seed[s] for s in same) / len(same),
                sum(s in rec.without_setup for s in same) / len(same))
    return sum(rec.seconds) / len(rec.seconds), rec.mean_without_setup


def expected(records: dict, dataset: str, protocol: str, method: str,
             seed: int | None = None, settings: Settings | None = None) -> float | None:
    """Recorded seconds of a job: its own seed's when recorded, else the mean over its group's
    seeds, from its protocol or else the other one (with ``settings``, from the records made
    with them where there are any); None if none."""
    found = _lookup(records, dataset, protocol, method, seed, settings)
    return None if found is None else found[0]


def job_expected(records: dict, job: Any, setup: dict[tuple[str, str], float] | None = None,
                 settings: dict[tuple[str, str], Settings] | None = None) -> float | None:
    """A job's expected wall-clock seconds: its recorded time, plus its measured set-up where
    the record leaves set-up out. ``settings``: (dataset, method) -> the job's resolved config."""
    found = _lookup(records, job.dataset, job.protocol, job.method, job.seed,
                    (settings or {}).get((job.dataset, job.method)))
    if found is None:
        return None
    seconds, without = found
    return seconds + without * (setup or {}).get((job.dataset, job.protocol), 0.0)


def settings_note(records: dict, dataset: str, protocol: str, method: str,
                  settings: Settings | None, limit: int = 4) -> str | None:
    """A line for the plan when no record of the job was made with its settings: the settings
    that differ, recorded value -> value now (up to ``limit`` of them)."""
    rec = _record(records, dataset, protocol, method)
    if rec is None or not settings or not rec.by_seed or rec.matching(settings):
        return None
    changes: dict[str, tuple[set[str], str]] = {}
    for recorded_settings in rec.settings.values():
        for key, was, now in differing(recorded_settings, settings):
            changes.setdefault(key, (set(), now))[0].add(was)
    shown = [f"`{key}` {' / '.join(sorted(was))} -> {now}"
             for key, (was, now) in sorted(changes.items())[:limit]]
    more = f", and {len(changes) - limit} more" if len(changes) > limit else ""
    return ("    recorded with other settings, so the time may differ: "
            + ", ".join(shown) + more)


def setup_seconds(jobs: Sequence[Any], prepare: Any) -> dict[tuple[str, str], float]:
    """Seconds ``prepare(job)`` takes for the first job of each (dataset, protocol): the
    per-job set-up that recorded fit and inference seconds leave out, measured on this
    machine (a first call may also fill the cache, which the jobs then reuse)."""
    import time

    out: dict[tuple[str, str], float] = {}
    for job in jobs:
        if (job.dataset, job.protocol) not in out:
            start = time.perf_counter()
            prepare(job)
            out[(job.dataset, job.protocol)] = time.perf_counter() - start
    return out


ORDER_STEP = 10.0  # seconds: jobs whose expected times fall in one step keep the grid's order


def cheap_first(jobs: Sequence[Any], records: dict,
                settings: dict[tuple[str, str], Settings] | None = None) -> list[Any]:
    """The jobs a calibration run measured first, in the order it ran them (so each one-off
    cost, a dataset's first load or the text embeddings and semantic IDs a first job builds for
    the later ones, falls on the job that paid it there); then the others by expected time in
    steps of ORDER_STEP seconds, quickest first; within a step, and for the jobs with no
    estimate (last), the given order."""
    def key(item: tuple[int, Any]) -> tuple[int, int, int]:
        i, job = item
        rec = records.get((job.dataset, job.protocol, job.method))
        if rec is not None and job.seed in rec.ran_at:
            return (0, rec.ran_at[job.seed], i)
        e = job_expected(records, job, settings=settings)
        return (2 if e is None else 1, int((e or 0.0) // ORDER_STEP), i)

    return [job for _, job in sorted(enumerate(jobs), key=key)]


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def plan_lines(jobs: Sequence[Any], records: dict,
               setup: dict[tuple[str, str], float] | None = None,
               settings: dict[tuple[str, str], Settings] | None = None
               ) -> tuple[list[str], float, int]:
    """One line per (method, dataset, protocol) group with its seeds and expected time (and,
    when no record was made with the group's settings, a line naming those that differ), then
    the total; returns (lines, expected seconds of the estimated jobs, jobs without estimate)."""
    groups: dict[tuple[str, str, str], list[Any]] = {}
    for job in jobs:
        groups.setdefault((job.method, job.dataset, job.protocol), []).append(job)
    lines, total, unknown = [], 0.0, 0
    for (method, dataset, protocol), group in groups.items():
        times = [job_expected(records, job, setup, settings) for job in group]
        seeds_text = ",".join(str(job.seed) for job in group)
        if times[0] is None:
            unknown += len(group)
            cost = "no recorded run: unknown"
        else:
            known = [t for t in times if t is not None]
            total += sum(known)
            each = sum(known) / len(known)
            rec = _record(records, dataset, protocol, method)
            source = rec.source([job.seed for job in group])
            if not any(records.get((dataset, p, method)) for p in ("loo", "cold_item")):
                source = f"as {method.split('@', 1)[0]}, {source}"
            cost = f"~{_duration(sum(known))} ({_duration(each)} each; {source})"
        lines.append(f"  {method:22s} {dataset:18s} {protocol:9s} seeds {seeds_text:10s} {cost}")
        note = settings_note(records, dataset, protocol, method,
                             (settings or {}).get((dataset, method)))
        if note and times[0] is not None:
            lines.append(note)
    tail = f"plan: {len(jobs)} runs, expected ~{_duration(total)}"
    if unknown:
        tail += f" plus {unknown} run(s) with no recorded time"
    tail += " (cached runs are reused and take seconds)"
    return ["plan (quickest first):", *lines, tail], total, unknown
