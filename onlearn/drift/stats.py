"""Two-sample drift statistics, their null distributions, and corrections for many features.

Histogram statistics compare the bin counts of a reference (``m`` values) with those of a live
window (``n`` values); every function takes counts along the last axis, so one call can score a
whole batch of simulated histograms:

- ``psi``: population stability index, ``sum((p - q) * ln(p / q))`` with ``p`` the window's and
  ``q`` the reference's proportions (the symmetrised Kullback-Leibler divergence);
- ``kl``: Kullback-Leibler divergence of the window from the reference, ``sum(p * ln(p / q))``,
  in nats;
- ``js``: Jensen-Shannon divergence, in bits (between 0 and 1);
- ``hellinger``: Hellinger distance, ``sqrt(1 - sum(sqrt(p * q)))`` (between 0 and 1);
- ``chi2``: Pearson's chi-squared statistic of the 2 x bins contingency table (homogeneity).

PSI and KL need proportions that are never 0; both are computed on **add-1/2 smoothed**
proportions, ``(count + 0.5) / (total + 0.5 * bins)`` (the Jeffreys prior's posterior mean), in
the window and in the reference alike. JS, Hellinger and chi-squared are finite without it and
use the raw proportions.

For numbers, two statistics use the values themselves: the two-sample Kolmogorov-Smirnov
distance (p-value from Smirnov's distribution, as ``scipy.stats.ks_2samp(method="asymp")``) and
the Wasserstein-1 distance (in the feature's unit; the monitor divides it by the reference's
interquartile range).

Every histogram statistic ``D`` is, under no drift, locally a quadratic form: ``c * D * n * m /
(n + m)`` is approximately chi-squared with ``bins - 1`` degrees of freedom, with ``c`` = 1 for
PSI, 2 for KL, ``8 ln 2`` for JS in bits and 8 for the squared Hellinger distance
(:func:`asymptotic_p_value`). That approximation is poor for small windows and uneven bins
(rare categories), so :class:`HistogramNull` calibrates instead: it simulates, seeded, reference
and window histograms of the actual sizes from the reference's (smoothed) proportions, which
gives p-values that hold their level for any window size.

Both tests treat the reference as a random sample, so they hold their level *on average over
references*; the reference a deployment actually has is one draw, and a window from the true
distribution looks drifted against an unlucky one (a reference 1000 rows long, windows of 500:
one of 10 references alarmed on 5.5% of no-drift windows at alpha 0.01). With a
``reference_confidence`` (:func:`ks_bound_p_value`, :class:`HistogramNull`) the p-values hold
*given the reference*, for all references but a share ``1 - reference_confidence`` of them: by
the triangle inequality, d(reference, window) <= d(reference, truth) + d(truth, window); the
first term is at most its ``reference_confidence`` quantile for that share of references, so
the p-value of the window's one-sample distance at ``d - quantile`` bounds the false alarm rate
given the reference. KS is a metric with exact one-sample laws (Kolmogorov's, for ``m`` and
``n``); for the histogram statistics the distance is ``sqrt`` of the divergence (Hellinger as
it is; chi-squared scaled by the sizes), a metric for Hellinger and JS and locally the same
weighted L2 norm for the others, with both one-sample laws simulated.

>>> ref, win = [50, 30, 20], [20, 30, 50]
>>> round(float(psi(ref, win)), 4), round(float(hellinger(ref, win)), 4)
(0.5329, 0.2599)
>>> adjust_p_values([0.01, 0.02, 0.03, 0.2], "bh")
[0.04, 0.04, 0.04, 0.2]
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as _scipy_stats

from onlearn.errors import ConfigError

__all__ = [
    "CORRECTIONS",
    "HISTOGRAM_STATISTICS",
    "HistogramNull",
    "adjust_p_values",
    "asymptotic_p_value",
    "chi2_statistic",
    "chi2_test",
    "hellinger",
    "histogram_statistics",
    "js_divergence",
    "kl_divergence",
    "ks_bound_p_value",
    "ks_test",
    "proportions",
    "psi",
    "reject",
    "wasserstein",
]

SMOOTHING = 0.5
HISTOGRAM_STATISTICS = ("psi", "kl", "js", "hellinger", "chi2")
CORRECTIONS = ("bh", "holm", "bonferroni", "none")
# c in "c * D * n * m / (n + m) ~ chi2(bins - 1)": the second-order term of each divergence
_LOCAL_SCALE = {"psi": 1.0, "kl": 2.0, "js": 8.0 * math.log(2.0), "hellinger": 8.0}


def proportions(counts, smoothing: float = 0.0) -> np.ndarray:
    """Counts to proportions along the last axis, with ``smoothing`` added to every count."""
    c = np.asarray(counts, dtype=float) + smoothing
    total = c.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, c / np.where(total > 0, total, 1.0), 0.0)


def psi(reference, window, smoothing: float = SMOOTHING):
    """Population stability index of the window against the reference (smoothed)."""
    p = proportions(window, smoothing)
    q = proportions(reference, smoothing)
    return np.sum((p - q) * np.log(p / q), axis=-1)


def kl_divergence(reference, window, smoothing: float = SMOOTHING):
    """Kullback-Leibler divergence of the window from the reference, in nats (smoothed)."""
    p = proportions(window, smoothing)
    q = proportions(reference, smoothing)
    return np.sum(p * np.log(p / q), axis=-1)


def _xlogy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(x > 0, x * np.log2(np.where(y > 0, y, 1.0)), 0.0)


def js_divergence(reference, window):
    """Jensen-Shannon divergence between the window and the reference, in bits."""
    p = proportions(window)
    q = proportions(reference)
    mid = (p + q) / 2
    js = 0.5 * np.sum(_xlogy(p, p) - _xlogy(p, mid), axis=-1)
    js = js + 0.5 * np.sum(_xlogy(q, q) - _xlogy(q, mid), axis=-1)
    return np.maximum(js, 0.0)


def hellinger(reference, window):
    """Hellinger distance between the window and the reference proportions."""
    p = proportions(window)
    q = proportions(reference)
    return np.sqrt(np.maximum(1.0 - np.sum(np.sqrt(p * q), axis=-1), 0.0))


def chi2_statistic(reference, window):
    """Pearson's chi-squared statistic of the 2 x bins table (bins empty in both dropped), and
    its degrees of freedom (bins used - 1; 0 when there is nothing to compare)."""
    r = np.asarray(reference, dtype=float)
    w = np.asarray(window, dtype=float)
    total = r + w
    m = r.sum(axis=-1, keepdims=True)
    n = w.sum(axis=-1, keepdims=True)
    grand = m + n
    used = total > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        er = total * m / grand
        ew = total * n / grand
        terms = np.where(used & (er > 0), (r - er) ** 2 / np.where(er > 0, er, 1.0), 0.0)
        terms = terms + np.where(used & (ew > 0), (w - ew) ** 2 / np.where(ew > 0, ew, 1.0), 0.0)
    dof = np.maximum(used.sum(axis=-1) - 1, 0)
    return np.sum(terms, axis=-1), dof


def chi2_test(reference, window) -> tuple[float, float]:
    """Chi-squared homogeneity test of two histograms: statistic and asymptotic p-value."""
    stat, dof = chi2_statistic(reference, window)
    stat, dof = float(stat), int(dof)
    if dof == 0 or min(np.sum(reference), np.sum(window)) == 0:
        return stat, 1.0
    return stat, float(_scipy_stats.chi2.sf(stat, dof))


def histogram_statistics(reference, window, smoothing: float = SMOOTHING) -> dict:
    """All :data:`HISTOGRAM_STATISTICS` of the window against the reference."""
    return {
        "psi": psi(reference, window, smoothing),
        "kl": kl_divergence(reference, window, smoothing),
        "js": js_divergence(reference, window),
        "hellinger": hellinger(reference, window),
        "chi2": chi2_statistic(reference, window)[0],
    }


def asymptotic_p_value(statistic: str, value: float, n: int, m: int, bins: int) -> float:
    """The p-value of a histogram statistic from its chi-squared approximation under no drift,
    ``bins`` being the number of bins with a count in the reference or the window."""
    if bins < 2 or n == 0 or m == 0:
        return 1.0
    if statistic == "chi2":
        x = value
    elif statistic == "hellinger":
        x = _LOCAL_SCALE[statistic] * value * value * n * m / (n + m)
    else:
        x = _LOCAL_SCALE[statistic] * value * n * m / (n + m)
    return float(_scipy_stats.chi2.sf(x, bins - 1))


def ks_test(reference_sorted, values) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov test: the largest distance between the two empirical CDFs,
    and its two-sided p-value from Smirnov's distribution at ``round(n * m / (n + m))`` (what
    ``scipy.stats.ks_2samp(method="asymp")`` computes). ``reference_sorted`` must be sorted.
    With ties (a discrete feature) the test is conservative."""
    ref = np.asarray(reference_sorted, dtype=float)
    x = np.sort(np.asarray(values, dtype=float))
    m, n = len(ref), len(x)
    if m == 0 or n == 0:
        return 0.0, 1.0
    both = np.concatenate([ref, x])
    cdf_ref = np.searchsorted(ref, both, side="right") / m
    cdf_win = np.searchsorted(x, both, side="right") / n
    d = float(np.max(np.abs(cdf_ref - cdf_win)))
    en = round(m * n / (m + n))
    p = float(_scipy_stats.kstwo.sf(d, en))
    return d, min(max(p, 0.0), 1.0)


