"""Statistics on per-user metric values: bootstrap CIs, paired tests, Holm correction.

- CI: 95% percentile bootstrap of the mean (``scipy.stats.bootstrap``), seeded; a constant
  sample (an all-zero slice, say) gives the degenerate interval [c, c] instead of NaN.
- Paired tests of a method against the reference on the same users: ``scipy.stats.ttest_rel``
  and ``scipy.stats.wilcoxon``; all-zero differences give p = 1 (no evidence of a difference).
- Holm correction (``statsmodels``) within each family: (dataset, protocol, slice, metric),
  i.e. across the methods compared with the reference.
- With several seeds, per-user values are averaged over seeds before any test.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests


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
    """Holm-adjusted p-values (same order)."""
    if not pvalues:
        return []
    return [float(p) for p in multipletests(pvalues, method="holm")[1]]


def compare_to_reference(per_user: dict[str, np.ndarray], reference: str
                         ) -> dict[str, dict[str, float]]:
    """Paired tests of every method against ``reference``, Holm-corrected across methods.

    ``per_user`` maps method -> per-user values (seeds already averaged), aligned by user.
    """
    others = [m for m in per_user if m != reference]
    raw = {m: paired_tests(per_user[m], per_user[reference]) for m in others}
    t_adj = holm([raw[m]["t_p"] for m in others])
    w_adj = holm([raw[m]["wilcoxon_p"] for m in others])
    out = {}
    for m, t, w in zip(others, t_adj, w_adj):
        out[m] = dict(raw[m], t_p_holm=t, wilcoxon_p_holm=w)
    return out
