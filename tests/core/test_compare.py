"""McNemar's test against its definitions (statsmodels') and scipy's binomial test."""

from __future__ import annotations

import math
import pickle
import random

import numpy as np
import pytest
from scipy import stats

from onlearn.compare import EXACT_BELOW, PairedCounts, PairedErrors, mcnemar, wilcoxon


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
        "a_accuracy": 0.5,
        "b_accuracy": 0.75,
        "test": "mcnemar",
        "statistic": 1.0,
        "p_value": 1.0,
    }
    assert PairedCounts().a_accuracy is None
    assert "b_only=2" in repr(paired)


def test_from_correct_needs_equal_lengths():
    with pytest.raises(ValueError, match="equal lengths"):
        PairedCounts.from_correct([True], [True, False])


# -- regression: Wilcoxon's signed-rank test on paired absolute errors ------------------------


def error_stream(n: int, seed: int, *, shift: float = 0.3, digits: int | None = None):
    """Absolute errors of two regressors on the same labels; ``b`` slightly closer. Rounded to
    ``digits``, many pairs tie (zero differences) and many differences share a rank."""
    rng = random.Random(seed)
    for _ in range(n):
        a, b = abs(rng.gauss(0, 1)), abs(rng.gauss(0, 1)) * (1 - shift)
        yield (round(a, digits), round(b, digits)) if digits is not None else (a, b)


def rank_sums(d: np.ndarray) -> tuple[float, float]:
    """(ranks of the differences favouring b, ranks favouring a), zeros dropped."""
    d = d[d != 0]
    ranks = stats.rankdata(np.abs(d))
    return float(ranks[d > 0].sum()), float(ranks[d < 0].sum())


@pytest.mark.parametrize("digits", [None, 1])
def test_paired_errors_test_is_scipys_wilcoxon_on_the_last_window_at_every_step(digits):
    """The oracle: at every step, the incremental comparison equals scipy's batch Wilcoxon on
    the same pairs: the most recent ``window`` of them, through the exact region (<= 50 pairs),
    the normal approximation, and after the window starts to roll."""
    window = 120
    paired = PairedErrors(window=window)
    a_all, b_all = [], []
    for i, (a, b) in enumerate(error_stream(400, seed=5, digits=digits)):
        paired.update(a, b)
        a_all.append(a)
        b_all.append(b)
        A, B = np.array(a_all[-window:]), np.array(b_all[-window:])
        d = A - B
        assert paired.n == i + 1 and paired.tested == len(d)
        assert paired.differences() == d.tolist()
        if np.any(d):
            # scipy's own choice of method, but for its permutation test (up to 13 pairs with
            # ties or zeros), which takes seconds: the normal approximation there
            ties = np.count_nonzero(d) < d.size or np.unique(np.abs(d)).size < d.size
            method = "asymptotic" if ties and d.size <= 13 else "auto"
            expected = stats.wilcoxon(d, method=method)
            assert paired.test() == (float(expected.statistic), float(expected.pvalue))
            assert paired.test()[0] == min(rank_sums(d))
        else:
            assert paired.test() == (0.0, 1.0)
        assert paired.a_mae == pytest.approx(A.mean(), rel=1e-12)
        assert paired.b_mae == pytest.approx(B.mean(), rel=1e-12)
        b_ranks, a_ranks = rank_sums(d)
        expected_side = (
            "b"
            if b_ranks > a_ranks and B.mean() < A.mean()
            else "a"
            if a_ranks > b_ranks and A.mean() < B.mean()
            else None
        )
        assert paired.favoured == expected_side
    assert paired.favoured == "b" and paired.test()[1] < 0.05


def test_wilcoxon_golden_values():
    # eight differences all favouring one side: exact p = 2 / 2**8
    assert wilcoxon([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]) == (0.0, 2 / 2**8)
    assert wilcoxon([-1.0, -2.0, -3.0, -4.0, -5.0, -6.0, -7.0, -8.0]) == (0.0, 2 / 2**8)
    assert wilcoxon([]) == (0.0, 1.0)
    assert wilcoxon([0.0] * 10) == (0.0, 1.0)  # scipy says NaN: no evidence is p = 1 here


