"""REPORT.md from result files alone.

Every number is recomputed from the per-user files (ranks) and the JSON beside each (list length
for ranking methods, timings, parameters, diagnostics); nothing is read from logs or caches.
A file that cannot be trusted (see :func:`benchmark.results.read_run` and
:mod:`benchmark.result_checks`: ranks possible for the run, metrics equal to its JSON's), whose
settings that change what a metric means differ from its table's, or whose users differ from
those most files of its (dataset, protocol) hold, stops the report with an error naming it;
``lenient=True`` skips it instead, warns on stderr and lists it in the report.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from benchmark import registry
from benchmark.cache import atomic_write_text
from benchmark.code_status import code_status
from benchmark.comparisons import ALPHA, compare, verdict
from benchmark.config import PROFILES
from benchmark.errors import BenchmarkError
from benchmark.evaluation import HEADLINE, METRICS
from benchmark.plots import plot_curves, plot_overall, plot_slices
from benchmark.populations import configured, split_populations, superseded_section
from benchmark.result_checks import check_table, majority
from benchmark.results import MethodRuns, Skipped, load_results, load_tuning, ranks_from_table
from benchmark.settings import DEFAULT_RESULTS_DIR, HarnessSettings, harness_settings
from benchmark.statistics import bootstrap_ci

PROTOCOL_TITLES = {"loo": "leave-one-out (`loo`)", "cold_item": "cold-start items (`cold_item`)"}
COLD_LABELS = ("cold_item=cold", "cold_item=cold_valid")
SLICE_COLUMNS = {"history_bucket": ("short", "medium", "long"),
                 "popularity_bucket": ("head", "torso", "tail"),
                 "tied_target": (True, False),
                 "cold_item": (True, False)}


def _fmt(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _mark(test: dict | None) -> str:
    """▲ / ▼: better / worse than the reference by the one rule (benchmark.comparisons)."""
    return {1: " ▲", -1: " ▼", 0: ""}[verdict(test)]


def _seconds(x: float | None) -> str:
    return "n/a" if x is None else (f"{x:.1f}" if x < 100 else f"{x:.0f}")


def _params(n: float | None) -> str:
    if not n:
        return "0"
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{int(n):,}"


def _choose_reference(methods: dict[str, MethodRuns], preferred: str, fallback: str) -> str | None:
    if preferred in methods:
        return preferred
    return fallback if fallback in methods else None


def _slice_masks(table0: pd.DataFrame) -> list[tuple[str, str, np.ndarray]]:
    """(label, column header, mask) of every slice bucket present in a per-user file.

    Under ``cold_item``: ``cold`` (target in C), ``cold_valid`` (target in the cold-validation
    set C_v, when the file has that column) and ``warm`` (neither).
    """
    out = []
    for column, buckets in SLICE_COLUMNS.items():
        if column not in table0 or table0[column].isna().all():
            continue
        if column == "cold_item":
            out += _cold_masks(table0)
            continue
        for bucket in buckets:
            mask = (table0[column].astype(str) == str(bucket)).to_numpy()
            if column == "tied_target":
                bucket = "tied" if bucket else "untied"
            out.append((f"{column}={bucket}", f"{bucket} (n={int(mask.sum())})", mask))
    return out


def slice_columns(methods: dict[str, MethodRuns]) -> pd.DataFrame:
    """The slice columns of a (dataset, protocol), each taken from the first per-user file that
    fills it. Every file holds the same test cases in the same order (:func:`_same_users`), so
    a column a newer runner writes (``tied_target``, ``cold_valid``) serves the older files
    beside it."""
    tables = [t for runs in methods.values() for t in runs.tables]
    out = tables[0].copy()
    for column in (*SLICE_COLUMNS, "cold_valid"):
        for table in tables:
            if column in table and not table[column].isna().all():
                out[column] = table[column].to_numpy()
                break
    return out


def _is_true(table0: pd.DataFrame, column: str) -> np.ndarray:
    if column not in table0:
        return np.zeros(len(table0), dtype=bool)
    return (table0[column].astype(str) == "True").to_numpy()


def _cold_masks(table0: pd.DataFrame) -> list[tuple[str, str, np.ndarray]]:
    cold, cold_valid = _is_true(table0, "cold_item"), _is_true(table0, "cold_valid")
    buckets = [("cold", cold)]
    if "cold_valid" in table0 and not table0["cold_valid"].isna().all():
        buckets.append(("cold_valid", cold_valid))
    buckets.append(("warm", ~cold & ~cold_valid))
    return [(f"cold_item={label}", f"{label} (n={int(mask.sum())})", mask)
            for label, mask in buckets]


def _users(table: pd.DataFrame) -> tuple[tuple[str, str], ...]:
    """The test cases of a per-user file: (user, target item) pairs in user order."""
    return tuple(zip(table["user_id"], table["target_item_id"]))


def _same_users(methods: dict[str, MethodRuns], settings: HarnessSettings, lenient: bool,
                skipped: list[Skipped]) -> dict[str, MethodRuns]:
    """The methods (and seeds) whose per-user files hold the table's test cases; any other file
    is an error, or, with ``lenient``, skipped. Per-user values are paired by position, so a
    file on other users would compare different test cases. The table's test cases are those
    most files hold, the reference's on a tie (:func:`benchmark.result_checks.majority`)."""
    reference = _choose_reference(methods, settings.reference, settings.fallback_reference)
    files = [(path, _users(table), name == reference) for name, runs in methods.items()
             for path, table in zip(runs.paths, runs.tables)]
    users = majority([u for _, u, _ in files], [ref for *_, ref in files])
    ref_path = next(p for p, u, _ in sorted(files, key=lambda f: not f[2]) if u == users)
    ref_name = f"{ref_path.parent.name}/{ref_path.name}"
    split = next(r.get("split_hash") for ms in methods.values()
                 for r, p in zip(ms.results, ms.paths) if p == ref_path)
    kept: dict[str, MethodRuns] = {}
    for name, runs in methods.items():
        keep = MethodRuns(name)
        for result, table, path in zip(runs.results, runs.tables, runs.paths):
            if _users(table) == users and result.get("split_hash") != split:
                # Same test cases, other training data or histories (an older split rule):
                # the rows would compare methods trained on different data.
                why = (f"its split `{result.get('split_hash')}` is not the split `{split}` of "
                       f"{ref_name}; rerun it (methods of one dataset and protocol must share "
                       "one split)")
                if not lenient:
                    raise BenchmarkError(f"{path}: {why} (`report --lenient` skips such files)")
                skipped.append(Skipped(path, why))
                continue
            if _users(table) == users:
                keep.results.append(result)
                keep.tables.append(table)
                keep.paths.append(path)
                continue
            ours, theirs = set(table["user_id"]), {u for u, _ in users}
            differ = (f"{len(ours - theirs)} of its {len(ours)} users are not among the "
                      f"{len(theirs)} users of {ref_name}" if ours != theirs else
                      f"its users are those of {ref_name}, but {len(set(_users(table)) - set(users))} "
                      "target items differ (another split?)")
            why = (f"{differ}; methods of one dataset and protocol must be evaluated on the same "
                   "test cases")
            if not lenient:
                raise BenchmarkError(f"{path}: {why} (`report --lenient` skips such files)")
            skipped.append(Skipped(path, why))
        if keep.results:
            kept[name] = keep
    return kept


