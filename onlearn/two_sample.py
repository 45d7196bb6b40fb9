"""A/B comparison of two versions, each on the labels of the traffic *it* answered: a
two-proportion z-test of accuracies (:class:`TwoSampleCounts`), Welch's t-test of mean absolute
errors (:class:`TwoSampleErrors`), and the sample size each needs.

For models whose label depends on the answer served (``labels_follow_answer = true``: a loan
refused never shows whether it would have been repaid, a recommendation not shown is never
clicked), the paired comparison of :mod:`onlearn.compare` is biased: every label exists because
of what the answering version said, so scoring another version on it measures that version on
a population the first one chose. Here each version is scored only where it answered (the
champion on its share of the traffic, the canary on its sticky share), two independent samples.

``a`` is the incumbent (the champion) and ``b`` the newcomer (the canary), as in
:class:`onlearn.compare.PairedCounts`.

The definitions are the textbook ones:

- two-proportion z-test, pooled under the null: ``z = (p_b - p_a) / sqrt(p (1 - p) (1/n_a +
  1/n_b))`` with ``p`` the pooled accuracy, two-sided normal p-value (``z**2`` is Pearson's
  chi-squared of the 2x2 table without continuity correction);
- Welch's t-test: ``t = (m_b - m_a) / sqrt(s_a**2/n_a + s_b**2/n_b)`` with the
  Welch-Satterthwaite degrees of freedom (``scipy.stats.ttest_ind(equal_var=False)``);
- sample size for proportions with Cohen's effect size ``h = 2 asin(sqrt(p_b)) - 2
  asin(sqrt(p_a))``: ``n_a = (1 + 1/r) ((z_{1-alpha/2} + z_{power}) / h)**2``, ``n_b = r n_a``
  (Cohen 1988, table 6.4.1: ``h = 0.2`` needs 392 per arm at alpha 0.05, power 0.8);
- sample size for means with Cohen's ``d`` (difference over the pooled standard deviation):
  the smallest ``n_a`` whose noncentral-t power reaches ``power`` (Cohen 1988, table 2.4.1:
  ``d = 0.5`` needs 64 per arm).

>>> ab = TwoSampleCounts()
>>> for _ in range(400):
...     ab.update("a", True)
>>> for _ in range(100):
...     ab.update("a", False)
>>> for _ in range(90):
...     ab.update("b", True)
>>> for _ in range(10):
...     ab.update("b", False)
>>> ab.a_accuracy, ab.b_accuracy
(0.8, 0.9)
>>> z, p = ab.test()
>>> round(z, 3), round(p, 4)
(2.359, 0.0183)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from scipy import optimize as _optimize
from scipy import stats as _scipy_stats

from onlearn.metrics import absolute_error

__all__ = [
    "POWER",
    "TwoSampleCounts",
    "TwoSampleErrors",
    "count_answered",
    "sample_size_means",
    "sample_size_proportions",
    "two_proportion_ztest",
    "welch_ttest",
]

POWER = 0.8
"""The power the sample sizes are given for (the usual convention)."""

MAX_LABELS = 1e9
"""Beyond this many labels an arm's sample size is not searched for: None, as for no effect."""


def two_proportion_ztest(x_a: int, n_a: int, x_b: int, n_b: int) -> tuple[float, float]:
    """``(z, p_value)`` of ``x_b / n_b`` against ``x_a / n_a``, pooled, two-sided; positive
    ``z``: ``b`` did better. No evidence (an empty arm, or no variance) gives ``(0.0, 1.0)``.

    >>> z, p = two_proportion_ztest(104, 11037, 189, 11034)  # aspirin vs placebo, heart attacks
    >>> round(z * z, 2), p < 1e-6
    (25.01, True)
    """
    if n_a <= 0 or n_b <= 0:
        return 0.0, 1.0
    pooled = (x_a + x_b) / (n_a + n_b)
    variance = pooled * (1 - pooled) * (1 / n_a + 1 / n_b)
    if variance <= 0:
        return 0.0, 1.0
    z = (x_b / n_b - x_a / n_a) / math.sqrt(variance)
    return z, float(2 * _scipy_stats.norm.sf(abs(z)))


