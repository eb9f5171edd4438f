"""REPORT.md from result files alone.

Every number is recomputed from the per-user files (ranks) and the JSON beside each (list length
for ranking methods, timings, parameters, diagnostics); nothing is read from logs or caches.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from benchmark import registry
from benchmark.cache import atomic_write_text
from benchmark.evaluation import HEADLINE, METRICS
from benchmark.results import MethodRuns, load_results, ranks_from_table
from benchmark.settings import DEFAULT_RESULTS_DIR, harness_settings
from benchmark.statistics import bootstrap_ci, compare_to_reference

ALPHA = 0.05
PROTOCOL_TITLES = {"loo": "leave-one-out (`loo`)", "cold_item": "cold-start items (`cold_item`)"}
SLICE_COLUMNS = {"history_bucket": ("short", "medium", "long"),
                 "popularity_bucket": ("head", "torso", "tail"),
                 "cold_item": (True, False)}


def _fmt(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _mark(test: dict | None) -> str:
    """▲ / ▼: better / worse than the reference, Holm-corrected paired t-test p < 0.05."""
    if not test or test["t_p_holm"] >= ALPHA:
        return ""
    return " ▲" if test["mean_diff"] > 0 else " ▼"


def _seconds(x: float | None) -> str:
    return "n/a" if x is None else (f"{x:.1f}" if x < 100 else f"{x:.0f}")


def _params(n: float | None) -> str:
    if not n:
        return "0"
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{int(n):,}"


def _aligned(methods: dict[str, MethodRuns]) -> bool:
    ids = [tuple(m.tables[0]["user_id"]) for m in methods.values()]
    return all(i == ids[0] for i in ids)


def _tests(methods: dict[str, MethodRuns], reference: str | None, metric: str,
           mask: np.ndarray | None) -> dict[str, dict]:
    if reference is None or reference not in methods:
        return {}
    per_user = {}
    for name, runs in methods.items():
        v = runs.per_user(metric, mask)
        if v is not None and len(v):
            per_user[name] = v
    if reference not in per_user:
        return {}
    return compare_to_reference(per_user, reference)


def _choose_reference(methods: dict[str, MethodRuns], preferred: str, fallback: str) -> str | None:
    if preferred in methods:
        return preferred
    return fallback if fallback in methods else None


def _section(dataset: str, protocol: str, methods: dict[str, MethodRuns], results_dir: Path,
             report_dir: Path, preferred: str, fallback: str, resamples: int) -> list[str]:
    lines: list[str] = []
    first = next(iter(methods.values())).results[0]
    stats = first["dataset"]["stats"]
    reference = _choose_reference(methods, preferred, fallback)
    aligned = _aligned(methods)
    if not aligned:
        reference = None
    lines += [f"## {dataset} — {PROTOCOL_TITLES.get(protocol, protocol)}", ""]
    lines.append(
        f"{stats['n_users']:,} users, {stats['n_items']:,} items, "
        f"{stats['n_interactions']:,} interactions; {first['n_test_cases']} test cases, "
        f"{first['n_valid_cases']} validation cases; split `{first['split_hash']}`"
        + (f", cold set `{first['cold_set_hash']}` ({first['cold_set_size']} items)"
           if first.get("cold_set_hash") else "")
        + f". Reference for significance: **{reference or 'none'}**."
    )
    lines.append("")
    # Leaderboard
    tests = {m: _tests(methods, reference, m, None) for m in METRICS}
    order = sorted(methods, key=lambda n: -(methods[n].per_user(HEADLINE).mean()))
    rows = []
    for name in order:
        runs = methods[name]
        row = [f"**{name}**" if name == reference else name]
        for metric in METRICS:
            v = runs.per_user(metric)
            if v is None:
                row.append("n/a")
                continue
            cell = _fmt(float(v.mean()))
            if metric in (HEADLINE, "HR@10"):
                lo, hi = bootstrap_ci(v, seed=0, n_resamples=resamples)
                cell += f" [{_fmt(lo)}, {_fmt(hi)}]"
            cell += _mark(tests[metric].get(name))
            row.append(cell)
        seed_means = runs.seed_means(HEADLINE)
        row.append(f"{np.mean(seed_means):.4f} ± {np.std(seed_means):.4f} ({len(seed_means)})")
        row.append(_seconds(runs.mean_of("timing", "fit_seconds")))
        row.append(_seconds(runs.mean_of("timing", "inference_seconds")))
        row.append(_params(runs.mean_of("parameters", "trainable")))
        row.append(runs.results[0]["training"]["stop_reason"])
        rows.append(row)
    headers = ["method", *[f"{m} [95% CI]" if m in (HEADLINE, "HR@10") else m for m in METRICS],
               "NDCG@10 seeds mean ± std (n)", "fit s", "infer s", "trainable", "stopped by"]
    lines += [tabulate(rows, headers, tablefmt="pipe", disable_numparse=True), ""]
    # Slices
    lines += [f"### Slices ({HEADLINE}, 95% CI; n = test cases in the slice)", ""]
    slice_rows, slice_headers, plot_data = [], ["method"], {}
    table0 = next(iter(methods.values())).tables[0]
    masks = []
    for column, buckets in SLICE_COLUMNS.items():
        if column not in table0 or table0[column].isna().all():
            continue
        for bucket in buckets:
            mask = (table0[column].astype(str) == str(bucket)).to_numpy()
            label = {True: "cold", False: "warm"}.get(bucket, bucket) if column == "cold_item" else bucket
            masks.append((f"{column}={label}", mask))
            slice_headers.append(f"{label} (n={int(mask.sum())})")
    slice_tests = {label: _tests(methods, reference, HEADLINE, mask) for label, mask in masks}
    for name in order:
        row = [name]
        for label, mask in masks:
            v = methods[name].per_user(HEADLINE, mask) if aligned else None
            if v is None or not len(v):
                row.append("n/a")
                continue
            lo, hi = bootstrap_ci(v, seed=0, n_resamples=resamples)
            row.append(f"{v.mean():.4f} [{lo:.4f}, {hi:.4f}]{_mark(slice_tests[label].get(name))}")
            plot_data.setdefault(label, {})[name] = (float(v.mean()), lo, hi)
        slice_rows.append(row)
    lines += [tabulate(slice_rows, slice_headers, tablefmt="pipe", disable_numparse=True), ""]
    lines += _cold_depth(methods, order, table0, reference)
    # Significance details
    if reference:
        lines += [f"### Paired tests against {reference} ({HEADLINE}, Holm within each slice)", ""]
        sig_rows = []
        for label, mask in [("all", None), *masks]:
            res = _tests(methods, reference, HEADLINE, mask)
            for name in order:
                if name in res:
                    t = res[name]
                    sig_rows.append([label, name, f"{t['mean_diff']:+.4f}", f"{t['t_p_holm']:.3g}",
                                     f"{t['wilcoxon_p_holm']:.3g}"])
        lines += [tabulate(sig_rows, ["slice", "method", "Δ vs ref", "t-test p (Holm)",
                                      "Wilcoxon p (Holm)"], tablefmt="pipe",
                           disable_numparse=True), ""]
    # Plots
    plot_dir = results_dir / "plots"
    overall = {n: methods[n].per_user(HEADLINE) for n in order}
    overall_ci = {n: (float(v.mean()), *bootstrap_ci(v, seed=0, n_resamples=resamples))
                  for n, v in overall.items()}
    p1 = _plot_overall(plot_dir / f"{dataset}_{protocol}_ndcg10.png", overall_ci,
                       f"{dataset} {protocol}: {HEADLINE} (95% CI)")
    p2 = _plot_slices(plot_dir / f"{dataset}_{protocol}_slices.png", plot_data, order,
                      f"{dataset} {protocol}: {HEADLINE} by slice")
    for p in (p1, p2):
        if p:
            lines += [f"![{p.stem}]({os.path.relpath(p, report_dir)})", ""]
    return lines


def _cold_depth(methods: dict[str, MethodRuns], order: list[str], table0: pd.DataFrame,
                reference: str | None) -> list[str]:
    """Where the cold targets land, beyond the top 10: a cold item a method cannot score sits
    near the bottom of the catalogue, one it scores from text or codes moves up even when it
    misses the top 10 (the random row is the chance level)."""
    if "cold_item" not in table0 or table0["cold_item"].isna().all() or reference is None:
        return []
    mask = (table0["cold_item"].astype(str) == "True").to_numpy()
    if not mask.any():
        return []
    ranks = {name: np.mean([ranks_from_table(t)[mask] for t in methods[name].tables], axis=0)
             for name in order}
    # Paired test on the full rank (score methods only: a list method has no rank past K).
    scored = {n: -r for n, r in ranks.items() if methods[n].list_length is None}
    tests = compare_to_reference(scored, reference) if reference in scored else {}
    rows = []
    for name in order:
        r, k = ranks[name], methods[name].list_length
        median = float(np.median(r))
        t = tests.get(name)
        rows.append([name, _fmt(float((r <= 20).mean()), 3),
                     "n/a" if k is not None and k < 100 else _fmt(float((r <= 100).mean()), 3),
                     f"> {k}" if not np.isfinite(median) else f"{median:.0f}",
                     f"{-t['mean_diff']:+.0f}" if t else "", f"{t['wilcoxon_p_holm']:.3g}" if t else ""])
    return [f"### Cold targets in depth (n={int(mask.sum())}; rank among all candidates)", "",
            f"Mean rank change against {reference or 'the reference'} and its Wilcoxon p "
            "(Holm) are for score methods, whose every rank is known.", "",
            tabulate(rows, ["method", "HR@20", "HR@100", "median rank", "mean rank Δ vs ref (- = higher)",
                            "Wilcoxon p (Holm)"], tablefmt="pipe", disable_numparse=True), ""]


def _plot_overall(path: Path, data: dict[str, tuple[float, float, float]], title: str) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not data:
        return None
    names = list(data)[::-1]
    means = np.array([data[n][0] for n in names])
    err = np.array([[data[n][0] - data[n][1] for n in names], [data[n][2] - data[n][0] for n in names]])
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.2))
    ax.barh(names, means, xerr=err, color="#4c72b0", capsize=3)
    ax.set_xlabel(HEADLINE)
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_slices(path: Path, data: dict[str, dict[str, tuple]], order: list[str], title: str
                 ) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not data:
        return None
    labels = list(data)
    width = 0.8 / max(1, len(order))
    fig, ax = plt.subplots(figsize=(max(7, 1.3 * len(labels)), 4.2))
    for j, name in enumerate(order):
        vals = [data[label].get(name, (np.nan, np.nan, np.nan)) for label in labels]
        means = np.array([v[0] for v in vals])
        err = np.array([[v[0] - v[1] for v in vals], [v[2] - v[0] for v in vals]])
        ax.bar(np.arange(len(labels)) + j * width, means, width, yerr=err, capsize=2, label=name)
    ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2)
    ax.set_xticklabels([label.split("=", 1)[1] for label in labels])
    ax.set_ylabel(HEADLINE)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
            lines += [f"### {name} — {dataset} {protocol}", "",
                      f"Share of the top-{steer.get('top', 10)} items that carry the requested "
                      f"genre, for {steer.get('users')} seeded test users, request template "
                      f"`{steer.get('template')}`, against the same users' unsteered lists.", "",
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
    return (["## Steerability", ""] + lines) if lines else []


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


PREAMBLE = """\
# Benchmark report

