"""Oracle tests: every drift statistic against a direct numpy/scipy computation of the same
thing on the same histograms or samples."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon

from onlearn.drift import stats
from onlearn.errors import ConfigError

RNG = np.random.default_rng(20260101)
HISTOGRAMS = [
    (RNG.integers(0, 50, size=k), RNG.integers(0, 50, size=k)) for k in (2, 3, 5, 10, 21)
] + [
    (np.array([10, 0, 5, 0]), np.array([0, 3, 5, 0])),  # empty bins on either side, and both
    (np.array([100, 1]), np.array([0, 40])),
]


def smoothed(counts, a=0.5):
    c = np.asarray(counts, float) + a
    return c / c.sum()


@pytest.mark.parametrize(("ref", "win"), HISTOGRAMS)
def test_histogram_statistics_equal_direct_formulas(ref, win):
    p_s, q_s = smoothed(win), smoothed(ref)
    p, q = win / win.sum(), ref / ref.sum()
    assert stats.psi(ref, win) == pytest.approx(np.sum((p_s - q_s) * np.log(p_s / q_s)))
    assert stats.kl_divergence(ref, win) == pytest.approx(sps.entropy(p_s, q_s))
    assert stats.js_divergence(ref, win) == pytest.approx(
        jensenshannon(p, q, base=2) ** 2, abs=1e-12
    )
    assert stats.hellinger(ref, win) == pytest.approx(
        np.linalg.norm(np.sqrt(p) - np.sqrt(q)) / np.sqrt(2), abs=1e-12
    )
    keep = (ref + win) > 0
    expected = sps.chi2_contingency(np.vstack([ref[keep], win[keep]]), correction=False)
    stat, p_value = stats.chi2_test(ref, win)
    assert stat == pytest.approx(expected.statistic)
    assert p_value == pytest.approx(expected.pvalue)


def test_batched_statistics_equal_one_by_one():
    ref = RNG.integers(1, 40, size=(50, 7))
    win = RNG.integers(0, 40, size=(50, 7))
    batch = stats.histogram_statistics(ref, win)
    for i in range(50):
        one = stats.histogram_statistics(ref[i], win[i])
        for name in stats.HISTOGRAM_STATISTICS:
            assert batch[name][i] == pytest.approx(float(one[name]))


def test_identical_histograms_score_zero_and_kl_is_the_asymmetric_half_of_psi():
    ref = np.array([5, 10, 20])
    for name, value in stats.histogram_statistics(ref, ref).items():
        assert value == pytest.approx(0.0, abs=1e-9), name
    # unsmoothed statistics see proportions only
    for name in ("js", "hellinger", "chi2"):
        assert stats.histogram_statistics(ref, ref * 3)[name] == pytest.approx(0.0, abs=1e-9)
    win = np.array([20, 10, 5])
    assert stats.psi(ref, win) == pytest.approx(
        stats.kl_divergence(ref, win) + stats.kl_divergence(win, ref)
    )


@pytest.mark.parametrize(("m", "n", "shift"), [(300, 50, 0.0), (2000, 500, 0.3), (40, 40, 1.0)])
def test_ks_equals_scipy(m, n, shift):
    ref = np.sort(RNG.normal(size=m))
    win = RNG.normal(shift, 1, size=n)
    d, p = stats.ks_test(ref, win)
    asymp = sps.ks_2samp(ref, win, method="asymp")
    assert d == pytest.approx(asymp.statistic)
    assert p == pytest.approx(asymp.pvalue, rel=1e-9, abs=1e-15)
    exact = sps.ks_2samp(ref, win, method="exact")
    assert p == pytest.approx(exact.pvalue, rel=0.2, abs=0.01)


def test_ks_with_ties_equals_scipy():
    ref = np.sort(RNG.integers(0, 5, size=500).astype(float))
    win = RNG.integers(0, 6, size=80).astype(float)
    d, p = stats.ks_test(ref, win)
    asymp = sps.ks_2samp(ref, win, method="asymp")
    assert (d, p) == pytest.approx((asymp.statistic, asymp.pvalue))


@pytest.mark.parametrize("dist", ["normal", "ties", "tiny"])
def test_wasserstein_equals_scipy(dist):
    if dist == "normal":
        ref, win = RNG.normal(size=1000), RNG.normal(0.4, 2, size=200)
    elif dist == "ties":
        ref, win = RNG.integers(0, 4, size=300) * 1.0, RNG.integers(1, 6, size=30) * 1.0
    else:
        ref, win = np.array([1.0]), np.array([3.0, 5.0])
    expected = sps.wasserstein_distance(ref, win)
    assert stats.wasserstein(np.sort(ref), win) == pytest.approx(expected)


def test_psi_chi2_approximation_holds_by_simulation():
    """Under no drift, PSI * n * m / (n + m) is about chi-squared with bins - 1 degrees of
    freedom (the brief's approximation), here for 10 equal bins and n = 500, m = 5000."""
    rng = np.random.default_rng(7)
    k, n, m = 10, 500, 5000
    ref = rng.multinomial(m, np.full(k, 1 / k), size=4000)
    win = rng.multinomial(n, np.full(k, 1 / k), size=4000)
    scaled = stats.psi(ref, win) * n * m / (n + m)
    assert np.mean(scaled) == pytest.approx(k - 1, rel=0.05)
    assert np.quantile(scaled, 0.95) == pytest.approx(sps.chi2.ppf(0.95, k - 1), rel=0.07)
    for name in ("kl", "js", "hellinger"):
        values = stats.histogram_statistics(ref, win)[name]
        p = np.array([stats.asymptotic_p_value(name, v, n, m, k) for v in values[:1000]])
        assert np.mean(p <= 0.05) == pytest.approx(0.05, abs=0.02), name


def test_histogram_null_matches_its_simulation_and_is_continuous_in_the_tail():
    null = stats.HistogramNull([400, 300, 200, 100], n=100, seed=3)
    rng = np.random.default_rng(11)
    ref = rng.multinomial(1000, [0.4, 0.3, 0.2, 0.1], size=4000)
    win = rng.multinomial(100, [0.4, 0.3, 0.2, 0.1], size=4000)
    fresh = stats.psi(ref, win)
    threshold = null.threshold("psi", 0.05)
    assert np.mean(fresh > threshold) == pytest.approx(0.05, abs=0.012)
    assert null.p_value("psi", threshold) == pytest.approx(0.05, abs=0.003)
    # beyond the simulated values: smaller and smaller, never a flat 1 / (n + 1)
    far = [null.p_value("psi", x) for x in (0.3, 0.4, 0.6)]
    assert far[0] > far[1] > far[2] > 0
    assert null.p_value("psi", 0.0) == 1.0


def test_histogram_null_is_seeded():
    a = stats.HistogramNull([5, 10, 30], n=40, seed=(1, 2))
    b = stats.HistogramNull([5, 10, 30], n=40, seed=(1, 2))
    assert a.p_value("chi2", 3.0) == b.p_value("chi2", 3.0)


def test_a_bin_empty_in_the_reference_is_strong_evidence():
    null = stats.HistogramNull([300, 200, 0], n=100, seed=1)
    stat, _ = stats.chi2_statistic([300, 200, 0], [60, 38, 2])
    assert null.p_value("chi2", float(stat)) < 0.01
    same_shift, _ = stats.chi2_statistic([300, 200, 0], [62, 38, 0])
    assert null.p_value("chi2", float(same_shift)) > 0.3


# -- corrections -----------------------------------------------------------------------------

P_VALUES = [0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216]


def test_benjamini_hochberg_equals_scipy():
    shuffled = list(np.random.default_rng(1).permutation(P_VALUES))
    adjusted = stats.adjust_p_values(shuffled, "bh")
    assert adjusted == pytest.approx(list(sps.false_discovery_control(shuffled, method="bh")))
    # the step-up rule: reject the k smallest, k the largest with p_(k) <= k * alpha / m
    alpha = 0.05
    k = max(i + 1 for i, p in enumerate(sorted(P_VALUES)) if p <= (i + 1) * alpha / 10)
    assert sum(stats.reject(shuffled, alpha, "bh")) == k == 2


def test_holm_equals_its_step_down_definition():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max
    assert stats.adjust_p_values(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.reject(p, 0.05, "holm") == [True, False, False, True]
    assert stats.adjust_p_values(p, "bonferroni") == pytest.approx([0.04, 0.16, 0.12, 0.02])
    assert stats.adjust_p_values(p, "none") == p


def test_corrections_reject_nothing_when_nothing_is_tested_and_name_bad_methods():
    assert stats.adjust_p_values([], "bh") == []
    with pytest.raises(ConfigError, match="correction must be one of"):
        stats.adjust_p_values([0.1], "fdr")