@dataclass
class Comparison:
    """The methods of one (dataset, protocol), in leaderboard order, and what they are tested
    against (every method holds the same users: see :func:`_same_users`)."""

    methods: dict[str, MethodRuns]
    reference: str | None
    order: list[str]
    slices: list[tuple[str, str, np.ndarray]]
    settings: HarnessSettings
    _tests: dict = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, methods: dict[str, MethodRuns], settings: HarnessSettings) -> Comparison:
        reference = _choose_reference(methods, settings.reference, settings.fallback_reference)
        order = sorted(methods, key=lambda n: -(methods[n].per_user(HEADLINE).mean()))
        return cls(methods, reference, order, _slice_masks(slice_columns(methods)), settings)

    def ci(self, values: np.ndarray) -> tuple[float, float]:
        """95% bootstrap CI of the mean, with the profile's resamples and seed."""
        return bootstrap_ci(values, seed=self.settings.bootstrap_seed,
                            n_resamples=self.settings.bootstrap_resamples)

    def tests(self, metric: str, mask: np.ndarray | None = None, label: str = "all"
              ) -> dict[str, dict]:
        """Paired tests of every method against the reference on ``metric`` (Holm-corrected)."""
        key = (metric, label)
        if key not in self._tests:
            self._tests[key] = self._compare(metric, mask, label)
        return self._tests[key]

    def reference_for(self, label: str) -> str | None:
        """The reference of a slice: `random` on cold targets (where an ID model scores 0 by
        construction), the table's reference elsewhere."""
        if label in COLD_LABELS and "random" in self.methods:
            return "random"
        return self.reference

    def _compare(self, metric: str, mask: np.ndarray | None, label: str = "all"
                 ) -> dict[str, dict]:
        reference = self.reference_for(label)
        if reference is None:
            return {}
        per_seed = {}
        for name, runs in self.methods.items():
            v = runs.per_seed(metric, mask)
            if v is not None and v.shape[1]:
                per_seed[name] = v
        clusters = None
        if label in COLD_LABELS:  # cold cases cluster on items
            targets = slice_columns(self.methods)["target_item_id"].to_numpy()
            clusters = targets if mask is None else targets[mask]
        return compare(per_seed, reference, self.settings.families or None, clusters)

    def slice_means_of(self, mask: np.ndarray) -> dict[str, float]:
        """{method: mean of the headline metric over ``mask``}."""
        out = {}
        for name, runs in self.methods.items():
            v = runs.per_user(HEADLINE, mask)
            if v is not None and len(v):
                out[name] = float(v.mean())
        return out

    def slice_means(self, name: str) -> dict[str, tuple[float, float, float]]:
        """{slice label: (mean, CI low, CI high)} of the headline metric."""
        out = {}
        for label, _, mask in self.slices:
            v = self.methods[name].per_user(HEADLINE, mask)
            if v is not None and len(v):
                out[label] = (float(v.mean()), *self.ci(v))
        return out


