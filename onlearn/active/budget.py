"""The labelling budget: a cumulative budget with a capped credit line, and a rate cap.

The strategies (``onlearn.active.strategies``) are those of Zliobaite, Bifet, Pfahringer and
Holmes (2014), "Active Learning With Drifting Streaming Data", IEEE TNNLS 25(1). Their budget
manager is *not* the paper's (an exponentially forgotten estimate over ``w`` predictions, which
overspends at start), and no longer the exact sliding window this project had first: a window
of ``w`` predictions forbade spending exactly when labels are worth most, at cold start (a
10-class stream: 12 % accuracy over the first 500 points against 60 % with every label) and
right after a concept change.

``CreditBudget`` holds the budget over the whole run instead, and lends against it:

- after ``n`` predictions ``budget * n`` labels are earned; unspent ones are saved, up to
  ``max(1, credit)`` labels (older savings are forgiven, so a quiet stretch cannot flood later);
- a **credit line** lets the strategy ask ahead of what it earned: ``cold_start`` labels on a
  fresh model, and on a drift alarm (``on_drift``) the debt owed plus ``drift_credit``, never
  above the cap ``credit``;
- the line shrinks by ``repay * budget`` per prediction: the debt is **repaid by asking less**
  (at most ``(1 - repay) * budget`` per prediction) until the asks are back at ``budget * n``;
- a **rate cap** keeps one allowance from flooding the queue: no ``window`` consecutive
  predictions hold more than ``floor(max_rate * window)`` asks (``BudgetManager``, an exact
  sliding window); ``max_rate`` defaults to ``min(1, 5 * budget)``.

**The bound**: over any run of ``n`` predictions, the labels asked are at most
``budget * n + credit`` (``tests/active/test_budget.py`` checks it over seeds, strategies and
adversarial uncertainty sequences, drift alarms included).

``BudgetManager`` is the exact sliding window. No ``window`` consecutive predictions hold more
than ``floor(rate * window)`` labels; ``rate * window`` must be at least 1 (the constructor
refuses it and names the smallest window that works), and the count is computed with a guard
against float rounding (0.29 x 100 gives 29, not 28).
"""

from __future__ import annotations

import math
from collections import deque

from onlearn.active._check import check_count, check_share, check_whole
from onlearn.errors import ConfigError

__all__ = ["BudgetManager", "CreditBudget", "labels_per_window"]

# The credit line's defaults (tuned on benchmarks/active_learning.py, see RESULTS.md): a fresh
# model may ask DEFAULT_COLD_START labels ahead of its budget, a drift alarm opens
# DEFAULT_DRIFT_CREDIT more on top of the debt, the debt never exceeds DEFAULT_CREDIT, and while
# in debt DEFAULT_REPAY of the budget is withheld. The cold start is repaid after
# cold_start / (repay * budget) predictions (1333 at a 10 % budget).
DEFAULT_CREDIT = 150
DEFAULT_COLD_START = 100
DEFAULT_DRIFT_CREDIT = 75
DEFAULT_REPAY = 0.75

MAX_RATE_FACTOR = 5
"""The default rate cap, as a multiple of the budget (``max_rate = min(1, 5 * budget)``)."""

# A product of two floats is off by at most one part in 2**53 of itself; a relative guard far
# above that and far below any meaningful difference turns 28.999999999999996 into 29.
_ROUNDING = 1e-9


def labels_per_window(budget: float, window: int) -> int:
    """``floor(budget * window)``, the labels allowed in any ``window`` consecutive predictions.

    >>> labels_per_window(0.29, 100), labels_per_window(0.1, 1000), labels_per_window(0.05, 30)
    (29, 100, 1)
    """
    return math.floor(budget * window * (1 + _ROUNDING))


def check_budget_window(budget: float, window: int, where: str, name: str = "budget") -> int:
    """``labels_per_window(budget, window)``, refused with a ``ConfigError`` when it is 0;
    ``name`` is the rate's config key (``budget``, or ``max_rate`` for the rate cap)."""
    limit = labels_per_window(budget, window)
    if limit < 1:
        fix = f"a larger {name}"
        if math.isfinite(1 / budget):  # not for a subnormal budget
            smallest = math.ceil(1 / budget)
            while labels_per_window(budget, smallest) < 1:
                smallest += 1
            while smallest > 1 and labels_per_window(budget, smallest - 1) >= 1:
                smallest -= 1
            fix = f"a window of at least {smallest} predictions (or a larger {name})"
        raise ConfigError(
            f"{where}: {name} * window must be at least 1, got {budget!r} * {window!r} "
            f"= {budget * window:.4g}: no window of {window} predictions may hold a label, so "
            f"nothing would ever be asked; use {fix}"
        )
    return limit