def welch_ttest(
    mean_a: float, var_a: float, n_a: int, mean_b: float, var_b: float, n_b: int
) -> tuple[float, float, float]:
    """``(t, df, p_value)`` of Welch's t-test from each arm's mean, variance (ddof 1) and count;
    positive ``t``: ``b``'s mean is higher. Fewer than two in an arm, or no variance, gives
    ``(0.0, nan, 1.0)``: no evidence."""
    if n_a < 2 or n_b < 2:
        return 0.0, math.nan, 1.0
    se_a, se_b = var_a / n_a, var_b / n_b
    se = se_a + se_b
    if not se > 0 or not math.isfinite(se):
        return 0.0, math.nan, 1.0
    t = (mean_b - mean_a) / math.sqrt(se)
    df = se**2 / (se_a**2 / (n_a - 1) + se_b**2 / (n_b - 1))
    return t, df, float(2 * _scipy_stats.t.sf(abs(t), df))


def _z(alpha: float, power: float) -> float:
    return float(_scipy_stats.norm.isf(alpha / 2) + _scipy_stats.norm.ppf(power))


def sample_size_proportions(
    p_a: float, p_b: float, *, alpha: float = 0.05, power: float = POWER, ratio: float = 1.0
) -> tuple[float, float] | None:
    """Labels each arm needs, ``(n_a, n_b)`` with ``n_b = ratio * n_a`` (unrounded), for the
    z-test to detect accuracies ``p_a`` and ``p_b`` at ``alpha`` (two-sided) and ``power``;
    None when they are equal (no difference to detect).

    >>> n_a, n_b = sample_size_proportions(0.5, 0.6)
    >>> math.ceil(n_a), math.ceil(n_b)
    (388, 388)
    """
    h = 2 * math.asin(math.sqrt(p_b)) - 2 * math.asin(math.sqrt(p_a))
    if h == 0:
        return None
    n_a = (1 + 1 / ratio) * (_z(alpha, power) / h) ** 2
    return n_a, ratio * n_a


def sample_size_means(
    d: float, *, alpha: float = 0.05, power: float = POWER, ratio: float = 1.0
) -> tuple[float, float] | None:
    """Labels each arm needs, ``(n_a, n_b)`` with ``n_b = ratio * n_a`` (unrounded), for a
    two-sample t-test to detect Cohen's ``d`` at ``alpha`` (two-sided) and ``power``, from the
    noncentral t distribution; None for ``d == 0`` or an effect that would need more than
    :data:`MAX_LABELS`.

    >>> n_a, _ = sample_size_means(0.5)
    >>> round(n_a, 2)
    63.77
    """
    d = abs(d)
    if d == 0 or not math.isfinite(d):
        return None

    def shortfall(n_a: float) -> float:
        n_b = ratio * n_a
        df = n_a + n_b - 2
        nc = d * math.sqrt(n_a * n_b / (n_a + n_b))
        crit = _scipy_stats.t.isf(alpha / 2, df)
        reached = _scipy_stats.nct.sf(crit, df, nc) + _scipy_stats.nct.cdf(-crit, df, nc)
        return reached - power

    low = 2 / min(ratio, 1.0) + 1e-9  # both arms at least 2 (a t-test's minimum)
    if shortfall(low) >= 0:
        return low, ratio * low
    high = max(4.0, low)
    while shortfall(high) < 0:
        high *= 2
        if high > MAX_LABELS:  # an effect too small to detect with any traffic there is
            return None
    n_a = _optimize.brentq(shortfall, low, high, xtol=1e-6)
    return n_a, ratio * n_a


def _more_labels(
    needed: tuple[float, float] | None, n_a: int, n_b: int, ratio: float
) -> int | None:
    """Labels still to come before both arms hold what they need, when new labels split between
    the arms as they did so far (``ratio = n_b / n_a``)."""
    if needed is None:
        return None
    share_a, share_b = 1 / (1 + ratio), ratio / (1 + ratio)
    missing_a = max(math.ceil(needed[0]) - n_a, 0)
    missing_b = max(math.ceil(needed[1]) - n_b, 0)
    return math.ceil(max(missing_a / share_a, missing_b / share_b))