def _section(dataset: str, protocol: str, methods: dict[str, MethodRuns], plot_dir: Path,
             report_dir: Path, settings: HarnessSettings) -> list[str]:
    """One (dataset, protocol): header, leaderboard, slices, cold depth, paired tests, plots."""
    c = Comparison.of(methods, settings)
    table0 = slice_columns(methods)
    slice_means = {name: c.slice_means(name) for name in c.order}
    code = code_status(r for runs in methods.values() for r in runs.results).lines()
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


def _verdict(test: dict) -> str:
    """The one rule (benchmark.comparisons), in words."""
    return {1: "significantly better than", -1: "significantly worse than",
            0: "not significantly different from"}[verdict(test)]


def _p(value: float) -> str:
    """A p-value to 3 significant digits, or more where 3 would put it on the other side of
    ALPHA (0.04995 must not print as 0.05 beside "significant")."""
    text = f"{value:.3g}"
    digits = 3
    while digits < 8 and (float(text) < ALPHA) != (value < ALPHA):
        digits += 1
        text = f"{value:.{digits}g}"
    return text


def _claim(name: str, test: dict, reference: str) -> str:
    lo, hi = test["diff_ci95"]
    mde = test["mde"]
    tail = "" if verdict(test) or not np.isfinite(mde) else (
        f"; the test could detect {mde:.4f} at 80% power")
    seeds = "x".join(map(str, test["seeds"]))
    items = f", {test['clusters']} target items as clusters" if test.get("clusters") else ""
    return (f"`{name}` is {_verdict(test)} `{reference}` (Δ {test['mean_diff']:+.4f}, 95% CI "
            f"[{lo:+.4f}, {hi:+.4f}], seed-aware test on {seeds} seeds{items}: Holm p = "
            f"{_p(test['p_holm'])}, family {test['family']} of {test['m']}{tail})")


