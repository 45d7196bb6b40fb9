"""Linear Four Rates (LFR): concept drift of a binary classifier from its confusion matrix.

Heng Wang and Zubin Abraham, "Concept drift detection for streaming data", IJCNN 2015
(arXiv:1504.01044), Algorithm 1. A detector of the error rate misses a classifier that starts
to miss the minority class while its error rate barely moves; LFR watches the four rates of the
confusion matrix instead:

====  ==================  ================================
rate  definition          moved by an event with
====  ==================  ================================
TPR   TP / (TP + FN)      ``y_true`` positive
TNR   TN / (TN + FP)      ``y_true`` negative
PPV   TP / (TP + FP)      ``y_pred`` positive
NPV   TN / (TN + FN)      ``y_pred`` negative
====  ==================  ================================

Every event moves two rates. For each rate ``*`` the algorithm keeps:

- ``R_*``, a time-decayed estimate, ``R <- eta * R + (1 - eta) * [y_true == y_pred]``, updated
  only by the events that move the rate, starting from 0.5;
- ``P_*``, the rate itself from the confusion matrix ``C``, which starts with a count of 1 in
  each cell (so ``P_*`` starts at 0.5 and is never 0 or 1).

Under a stable concept, the ``k`` indicators that fed ``R_*`` are Bernoulli(``P_*``) draws, so
``R_*`` follows a known distribution; its ``level`` and ``1 - level`` quantiles are the bounds of
``R_*`` (the paper's ``BoundTable``), at ``warn_level`` and at ``detect_level``. When any rate
leaves its warn bounds a warning starts (``warning_start``, the paper's ``warn.time``; it ends
when every rate is back); when any rate leaves its detect bounds, drift is detected, and the
next update starts again from the initial state (``R``, ``P`` and ``C``), as river's detectors do.

This follows Algorithm 1 of the paper as we know it; its text was not at hand while writing,
so the defaults (``eta = 0.9``, warn 0.01, detect 0.0001) are the values we recall from its
experiments, and where its description leaves room, we chose the following:

1. **Exact bounds instead of Monte Carlo.** The paper simulates ``R = sum_i eta^(N-i) (1 - eta)
   I_i`` with ``I_i ~ Bernoulli(P)``. We compute that distribution by convolution, one
   indicator at a time, on a grid of step 1/16384, twice: with every weight rounded down to
   the grid and rounded up. The lower bounds are read on the first and the upper bounds on the
   second, so they are never too narrow, and too wide by at most ``K / 16384`` (0.005 for
   ``eta = 0.9``; about half that on average). At
   ``detect_level = 1e-4`` a Monte Carlo quantile would need millions of draws to be stable;
   this is deterministic and needs no seed.
2. **The recursion as it runs.** ``R`` starts at 0.5 and has had ``k`` updates (``k = N - 2``,
   ``N`` the rate's denominator in ``C`` with its two initial counts), so under the null
   ``R = eta^k / 2 + sum_{i<=k} eta^(k-i) (1 - eta) I_i``. Taking ``N`` terms from 0, as the
   paper's formula reads, puts the first values of ``R`` out of bounds (at ``N = 2`` the
   simulated ``R`` lies in [0, 0.19] while ``R = 0.5``), which other implementations patch
   with a burn-in period. With the exact recursion no burn-in is needed.
3. **A table, computed once.** Bounds depend on ``P`` (continuous) and ``k``. ``P`` is read on
   a grid of step 0.01: the lower bound comes from the grid point below ``P`` and the upper
   bound from the one above; the distribution of ``R`` grows with ``P``, so the bounds are
   conservative, never anti-conservative. For ``k >= K``, with ``eta^K <= 1e-4``, the bounds of
   ``K`` are used, widened by ``eta^K``. Each grid point's column of bounds (all ``k``) is
   computed with numpy the first time it is needed (some 20 ms for ``eta = 0.9``) and shared by
   every detector of the process with the same ``eta`` and levels; an update itself is a few
   float operations (no numpy), and :meth:`LinearFourRates.warm_up` fills the whole table ahead.
4. **Levels per side.** Each bound is one-sided at its level (``R < lower`` has probability at
   most ``level``, likewise ``R > upper``), so each rate is tested two-sided at ``2 * level``,
   with no correction for testing four rates (Algorithm 1 makes none that we know of). On a
   stable stream at most ``4 * detect_level`` of the updates can detect (two rates move, two
   sides each); we measure about 1 per 10,000 updates with the defaults.
5. **One decay for all rates.** The paper allows one ``eta`` per rate; we use one.
6. **A rate not moved keeps its verdict.** Its ``R`` and bounds are unchanged, so is whether it
   is out of bounds (this matters for warnings, which last until every rate is back).
7. **Multi-class.** ``positive`` names the positive label; everything else is negative (one
   against the rest).

>>> import random
>>> rng = random.Random(7)
>>> lfr = LinearFourRates()
>>> detected = []
>>> for t in range(6000):
...     y = rng.random() < 0.3
...     recall = 0.9 if t < 3000 else 0.4  # the positives start to be missed
...     y_pred = (rng.random() < recall) if y else (rng.random() < 0.05)
...     lfr.update(y, y_pred)
...     if lfr.drift_detected:
...         detected.append(t)
>>> [t for t in detected if t < 3000], 3000 < detected[0] < 3200
([], True)
"""