def _ratio(n_a: int, n_b: int) -> float:
    return n_b / n_a if n_a and n_b else 1.0


class TwoSampleCounts:
    """Right and wrong answers of two versions, each on the labels of requests *it* answered.

    ``update("a", correct)`` counts a label of a request the incumbent answered; ``"b"`` the
    newcomer. ``by=-1`` takes back a label counted before (a corrected label).
    """

    test_name = "two_proportion_z"

    def __init__(self) -> None:
        self._right = {"a": 0, "b": 0}
        self._n = {"a": 0, "b": 0}

    def update(self, side: str, correct: bool, by: int = 1) -> None:
        self._n[side] += by
        self._right[side] += by * bool(correct)

    @property
    def n(self) -> int:
        """Labels counted, both arms."""
        return self._n["a"] + self._n["b"]

    @property
    def a_n(self) -> int:
        return self._n["a"]

    @property
    def b_n(self) -> int:
        return self._n["b"]

    @property
    def smaller_arm(self) -> int:
        """The labels of the arm that has fewer: what ``min_labels`` is held against."""
        return min(self._n.values())

    @property
    def a_accuracy(self) -> float | None:
        return self._right["a"] / self._n["a"] if self._n["a"] else None

    @property
    def b_accuracy(self) -> float | None:
        return self._right["b"] / self._n["b"] if self._n["b"] else None

    @property
    def favoured(self) -> str | None:
        """The arm with the higher accuracy, None on a tie or an empty arm."""
        a, b = self.a_accuracy, self.b_accuracy
        if a is None or b is None or a == b:
            return None
        return "b" if b > a else "a"

    def test(self) -> tuple[float, float]:
        """The two-proportion z-test: ``(z, p_value)``, positive ``z`` when ``b`` is better."""
        return two_proportion_ztest(self._right["a"], self._n["a"], self._right["b"], self._n["b"])

    def labels_needed(
        self, *, alpha: float = 0.05, power: float = POWER, effect: float | None = None
    ) -> dict[str, Any]:
        """How many labels the test needs to detect ``effect`` (an accuracy difference; default
        the difference observed) at ``alpha`` and ``power``, with the arms split as so far."""
        a, b = self.a_accuracy, self.b_accuracy
        ratio = _ratio(self.a_n, self.b_n)
        if effect is None:
            effect = None if a is None or b is None else b - a
        needed = None
        if effect and a is not None:
            target = min(max(a + effect, 0.0), 1.0)
            needed = sample_size_proportions(a, target, alpha=alpha, power=power, ratio=ratio)
        more = _more_labels(needed, self.a_n, self.b_n, ratio)
        if needed is None:
            sentence = (
                "no difference observed yet: no sample size to give"
                if a is not None and b is not None
                else "each version needs labels of the traffic it answered first"
            )
        else:
            sentence = (
                f"{more} more labels needed to detect {100 * abs(effect):.3g} points at alpha "
                f"{alpha:g}, power {power:g} (per arm: {math.ceil(needed[0])} and "
                f"{math.ceil(needed[1])}; have {self.a_n} and {self.b_n})"
            )
        return _needed_dict(effect, alpha, power, needed, more, sentence)

    def to_dict(self, *, alpha: float = 0.05, power: float = POWER) -> dict[str, Any]:
        z, p = self.test()
        return {
            "test": self.test_name,
            "n": self.n,
            "a_n": self.a_n,
            "b_n": self.b_n,
            "a_accuracy": self.a_accuracy,
            "b_accuracy": self.b_accuracy,
            "favoured": self.favoured,
            "statistic": z,
            "p_value": p,
            "sample_size": self.labels_needed(alpha=alpha, power=power),
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TwoSampleCounts):
            return NotImplemented
        return (self._right, self._n) == (other._right, other._n)

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        return (
            f"TwoSampleCounts(a={self._right['a']}/{self._n['a']}, "
            f"b={self._right['b']}/{self._n['b']})"
        )