def _findings(found: dict, settings: HarnessSettings) -> list[str]:
    """Sentences computed from the results by the one rule of benchmark.comparisons: what
    README may quote."""
    lines: list[str] = []
    for (dataset, protocol), methods in sorted(found.items(),
                                               key=lambda kv: (kv[0][0], kv[0][1] != "loo")):
        c = Comparison.of(methods, settings)
        if not c.reference:
            continue
        best = c.order[0]
        v = methods[best].per_user(HEADLINE)
        lo, hi = c.ci(v)
        out = [f"- Best {HEADLINE}: `{best}`, {v.mean():.4f} [{lo:.4f}, {hi:.4f}]"
               f"{' (the reference)' if best == c.reference else ''}."]
        tests = c.tests(HEADLINE)
        for name in c.order:
            if name in tests and tests[name]["family"] == "main":
                out.append(f"- {_claim(name, tests[name], c.reference)}.")
        floor = _against_popularity(c, settings)
        if floor:
            out.append(floor)
        for label, _, mask in c.slices:
            if label != "cold_item=cold":
                continue
            means = c.slice_means_of(mask)
            hits = [n for n in c.order if means.get(n, 0.0) > 0]
            n = int(mask.sum())
            if not hits:
                out.append(f"- Cold targets (n = {n}): no method puts one in the top 10.")
                continue
            top = max(hits, key=lambda m: means[m])
            cold_tests = c.tests(HEADLINE, mask, label)
            floor = c.reference_for(label)
            sentence = (f"- Cold targets (n = {n}): {len(hits)} of {len(c.order)} methods put "
                        f"one in the top 10 ({', '.join(f'`{h}`' for h in hits)}); best "
                        f"`{top}`, {HEADLINE} {means[top]:.4f} against {means.get(floor, 0.0):.4f}"
                        f" for `{floor}`")
            if top in cold_tests:
                sentence += f": {_claim(top, cold_tests[top], floor)}"
            above = [h for h in hits if h != top and verdict(cold_tests.get(h)) > 0]
            if above:
                sentence += (f"; also above `{floor}` by the same test: "
                             + ", ".join(f"`{h}`" for h in above))
            out.append(sentence + ".")
        lines += [f"### {dataset}, {PROTOCOL_TITLES.get(protocol, protocol)}", "", *out, ""]
    if not lines:
        return []
    return ["## Findings", "",
            "Generated from the result files by one rule, the same that puts every ▲ / ▼ in "
            "the tables: a difference is claimed only where the seed-aware test (users and "
            "training seeds both random; `benchmark/seed_test.py`) against the reference gives "
            "a Holm-corrected p < 0.05 within the method's family (the profile's `families`). "
            "Cold targets are compared with `random`, with the target items as clusters. "
            "Methods of the `main` family are listed; the tables below have every method.",
            "", *lines]