class BudgetManager:
    """Allows a label only if the ``window`` predictions ending with this one would hold at most
    ``floor(budget * window)`` labels.

    Parameters
    ----------
    budget
        The share of predictions that may be labelled, in ``(0, 1]``; 1 means no limit.
    window
        The number of consecutive predictions the budget is held over; ``budget * window`` must
        be at least 1.

    >>> manager = BudgetManager(budget=0.5, window=4)  # at most 2 labels in any 4 predictions
    >>> asked = []
    >>> for _ in range(8):
    ...     asked.append(manager.can_spend)
    ...     manager.update(asked[-1])
    >>> asked
    [True, True, False, False, True, True, False, False]
    >>> manager.spending
    0.5
    >>> BudgetManager(budget=0.01, window=50)
    Traceback (most recent call last):
    ...
    onlearn.errors.ConfigError: BudgetManager: budget * window must be at least 1, got 0.01 * 50 \
= 0.5: no window of 50 predictions may hold a label, so nothing would ever be asked; use a window \
of at least 100 predictions (or a larger budget)
    """

    def __init__(self, budget: float = 0.1, window: int = 1000) -> None:
        where = type(self).__name__
        self.budget = check_share("budget", budget, where, zero=False)
        self.window = check_count("window", window, where)
        # floor(budget * window): the labels allowed in any `window` consecutive predictions.
        self.limit = check_budget_window(budget, window, where)
        self._labelled: deque[bool] = deque(maxlen=window)
        self._count = 0  # labels among the flags in _labelled

    @property
    def spending(self) -> float:
        """The share of the last ``min(n_seen, window)`` predictions labelled (0 before any)."""
        n = len(self._labelled)
        return self._count / n if n else 0.0

    @property
    def n_labelled(self) -> int:
        """Labels among the last ``window`` predictions."""
        return self._count

    @property
    def can_spend(self) -> bool:
        """Whether the next prediction may be labelled: the window of ``window`` predictions
        ending with it would hold at most ``limit`` labels."""
        labelled = self._labelled
        # The oldest flag leaves the window when the next prediction enters it.
        leaving = labelled[0] if len(labelled) == self.window else False
        return self._count - leaving < self.limit

    def update(self, labelled: bool) -> None:
        """Account for one prediction, labelled or not."""
        flags = self._labelled
        labelled = bool(labelled)
        if len(flags) == self.window:
            self._count -= flags[0]  # append drops it
        flags.append(labelled)
        self._count += labelled

    def __repr__(self) -> str:
        return f"BudgetManager(budget={self.budget!r}, window={self.window!r})"


