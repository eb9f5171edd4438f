"""What a run will cost before it starts, from the compute recorded in committed results.

Every result JSON records its fit and inference seconds and the hardware it ran on. A job's
expected time is the mean fit + inference seconds of the committed results of the same method,
dataset and protocol (any seed; the other protocol's when this one has none), taken from the
reference results folder whatever folder the run writes to. A method with no recorded run has no
estimate: the plan says so rather than guess. The estimate is as good as the match between this
machine and the recording one: the plan names the recording hardware.

:func:`cheap_first` orders a grid by expected time (unknown last), so the quick results arrive
first; the cache's locks keep shared artefacts safe in any order.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Record:
    seconds: list[float]  # fit + inference seconds, one per result file
    hardware: str  # the recording hardware, as "<device>, <n> cores, <t> threads"


def _hardware(result: dict[str, Any]) -> str:
    hw = (result.get("environment") or {}).get("hardware") or {}
    text = f"{hw.get('device', '?')}, {hw.get('cpu_count', '?')} cores"
    return text + (f", {hw['torch_threads']} threads" if hw.get("torch_threads") else "")


def recorded(results_dir: Path) -> dict[tuple[str, str, str], Record]:
    """(dataset, protocol, method) -> the committed results' seconds and hardware."""
    seconds: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    hardware: dict[tuple[str, str, str], str] = {}
    for path in sorted(Path(results_dir).glob("*/*/*/seed*.json")):
        try:
            result = json.loads(path.read_text())
            timing = result.get("timing") or {}
            total = float(timing.get("fit_seconds") or 0) + float(
                timing.get("inference_seconds") or 0)
        except (OSError, ValueError, TypeError):
            continue  # the report refuses damaged files; a plan just skips them
        key = (path.parts[-4], path.parts[-3], path.parts[-2])
        seconds[key].append(total)
        hardware.setdefault(key, _hardware(result))
    return {k: Record(v, hardware[k]) for k, v in seconds.items()}


def expected(records: dict, dataset: str, protocol: str, method: str) -> float | None:
    """Mean recorded seconds of a job, from its protocol or else the other one; None if none."""
    for p in (protocol, "cold_item" if protocol == "loo" else "loo"):
        rec = records.get((dataset, p, method))
        if rec and rec.seconds:
            return sum(rec.seconds) / len(rec.seconds)
    return None


def cheap_first(jobs: Sequence[Any], records: dict) -> list[Any]:
    """The jobs by expected time, quickest first; jobs with no estimate last, in given order."""
    def key(item: tuple[int, Any]) -> tuple[bool, float, int]:
        i, job = item
        e = expected(records, job.dataset, job.protocol, job.method)
        return (e is None, e or 0.0, i)

    return [job for _, job in sorted(enumerate(jobs), key=key)]


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def plan_lines(jobs: Sequence[Any], records: dict) -> tuple[list[str], float, int]:
    """One line per (method, dataset, protocol) group with its seeds and expected time, then
    the total; returns (lines, expected seconds of the estimated jobs, jobs without estimate)."""
    groups: dict[tuple[str, str, str], list[int]] = {}
    for job in jobs:
        groups.setdefault((job.method, job.dataset, job.protocol), []).append(job.seed)
    lines, total, unknown = [], 0.0, 0
    for (method, dataset, protocol), seeds in groups.items():
        each = expected(records, dataset, protocol, method)
        seeds_text = ",".join(map(str, seeds))
        if each is None:
            unknown += len(seeds)
            cost = "no recorded run: unknown"
        else:
            total += each * len(seeds)
            rec = records.get((dataset, protocol, method)) or next(
                r for (d, _, m), r in records.items() if d == dataset and m == method)
            cost = f"~{_duration(each * len(seeds))} ({_duration(each)} each; recorded on {rec.hardware})"
        lines.append(f"  {method:22s} {dataset:18s} {protocol:9s} seeds {seeds_text:10s} {cost}")
    tail = f"plan: {len(jobs)} runs, expected ~{_duration(total)}"
    if unknown:
        tail += f" plus {unknown} run(s) with no recorded time"
    tail += " (cached runs are reused and take seconds)"
    return ["plan (quickest first):", *lines, tail], total, unknown
