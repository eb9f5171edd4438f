"""Statistics on per-user metric values: bootstrap CIs, paired tests, Holm correction.

- CI: 95% percentile bootstrap of the mean (``scipy.stats.bootstrap``), seeded; a constant
  sample (an all-zero slice, say) gives the degenerate interval [c, c] instead of NaN.
- Paired tests of a method against the reference on the same users: ``scipy.stats.ttest_rel``
  and ``scipy.stats.wilcoxon``; all-zero differences give p = 1 (no evidence of a difference).
- Holm correction (:func:`holm`) within each family of methods fixed in advance in the
  profile (``families:``), per (dataset, protocol, slice, metric). Holm's m is the number of
  the family's listed members (the reference excluded): a member without results counts as an
  untested p = 1, so results arriving for one method never change another family's p-values.
  Methods that no family lists are corrected together in the family ``unlisted``.
- Each comparison carries the paired mean difference with its 95% bootstrap CI and the minimum
  detectable difference (MDE) of the paired t-test at 80% power and level alpha / m, so "not
  significant" (an effect below the MDE may exist) and "no effect" can be told apart.
- With several seeds, per-user values are averaged over seeds before any test.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats


def bootstrap_ci(values: np.ndarray, *, seed: int = 0, n_resamples: int = 1000,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return (math.nan, math.nan)
    if np.all(x == x[0]):
        return (float(x[0]), float(x[0]))
    res = stats.bootstrap((x,), np.mean, n_resamples=n_resamples, confidence_level=level,
                          method="percentile", random_state=np.random.default_rng(seed),
                          vectorized=True)
    return (float(res.confidence_interval.low), float(res.confidence_interval.high))


def paired_tests(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Two-sided p-values of paired t-test and Wilcoxon signed-rank for a vs b (same users)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in shape: {a.shape} vs {b.shape}")
    diff = a - b
    if len(diff) < 2 or np.all(diff == 0):
        return {"t_p": 1.0, "wilcoxon_p": 1.0, "mean_diff": float(diff.mean()) if len(diff) else 0.0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        t_p = stats.ttest_rel(a, b).pvalue
        if np.all(diff == diff[0]):
            t_p = 0.0  # a constant non-zero difference: the t statistic is infinite
    w_p = stats.wilcoxon(a, b, zero_method="wilcox").pvalue
    return {
        "t_p": float(t_p) if np.isfinite(t_p) else 1.0,
        "wilcoxon_p": float(w_p) if np.isfinite(w_p) else 1.0,
        "mean_diff": float(diff.mean()),
    }


def holm(pvalues: list[float]) -> list[float]:
    """Holm-adjusted p-values (same order): the k-th smallest of m is multiplied by m - k + 1,
    made non-decreasing, capped at 1. The same values as statsmodels'
    ``multipletests(method="holm")`` (a test checks it), without its ``gc.collect()`` on every
    call, which made up most of a report's time."""
    if not len(pvalues):
        return []
    p = np.asarray(pvalues, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    m = len(p)
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out = np.empty(m)
    out[order] = adjusted
    return [float(x) for x in out]


def holm_family(pvalues: dict[str, float], members: int) -> dict[str, float]:
    """Holm-adjusted p-values of the tested members of a family of ``members`` hypotheses; the
    untested members count as p = 1 (they raise m, never lower another's p)."""
    if members < len(pvalues):
        raise ValueError(f"a family of {members} members cannot hold {len(pvalues)} tests")
    names = list(pvalues)
    padded = [pvalues[n] for n in names] + [1.0] * (members - len(names))
    return dict(zip(names, holm(padded)[:len(names)]))


def min_detectable_difference(diff: np.ndarray, alpha: float, power: float = 0.8) -> float:
    """Smallest mean paired difference a two-sided paired t-test at level ``alpha`` detects
    with probability ``power``, given the spread of the observed differences:
    (t_{1-alpha/2} + t_{power}) * sd / sqrt(n), with n - 1 degrees of freedom."""
    d = np.asarray(diff, dtype=np.float64)
    n = len(d)
    if n < 2:
        return math.inf
    df = n - 1
    t = stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)
    return float(t * d.std(ddof=1) / math.sqrt(n))