Generated by `python -m benchmark report` from the files under `{results}` alone; do not edit by
hand. Every figure below can be recomputed from the per-user files (`seed<k>.per_user.csv`: the
1-based rank of each user's target, empty for a miss).

**Protocol.** Leave-one-out per user in chronological order (equal timestamps keep source-file
order): last item = test target, second last = validation target (early stopping and model
selection only), the rest = training; at test time the input history is training + validation.
Full ranking over the whole catalogue, no sampled negatives; items in the input history are
masked{masking}; ties are broken pessimistically (the target ranks below every item with an
equal score). Generative methods return a top-{k} list; a target outside it is a miss, so HR@100
is n/a for them. `cold_item`: a fixed 10% of the catalogue (split seed independent of model
seeds) loses every interaction from training and input histories; validation cases with a cold
target are dropped; every test case is evaluated and those with a cold target form the `cold`
slice. Means with 95% percentile-bootstrap CIs (1,000 resamples in the tables, seeded) over test
users. ▲ / ▼: significantly better / worse than the reference (paired t-test on per-user
values, Holm-corrected across methods within each dataset, protocol, slice and metric,
p < 0.05); Wilcoxon signed-rank p-values are in the paired-test tables. With several seeds,
per-user values are averaged over seeds before testing. Popularity buckets: items sorted by
training count, head / torso / tail hold a third of the training interactions each; history
buckets: terciles of input-history length. Times are wall-clock seconds on the hardware recorded
in each result JSON.
"""


def write_report(results_dir: Path, output: Path | None = None) -> Path:
    results_dir = Path(results_dir)
    if output is None:
        output = (registry.REPO_ROOT / "REPORT.md" if results_dir.resolve() ==
                  DEFAULT_RESULTS_DIR.resolve() else results_dir / "REPORT.md")
    settings = harness_settings("default")
    found = load_results(results_dir)
    first = next((m.results[0] for ms in found.values() for m in ms.values()), None)
    masking = "" if first is None or first["harness"]["mask_history"] else " (here: NOT masked)"
    k = first["harness"]["top_k"] if first else 20
    lines = [PREAMBLE.format(results=os.path.relpath(results_dir, output.parent), masking=masking, k=k)]
    if not found:
        lines.append("No results yet: run `python -m benchmark --all`.")
    for (dataset, protocol), methods in sorted(found.items(), key=lambda kv: (kv[0][0], kv[0][1] != "loo")):
        lines += _section(dataset, protocol, methods, results_dir, output.parent,
                          settings.reference, settings.fallback_reference, 1000)
    lines += _steerability(found)
    lines += _diagnostics(found)
    lines += _run_table(found)
    atomic_write_text(output, "\n".join(lines).rstrip() + "\n")
    return output


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