from __future__ import annotations

import math
from collections.abc import Hashable

import numpy as np

from onlearn.errors import ConfigError

__all__ = ["LinearFourRates"]

RATES = ("tpr", "tnr", "ppv", "npv")
R0 = 0.5  # initial R and P of every rate (the paper's Algorithm 1)
_GRID = 1 << 14  # points per unit of R in the exact distribution
_BLOCK = 64
_CELLS = 100  # grid of P: 0, 0.01, ..., 1
_TAIL = 1e-4  # K: the first k with eta^k <= _TAIL; later k use the bounds of K
_EPS = 1e-12  # float noise allowance of the bounds

# (eta, warn_level, detect_level) -> [None | rows] per grid point of P; rows[k] is
# (warn_lower, warn_upper, detect_lower, detect_upper) after k updates. Shared, deterministic.
_TABLES: dict[tuple[float, float, float], list] = {}


def _horizon(eta: float) -> int:
    return max(1, math.ceil(math.log(_TAIL) / math.log(eta)))


def _count_at_most(pmf: np.ndarray, cumulative_blocks: np.ndarray, level: float) -> int:
    """How many leading entries of ``pmf`` have a cumulative sum <= ``level``, given the
    cumulative sums of its blocks of ``_BLOCK`` entries (a full cumsum per step would cost
    more than all the rest)."""
    b = int(np.searchsorted(cumulative_blocks, level, side="right"))
    if b == len(cumulative_blocks):
        return len(pmf)
    before = cumulative_blocks[b - 1] if b else 0.0
    within = np.cumsum(pmf[b * _BLOCK : (b + 1) * _BLOCK]) + before
    return b * _BLOCK + int(np.searchsorted(within, level, side="right"))