def ks_bound_p_value(d: float, n: int, m: int, reference_confidence: float) -> float:
    """The p-value of a two-sample KS distance ``d`` (window of ``n``, reference of ``m``) that
    holds given the reference, for a share ``reference_confidence`` of references: the exact
    one-sample Kolmogorov p-value of ``d`` minus the ``reference_confidence`` quantile of the
    reference's own distance to the truth (valid for any continuous distribution; with ties,
    conservative).

    >>> round(ks_bound_p_value(0.1237, 500, 1000, 0.99), 3)  # at 0.01 only past d = 0.124
    0.01
    >>> ks_bound_p_value(0.05, 500, 1000, 0.99)  # within the reference's own error
    1.0
    """
    if n == 0 or m == 0:
        return 1.0
    slack = d - _ks_quantile(m, reference_confidence)
    if slack <= 0:
        return 1.0
    return min(max(float(_scipy_stats.kstwo.sf(slack, n)), 0.0), 1.0)


@functools.lru_cache(maxsize=64)
def _ks_quantile(m: int, confidence: float) -> float:
    return float(_scipy_stats.kstwo.isf(1.0 - confidence, m))


def wasserstein(reference_sorted, values) -> float:
    """Wasserstein-1 distance between the two empirical distributions (the area between their
    CDFs), in the feature's unit. ``reference_sorted`` must be sorted."""
    ref = np.asarray(reference_sorted, dtype=float)
    x = np.sort(np.asarray(values, dtype=float))
    if len(ref) == 0 or len(x) == 0:
        return 0.0
    both = np.sort(np.concatenate([ref, x]))
    widths = np.diff(both)
    cdf_ref = np.searchsorted(ref, both[:-1], side="right") / len(ref)
    cdf_win = np.searchsorted(x, both[:-1], side="right") / len(x)
    return float(np.sum(np.abs(cdf_ref - cdf_win) * widths))


