"""Statistics on per-user metric values: bootstrap CIs, paired tests, Holm correction (the
building blocks; the verdict rule that uses them is benchmark.comparisons).

- CI: 95% percentile bootstrap of the mean (``scipy.stats.bootstrap``), seeded; a constant
  sample (an all-zero slice, say) gives the degenerate interval [c, c] instead of NaN.
- Paired tests of a method against the reference on the same users: ``scipy.stats.ttest_rel``
  and ``scipy.stats.wilcoxon``; all-zero differences give p = 1 (no evidence of a difference).
- Holm correction (:func:`holm`) within each family of methods fixed in advance in the
  profile (``families:``), per (dataset, protocol, slice, metric). Holm's m is the number of
  the family's listed members (the reference excluded): a member without results counts as an
  untested p = 1, so results arriving for one method never change another family's p-values.
  Methods that no family lists are corrected together in the family ``unlisted``.
- The paired tests take per-user values averaged over seeds; they are supplementary (the
  seed-aware test of benchmark.seed_test decides).
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
