"""Statistics checked against scipy / statsmodels on fixed data."""

import numpy as np
import pytest
from scipy import stats

from benchmark.comparisons import compare
from benchmark.statistics import bootstrap_ci, holm, holm_family, paired_tests

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


def test_holm_equals_statsmodels_on_random_p_values_with_ties():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(0)
    for m in (1, 2, 5, 30):
        p = np.round(rng.random(m) ** 3, 3)  # rounded: ties happen
        assert holm(list(p)) == pytest.approx(list(multipletests(p, method="holm")[1]))


def one_seed(per_user: dict) -> dict:
    """{method: [1 seed, users]}: with one seed the rule's p is the paired t-test's."""
    return {m: np.asarray(v)[None] for m, v in per_user.items()}


def test_compare_corrects_within_the_family():
    rng = np.random.default_rng(0)
    per_user = {"ref": B, "m1": A, "m2": B + rng.normal(0, 0.01, len(B))}
    out = compare(one_seed(per_user), "ref", None)
    assert set(out) == {"m1", "m2"}
    raw = [out["m1"]["p"], out["m2"]["p"]]
    assert raw[0] == pytest.approx(stats.ttest_rel(A, B).pvalue)
    assert [out["m1"]["p_holm"], out["m2"]["p_holm"]] == pytest.approx(holm(raw))


def test_holm_family_counts_untested_members_as_p_one():
    # a family of 4 with two tested: sorted p 0.01 (x4 = 0.04), 0.02 (x3 = 0.06)
    assert holm_family({"a": 0.02, "b": 0.01}, 4) == pytest.approx({"a": 0.06, "b": 0.04})
    with pytest.raises(ValueError):
        holm_family({"a": 0.1, "b": 0.2}, 1)


def test_families_fix_m_so_other_results_never_change_a_p_value():
    rng = np.random.default_rng(1)
    families = {"main": ["m1", "m2", "m3"], "baselines": ["pop"]}
    per_user = {"ref": B, "m1": A, "pop": B + rng.normal(0, 0.1, len(B))}
    first = compare(one_seed(per_user), "ref", families)
    assert first["m1"]["family"] == "main" and first["m1"]["m"] == 3
    assert first["m1"]["p_holm"] == pytest.approx(min(1, 3 * first["m1"]["p"]))
    assert first["pop"]["m"] == 1 and first["pop"]["p_holm"] == first["pop"]["p"]
    # m2 arrives: m1's p stays as it was only if m2's p is larger; pop's never moves
    per_user["m2"] = B + 0.001
    second = compare(one_seed(per_user), "ref", families)
    assert second["pop"]["p_holm"] == first["pop"]["p_holm"]
    # a method no family lists is corrected on its own
    per_user["stray"] = A
    third = compare(one_seed(per_user), "ref", families)
    assert third["stray"]["family"] == "unlisted" and third["stray"]["m"] == 1
    assert third["pop"]["p_holm"] == first["pop"]["p_holm"]


def test_difference_ci_and_mde_by_hand():
    out = compare(one_seed({"ref": B, "m": A}), "ref", {"f": ["m", "other"]})["m"]
    d = A - B
    se = d.std(ddof=1) / np.sqrt(10)
    # one seed each: the interval is D -+ t_{0.975, 9} se
    half = stats.t.ppf(0.975, 9) * se
    assert out["diff_ci95"] == pytest.approx([d.mean() - half, d.mean() + half])
    # m = 2: alpha / 2; (t_{1-0.0125, 9} + t_{0.8, 9}) * se
    assert out["mde"] == pytest.approx((stats.t.ppf(1 - 0.0125, 9) + stats.t.ppf(0.8, 9)) * se)
    assert compare(one_seed({"ref": B[:1], "m": A[:1]}), "ref", None)["m"]["mde"] == np.inf


