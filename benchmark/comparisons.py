"""Every comparison of a table against its reference, computed once, by one rule.

The rule (what every ▲/▼, Findings sentence, "against popularity" and cold-target line, and
README verdict says): the seed-aware test of :mod:`benchmark.seed_test` on per-seed, per-user
values, Holm-corrected within the method's family fixed in the profile, p < ``ALPHA``. Its 95%
interval of the difference (D ± t(df) se) is shown beside it, so an interval that excludes 0
and the raw p < 0.05 always agree. The paired t-test and Wilcoxon test over users on seed means
are kept as supplementary columns; they decide nothing. No resampling decides anything.

Cold targets cluster on items (a few cold items hold most cold cases), so comparisons on a cold
slice pass the target items as clusters: the user part of the variance is the cluster-robust
one (:func:`benchmark.seed_test.seed_aware_test`) on (items - 1) degrees of freedom, which
counts the uncertainty of which items were drawn as well as which users.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats

from benchmark.seed_test import seed_aware_test
from benchmark.statistics import family_groups, holm_family, paired_tests

ALPHA = 0.05
POWER = 0.8
WORDS = {1: "better", 0: "no difference", -1: "worse"}  # a verdict in the tables' words


def compare(per_seed: dict[str, np.ndarray], reference: str,
            families: dict[str, list[str]] | None, clusters: np.ndarray | None = None
            ) -> dict[str, dict]:
    """Every method of ``per_seed`` ({method: [seeds, users]}, users aligned) against
    ``reference``. Per method: ``mean_diff``, ``diff_ci95``, ``p`` and ``p_holm`` (the rule),
    ``family``, ``m``, ``mde`` (the smallest difference the rule detects with 80% power at
    alpha / m), ``seeds`` (this method's and the reference's), and the supplementary ``t_p`` /
    ``wilcoxon_p`` with their Holm values."""
    if reference not in per_seed:
        return {}
    ref = per_seed[reference]
    others = [m for m in per_seed if m != reference]
    raw = {}
    for name in others:
        a = per_seed[name]
        test = seed_aware_test(a, ref, clusters)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            supplementary = paired_tests(a.mean(axis=0), ref.mean(axis=0))
        raw[name] = {**test, "t_p": supplementary["t_p"],
                     "wilcoxon_p": supplementary["wilcoxon_p"], "seeds": [len(a), len(ref)]}
    out = {}
    for family, (members, tested) in family_groups(others, reference, families).items():
        adjusted = {key: holm_family({m: raw[m][key] for m in tested}, members)
                    for key in ("p", "t_p", "wilcoxon_p")}
        for name in tested:
            t = raw[name]
            out[name] = {
                "mean_diff": t["diff"], "diff_ci95": _interval(t, ALPHA), "p": t["p"],
                "p_holm": adjusted["p"][name], "family": family, "m": members,
                "mde": _mde(t, ALPHA / members), "seeds": t["seeds"], "df": t["df"],
                "t_p": t["t_p"], "t_p_holm": adjusted["t_p"][name],
                "wilcoxon_p": t["wilcoxon_p"], "wilcoxon_p_holm": adjusted["wilcoxon_p"][name],
                "clusters": t.get("clusters")}
    return out


def _interval(test: dict, alpha: float) -> list[float]:
    """D ± t_{1 - alpha/2}(df) se; [D, D] when there is no variance."""
    d, se, df = test["diff"], test["se"], test["df"]
    if not (np.isfinite(se) and se > 0 and np.isfinite(df)):
        return [d, d]
    half = float(stats.t.ppf(1 - alpha / 2, df)) * se
    return [d - half, d + half]


def _mde(test: dict, alpha: float) -> float:
    """(t_{1 - alpha/2}(df) + t_{power}(df)) se."""
    se, df = test["se"], test["df"]
    if not (np.isfinite(se) and se > 0 and np.isfinite(df)):
        return math.inf
    return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(POWER, df)) * se)


def verdict(test: dict | None) -> int:
    """+1 / -1: significantly better / worse than the reference by the rule; 0 otherwise."""
    if not test or test["p_holm"] >= ALPHA:
        return 0
    return 1 if test["mean_diff"] > 0 else -1