def _against_popularity(c: Comparison, settings: HarnessSettings) -> str | None:
    """The floor every paradigm should clear: each `main`-family method (and the reference)
    against `popularity` by the one rule, Holm across those tests."""
    pop = c.methods.get("popularity")
    if pop is None:
        return None
    main = set((settings.families or {}).get("main", []))
    per_seed = {"popularity": pop.per_seed(HEADLINE)}
    for name in c.order:
        if name in main or name == c.reference:
            per_seed[name] = c.methods[name].per_seed(HEADLINE)
    tests = compare(per_seed, "popularity", None)
    if not tests:
        return None
    parts = []
    for name, t in tests.items():
        d, (lo, hi) = t["mean_diff"], t["diff_ci95"]
        word = {1: "above", -1: "below", 0: "not different"}[verdict(t)]
        parts.append(f"`{name}` {word} (Δ {d:+.4f} [{lo:+.4f}, {hi:+.4f}], p = {_p(t['p_holm'])})")
    return (f"- Against `popularity` ({HEADLINE} {per_seed['popularity'].mean():.4f}; the same "
            f"seed-aware test, Holm over these {len(tests)}): " + "; ".join(parts) + ".")


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
is n/a for them. `cold_item`: a fixed 10% of the catalogue (the cold set C; split seed
independent of model seeds) and a second, disjoint 10% (the cold-validation set C_v) lose every
interaction from training and input histories; validation cases with a target in C are dropped,
those with a target in C_v are kept and form the `cold_valid` validation slice (cold-start
settings are chosen on it); every test case is evaluated: targets in C form the `cold` slice,
targets in C_v the `cold_valid` slice, the rest `warm`. Every user of each dataset is
evaluated (a dataset YAML may instead name a uniform sample in `eval_users`; n is in every
header, and results on a superseded sample are shown apart, untested). Means with 95%
percentile-bootstrap CIs ({resamples:,} resamples in the tables, seeded) over test users.
▲ / ▼: significantly better / worse than the reference by the one rule every verdict of this
report follows: the seed-aware test (a t-test whose standard error carries the variance over
users and over training seeds, on conservative degrees of freedom; `benchmark/seed_test.py`,
its false-positive rate checked by simulation), Holm-corrected within the method's family fixed
in the profile, per dataset, protocol, slice and metric, p < 0.05. On cold slices the
reference is `random` and the target items are clusters. The paired t-test and Wilcoxon test
over users on seed means are supplementary columns; no bootstrap decides anything. Popularity buckets: items sorted by
training count, head / torso / tail hold a third of the training interactions each; history
buckets: terciles of input-history length. Times are wall-clock seconds on the hardware recorded
in each result JSON.
"""


def write_report(results_dir: Path, output: Path | None = None, lenient: bool = False) -> Path:
    """REPORT.md from the result files under ``results_dir``; a file that cannot be trusted is
    an error, or with ``lenient`` skipped (a warning on stderr and a "Skipped files" section)."""
    results_dir = Path(results_dir)
    if output is None:
        output = (registry.REPO_ROOT / "REPORT.md" if results_dir.resolve() ==
                  DEFAULT_RESULTS_DIR.resolve() else results_dir / "REPORT.md")
    loaded = load_results(results_dir, lenient=lenient)
    settings = harness_settings(_profile_of(loaded))
    skipped = loaded.skipped
    found, superseded = {}, {}
    for where, methods in loaded.runs.items():
        methods, old = split_populations(methods, configured(where[0]))
        superseded.update({(*where, label): runs for label, runs in old.items()})
        if not methods:
            continue
        reference = _choose_reference(methods, settings.reference, settings.fallback_reference)
        kept = _same_users(check_table(methods, reference, lenient, skipped), settings, lenient,
                           skipped)
        if kept:
            found[where] = kept
    for s in skipped:
        print(f"warning: skipped {s.path}: {s.why}", file=sys.stderr)
    first = next((m.results[0] for ms in found.values() for m in ms.values()), None)
    masking = "" if first is None or first["harness"]["mask_history"] else " (here: NOT masked)"
    k = first["harness"]["top_k"] if first else 20
    lines = [PREAMBLE.format(results=os.path.relpath(results_dir, output.parent), masking=masking,
                             k=k, resamples=settings.bootstrap_resamples)]
    lines += _skipped(skipped, results_dir)
    if not found:
        lines.append("No results yet: run `python -m benchmark --all`.")
    lines += _findings(found, settings)
    for (dataset, protocol), methods in sorted(found.items(), key=lambda kv: (kv[0][0], kv[0][1] != "loo")):
        lines += _section(dataset, protocol, methods, results_dir / "plots", output.parent,
                          settings)
    lines += superseded_section(superseded)
    lines += _curves(found, results_dir / "plots", output.parent)
    lines += _compute(found, settings)
    lines += _tuning(load_tuning(results_dir), found)
    lines += _steerability(found)
    lines += _diagnostics(found)
    lines += _run_table(found)
    atomic_write_text(output, "\n".join(lines).rstrip() + "\n")
    return output


def _profile_of(loaded: Any) -> str:
    """The profile whose results these are (its families, peers and resamples apply): the one
    most result files record, `default` when none does."""
    profiles = [r.get("profile") for ms in loaded.runs.values() for m in ms.values()
                for r in m.results if r.get("profile") in PROFILES]
    return max(set(profiles), key=profiles.count) if profiles else "default"


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
    seeds): the figures DESIGN.md's time budgets are stated in. A cached checkpoint counts at
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
            tabulate(rows, ["method", *datasets], tablefmt="pipe", disable_numparse=True), ""]


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