def compare_to_reference(per_user: dict[str, np.ndarray], reference: str,
                         families: dict[str, list[str]] | None = None, *, alpha: float = 0.05,
                         seed: int = 0, n_resamples: int = 1000) -> dict[str, dict]:
    """Paired tests of every method against ``reference``, Holm-corrected within its family.

    ``per_user`` maps method -> per-user values (seeds already averaged), aligned by user.
    ``families`` maps a family name to its listed members (None: one family of the methods
    present, the old behaviour). Each result holds ``family``, ``m``, ``mean_diff`` with its
    ``diff_ci95``, ``mde`` (80% power at alpha / m), raw and Holm-adjusted p-values.
    """
    others = [m for m in per_user if m != reference]
    raw = {m: paired_tests(per_user[m], per_user[reference]) for m in others}
    groups = family_groups(others, reference, families)
    out = {}
    for family, (members, tested) in groups.items():
        t_adj = holm_family({m: raw[m]["t_p"] for m in tested}, members)
        w_adj = holm_family({m: raw[m]["wilcoxon_p"] for m in tested}, members)
        for m in tested:
            diff = np.asarray(per_user[m], np.float64) - np.asarray(per_user[reference], np.float64)
            lo, hi = bootstrap_ci(diff, seed=seed, n_resamples=n_resamples)
            out[m] = dict(raw[m], t_p_holm=t_adj[m], wilcoxon_p_holm=w_adj[m], family=family,
                          m=members, diff_ci95=[lo, hi],
                          mde=min_detectable_difference(diff, alpha / members))
    return out


def family_groups(methods: list[str], reference: str, families: dict[str, list[str]] | None
                  ) -> dict[str, tuple[int, list[str]]]:
    """{family: (m, the methods of ``methods`` it holds)}; m counts its listed members other
    than the reference. Methods no family lists form ``unlisted`` (m = how many there are)."""
    if families is None:
        return {"all": (len(methods), list(methods))} if methods else {}
    out: dict[str, tuple[int, list[str]]] = {}
    listed: set[str] = set()
    for family, members in families.items():
        members = [m for m in dict.fromkeys(members) if m != reference]
        listed.update(members)
        tested = [m for m in methods if m in members]
        if tested:
            out[family] = (len(members), tested)
    unlisted = [m for m in methods if m not in listed]
    if unlisted:
        out["unlisted"] = (len(unlisted), unlisted)
    return out


def hierarchical_bootstrap(a: np.ndarray, b: np.ndarray, *, seed: int = 0,
                           n_resamples: int = 1000) -> dict[str, float]:
    """Difference of means of method ``a`` over method ``b`` with users *and* training seeds
    resampled: ``a`` is [seeds_a, users], ``b`` is [seeds_b, users], users aligned.

    Each replicate draws n users with replacement (the same users for both methods: the
    comparison stays paired) and, for each method on its own, as many seeds as it has with
    replacement; the replicate's difference is the mean over the drawn users of a's mean over
    its drawn seeds minus b's. So the interval widens with the seed-to-seed spread of training,
    which a per-user test on seed-averaged values ignores. Returns the observed difference, the
    95% percentile interval and a two-sided p-value: twice the smaller tail share of
    replicates at or beyond zero, each tail counted as (k + 1) / (n_resamples + 1) so that a
    bootstrap never reports p = 0 (its resolution is 1 / n_resamples; Phipson & Smyth, 2010),
    at most 1; 1 when every replicate is 0.
    """
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"users differ: {a.shape[1]} vs {b.shape[1]}")
    rng = np.random.default_rng(seed)
    n = a.shape[1]
    diffs = np.empty(n_resamples)
    for r in range(n_resamples):
        users = rng.integers(0, n, n)
        sa = rng.integers(0, len(a), len(a))
        sb = rng.integers(0, len(b), len(b))
        diffs[r] = a[np.ix_(sa, users)].mean() - b[np.ix_(sb, users)].mean()
    observed = float(a.mean() - b.mean())
    if np.all(diffs == 0):
        return {"diff": observed, "ci95": [0.0, 0.0], "p": 1.0}
    tail = min(int((diffs <= 0).sum()), int((diffs >= 0).sum()))
    p = min(1.0, 2 * (tail + 1) / (n_resamples + 1))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return {"diff": observed, "ci95": [float(lo), float(hi)], "p": p}
