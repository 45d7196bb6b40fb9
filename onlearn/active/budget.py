"""The labelling budget: a share of the traffic, held exactly over every window of predictions.

The strategies (``onlearn.active.strategies``) are those of Zliobaite, Bifet, Pfahringer and
Holmes (2014), "Active Learning With Drifting Streaming Data", IEEE TNNLS 25(1). Their budget
manager is *not* the paper's. The paper (section IV) estimates the labels spent over the last
``w`` predictions with an exponential forgetting, ``u_t = u_{t-1} * (w - 1) / w + labelled_t``,
and asks while ``u_t / w`` is below the budget. That estimate only approximates the window: a
fresh manager (or one after a quiet stretch) starts from zero and may spend about
``-w * log(1 - budget)`` labels in a row before it catches up, and one window of ``w``
predictions can then hold up to about twice the budget.

Here the budget is an exact count: the manager keeps whether each of the last ``window``
predictions was labelled (a ``deque`` and a running count, O(1) time per prediction, ``window``
flags of memory), and allows a label only if the window ending at this prediction still has room:

    labels among the previous ``window - 1`` predictions  +  1  <=  floor(budget * window)

So **no ``window`` consecutive predictions ever hold more than ``floor(budget * window)``
labels**, from the first prediction on. What it means in practice:

- the budget is a whole number of labels per window, ``floor(budget * window)`` (computed with a
  guard against float rounding: 0.29 x 100 gives 29, not 28). ``budget * window`` must be at least
  1, or nothing could ever be asked: the constructor refuses it and names the smallest window that
  works. Keep it well above 1 (10 or more), or rounding down costs a visible part of the budget;
- a burst is still possible, within the window: a fresh manager may give all
  ``floor(budget * window)`` labels to the first predictions, then refuses until they leave the
  window. A label asked at ``t`` frees its slot at ``t + window``, so a strategy that wants
  every label repeats that pattern window after window;
- over ``n`` predictions at most ``ceil(n / window) * floor(budget * window)`` labels are asked:
  the long-run share is at most the budget (a little above it over a short stream, through the
  last, partial window).

A budget of 1 never refuses.
"""

from __future__ import annotations

import math
from collections import deque

from onlearn.active._check import check_count, check_share
from onlearn.errors import ConfigError

__all__ = ["BudgetManager", "labels_per_window"]

# A product of two floats is off by at most one part in 2**53 of itself; a relative guard far
# above that and far below any meaningful difference turns 28.999999999999996 into 29.
_ROUNDING = 1e-9


def labels_per_window(budget: float, window: int) -> int:
    """``floor(budget * window)``, the labels allowed in any ``window`` consecutive predictions.

    >>> labels_per_window(0.29, 100), labels_per_window(0.1, 1000), labels_per_window(0.05, 30)
    (29, 100, 1)
    """
    return math.floor(budget * window * (1 + _ROUNDING))


def check_budget_window(budget: float, window: int, where: str) -> int:
    """``labels_per_window(budget, window)``, refused with a ``ConfigError`` when it is 0."""
    limit = labels_per_window(budget, window)
    if limit < 1:
        fix = "a larger budget"
        if math.isfinite(1 / budget):  # not for a subnormal budget
            smallest = math.ceil(1 / budget)
            while labels_per_window(budget, smallest) < 1:
                smallest += 1
            while smallest > 1 and labels_per_window(budget, smallest - 1) >= 1:
                smallest -= 1
            fix = f"a window of at least {smallest} predictions (or {fix})"
        raise ConfigError(
            f"{where}: budget * window must be at least 1, got {budget!r} * {window!r} "
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