def _bound_rows(eta: float, warn_level: float, detect_level: float, p: float) -> list[tuple]:
    """The bounds of R after k = 0, ..., K updates with Bernoulli(p) indicators.

    Two distributions are carried on the grid: each weight rounded down, and each rounded up.
    The first is never above the exact sum, the second never below it, whatever the
    indicators; so the lower bounds, read on the first, and the upper bounds, on the second,
    are exact or a little wide (by about ``p * K / (2 * _GRID)``), never too narrow.
    """
    horizon = _horizon(eta)
    size = -(-(_GRID + horizon + 2) // _BLOCK) * _BLOCK  # rounding up may pass 1; whole blocks
    low = np.zeros(size)  # weights rounded down
    high = np.zeros(size)  # weights rounded up
    low[0] = high[0] = 1.0
    rows = []
    for k in range(horizon + 1):
        low_blocks = np.cumsum(low.reshape(-1, _BLOCK).sum(axis=1))
        high_reversed = high[::-1]
        high_blocks = np.cumsum(high_reversed.reshape(-1, _BLOCK).sum(axis=1))
        row = []
        for level in (warn_level, detect_level):
            # the largest j with P(S < j) <= level, and the smallest j with P(S > j) <= level
            lower = _count_at_most(low, low_blocks, level)
            upper = size - 1 - _count_at_most(high_reversed, high_blocks, level)
            row += [lower / _GRID, upper / _GRID]
        if k == horizon:
            # stationary row: R >= S_K, and R <= S_K + eta^K (the tail) + eta^K * R0
            widen = eta**horizon * (1.0 + R0)
            rows.append(
                (row[0] - _EPS, row[1] + widen + _EPS, row[2] - _EPS, row[3] + widen + _EPS)
            )
            break
        start = eta**k * R0
        rows.append(
            (start + row[0] - _EPS, start + row[1] + _EPS, start + row[2] - _EPS,
             start + row[3] + _EPS)
        )  # fmt: skip
        # add the indicator of weight (1 - eta) eta^k: S_{k+1} = S_k + w B
        weight = (1.0 - eta) * eta**k * _GRID
        down = math.floor(weight)
        up = math.ceil(weight)
        for pmf, shift in ((low, down), (high, up)):
            moved = p * pmf
            pmf *= 1.0 - p
            if shift:
                pmf[shift:] += moved[:-shift]
            else:
                pmf += moved
    return rows


def _table(eta: float, warn_level: float, detect_level: float) -> list:
    key = (eta, warn_level, detect_level)
    table = _TABLES.get(key)
    if table is None:
        table = _TABLES.setdefault(key, [None] * (_CELLS + 1))
    return table


class LinearFourRates:
    """Linear Four Rates drift detector for a binary classifier, fed ``(y_true, y_pred)``.

    Parameters
    ----------
    eta
        Time decay of the rate estimates ``R`` (the weight of the past), in (0, 1).
    warn_level
        Significance level of the warning bounds (per side, per rate).
    detect_level
        Significance level of the detection bounds (per side, per rate).
    positive
        The positive label; any other label is negative.

    Hyperparameters are public; the confusion matrix, the rate estimates and their verdicts
    are private, read through :attr:`rates`, :attr:`estimates` and :attr:`confusion`.
    """

    def __init__(
        self,
        eta: float = 0.9,
        warn_level: float = 0.01,
        detect_level: float = 0.0001,
        positive: Hashable = True,
    ):
        self.eta = eta
        self.warn_level = warn_level
        self.detect_level = detect_level
        self.positive = positive
        for name, value in (
            ("eta", eta),
            ("warn_level", warn_level),
            ("detect_level", detect_level),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{name} must be a number, got {value!r}")
        if not 0 < eta <= 0.999:  # the table grows as 1 / (1 - eta)
            raise ConfigError(f"eta must be in (0, 0.999], got {eta!r}")
        for name, value in (("warn_level", warn_level), ("detect_level", detect_level)):
            if not 0 < value < 0.5:
                raise ConfigError(f"{name} must be in (0, 0.5), got {value!r}")
        if detect_level > warn_level:
            raise ConfigError(
                f"detect_level ({detect_level}) must be <= warn_level ({warn_level}): "
                "drift is the stronger evidence"
            )
        self.eta = float(eta)
        self.warn_level = float(warn_level)
        self.detect_level = float(detect_level)
        self._horizon = _horizon(self.eta)
        self._tables = _table(self.eta, self.warn_level, self.detect_level)
        self._t = 0
        self._n_detections = 0
        self._reset()

    def _reset(self) -> None:
        # C = [[1, 1], [1, 1]] as in the paper; kept as four ints
        self._tp = self._fn = self._tn = self._fp = 1
        self._r = [R0, R0, R0, R0]  # tpr, tnr, ppv, npv
        self._k = [0, 0, 0, 0]
        self._warn = [False, False, False, False]
        self._out = [False, False, False, False]
        self._n = 0
        self._drift_detected = False
        self._warning_detected = False
        self._warning_start: int | None = None

    # pickles carry the state, not the shared table, which is rebuilt on demand
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_tables"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._tables = _table(self.eta, self.warn_level, self.detect_level)

    def _column(self, cell: int) -> list[tuple]:
        column = _bound_rows(self.eta, self.warn_level, self.detect_level, cell / _CELLS)
        self._tables[cell] = column
        return column

    def warm_up(self) -> None:
        """Compute the whole table of bounds now (for ``eta = 0.9``, about 2 seconds), so that
        no update ever waits for a column."""
        for cell in range(_CELLS + 1):
            if self._tables[cell] is None:
                self._column(cell)

    def _check(self, i: int, correct: bool, hits: int, total: int) -> None:
        eta = self.eta
        r = self._r[i] = eta * self._r[i] + (1.0 - eta) * correct
        k = self._k[i] = self._k[i] + 1
        x = hits * _CELLS / total
        low = int(x)
        tables = self._tables
        below = tables[low] or self._column(low)
        above = below if low == x else (tables[low + 1] or self._column(low + 1))
        if k < self._horizon:
            below = below[k]
            above = above[k]
        else:
            below = below[-1]
            above = above[-1]
        self._warn[i] = r < below[0] or r > above[1]
        self._out[i] = r < below[2] or r > above[3]

    def update(self, y_true: Hashable, y_pred: Hashable) -> None:
        """One labelled prediction."""
        if self._drift_detected:
            self._reset()
        self._t += 1
        self._n += 1
        positive = self.positive
        actual = y_true == positive
        predicted = y_pred == positive
        correct = actual == predicted
        check = self._check
        if actual:
            if predicted:
                tp = self._tp = self._tp + 1
                check(0, correct, tp, tp + self._fn)
                check(2, correct, tp, tp + self._fp)
            else:
                fn = self._fn = self._fn + 1
                check(0, correct, self._tp, self._tp + fn)
                check(3, correct, self._tn, self._tn + fn)
        elif predicted:
            fp = self._fp = self._fp + 1
            check(1, correct, self._tn, self._tn + fp)
            check(2, correct, self._tp, self._tp + fp)
        else:
            tn = self._tn = self._tn + 1
            check(1, correct, tn, tn + self._fp)
            check(3, correct, tn, tn + self._fn)
        warn = self._warn
        if warn[0] or warn[1] or warn[2] or warn[3]:
            if self._warning_start is None:
                self._warning_start = self._t
            warning = True
        else:
            self._warning_start = None
            warning = False
        out = self._out
        if out[0] or out[1] or out[2] or out[3]:
            self._drift_detected = True
            self._warning_detected = False
            self._n_detections += 1
        else:
            self._warning_detected = warning

    @property
    def drift_detected(self) -> bool:
        """Whether the last update detected drift (the next update starts afresh)."""
        return self._drift_detected

    @property
    def warning_detected(self) -> bool:
        """Whether a rate is out of its warn bounds after the last update (and no drift)."""
        return self._warning_detected

    @property
    def warning_start(self) -> int | None:
        """The update (counted from 1 since creation) at which the current warning began, the
        paper's ``warn.time``: with the detection, the span to relearn from. None if none."""
        return self._warning_start

    @property
    def n(self) -> int:
        """Updates since the last reset."""
        return self._n

    @property
    def n_detections(self) -> int:
        return self._n_detections

    @property
    def rates(self) -> dict[str, float]:
        """The time-decayed rate estimates ``R``."""
        return dict(zip(RATES, self._r, strict=True))

    @property
    def estimates(self) -> dict[str, float]:
        """The rates ``P`` of the confusion matrix (with its initial counts of 1)."""
        tp, fn, tn, fp = self._tp, self._fn, self._tn, self._fp
        return {"tpr": tp / (tp + fn), "tnr": tn / (tn + fp), "ppv": tp / (tp + fp),
                "npv": tn / (tn + fn)}  # fmt: skip

    @property
    def confusion(self) -> dict[str, int]:
        """Counts since the last reset (without the initial counts of 1)."""
        return {"tp": self._tp - 1, "fn": self._fn - 1, "tn": self._tn - 1, "fp": self._fp - 1}

    def _hits_total(self, i: int) -> tuple[int, int]:
        tp, fn, tn, fp = self._tp, self._fn, self._tn, self._fp
        return ((tp, tp + fn), (tn, tn + fp), (tp, tp + fp), (tn, tn + fn))[i]

    def bounds(self, rate: str) -> tuple[float, float, float, float]:
        """``(warn_lower, warn_upper, detect_lower, detect_upper)`` of a rate (``"tpr"``,
        ``"tnr"``, ``"ppv"`` or ``"npv"``) for its current estimate and number of updates."""
        i = RATES.index(rate)
        hits, total = self._hits_total(i)
        x = hits * _CELLS / total
        low = int(x)
        high = low if low == x else low + 1
        row = min(self._k[i], self._horizon)
        below = (self._tables[low] or self._column(low))[row]
        above = (self._tables[high] or self._column(high))[row]
        return below[0], above[1], below[2], above[3]
