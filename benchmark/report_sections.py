"""The report's sections beyond the per-table ones: steerability, diagnostics, quality vs
training compute, compute, settings chosen on validation, skipped files and the run table."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from benchmark.evaluation import HEADLINE
from benchmark.plots import plot_curves
from benchmark.report_format import _fmt, _seconds
from benchmark.results import Skipped
from benchmark.settings import HarnessSettings


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, (int, float, str, bool)) or v is None:
            out[key] = v
        elif isinstance(v, list) and len(v) <= 8 and all(isinstance(x, (int, float)) for x in v):
            out[key] = ", ".join(_fmt(x, 3) if isinstance(x, float) else str(x) for x in v)
    return out


def _steerability(found: dict) -> list[str]:
    """Methods that can be steered in words report `steerability` and `roundtrip_after_*`."""
    lines: list[str] = []
    for (dataset, protocol), methods in sorted(found.items()):
        for name, runs in sorted(methods.items()):
            diag = runs.results[0].get("diagnostics") or {}
            steer = diag.get("steerability")
            if not isinstance(steer, dict) or not steer.get("genres"):
                continue
            rows = [[genre, _fmt(v.get("unsteered")), _fmt(v.get("steered")),
                     f"{v.get('lift', 0):+.3f}"] for genre, v in steer["genres"].items()]
            rows.append(["mean", _fmt(steer.get("mean_unsteered")),
                         _fmt(steer.get("mean_steered")),
                         f"{(steer.get('mean_steered') or 0) - (steer.get('mean_unsteered') or 0):+.3f}"])
            seed = runs.results[0].get("seed")
            lines += [f"### {name} — {dataset} {protocol}", "",
                      f"Share of the top-{steer.get('top', 10)} items that carry the requested "
                      f"genre, for {steer.get('users')} seeded users (their training "
                      f"histories), request template `{steer.get('template')}`, against the same users' unsteered lists"
                      + (f" (seed {seed})." if seed is not None else "."), "",
                      tabulate(rows, ["genre", "unsteered", "steered", "lift"], tablefmt="pipe",
                                disable_numparse=True), ""]
            trips = [(k.removeprefix("roundtrip_after_"), v) for k, v in diag.items()
                     if k.startswith("roundtrip_after_") and isinstance(v, dict)]
            if trips:
                rows = [[stage, v.get("items"), _fmt(v.get("title_to_sid"), 3),
                         _fmt(v.get("sid_to_title"), 3)] for stage, v in trips]
                lines += ["Title <-> semantic-ID round trip (exact match on a fixed item sample):",
                          "", tabulate(rows, ["after", "items", "title -> SID", "SID -> title"],
                                       tablefmt="pipe", disable_numparse=True), ""]
            lines += _steerability_per_seed(runs.results)
    return (["## Steerability", ""] + lines) if lines else []


def _steerability_per_seed(results: list[dict]) -> list[str]:
    """With several seeds: one paragraph with each seed's mean lift and title -> SID rate."""
    if len(results) < 2:
        return []
    lifts, trips = [], []
    for r in results:
        diag = r.get("diagnostics") or {}
        steer = diag.get("steerability") or {}
        if steer.get("genres"):
            lift = (steer.get("mean_steered") or 0) - (steer.get("mean_unsteered") or 0)
            lifts.append(f"seed {r.get('seed')} {lift:+.3f}")
        trip = diag.get("roundtrip_after_stage1")
        if isinstance(trip, dict):
            trips.append(f"seed {r.get('seed')} {_fmt(trip.get('title_to_sid'), 3)}")
    out = []
    if lifts:
        out.append(f"Mean lift per seed: {', '.join(lifts)}.")
    if trips:
        out.append(f"Title -> SID after stage 1 per seed: {', '.join(trips)}.")
    return [" ".join(out), ""] if out else []


