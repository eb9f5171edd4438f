"""Statistics checked against scipy / statsmodels on fixed data."""

import numpy as np
import pytest
from scipy import stats

from benchmark.statistics import bootstrap_ci, compare_to_reference, holm, paired_tests

A = np.array([0.0, 1.0, 0.5, 0.33, 0.0, 1.0, 0.63, 0.0, 0.25, 1.0])
B = np.array([0.0, 0.5, 0.5, 0.0, 0.0, 1.0, 0.33, 0.0, 0.0, 0.63])


def test_paired_tests_match_scipy():
    res = paired_tests(A, B)
    assert res["t_p"] == pytest.approx(stats.ttest_rel(A, B).pvalue)
    assert res["wilcoxon_p"] == pytest.approx(stats.wilcoxon(A, B).pvalue)
    assert res["mean_diff"] == pytest.approx((A - B).mean())


def test_all_zero_differences_give_p_one_not_nan():
    res = paired_tests(A, A.copy())
    assert res["t_p"] == 1.0 and res["wilcoxon_p"] == 1.0
    zeros = np.zeros(20)
    assert paired_tests(zeros, zeros)["t_p"] == 1.0


def test_bootstrap_ci_is_seeded_stable_and_brackets_the_mean():
    first = bootstrap_ci(A, seed=3)
    assert first == bootstrap_ci(A, seed=3)
    assert first[0] <= A.mean() <= first[1]
    assert first != bootstrap_ci(A, seed=4)


def test_all_zero_slice_gives_zero_interval():
    assert bootstrap_ci(np.zeros(15)) == (0.0, 0.0)


def test_holm_by_hand():
    # sorted p: 0.01 (x3 = 0.03), 0.02 (x2 = 0.04), 0.04 (x1 = 0.04, monotone)
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])


def test_compare_to_reference_corrects_within_the_family():
    rng = np.random.default_rng(0)
    per_user = {"ref": B, "m1": A, "m2": B + rng.normal(0, 0.01, len(B))}
    out = compare_to_reference(per_user, "ref")
    assert set(out) == {"m1", "m2"}
    raw = [out["m1"]["t_p"], out["m2"]["t_p"]]
    assert [out["m1"]["t_p_holm"], out["m2"]["t_p_holm"]] == pytest.approx(holm(raw))
