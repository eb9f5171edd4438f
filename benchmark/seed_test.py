"""The seed-aware test that decides every verdict: users and training seeds as random effects.

A comparison of method A (``S_a`` seeds) with method B (``S_b`` seeds) on the same ``n`` users
estimates D = mean(A) - mean(B). Two things make D vary from one replication of the experiment
to the next: which users were drawn, and which training seeds. The test is a t-test on D whose
standard error carries both:

- user part: the variance over users of the seed-averaged paired differences d_u, over n
  (n - 1 degrees of freedom);
- seed part: for each method with two or more seeds, the variance of its per-seed means over
  S. Each per-seed mean also holds that seed's user-level noise, which the user part counts
  already: counted twice, it makes the test conservative, never liberal. A method with one
  seed, or whose seeds all give the same ranks (the deterministic baselines), adds none;
- t = D / sqrt(user part + seed parts) on Satterthwaite's degrees of freedom, with the seed
  parts taken together on Hsu's conservative min(S) - 1 (the Behrens-Fisher problem of a few
  seeds per side: Welch's estimate of the degrees of freedom is liberal there).

With 3 seeds the seed part has 2 degrees of freedom, so a comparison whose seeds disagree is
judged on few degrees of freedom. Resampling 3 seeds with replacement (10 distinct draws)
understates their variance by about a third, which made the users x seeds bootstrap
anti-conservative. ``tests/test_seed_test.py`` checks the false-positive rate by simulation at
3 vs 3 and 5 vs 3 seeds, with seed variance as large as the largest in ``results/``, and
reports the power (the rate stays under alpha across seed variances from 0 to 5 times that;
the price is power: the seed-aware test needs a larger difference than a test that ignores
seeds, as it should).

No resampling decides anything, so no verdict depends on a random seed; bootstrap intervals
stay descriptive (benchmark.statistics). Vectorised over many comparisons at once.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def seed_aware_test(a: np.ndarray, b: np.ndarray, clusters: np.ndarray | None = None
                    ) -> dict[str, float]:
    """Two-sided test of mean(a) = mean(b); ``a`` is [S_a, n], ``b`` [S_b, n], users aligned.

    With ``clusters`` (one label per user, e.g. the target item) the user part is
    cluster-robust: the squared sums of the centred differences within each cluster, over n^2
    (times k / (k - 1)), on k - 1 degrees of freedom. Returns ``diff`` (D), ``se``, ``df``,
    ``p`` and the variance parts (``var_users``, ``var_seeds_a``, ``var_seeds_b``), and
    ``clusters`` (k) where given. All-equal values give p = 1.
    """
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"users differ: {a.shape[1]} vs {b.shape[1]}")
    out = {k: float(v[0]) for k, v in _test(a[None], b[None], clusters).items()}
    if clusters is not None:
        out["clusters"] = len(np.unique(np.asarray(clusters)))
    return out


def seed_aware_pvalues(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """p-values of many comparisons at once: ``a`` is [R, S_a, n], ``b`` [R, S_b, n]."""
    return _test(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))["p"]


def _user_part(d: np.ndarray, clusters: np.ndarray | None) -> tuple[np.ndarray, int]:
    """The user part of the variance of D for [R, n] differences, and its degrees of freedom."""
    n = d.shape[1]
    if clusters is not None:
        _, groups = np.unique(np.asarray(clusters), return_inverse=True)
        k = int(groups.max()) + 1 if n else 0
        if k >= 2:
            centred = d - d.mean(axis=1, keepdims=True)
            sums = np.stack([np.bincount(groups, weights=row, minlength=k) for row in centred])
            return (sums**2).sum(axis=1) / n**2 * k / (k - 1), k - 1
    if n < 2:
        return np.zeros(len(d)), 1
    return d.var(axis=1, ddof=1) / n, n - 1


def _test(a: np.ndarray, b: np.ndarray, clusters: np.ndarray | None = None
          ) -> dict[str, np.ndarray]:
    """The test of the module docstring over R comparisons ([R, S, n] each)."""
    n = a.shape[2]
    d = a.mean(axis=1) - b.mean(axis=1)
    diff = d.mean(axis=1)
    v_user, user_df = _user_part(d, clusters)
    v_seeds = [x.mean(axis=2).var(axis=1, ddof=1) / x.shape[1] if x.shape[1] > 1
               else np.zeros(len(x)) for x in (a, b)]
    v_seed = v_seeds[0] + v_seeds[1]
    seed_df = min([x.shape[1] for x in (a, b) if x.shape[1] > 1], default=2) - 1
    var = v_user + v_seed
    with np.errstate(divide="ignore", invalid="ignore"):
        df = var**2 / (v_user**2 / user_df + v_seed**2 / seed_df)
        t = np.abs(diff) / np.sqrt(var)
        p = 2 * stats.t.sf(t, df)
    p = np.where(var > 0, p, np.where(diff == 0, 1.0, 0.0))
    if n < 2:
        p = np.ones(len(d))
    return {"diff": diff, "se": np.sqrt(var), "df": df, "p": p, "var_users": v_user,
            "var_seeds_a": v_seeds[0], "var_seeds_b": v_seeds[1]}