def _diagnostics(found: dict) -> list[str]:
    lines = ["## Diagnostics", "",
             "What each method reports about itself (first seed), as written in its result JSON.",
             ""]
    any_rows = False
    for (dataset, protocol), methods in sorted(found.items()):
        for name, runs in sorted(methods.items()):
            diag = _flatten(runs.results[0].get("diagnostics") or {})
            if not diag:
                continue
            any_rows = True
            rows = [[k, _fmt(v) if isinstance(v, float) else str(v)] for k, v in list(diag.items())[:40]]
            lines += [f"### {name} — {dataset} {protocol}", "",
                      tabulate(rows, ["key", "value"], tablefmt="pipe", disable_numparse=True), ""]
    return lines if any_rows else []


def _curves(found: dict, plot_dir: Path, report_dir: Path) -> list[str]:
    """Quality against training compute, per dataset on ``loo``: where each method stood on its
    validation curve when training stopped (seed 0's curve; methods without one are left out)."""
    lines: list[str] = []
    for (dataset, protocol), methods in sorted(found.items()):
        if protocol != "loo":
            continue
        curves = {name: runs.results[0].get("training", {}).get("curve") or []
                  for name, runs in sorted(methods.items())}
        rows = []
        for name, curve in curves.items():
            values = [p["valid_ndcg10"] for p in curve if p.get("valid_ndcg10") is not None]
            if not values:
                continue
            best = int(np.argmax(values))
            point = curve[best]
            rows.append([name, str(len(values)), _fmt(values[best]),
                         _count(point.get("examples")), _seconds(point.get("seconds")),
                         _fmt(values[-1]), _count(curve[-1].get("examples")),
                         "yes" if best == len(values) - 1 else "no",
                         methods[name].results[0]["training"].get("stop_reason") or ""])
        if not rows:
            continue
        plot = plot_curves(plot_dir / f"{dataset}_{protocol}_curves.png", curves,
                           f"{dataset} {protocol}: validation {HEADLINE} vs training compute")
        lines += [f"### {dataset}: quality vs training compute (`{protocol}`, seed 0)", "",
                  "Every validation point of every method that validates during training. "
                  "\"Still rising\": the best point is the last one, so more training might "
                  "have helped (the budget, not the method, set the figure).", "",
                  tabulate(rows, ["method", "points", f"best valid {HEADLINE}",
                                  "examples at best", "seconds at best", "last value",
                                  "examples at last", "still rising", "stopped by"],
                           tablefmt="pipe", disable_numparse=True), ""]
        if plot:
            lines += [f"![{plot.stem}]({os.path.relpath(plot, report_dir)})", ""]
    return (["## Quality vs training compute", "", *lines] if lines else [])


def _count(n: float | None) -> str:
    return "" if n is None else f"{int(n):,}"


def _compute(found: dict, settings: HarnessSettings) -> list[str]:
    """Fit + inference seconds per method and dataset, both protocols together (mean over
    seeds): the figures docs/scaling.md's time budgets are stated in. A cached checkpoint counts at
    its original training time; RecBole peers are listed but left out of the total."""
    datasets = sorted({d for d, _ in found})
    per: dict[str, dict[str, float]] = {}
    every_seed: dict[str, float] = {}  # without peers: what the whole reference run cost
    peers = set(settings.peers)
    keys = ("fit_seconds", "inference_seconds")
    for (dataset, _protocol), methods in found.items():
        for name, runs in methods.items():
            seconds = sum(runs.mean_of("timing", key) or 0.0 for key in keys)
            per.setdefault(name, {}).setdefault(dataset, 0.0)
            per[name][dataset] += seconds
            if name not in peers:
                every_seed[dataset] = every_seed.get(dataset, 0.0) + sum(
                    r["timing"].get(key) or 0.0 for r in runs.results for key in keys)
    if not per:
        return []
    rows = []
    for name in sorted(per, key=lambda n: (n in peers, n)):
        rows.append([name + (" (peer)" if name in peers else ""),
                     *[_minutes(per[name].get(d)) for d in datasets]])
    totals = [sum(per[n].get(d, 0.0) for n in per if n not in peers) for d in datasets]
    rows.append(["**total without peers**", *[f"**{_minutes(t)}**" for t in totals]])
    rows.append(["every seed's runs, without peers",
                 *[_minutes(every_seed.get(d, 0.0)) for d in datasets]])
    return ["## Compute", "",
            "Minutes of fit + inference per method, both protocols together where both ran "
            "(mean over seeds), on the hardware each result records; a checkpoint reused from "
            "the cache counts at its original training time. Data loading, splitting and the "
            "report are not included. The last row sums every result file, each seed once: "
            "the compute behind these tables.", "",
            tabulate(rows, ["method", *datasets], tablefmt="pipe", disable_numparse=True), "",
            *_ranking_cost(found)]


