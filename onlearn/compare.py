"""Paired comparison of two classifiers on the same labelled events: McNemar's test.

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

from typing import Any

from scipy import stats as _scipy_stats

__all__ = ["PairedCounts", "mcnemar"]

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

    def update(self, a_correct: bool, b_correct: bool) -> None:
        if a_correct:
            if b_correct:
                self._both += 1
            else:
                self._a_only += 1
        elif b_correct:
            self._b_only += 1
        else:
            self._neither += 1

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