class CreditBudget:
    """A cumulative budget with a capped credit line and a rate cap (the strategies' budget).

    Spending is held against the whole run, not a window: after ``n`` predictions,
    ``budget * n`` labels are *earned*. A label may be asked when the asks so far, plus this
    one, stay within what was earned plus the open **credit line**:

        asked + 1  <=  budget * n  -  forgiven  +  line(n)        (n counts this prediction)

    - the **line** opens at ``cold_start`` labels on the first prediction (a model with no
      label learns most from its first ones), and again on ``on_drift`` at the debt already
      owed plus ``drift_credit`` labels; never above ``credit`` (the cap wins over both, so
      ``credit = 0`` turns the line off);
    - it is **repaid by asking less**: the line shrinks by ``repay * budget`` per prediction,
      so while in debt at most ``(1 - repay) * budget`` labels per prediction are asked, until
      the asks are back at ``budget * n``; ``repay = 1`` asks nothing until then;
    - **savings are capped**: unspent budget beyond ``max(1, credit)`` labels is ``forgiven``
      (lost), so that a long quiet stretch cannot turn into a flood later;
    - a **rate cap**, an exact sliding window (``BudgetManager(max_rate, window)``): no
      ``window`` consecutive predictions hold more than ``floor(max_rate * window)`` asks,
      whatever the line allows.

    The bound: ``forgiven >= 0`` and ``line(n) <= credit``, so after any ``n`` predictions

        asked  <=  budget * n  +  credit

    exactly (up to the rounding of the float product ``budget * n``). Over any stretch of
    predictions ``s+1 .. t`` the asks are at most ``budget * (t - s) + max(1, credit) + credit``
    and at most ``ceil((t - s) / window) * floor(max_rate * window)``.

    >>> manager = CreditBudget(budget=0.1, credit=4, cold_start=4, drift_credit=3, repay=0.5,
    ...                        max_rate=1.0, window=10)
    >>> def run(n):  # one character per prediction: x asked (the strategy always wants it)
    ...     out = ""
    ...     for _ in range(n):
    ...         ask = manager.can_spend
    ...         manager.update(ask)
    ...         out += "x" if ask else "."
    ...     return out
    >>> run(40)  # 4 on credit at once, then half the budget while the line is repaid
    'xxxx...............x...................x'
    >>> manager.on_drift()  # the debt owed (2) plus 3, capped at credit = 4
    >>> run(20), manager.n_labelled, manager.bound(60)  # at most 0.1 x 60 + 4
    ('xx................x.', 9, 10.0)
    """

    def __init__(
        self,
        budget: float = 0.1,
        credit: int = DEFAULT_CREDIT,
        cold_start: int = DEFAULT_COLD_START,
        drift_credit: int = DEFAULT_DRIFT_CREDIT,
        repay: float = DEFAULT_REPAY,
        max_rate: float | None = None,
        window: int = 1000,
    ) -> None:
        where = type(self).__name__
        self.budget = check_share("budget", budget, where, zero=False)
        self.credit = check_whole("credit", credit, where)
        self.cold_start = check_whole("cold_start", cold_start, where)
        self.drift_credit = check_whole("drift_credit", drift_credit, where)
        self.repay = check_share("repay", repay, where, zero=False)
        self.max_rate = default_max_rate(budget) if max_rate is None else max_rate
        check_share("max_rate", self.max_rate, where, zero=False)
        self.window = check_count("window", window, where)
        check_budget_window(self.max_rate, window, where, name="max_rate")
        self.rate_cap = BudgetManager(self.max_rate, window)
        self._savings = max(1.0, float(credit))
        self._n = 0
        self._asked = 0
        self._forgiven = 0.0
        self._grant = float(min(cold_start, credit))  # the line when granted; the cap wins
        self._granted_at = 0  # predictions seen when it was granted
        self._n_drifts = 0

    def line(self, n: int | None = None) -> float:
        """The credit line open at prediction ``n`` (default: the next one)."""
        n = self._n + 1 if n is None else n
        return max(0.0, self._grant - self.repay * self.budget * (n - self._granted_at))

    @property
    def balance(self) -> float:
        """Labels earned and not asked: negative while in debt."""
        return self.budget * self._n - self._forgiven - self._asked

    @property
    def can_spend(self) -> bool:
        """Whether the next prediction may be labelled: within the budget plus the line, and
        under the rate cap."""
        n = self._n + 1
        within = self._asked + 1 <= self.budget * n - self._forgiven + self.line(n)
        return within and self.rate_cap.can_spend

    def update(self, labelled: bool) -> None:
        """Account for one prediction, labelled or not."""
        labelled = bool(labelled)
        self._n += 1
        self._asked += labelled
        self.rate_cap.update(labelled)
        excess = self.balance - self._savings
        if excess > 0:
            self._forgiven += excess

    def on_drift(self) -> None:
        """Open the line again: the debt owed now plus ``drift_credit``, at most ``credit``."""
        debt = max(0.0, -self.balance)
        self._grant = min(float(self.credit), max(self.line(), debt + self.drift_credit))
        self._granted_at = self._n + 1
        self._n_drifts += 1

    @property
    def spending(self) -> float:
        """The share of all predictions so far asked for (0 before any)."""
        return self._asked / self._n if self._n else 0.0

    @property
    def n_labelled(self) -> int:
        """Labels asked for so far."""
        return self._asked

    @property
    def n_drifts(self) -> int:
        """Times the line was opened again by ``on_drift``."""
        return self._n_drifts

    def bound(self, n: int) -> float:
        """The most labels that may be asked over the first ``n`` predictions."""
        return self.budget * n + self.credit

    def __repr__(self) -> str:
        return (
            f"CreditBudget(budget={self.budget!r}, credit={self.credit!r}, "
            f"cold_start={self.cold_start!r}, drift_credit={self.drift_credit!r}, "
            f"repay={self.repay!r}, max_rate={self.max_rate!r}, window={self.window!r})"
        )


def default_max_rate(budget: float) -> float:
    """The rate cap when none is given: ``min(1, MAX_RATE_FACTOR * budget)``."""
    return min(1.0, MAX_RATE_FACTOR * budget)