class _Moments:
    """Count, mean and sum of squared deviations of a stream (Welford's update; exact enough to
    equal numpy's two-pass mean and variance to 1e-12 relative on the errors seen here)."""

    __slots__ = ("m2", "mean", "n")

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0

    def add(self, x: float) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)

    @property
    def variance(self) -> float:
        return self.m2 / (self.n - 1) if self.n > 1 else math.nan

    def __getstate__(self) -> tuple[int, float, float]:
        return self.n, self.mean, self.m2

    def __setstate__(self, state: tuple[int, float, float]) -> None:
        self.n, self.mean, self.m2 = state


class TwoSampleErrors:
    """Absolute errors of two regressors, each on the labels of requests *it* answered: their
    means (each arm's MAE) and Welch's t-test of the difference, in constant memory.

    An infinite error (a label beyond float range) cannot enter a mean: it is counted in
    ``skipped`` and left out. Corrections are not revised here (as in
    :class:`onlearn.compare.PairedErrors`).
    """

    test_name = "welch_t"

    def __init__(self) -> None:
        self._arms = {"a": _Moments(), "b": _Moments()}
        self.skipped = 0

    def update(self, side: str, error: float) -> None:
        if not math.isfinite(error):
            self.skipped += 1
            return
        self._arms[side].add(error)

    @property
    def n(self) -> int:
        return self._arms["a"].n + self._arms["b"].n

    @property
    def a_n(self) -> int:
        return self._arms["a"].n

    @property
    def b_n(self) -> int:
        return self._arms["b"].n

    @property
    def smaller_arm(self) -> int:
        return min(self.a_n, self.b_n)

    @property
    def a_mae(self) -> float | None:
        return self._arms["a"].mean if self.a_n else None

    @property
    def b_mae(self) -> float | None:
        return self._arms["b"].mean if self.b_n else None

    @property
    def favoured(self) -> str | None:
        """The arm with the lower MAE, None on a tie or an empty arm."""
        a, b = self.a_mae, self.b_mae
        if a is None or b is None or a == b:
            return None
        return "b" if b < a else "a"

    def test(self) -> tuple[float, float]:
        """Welch's t-test of the MAEs: ``(t, p_value)``, positive ``t`` when ``b``'s errors are
        *smaller* (better), so that the sign reads as for accuracy."""
        a, b = self._arms["a"], self._arms["b"]
        t, _, p = welch_ttest(a.mean, a.variance, a.n, b.mean, b.variance, b.n)
        return -t if t else 0.0, p

    def labels_needed(
        self, *, alpha: float = 0.05, power: float = POWER, effect: float | None = None
    ) -> dict[str, Any]:
        """How many labels the test needs to detect ``effect`` (an MAE difference; default the
        one observed) at ``alpha`` and ``power``, with the arms split as so far and the pooled
        standard deviation of the errors seen."""
        a, b = self._arms["a"], self._arms["b"]
        ratio = _ratio(a.n, b.n)
        if effect is None and a.n and b.n:
            effect = b.mean - a.mean
        needed = None
        if effect and a.n >= 2 and b.n >= 2:
            pooled = ((a.n - 1) * a.variance + (b.n - 1) * b.variance) / (a.n + b.n - 2)
            if pooled > 0:
                needed = sample_size_means(
                    effect / math.sqrt(pooled), alpha=alpha, power=power, ratio=ratio
                )
        more = _more_labels(needed, a.n, b.n, ratio)
        if needed is None:
            sentence = (
                "no difference observed yet: no sample size to give"
                if a.n >= 2 and b.n >= 2
                else "each version needs two labels of the traffic it answered first"
            )
        else:
            sentence = (
                f"{more} more labels needed to detect a difference of {abs(effect):.4g} in mean "
                f"absolute error at alpha {alpha:g}, power {power:g} (per arm: "
                f"{math.ceil(needed[0])} and {math.ceil(needed[1])}; have {a.n} and {b.n})"
            )
        return _needed_dict(effect, alpha, power, needed, more, sentence)

    def to_dict(self, *, alpha: float = 0.05, power: float = POWER) -> dict[str, Any]:
        t, p = self.test()
        return {
            "test": self.test_name,
            "n": self.n,
            "a_n": self.a_n,
            "b_n": self.b_n,
            "a_mae": self.a_mae,
            "b_mae": self.b_mae,
            "favoured": self.favoured,
            "statistic": t,
            "p_value": p,
            "skipped": self.skipped,
            "sample_size": self.labels_needed(alpha=alpha, power=power),
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TwoSampleErrors):
            return NotImplemented
        mine = [a.__getstate__() for a in self._arms.values()]
        theirs = [a.__getstate__() for a in other._arms.values()]
        return (mine, self.skipped) == (theirs, other.skipped)

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        return f"TwoSampleErrors(a_n={self.a_n}, a_mae={self.a_mae}, b_n={self.b_n}, b_mae={self.b_mae})"