def _ranking_cost(found: dict) -> list[str]:
    """Milliseconds of test-time inference per test user (``loo``, mean over seeds), with the
    CPU or GPU and thread count the results record: what ranking costs per request."""
    rows = []
    for (dataset, protocol), methods in sorted(found.items()):
        if protocol != "loo":
            continue
        for name, runs in sorted(methods.items()):
            seconds = runs.mean_of("timing", "inference_seconds")
            users = len(runs.tables[0]) if runs.tables else 0
            if seconds is None or not users:
                continue
            hw = (runs.results[0].get("environment") or {}).get("hardware") or {}
            where = f"{hw.get('device', '?')}, {hw.get('cpu_count', '?')} cores"
            if hw.get("torch_threads"):
                where += f", {hw['torch_threads']} threads"
            rows.append([name, dataset, f"{1000 * seconds / users:.2f}",
                         f"{runs.list_length or 'all items'}", where])
    if not rows:
        return []
    return ["Ranking cost: test-time inference (scoring, or beam search for list methods) per "
            "test user under `loo`, mean over seeds, on the hardware each result records.", "",
            tabulate(rows, ["method", "dataset", "ms per user", "list length", "hardware"],
                     tablefmt="pipe", disable_numparse=True), ""]


def _precision(results_dir: Path) -> list[str]:
    """The SID-LLM ranking-precision benchmarks (``tools/sid_llm_precision.py``) found under
    ``results_dir/throughput``: float32 and bfloat16 measured in one run on the same model and
    validation cases, with the machine's load when the run began (an idle 2-core machine is
    the setting the ranking budget is stated for)."""
    rows = []
    for path in sorted((results_dir / "throughput").glob("sid-llm-precision-*.json")):
        try:
            rec = json.loads(path.read_text())
            f32, bf16 = rec["float32"], rec["bfloat16"]
            diff = rec["bfloat16_minus_float32_ndcg10"]
        except (OSError, ValueError, KeyError):
            continue
        load = rec.get("load_average_start") or ["?"]
        rows.append([rec.get("dataset", "?"), str(rec.get("validation_cases", "?")),
                     str(rec.get("threads", "?")), str(load[0]),
                     f"{f32['seconds_per_user']:.4f}", f"{bf16['seconds_per_user']:.4f}",
                     f"{f32['tokens_per_second']:.0f}", f"{bf16['tokens_per_second']:.0f}",
                     f"{diff['mean']:+.5f} [{diff['ci95'][0]:+.5f}, {diff['ci95'][1]:+.5f}]",
                     f"`{path.name}`"])
    if not rows:
        return []
    return ["SID-LLM ranking at float32 and bfloat16, measured in one run on the same trained "
            "model and validation cases (`python tools/sid_llm_precision.py`; load: the "
            "machine's 1-minute load average when the run began):", "",
            tabulate(rows, ["dataset", "validation cases", "threads", "load", "float32 s/user",
                            "bfloat16 s/user", "float32 tokens/s", "bfloat16 tokens/s",
                            "NDCG@10 bfloat16 - float32 [95% CI]", "file"],
                     tablefmt="pipe", disable_numparse=True), ""]


