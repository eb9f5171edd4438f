"""The section of one (dataset, protocol): header, leaderboard, slice table, cold targets in
depth, paired tests and bar charts, rendered from a
:class:`~benchmark.report_comparison.Comparison`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

from benchmark.code_status import code_status, config_lines
from benchmark.comparisons import compare
from benchmark.evaluation import HEADLINE, METRICS
from benchmark.plots import plot_overall, plot_slices
from benchmark.report_comparison import Comparison, slice_columns
from benchmark.report_format import PROTOCOL_TITLES, _fmt, _mark, _p, _params, _seconds
from benchmark.results import MethodRuns, ranks_from_table
from benchmark.settings import HarnessSettings


def _section(dataset: str, protocol: str, methods: dict[str, MethodRuns], plot_dir: Path,
             report_dir: Path, settings: HarnessSettings, c: Comparison | None = None
             ) -> list[str]:
    """One (dataset, protocol): header, leaderboard, slices, cold depth, paired tests, plots
    (``c``: the table's comparison, when the caller built it already)."""
    c = c or Comparison.of(methods, settings)
    table0 = slice_columns(methods)
    slice_means = {name: c.slice_means(name) for name in c.order}
    code = code_status(r for runs in methods.values() for r in runs.results).lines()
    code += config_lines(methods)
    return [*_header(dataset, protocol, c), *[f"{line}\n" for line in code], *_leaderboard(c),
            *_slice_table(c, slice_means),
            *_cold_depth(methods, c.order, table0, c.reference), *_significance(c),
            *_plots(dataset, protocol, c, slice_means, plot_dir, report_dir)]


def _header(dataset: str, protocol: str, c: Comparison) -> list[str]:
    first = next(iter(c.methods.values())).results[0]
    stats = first["dataset"]["stats"]
    if c.reference is None:
        why = ""
    elif c.reference != c.settings.reference:
        why = f" ({c.settings.reference} has no results here)"
    else:
        why = ""
    line = (f"{stats['n_users']:,} users, {stats['n_items']:,} items, "
            f"{stats['n_interactions']:,} interactions; {_eval_users(first)}; "
            f"n = {first['n_test_cases']:,} test cases, {first['n_valid_cases']:,} validation "
            f"cases{_cold_valid_cases(first)}; split `{first['split_hash']}`"
            + (f", cold set `{first['cold_set_hash']}` ({first['cold_set_size']} items)"
               if first.get("cold_set_hash") else "")
            + (f", cold-validation set `{first['cold_valid_set_hash']}` "
               f"({first['cold_valid_set_size']} items)" if first.get("cold_valid_set_hash") else "")
            + f". Reference for significance: **{c.reference or 'none'}**{why}.")
    return [f"## {dataset} — {PROTOCOL_TITLES.get(protocol, protocol)}", "", line, ""]


def _eval_users(result: dict) -> str:
    eval_users = result.get("eval_users", "all")
    if eval_users == "all":
        return "evaluation users: all"
    return f"evaluation users: a seeded sample of {eval_users['sample']:,} (seed {eval_users['seed']})"


def _cold_valid_cases(result: dict) -> str:
    n = result.get("n_valid_cold_valid")
    return f" ({n:,} of them `cold_valid`)" if n else ""


def _leaderboard(c: Comparison) -> list[str]:
    """Every metric over all test users, best NDCG@10 first, with CIs, seed spread and cost."""
    with_ci = (HEADLINE, "HR@10")
    rows = []
    for name in c.order:
        runs = c.methods[name]
        row = [f"**{name}**" if name == c.reference else name]
        for metric in METRICS:
            v = runs.per_user(metric)
            if v is None:
                row.append("n/a")
                continue
            cell = _fmt(float(v.mean()))
            if metric in with_ci:
                lo, hi = c.ci(v)
                cell += f" [{_fmt(lo)}, {_fmt(hi)}]"
            row.append(cell + _mark(c.tests(metric).get(name)))
        seed_means = runs.seed_means(HEADLINE)
        if len(seed_means) == 1:  # no spread to show: never "± 0"
            row.append("single seed")
        else:
            row.append(f"{np.mean(seed_means):.4f} ± {np.std(seed_means, ddof=1):.4f} "
                       f"({len(seed_means)}: {', '.join(f'{v:.4f}' for v in seed_means)})")
        row.append(_seconds(runs.mean_of("timing", "fit_seconds")))
        row.append(_seconds(runs.mean_of("timing", "inference_seconds")))
        row.append(_params(runs.mean_of("parameters", "trainable")))
        row.append(runs.results[0]["training"]["stop_reason"])
        rows.append(row)
    headers = ["method", *[f"{m} [95% CI]" if m in with_ci else m for m in METRICS],
               "NDCG@10 over seeds: mean ± std (n: per seed)", "fit s", "infer s", "trainable", "stopped by"]
    return [tabulate(rows, headers, tablefmt="pipe", disable_numparse=True), ""]


def _slice_table(c: Comparison, slice_means: dict[str, dict[str, tuple]]) -> list[str]:
    """The headline metric per slice bucket, with CIs and marks against the reference."""
    rows = []
    for name in c.order:
        row = [name]
        for label, _, mask in c.slices:
            if label not in slice_means[name]:
                row.append("n/a")
                continue
            mean, lo, hi = slice_means[name][label]
            mark = _mark(c.tests(HEADLINE, mask, label).get(name))
            row.append(f"{mean:.4f} [{lo:.4f}, {hi:.4f}]{mark}")
        rows.append(row)
    headers = ["method", *[header for _, header, _ in c.slices]]
    return [f"### Slices ({HEADLINE}, 95% CI; n = test cases in the slice)", "",
            tabulate(rows, headers, tablefmt="pipe", disable_numparse=True), ""]


def _significance(c: Comparison) -> list[str]:
    """Difference, interval and Holm-corrected p-values of every method against the slice's
    reference: the rule's test first, the user-level tests as supplementary columns."""
    if not c.reference:
        return []
    rows = []
    for label, _, mask in [("all", "", None), *c.slices]:
        tests = c.tests(HEADLINE, mask, label)
        for name in c.order:
            if name in tests:
                t = tests[name]
                lo, hi = t["diff_ci95"]
                rows.append([label, name, c.reference_for(label), f"{t['family']} ({t['m']})",
                             "x".join(map(str, t["seeds"])),
                             f"{t['mean_diff']:+.4f} [{lo:+.4f}, {hi:+.4f}]",
                             "n/a" if not np.isfinite(t["mde"]) else f"{t['mde']:.4f}",
                             f"**{_p(t['p_holm'])}**", _p(t['t_p_holm']),
                             _p(t['wilcoxon_p_holm'])])
    headers = ["slice", "method", "against", "family (m)", "seeds", "Δ [95% CI]",
               "MDE (80%, α/m)", "seed-aware p (Holm): the rule", "t-test p (Holm)",
               "Wilcoxon p (Holm)"]
    return [f"### Paired tests against {c.reference} ({HEADLINE}, Holm within each family and "
            "slice; cold slices against `random`)",
            "",
            "The rule is the seed-aware test (users and training seeds as random effects; on "
            "cold slices against `random`, with target items as clusters); its interval is "
            "D ± t(df)·se. m counts the family's listed members (the profile's `families`), "
            "tested or not. MDE: the smallest difference the rule detects with 80% power at "
            "α / m; \"not significant\" with an MDE larger than the effects that matter means "
            "the test could not have seen them, not that there is no effect. The paired t-test "
            "and Wilcoxon test over users on seed means ignore training randomness and decide "
            "nothing.", "",
            tabulate(rows, headers, tablefmt="pipe", disable_numparse=True), ""]


def _plots(dataset: str, protocol: str, c: Comparison, slice_means: dict[str, dict[str, tuple]],
           plot_dir: Path, report_dir: Path) -> list[str]:
    """Bar charts of the headline metric overall and by slice, linked from the report."""
    overall = {}
    for name in c.order:
        v = c.methods[name].per_user(HEADLINE)
        overall[name] = (float(v.mean()), *c.ci(v))
    by_slice: dict[str, dict[str, tuple]] = {}
    for name in c.order:
        for label, value in slice_means[name].items():
            by_slice.setdefault(label, {})[name] = value
    paths = [plot_overall(plot_dir / f"{dataset}_{protocol}_ndcg10.png", overall,
                           f"{dataset} {protocol}: {HEADLINE} (95% CI)"),
             plot_slices(plot_dir / f"{dataset}_{protocol}_slices.png", by_slice, c.order,
                          f"{dataset} {protocol}: {HEADLINE} by slice")]
    lines: list[str] = []
    for p in paths:
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
    per_seed = {name: np.stack([ranks_from_table(t)[mask] for t in methods[name].tables])
                for name in order}
    ranks = {name: r.mean(axis=0) for name, r in per_seed.items()}
    floor = "random" if "random" in methods else reference
    # The rule on the full rank (score methods only: a list method has no rank past K).
    scored = {n: -r for n, r in per_seed.items() if methods[n].list_length is None}
    targets = table0["target_item_id"].to_numpy()[mask]
    tests = compare(scored, floor, None, targets) if floor in scored else {}
    rows = []
    for name in order:
        r, k = ranks[name], methods[name].list_length
        median = float(np.median(r))
        t = tests.get(name)
        rows.append([name, _fmt(float((r <= 20).mean()), 3),
                     "n/a" if k is not None and k < 100 else _fmt(float((r <= 100).mean()), 3),
                     f"> {k}" if not np.isfinite(median) else f"{median:.0f}",
                     f"{-t['mean_diff']:+.0f}" if t else "", _p(t["p_holm"]) if t else ""])
    return [f"### Cold targets in depth (n={int(mask.sum())}; rank among all candidates)", "",
            f"Mean rank change against `{floor}` and its p by the rule (target items as "
            "clusters, Holm over the methods shown) are for score methods, whose every rank is "
            "known.", "",
            tabulate(rows, ["method", "HR@20", "HR@100", "median rank",
                            f"mean rank Δ vs {floor} (- = higher)", "p (Holm)"],
                     tablefmt="pipe", disable_numparse=True), ""]