def _needed_dict(effect, alpha, power, needed, more, sentence) -> dict[str, Any]:
    return {
        "effect": effect,
        "alpha": alpha,
        "power": power,
        "a_needed": None if needed is None else math.ceil(needed[0]),
        "b_needed": None if needed is None else math.ceil(needed[1]),
        "more_labels": more,
        "sentence": sentence,
    }


def count_answered(
    ab: dict[str, TwoSampleCounts | TwoSampleErrors],
    version: str,
    task: str,
    y: Any,
    outputs: Mapping[str, Mapping[str, Any]],
    answered_by: str | None,
    by: int = 1,
) -> None:
    """Count one label into ``version``'s A/B comparisons (``ab``: other version -> comparison,
    the other as ``a`` and ``version`` as ``b``): into the arm of whichever of the two answered
    the request, and nowhere when a third version answered (or none did: inline features).
    ``by=-1`` takes back a label counted before (classification only)."""
    if answered_by is None or answered_by not in outputs or version not in outputs:
        return
    classification = task == "classification"
    if not classification and by < 0:
        return
    answer = outputs[answered_by]["label"]
    for other in outputs:
        if other == version or answered_by not in (other, version):
            continue
        side = "b" if answered_by == version else "a"
        comparison = ab.get(other)
        if comparison is None:
            comparison = ab[other] = TwoSampleCounts() if classification else TwoSampleErrors()
        if classification:
            comparison.update(side, answer == y, by)
        else:
            comparison.update(side, absolute_error(y, answer))


ANSWERING = ("champion", "canary")
"""The roles that answer requests: the only ones an A/B comparison can score."""


def describe_ab(
    version: str,
    roles: Mapping[str, str],
    ab: Mapping[str, TwoSampleCounts | TwoSampleErrors] | None,
    *,
    task: str,
    alpha: float = 0.05,
    power: float = POWER,
) -> dict[str, Any]:
    """How ``version`` is compared when its model's labels follow the answer: a canary against
    the champion (``ab``: the canary's comparisons, the champion as ``a``), the champion as the
    side every canary is compared with, and any other role not at all, with why."""
    held = sorted(role for role, v in roles.items() if v == version)
    champion = roles.get("champion")
    if "canary" in held and champion is not None:
        comparison = (ab or {}).get(champion)
        if comparison is None:
            comparison = TwoSampleCounts() if task == "classification" else TwoSampleErrors()
        return {
            "compared": True,
            "against": champion,
            **comparison.to_dict(alpha=alpha, power=power),
        }
    if "champion" in held:
        canary = roles.get("canary")
        why = (
            f"the champion: side a of the canary {canary}'s A/B comparison"
            if canary is not None
            else "the champion: no canary answers a share of the traffic, so there is nothing "
            "to compare it with"
        )
        return {"compared": False, "why": why}
    what = " and ".join(held) if held else "no role"
    return {
        "compared": False,
        "why": (
            f"{version} holds {what}: it answers no request, and with labels_follow_answer = "
            "true a label exists because of the answer served, so a version that answered "
            "nothing has no labels of its own to be scored on; give it the canary role to "
            "compare it"
        ),
    }