def _minutes(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds / 60:.1f}"


def _tuning(records: list[dict], found: dict) -> list[str]:
    """What validation chose (``python -m benchmark tune``): every grid point's validation
    NDCG@10, the chosen one in bold, and whether the reported run uses it."""
    if not records:
        return []
    lines = ["## Settings chosen on validation", "",
             "Each grid below was fitted on training data and scored on validation cases only "
             "(`python -m benchmark tune`); test cases were never evaluated. Under `cold_item` "
             "the objective counts the `cold_valid` cases (targets in the cold-validation item "
             "set) with the warm ones, so cold-start settings are chosen without the test "
             "slice.", ""]
    for rec in records:
        method, dataset, protocol = rec["method"], rec["dataset"], rec["protocol"]
        run = found.get((dataset, protocol), {}).get(method)
        used = "no run in these results"
        if run is not None:
            config = run.results[0]["config"]
            wanted = {**rec.get("fixed_overrides", {}), **rec["chosen"]}
            same = all(config.get(k) == v for k, v in wanted.items())
            used = "yes" if same else "**no** (the run's config differs from the choice)"
        rows = []
        for row in rec["rows"]:
            label = ", ".join(f"{k}={v}" for k, v in row["settings"].items())
            chosen = row["settings"] == rec["chosen"]
            rows.append([f"**{label}**" if chosen else label, _fmt(row["valid_ndcg10"]),
                         _fmt(row["valid_ndcg10_warm"]), _fmt(row["valid_ndcg10_cold_valid"]),
                         f"{row['fit_seconds']:.0f}", row["stop_reason"] or ""])
        n = rec["rows"][0]
        fixed = ", ".join(f"{k}={v}" for k, v in rec.get("fixed_overrides", {}).items())
        lines += [f"### {method} — {dataset} {protocol} (seed {rec['seed']})", "",
                  (f"Fixed for every point: {fixed}. " if fixed else "") +
                  f"Objective: {rec['objective']}; n = {n['n_valid']:,} validation cases"
                  + (f", {n['n_cold_valid']:,} of them `cold_valid`" if n["n_cold_valid"]
                     else "") + f". Reported run uses the choice: {used}.", "",
                  tabulate(rows, ["settings", "valid NDCG@10", "warm", "cold_valid", "fit s",
                                  "stopped by"], tablefmt="pipe", disable_numparse=True), ""]
    return lines


def _skipped(skipped: list[Skipped], results_dir: Path) -> list[str]:
    """The files `report --lenient` left out, so a reader knows the tables are incomplete."""
    if not skipped:
        return []
    rows = [[f"`{os.path.relpath(s.path, results_dir)}`", s.why.replace("|", "\\|")]
            for s in sorted(skipped, key=lambda s: str(s.path))]
    return ["## Skipped files", "",
            "`report --lenient` left these files out of every table below:", "",
            tabulate(rows, ["file", "why"], tablefmt="pipe", disable_numparse=True), ""]


def _run_table(found: dict) -> list[str]:
    rows = []
    for (dataset, protocol), methods in sorted(found.items()):
        for name, runs in sorted(methods.items()):
            r = runs.results[0]
            env = r["environment"]
            rows.append([dataset, protocol, name, ",".join(str(x["seed"]) for x in runs.results),
                         r["profile"], (env.get("git_commit") or "?")[:12],
                         env["hardware"].get("device"), env["hardware"].get("torch_threads"),
                         f"{r.get('peak_rss_mb', 0):.0f}"])
    if not rows:
        return []
    return ["## Runs", "", tabulate(rows, ["dataset", "protocol", "method", "seeds", "profile",
                                           "commit", "device", "threads", "peak RSS MB"],
                                    tablefmt="pipe", disable_numparse=True), ""]