class HistogramNull:
    """The distribution of the histogram statistics under no drift, for one reference histogram
    and one window size, by seeded simulation.

    Both histograms are drawn again, ``n_simulations`` times: the reference with ``m`` values
    and the window with ``n``, from the reference's proportions (a parametric bootstrap). A bin
    empty in the reference stays empty in every simulated window, so values where the
    reference had none (a category never seen, a number below a minimum shared by many
    reference values) are strong evidence of drift, as a data check would have it. The p-value of a
    value is the share of simulated values at least as large, ``(1 + count) / (1 +
    n_simulations)``; beyond the ``tail`` largest simulated values, where that share runs out
    of resolution, an exponential tail fitted to them (their mean excess) carries it on, so
    that p-values stay continuous and small enough for a correction over many features.

    With ``reference_confidence``, p-values hold given the reference instead (see the module's
    docstring): windows are simulated against the reference taken as the truth, and
    :meth:`p_value` first takes off the ``reference_confidence`` quantile of the reference's own
    simulated distance to it.

    >>> null = HistogramNull([250, 250, 250, 250], n=100, seed=1)
    >>> round(null.threshold("psi", 0.01), 2)  # PSI above 0.1 is no evidence at 100 rows
    0.12
    >>> null.p_value("psi", 0.5) < 1e-6
    True
    """

    def __init__(
        self,
        reference_counts: Sequence[int],
        n: int,
        *,
        n_simulations: int = 5000,
        tail: int = 25,
        seed: int | Sequence[int] = 42,
        smoothing: float = SMOOTHING,
        reference_confidence: float | None = None,
    ):
        self.reference_counts = tuple(int(c) for c in reference_counts)
        self.n = int(n)
        self.n_simulations = n_simulations
        self.tail = tail
        self.seed = seed
        self.smoothing = smoothing
        self.reference_confidence = reference_confidence
        if n_simulations < 100 or not 5 <= tail < n_simulations // 10:
            raise ConfigError("n_simulations must be >= 100, tail in [5, n_simulations / 10)")
        if reference_confidence is not None and not 0 < reference_confidence < 1:
            raise ConfigError(
                f"reference_confidence must be in (0, 1) or None, got {reference_confidence!r}"
            )
        m = sum(self.reference_counts)
        self._m = m
        rng = np.random.default_rng(seed)
        pvals = proportions(self.reference_counts)
        self._slack: dict[str, float] | None = None
        if reference_confidence is None:
            ref = rng.multinomial(m, pvals, size=n_simulations)
            win = rng.multinomial(self.n, pvals, size=n_simulations)
            simulated = histogram_statistics(ref, win, smoothing)
        else:
            # one-sample laws: windows against the reference taken as the truth, and the
            # reference's own distance to the truth (its quantile is the slack of the bound)
            observed = np.asarray(self.reference_counts, dtype=float)
            win = rng.multinomial(self.n, pvals, size=n_simulations)
            own = rng.multinomial(m, pvals, size=n_simulations)
            simulated = {
                k: _distance(k, v, m, self.n)
                for k, v in histogram_statistics(observed, win, smoothing).items()
            }
            self._slack = {
                k: float(np.quantile(_distance(k, v, m, m), reference_confidence))
                for k, v in histogram_statistics(observed, own, smoothing).items()
            }
        # float32: 20 kB per statistic; the p-values need ranks, not the last digits
        self._sorted = {k: np.sort(v).astype(np.float32) for k, v in simulated.items()}
        self._tails: dict[str, tuple[float, float, float]] = {}
        for name, values in self._sorted.items():
            start = float(values[-tail - 1])
            excess = float(np.mean(values[-tail:] - start))
            share = (1 + tail) / (1 + n_simulations)
            self._tails[name] = (start, excess, share)

    def p_value(self, statistic: str, value: float) -> float:
        value = float(value)
        if self._slack is not None:
            value = float(_distance(statistic, value, self._m, self.n)) - self._slack[statistic]
            if value <= 0:  # within the reference's own error: no evidence
                return 1.0
        values = self._sorted[statistic]
        start, excess, share = self._tails[statistic]
        if value <= start:
            at_least = np.float32(value) - np.float32(1e-6) * max(1.0, abs(value))
            count = len(values) - int(np.searchsorted(values, at_least, side="left"))
            return (1 + count) / (1 + len(values))
        if excess <= 0:  # the simulated tail is flat: nothing that large is possible
            return 0.0
        return share * math.exp(-(value - start) / excess)

    def threshold(self, statistic: str, alpha: float) -> float:
        """The value of the statistic above which drift is declared at level ``alpha``."""
        t = self._threshold(statistic, alpha)
        if self._slack is None:
            return t
        return _from_distance(statistic, t + self._slack[statistic], self._m, self.n)

    def _threshold(self, statistic: str, alpha: float) -> float:
        values = self._sorted[statistic]
        start, excess, share = self._tails[statistic]
        if alpha >= share:
            # the smallest simulated value whose p-value is <= alpha
            rank = math.ceil(alpha * (1 + len(values))) - 1
            return float(values[len(values) - 1 - rank]) if rank >= 0 else start
        if excess <= 0:
            return start
        return start + excess * math.log(share / alpha)


