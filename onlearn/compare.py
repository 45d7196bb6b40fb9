"""Paired comparison of two versions on the same labelled events: McNemar's test for
classifiers (:class:`PairedCounts`), Wilcoxon's signed-rank test for regressors
(:class:`PairedErrors`).

Two versions answer the same events; what tells them apart is only the events where exactly one
of them was right. With ``b`` events where only the first was right and ``c`` where only the
second was, McNemar's test asks whether ``b`` and ``c`` could be two draws of a fair coin over
``b + c`` tosses.

The definitions are statsmodels' (``statsmodels.stats.contingency_tables.mcnemar``):

- exact (``b + c < exact_below``): statistic ``min(b, c)``, two-sided binomial p-value
  ``min(1, 2 * P[Binomial(b + c, 1/2) <= min(b, c)])``, which is what
  ``scipy.stats.binomtest(min(b, c), b + c).pvalue`` computes;
- otherwise chi-squared with one degree of freedom and Edwards' continuity correction:
  statistic ``(|b - c| - 1)**2 / (b + c)``. One deviation: with ``b == c`` the corrected
  difference is taken as 0, not -1, so that no evidence gives statistic 0 and p-value 1
  (statsmodels reports ``1 / (b + c)`` and a p-value just below 1).

>>> mcnemar(3, 15)
(3.0, 0.007537841796875)
>>> statistic, p = mcnemar(10, 30)
>>> statistic, round(p, 5)
(9.025, 0.00266)
>>> mcnemar(0, 0)
(0.0, 1.0)
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats as _scipy_stats

from onlearn.metrics import mean_error

__all__ = ["PairedCounts", "PairedErrors", "mcnemar", "wilcoxon"]

EXACT_BELOW = 25
"""Below this many discordant pairs the exact binomial test is used (statsmodels' advice)."""


def mcnemar(b: int, c: int, *, exact_below: int = EXACT_BELOW) -> tuple[float, float]:
    """McNemar's test on the discordant counts: ``(statistic, p_value)``, two-sided.

    ``b``: events the first model got right and the second wrong; ``c``: the reverse. The test
    is symmetric in ``b`` and ``c``; which one is better is read from the counts themselves.
    """
    for name, value in (("b", b), ("c", c)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a count (an integer >= 0), got {value!r}")
    n = b + c
    if n == 0:
        return 0.0, 1.0
    if n < exact_below:
        k = min(b, c)
        p = 2.0 * float(_scipy_stats.binom.cdf(k, n, 0.5))
        return float(k), min(1.0, p)
    statistic = max(abs(b - c) - 1, 0) ** 2 / n
    return float(statistic), float(_scipy_stats.chi2.sf(statistic, 1))


class PairedCounts:
    """The 2x2 table of two models' correctness on the same events, updated one event at a time.

    ``a`` and ``b`` are the two models: by convention in onlearn, ``a`` is the incumbent (the
    champion, or the previous champion after a promotion) and ``b`` the newcomer.

    >>> paired = PairedCounts()
    >>> for a, b in [(True, True), (False, True), (False, True), (True, False), (False, False)]:
    ...     paired.update(a, b)
    >>> paired.n, paired.both, paired.a_only, paired.b_only, paired.neither
    (5, 1, 1, 2, 1)
    >>> paired.test()
    (1.0, 1.0)
    """

    def __init__(self) -> None:
        self._both = 0
        self._a_only = 0
        self._b_only = 0
        self._neither = 0

    @classmethod
    def from_correct(cls, a_correct: list[bool], b_correct: list[bool]) -> PairedCounts:
        """The table of two per-event correctness vectors of equal length."""
        if len(a_correct) != len(b_correct):
            raise ValueError(
                f"paired vectors must have equal lengths, got {len(a_correct)} and {len(b_correct)}"
            )
        paired = cls()
        for a, b in zip(a_correct, b_correct, strict=True):
            paired.update(a, b)
        return paired

    def update(self, a_correct: bool, b_correct: bool, by: int = 1) -> None:
        """Count one pair; ``by=-1`` takes back a pair counted before (a corrected label)."""
        if a_correct:
            if b_correct:
                self._both += by
            else:
                self._a_only += by
        elif b_correct:
            self._b_only += by
        else:
            self._neither += by

    @property
    def n(self) -> int:
        """Events counted."""
        return self._both + self._a_only + self._b_only + self._neither

    @property
    def both(self) -> int:
        return self._both

    @property
    def a_only(self) -> int:
        """Events only ``a`` got right."""
        return self._a_only

    @property
    def b_only(self) -> int:
        """Events only ``b`` got right."""
        return self._b_only

    @property
    def neither(self) -> int:
        return self._neither

    @property
    def a_accuracy(self) -> float | None:
        return (self._both + self._a_only) / self.n if self.n else None

    @property
    def b_accuracy(self) -> float | None:
        return (self._both + self._b_only) / self.n if self.n else None

    def test(self, *, exact_below: int = EXACT_BELOW) -> tuple[float, float]:
        """McNemar's test of the table: ``(statistic, p_value)``."""
        return mcnemar(self._a_only, self._b_only, exact_below=exact_below)

    def to_dict(self) -> dict[str, Any]:
        statistic, p_value = self.test()
        return {
            "n": self.n,
            "both": self._both,
            "a_only": self._a_only,
            "b_only": self._b_only,
            "neither": self._neither,
            "a_accuracy": self.a_accuracy,
            "b_accuracy": self.b_accuracy,
            "test": "mcnemar",
            "statistic": statistic,
            "p_value": p_value,
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PairedCounts):
            return NotImplemented
        return self._table() == other._table()

    __hash__ = None  # mutable

    def _table(self) -> tuple[int, int, int, int]:
        return self._both, self._a_only, self._b_only, self._neither

    def __repr__(self) -> str:
        return (
            f"PairedCounts(n={self.n}, both={self._both}, a_only={self._a_only}, "
            f"b_only={self._b_only}, neither={self._neither})"
        )


def wilcoxon(differences: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Wilcoxon's signed-rank test of paired differences: ``(statistic, p_value)``, two-sided.

    ``scipy.stats.wilcoxon`` with its defaults (zero differences dropped, no continuity
    correction, the exact p-value for up to 50 differences without ties or zeros, the normal
    approximation otherwise), with two deviations: no nonzero difference at all is no evidence,
    ``(0.0, 1.0)``, where scipy answers NaN; and up to 13 differences with ties or zeros get the
    normal approximation too, where scipy runs an exhaustive permutation test that takes
    seconds (2.7 s for 13), too long for a comparison read on every scrape.

    >>> wilcoxon([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    (0.0, 0.0078125)
    >>> wilcoxon([0.0, 0.0])
    (0.0, 1.0)
    """
    d = np.asarray(differences, dtype=float)
    nonzero = np.abs(d[d != 0])
    if not nonzero.size:
        return 0.0, 1.0
    exact = d.size <= 50 and nonzero.size == d.size and np.unique(nonzero).size == d.size
    result = _scipy_stats.wilcoxon(d, method="exact" if exact else "asymptotic")
    return float(result.statistic), float(result.pvalue)


class PairedErrors:
    """Two regressors' absolute errors on the same events, and Wilcoxon's signed-rank test of
    their differences, updated one event at a time.

    ``a`` is the incumbent and ``b`` the newcomer, as in :class:`PairedCounts`. The test needs
    the ranks of all the differences it covers, which no running statistic gives, so the errors
    of the last ``window`` events are kept (two ring buffers of 8-byte floats: bounded memory
    and snapshots, 80 KB at the default) and the test, the MAE of each side and which side is
    better are all computed on those same events; ``n`` counts every pair since the comparison
    began. A recent window also fits models that keep learning: what they were worth long ago
    is not what they are worth now.

    >>> paired = PairedErrors(window=4)
    >>> for a, b in [(3.0, 1.0), (2.0, 1.75), (4.0, 1.0), (1.0, 0.5), (5.0, 1.0)]:
    ...     paired.update(a, b)
    >>> paired.n, paired.tested, paired.a_mae, paired.b_mae, paired.favoured
    (5, 4, 3.0, 1.0625, 'b')
    >>> paired.test()
    (0.0, 0.125)
    """

    WINDOW = 5000

    def __init__(self, window: int = WINDOW) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be an integer >= 1, got {window!r}")
        self.window = window
        self._n = 0
        # a ring of the last ``window`` pairs: appended until full, then overwritten at _next
        self._a = array("d")
        self._b = array("d")
        self._next = 0

    @classmethod
    def from_errors(
        cls, a_errors: list[float], b_errors: list[float], *, window: int = WINDOW
    ) -> PairedErrors:
        """The comparison of two per-event absolute error vectors of equal length."""
        if len(a_errors) != len(b_errors):
            raise ValueError(
                f"paired vectors must have equal lengths, got {len(a_errors)} and {len(b_errors)}"
            )
        paired = cls(window)
        for a, b in zip(a_errors, b_errors, strict=True):
            paired.update(a, b)
        return paired

    def update(self, a_error: float, b_error: float) -> None:
        """One event: each side's absolute error on it."""
        self._n += 1
        if len(self._a) < self.window:
            self._a.append(a_error)
            self._b.append(b_error)
            return
        self._a[self._next] = a_error
        self._b[self._next] = b_error
        self._next = (self._next + 1) % self.window

    @property
    def n(self) -> int:
        """Events compared since the comparison began."""
        return self._n

    @property
    def tested(self) -> int:
        """Events the test and the MAEs cover: the last ``window`` of them."""
        return len(self._a)

    def errors(self) -> tuple[list[float], list[float]]:
        """The absolute errors of ``a`` and ``b`` on the tested events, oldest first."""
        a, b = self._window()
        return a.tolist(), b.tolist()

    def differences(self) -> list[float]:
        """``a``'s error minus ``b``'s on each tested event, oldest first (positive: ``b`` was
        closer). Both errors infinite is a tie."""
        return self._differences().tolist()

    def _window(self) -> tuple[np.ndarray, np.ndarray]:
        i = self._next
        a, b = np.frombuffer(self._a), np.frombuffer(self._b)
        return np.concatenate((a[i:], a[:i])), np.concatenate((b[i:], b[:i]))

    def _differences(self) -> np.ndarray:
        a, b = self._window()
        with np.errstate(invalid="ignore"):  # inf - inf, replaced by the tie it is
            return np.where(a == b, 0.0, a - b)

    @property
    def a_mae(self) -> float | None:
        return mean_error(self._a)

    @property
    def b_mae(self) -> float | None:
        return mean_error(self._b)

    @property
    def favoured(self) -> str | None:
        """``"a"`` or ``"b"``: the side closer to the labels on the tested events by both the
        signed ranks (the test's direction) and the MAE; None when they tie or disagree (many
        small wins of one side against a few large ones of the other)."""
        d = self._differences()
        d = d[d != 0]
        if not d.size:
            return None
        ranks = _scipy_stats.rankdata(np.abs(d))
        b_ranks, a_ranks = math.fsum(ranks[d > 0]), math.fsum(ranks[d < 0])
        a_mae, b_mae = self.a_mae, self.b_mae
        if b_ranks > a_ranks and b_mae < a_mae:
            return "b"
        if a_ranks > b_ranks and a_mae < b_mae:
            return "a"
        return None

    def test(self) -> tuple[float, float]:
        """Wilcoxon's signed-rank test of the tested differences: ``(statistic, p_value)``."""
        return wilcoxon(self._differences())

    def to_dict(self) -> dict[str, Any]:
        statistic, p_value = self.test()
        return {
            "n": self.n,
            "tested": self.tested,
            "a_mae": _finite(self.a_mae),
            "b_mae": _finite(self.b_mae),
            "favoured": self.favoured,
            "test": "wilcoxon",
            "statistic": statistic,
            "p_value": p_value,
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PairedErrors):
            return NotImplemented
        return (self.window, self._n, self.errors()) == (other.window, other._n, other.errors())

    def __deepcopy__(self, memo: dict) -> PairedErrors:
        copy = PairedErrors(self.window)
        copy._n, copy._next = self._n, self._next
        copy._a, copy._b = array("d", self._a), array("d", self._b)
        return copy

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        return (
            f"PairedErrors(n={self.n}, tested={self.tested}, a_mae={self.a_mae}, "
            f"b_mae={self.b_mae})"
        )


def _finite(value: float | None) -> float | None:
    """None for what JSON cannot carry (an infinite error: a label beyond float range)."""
    return value if value is None or math.isfinite(value) else None
