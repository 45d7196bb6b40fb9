"""McNemar's test against its definitions (statsmodels') and scipy's binomial test."""

from __future__ import annotations

import math
import pickle
import random

import numpy as np
import pytest
from scipy import stats

from onlearn.compare import EXACT_BELOW, PairedCounts, mcnemar


@pytest.mark.parametrize("n", range(0, EXACT_BELOW))
def test_exact_p_value_is_scipy_binomtest(n):
    for b in range(n + 1):
        c = n - b
        statistic, p = mcnemar(b, c)
        assert statistic == min(b, c)
        expected = 1.0 if n == 0 else stats.binomtest(min(b, c), n, 0.5).pvalue
        assert p == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_exact_p_value_by_hand():
    # statsmodels: pvalue = min(1, 2 * binom.cdf(min(b, c), b + c, 0.5))
    b, c = 3, 15
    by_hand = 2 * sum(math.comb(18, k) for k in range(4)) / 2**18
    assert mcnemar(b, c) == (3.0, by_hand)
    assert mcnemar(c, b) == (3.0, by_hand)  # symmetric
    assert mcnemar(4, 4) == (4.0, 1.0)  # capped at 1


@pytest.mark.parametrize("b, c", [(121, 59), (59, 121), (30, 10), (13, 12), (100, 100), (0, 40)])
def test_chi_squared_with_continuity_correction_by_hand(b, c):
    statistic, p = mcnemar(b, c)
    expected = max(abs(b - c) - 1, 0) ** 2 / (b + c)
    assert statistic == pytest.approx(expected)
    # the chi-squared survival function with one degree of freedom is erfc(sqrt(x / 2))
    assert p == pytest.approx(math.erfc(math.sqrt(expected / 2)), rel=1e-9)
    assert p == pytest.approx(stats.chi2.sf(expected, 1), rel=1e-12)


def test_golden_textbook_value():
    # 121 vs 59 discordant pairs: chi2 = 61**2 / 180 = 20.672, p = 5.45e-06
    statistic, p = mcnemar(121, 59)
    assert statistic == pytest.approx(20.67222222)
    assert p == pytest.approx(5.4505e-06, rel=1e-3)


def test_exact_below_switches_the_method():
    assert mcnemar(5, 19) == mcnemar(5, 19, exact_below=25)  # 24 < 25: exact
    assert mcnemar(5, 19)[0] == 5.0
    assert mcnemar(5, 19, exact_below=10)[0] == pytest.approx(13**2 / 24)
    assert mcnemar(6, 19)[0] == pytest.approx(12**2 / 25)  # 25: chi-squared
    assert mcnemar(6, 19, exact_below=100)[0] == 6.0


def test_no_discordant_pairs_is_no_evidence():
    assert mcnemar(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3", None])
def test_counts_must_be_counts(bad):
    with pytest.raises(ValueError, match="count"):
        mcnemar(bad, 3)
    with pytest.raises(ValueError, match="count"):
        mcnemar(3, bad)


def test_paired_counts_equal_numpy_at_every_step():
    rng = random.Random(11)
    a_vec, b_vec = [], []
    paired = PairedCounts()
    for _ in range(500):
        a, b = rng.random() < 0.8, rng.random() < 0.85
        paired.update(a, b)
        a_vec.append(a)
        b_vec.append(b)
        A, B = np.array(a_vec), np.array(b_vec)
        assert paired.n == len(a_vec)
        assert paired.both == int(np.sum(A & B))
        assert paired.a_only == int(np.sum(A & ~B))
        assert paired.b_only == int(np.sum(~A & B))
        assert paired.neither == int(np.sum(~A & ~B))
    assert paired.a_accuracy == pytest.approx(np.mean(a_vec))
    assert paired.b_accuracy == pytest.approx(np.mean(b_vec))
    assert paired.test() == mcnemar(paired.a_only, paired.b_only)
    assert PairedCounts.from_correct(a_vec, b_vec) == paired


def test_paired_counts_pickle_and_report():
    paired = PairedCounts.from_correct([True, False, True, False], [True, True, False, True])
    clone = pickle.loads(pickle.dumps(paired))
    assert clone == paired and clone is not paired
    clone.update(True, True)
    assert clone.n == 5 and paired.n == 4
    report = paired.to_dict()
    assert report == {
        "n": 4,
        "both": 1,
        "a_only": 1,
        "b_only": 2,
        "neither": 0,
        "statistic": 1.0,
        "p_value": 1.0,
    }
    assert PairedCounts().a_accuracy is None
    assert "b_only=2" in repr(paired)


def test_from_correct_needs_equal_lengths():
    with pytest.raises(ValueError, match="equal lengths"):
        PairedCounts.from_correct([True], [True, False])