def _distance(statistic: str, value, m: int, n: int):
    """A histogram statistic as a distance that (locally) obeys the triangle inequality: the
    divergences are locally squared weighted L2 norms, chi-squared too once scaled by the
    sizes; Hellinger is one already."""
    value = np.maximum(value, 0.0)
    if statistic == "hellinger":
        return value
    if statistic == "chi2":
        return np.sqrt(value * (n + m) / (n * m))
    return np.sqrt(value)


def _from_distance(statistic: str, distance: float, m: int, n: int) -> float:
    if statistic == "hellinger":
        return distance
    if statistic == "chi2":
        return distance * distance * n * m / (n + m)
    return distance * distance


def adjust_p_values(p_values: Sequence[float], method: str = "bh") -> list[float]:
    """Adjusted p-values for testing many features at once: ``"bh"`` (Benjamini-Hochberg, false
    discovery rate), ``"holm"`` (Holm-Bonferroni, family-wise error), ``"bonferroni"`` or
    ``"none"``. A feature drifts at level ``alpha`` when its adjusted p-value is ``<= alpha``.

    >>> adjust_p_values([0.01, 0.04, 0.03, 0.2], "holm")
    [0.04, 0.09, 0.09, 0.2]
    """
    if method not in CORRECTIONS:
        raise ConfigError(f"correction must be one of {', '.join(CORRECTIONS)}, got {method!r}")
    p = [min(max(float(x), 0.0), 1.0) for x in p_values]
    k = len(p)
    if k == 0 or method == "none":
        return p
    if method == "bonferroni":
        return [min(1.0, k * x) for x in p]
    order = sorted(range(k), key=p.__getitem__)
    out = [0.0] * k
    if method == "holm":
        running = 0.0
        for rank, i in enumerate(order):
            running = max(running, (k - rank) * p[i])
            out[i] = min(1.0, running)
        return out
    running = 1.0
    for rank in range(k - 1, -1, -1):
        i = order[rank]
        running = min(running, k * p[i] / (rank + 1))
        out[i] = running
    return out


def reject(p_values: Sequence[float], alpha: float, method: str = "bh") -> list[bool]:
    """Which hypotheses are rejected at level ``alpha`` after the correction ``method``."""
    return [q <= alpha for q in adjust_p_values(p_values, method)]