def test_paired_errors_stay_bounded_pickle_and_resume_identically():
    window = 1000
    stream = list(error_stream(20_000, seed=9))
    paired = PairedErrors(window=window)
    for a, b in stream[:12_345]:
        paired.update(a, b)
    assert paired.n == 12_345 and paired.tested == window
    blob = pickle.dumps(paired)
    assert len(blob) < 2 * 8 * window + 1024  # two rings of 8-byte floats, whatever n is
    clone = pickle.loads(blob)
    assert clone == paired
    for a, b in stream[12_345:]:
        paired.update(a, b)
        clone.update(a, b)
    assert clone == paired and clone.to_dict() == paired.to_dict()
    assert paired.errors() == ([a for a, _ in stream[-window:]], [b for _, b in stream[-window:]])
    assert PairedErrors.from_errors(*map(list, zip(*stream, strict=True)), window=window) == paired


def test_paired_errors_report():
    paired = PairedErrors.from_errors([3.0, 2.25, 4.0, 1.0], [1.0, 2.0, 1.0, 0.5])
    assert paired.to_dict() == {
        "n": 4,
        "tested": 4,
        "a_mae": 2.5625,
        "b_mae": 1.125,
        "favoured": "b",
        "test": "wilcoxon",
        "statistic": 0.0,
        "p_value": 2 / 2**4,  # exact: all four differences favour b
    }
    empty = PairedErrors()
    assert empty.to_dict()["a_mae"] is None and empty.favoured is None
    assert empty.test() == (0.0, 1.0)
    # Identical answers: no evidence either way.
    same = PairedErrors.from_errors([1.5, 0.5, 2.0], [1.5, 0.5, 2.0])
    assert same.test() == (0.0, 1.0) and same.favoured is None
    # Both infinitely wrong (a label beyond float range) is a tie, and JSON gets no infinity.
    inf = PairedErrors.from_errors([math.inf, 1.0], [math.inf, 2.0])
    assert inf.differences() == [0.0, -1.0]
    assert inf.to_dict()["a_mae"] is None
    with pytest.raises(ValueError, match="window"):
        PairedErrors(window=0)
    with pytest.raises(ValueError, match="equal lengths"):
        PairedErrors.from_errors([1.0], [])


def test_paired_errors_favour_nobody_when_ranks_and_mae_disagree():
    # b is closer on 30 labels by a little, a on 10 labels by a lot: b wins the signed ranks'
    # count but a has the lower MAE; neither is "better".
    a = [1.1] * 30 + [1.0] * 10
    b = [1.0] * 30 + [5.0] * 10
    paired = PairedErrors.from_errors(a, b)
    d = np.array(a) - np.array(b)
    b_ranks, a_ranks = rank_sums(d)
    assert a_ranks > b_ranks or paired.a_mae < paired.b_mae
    small = PairedErrors.from_errors([1.1] * 60 + [1.0] * 3, [1.0] * 60 + [5.0] * 3)
    assert rank_sums(np.array(small.differences()))[0] > rank_sums(np.array(small.differences()))[1]
    assert small.a_mae < small.b_mae
    assert small.favoured is None


def test_paired_errors_too_large_to_sum_are_infinite_not_an_exception():
    # math.fsum raises OverflowError where the errors' sum leaves float range (labels near
    # 1e308 are finite and accepted); the answer is inf, shown as null in JSON.
    paired = PairedErrors()
    for _ in range(3):
        paired.update(1e308, 1.0)
    assert paired.a_mae == math.inf and paired.b_mae == 1.0
    assert paired.to_dict()["a_mae"] is None and paired.to_dict()["b_mae"] == 1.0
