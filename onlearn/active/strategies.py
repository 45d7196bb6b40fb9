"""Stream strategies: whether to ask for the label of one prediction, within a budget.

The strategies of Zliobaite, Bifet, Pfahringer and Holmes (2014), "Active Learning With
Drifting Streaming Data", IEEE TNNLS 25(1). Each sees every prediction once, in order, through
``decide(uncertainty) -> bool``; the answer is final (a stream cannot come back to a point).
As in the paper's framework, a label is asked for only when the budget allows it *and* the
strategy wants it; when the budget refuses, the strategy is not consulted and its state does not
move. The budget is not the paper's estimate but a ``CreditBudget`` (``onlearn.active.budget``):
cumulative, with a credit line for the cold start and after drift alarms (``on_drift``), and a
rate cap over ``window`` predictions. Over ``n`` predictions a strategy asks at most
``budget * n + credit`` labels.

The paper thresholds the highest posterior ``p1``: it labels when ``p1 < theta``. Here the
strategies take any uncertainty ``u`` in ``[0, 1]`` from ``onlearn.active`` and work on the
confidence ``c = 1 - u``, which is ``p1`` exactly for the ``least_confident`` measure:

=================================== =========================================================
``RandomSampling``                  ask with probability ``budget`` (the paper's Random)
``FixedUncertainty``                ask when ``u > threshold``
``VariableUncertainty``             ask when ``c < theta``; ``theta *= 1 - step`` after asking,
                                    ``theta *= 1 + step`` otherwise (``theta`` starts at 1)
``RandomizedVariableUncertainty``   as variable, against ``theta * eta``, ``eta ~ N(1, delta)``
``Split``                           a share ``random_share`` asked at random, the rest variable
=================================== =========================================================

The variable strategies spend the budget whatever the level of uncertainty: the threshold widens
until labels are asked and narrows while they are, so after a drift that makes everything look
certain (or uncertain) they keep labelling the least certain points. Randomization and the
random share also label points far from the decision boundary, where a drift may hide.

Hyperparameters are public attributes and never change; the learned state (threshold, spending,
random state) is private. Strategies pickle, and a seeded strategy fed the same stream gives the
same answers in every process.

>>> strategy = VariableUncertainty(budget=0.5, step=0.1, window=4, cold_start=0, credit=0)
>>> [strategy.decide(u) for u in (0.9, 0.9, 0.9, 0.9, 0.1, 0.5, 0.9)]  # no credit: 1 in 2
[False, True, False, True, False, True, False]
>>> strategy.n_asked, round(strategy.threshold, 4)
(3, 0.271)
>>> strategy.bound(7)  # at most budget * n + credit
3.5
"""

from __future__ import annotations

import math
import random
from typing import Any, ClassVar

from onlearn.active._check import (
    check_count,
    check_non_negative,
    check_seed,
    check_share,
    check_step,
)
from onlearn.active.budget import (
    DEFAULT_COLD_START,
    DEFAULT_CREDIT,
    DEFAULT_DRIFT_CREDIT,
    DEFAULT_REPAY,
    CreditBudget,
)

__all__ = [
    "CREDIT_KEYS",
    "DEFAULT_SEED",
    "DEFAULT_STEP",
    "STRATEGIES",
    "FixedUncertainty",
    "RandomSampling",
    "RandomizedVariableUncertainty",
    "Split",
    "Strategy",
    "VariableUncertainty",
]

DEFAULT_SEED = 42
"""The seed of random strategies built without one (the same default as model pipelines)."""

DEFAULT_STEP = 0.03
"""How fast the variable strategies' threshold adapts: ``theta`` moves by this share per
prediction. Chosen on the six streams benchmarks/active_learning.py was first tuned on (issue 14,
second round; the paper's 0.01 adapted too slowly after a cold start or a drift), then evaluated
on all ten: see benchmarks/RESULTS.md."""


_CREDIT_DEFAULTS: dict[str, Any] = {
    "credit": DEFAULT_CREDIT,
    "cold_start": DEFAULT_COLD_START,
    "drift_credit": DEFAULT_DRIFT_CREDIT,
    "repay": DEFAULT_REPAY,
    "max_rate": None,
}
CREDIT_KEYS = tuple(_CREDIT_DEFAULTS)
"""The budget's keys every strategy takes (keyword arguments; see ``CreditBudget``)."""

# theta only shrinks while labels are asked; a floor keeps it from reaching 0, from where
# theta * (1 + step) could never grow back. It only matters for confidences below it.
_MIN_THETA = 1e-6


class Strategy:
    """Base class: a ``CreditBudget`` plus the decision rule ``_wants``.

    Subclasses set ``name`` (their config name) and implement ``_wants(uncertainty)``. Every
    strategy takes the budget's keys (``CREDIT_KEYS``: ``credit``, ``cold_start``,
    ``drift_credit``, ``repay``, ``max_rate``) as keyword arguments, with the defaults of
    ``CreditBudget``; ``window`` is the rate cap's window.
    """

    name: ClassVar[str] = ""

    def __init__(
        self,
        budget: float = 0.1,
        window: int = 1000,
        *,
        credit: int = DEFAULT_CREDIT,
        cold_start: int = DEFAULT_COLD_START,
        drift_credit: int = DEFAULT_DRIFT_CREDIT,
        repay: float = DEFAULT_REPAY,
        max_rate: float | None = None,
    ) -> None:
        where = type(self).__name__
        self.budget = check_share("budget", budget, where, zero=False)
        self.window = check_count("window", window, where)
        self._budget = CreditBudget(
            budget,
            credit=credit,
            cold_start=cold_start,
            drift_credit=drift_credit,
            repay=repay,
            max_rate=max_rate,
            window=window,
        )
        self.credit = credit
        self.cold_start = cold_start
        self.drift_credit = drift_credit
        self.repay = repay
        self.max_rate = max_rate  # None: the default, min(1, 5 * budget)
        self._n = 0
        self._n_asked = 0

    def decide(self, uncertainty: float) -> bool:
        """Whether to ask for this prediction's label, given its uncertainty in ``[0, 1]``."""
        manager = self._budget
        ask = manager.can_spend and self._wants(uncertainty)
        manager.update(ask)
        self._n += 1
        self._n_asked += ask
        return ask

    def on_drift(self) -> None:
        """A drift alarm: open the credit line again (``CreditBudget.on_drift``), to be spent
        by this strategy's own rule on the predictions that follow, the new concept's."""
        self._budget.on_drift()

    def _wants(self, uncertainty: float) -> bool:
        raise NotImplementedError

    # Importance weights (onlearn/weights.py) need the chance that ``decide`` asks; only
    # strategies that ask at random with a positive floor have one worth weighting by.
    randomised: ClassVar[bool] = False

    def ask_probability(self, uncertainty: float) -> float:
        """The probability that ``decide(uncertainty)``, called next, asks; changes no state.

        0 while the budget refuses; else the strategy's chance of wanting the point (0 or 1
        for the deterministic strategies).
        """
        if not self._budget.can_spend:
            return 0.0
        return self._p_wants(uncertainty)

    def _p_wants(self, uncertainty: float) -> float:
        raise NotImplementedError

    @property
    def spending(self) -> float:
        """The share of all predictions so far asked for (0 before any)."""
        return self._budget.spending

    @property
    def balance(self) -> float:
        """Labels earned and not asked (negative while the credit line is drawn)."""
        return self._budget.balance

    @property
    def n_seen(self) -> int:
        """Predictions decided on."""
        return self._n

    @property
    def n_asked(self) -> int:
        """Labels asked for."""
        return self._n_asked

    @property
    def n_drifts(self) -> int:
        """Drift alarms that opened the credit line."""
        return self._budget.n_drifts

    def bound(self, n: int) -> float:
        """The most labels this strategy may ask over ``n`` predictions: ``budget * n + credit``."""
        return self._budget.bound(n)

    def _params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"budget": self.budget, "window": self.window}
        for key in CREDIT_KEYS:
            if getattr(self, key) != _CREDIT_DEFAULTS[key]:
                params[key] = getattr(self, key)
        return params

    def to_config(self) -> dict[str, Any]:
        """The config table of this strategy (its name and hyperparameters)."""
        return {"strategy": self.name, **self._params()}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({params})"


class RandomSampling(Strategy):
    """Asks with probability ``budget``, whatever the uncertainty (the paper's Random).

    The budget manager still applies, so the share asked ends below ``budget``: the window
    refuses whenever chance ran ahead, and the draws it refused are not made up later.
    Measured: 0.69, 0.85 and 0.92 of the budget for ``budget * window`` = 4, 20 and 60.
    """

    name = "random"

    def __init__(
        self, budget: float = 0.1, window: int = 1000, seed: int = DEFAULT_SEED, **credit: Any
    ) -> None:
        super().__init__(budget, window, **credit)
        self.seed = check_seed("seed", seed, type(self).__name__)
        self._rng = random.Random(seed)

    randomised = True

    def _wants(self, uncertainty: float) -> bool:
        return self._rng.random() < self.budget

    def _p_wants(self, uncertainty: float) -> float:
        return self.budget

    def _params(self) -> dict[str, Any]:
        return {**super()._params(), "seed": self.seed}


class FixedUncertainty(Strategy):
    """Asks when the uncertainty exceeds a fixed ``threshold`` (the paper's Fixed Uncertainty).

    ``threshold = 0.1`` with ``least_confident`` asks when the highest probability is below
    0.9. Once the model is sure of itself it may spend far less than the budget, and a drift in
    a region it is sure about goes unseen; the variable strategies exist for that.
    """

    name = "fixed_uncertainty"

    def __init__(
        self, threshold: float = 0.1, budget: float = 0.1, window: int = 1000, **credit: Any
    ) -> None:
        super().__init__(budget, window, **credit)
        self.threshold = check_share("threshold", threshold, type(self).__name__)

    def _wants(self, uncertainty: float) -> bool:
        return uncertainty > self.threshold

    def _p_wants(self, uncertainty: float) -> float:
        return 1.0 if uncertainty > self.threshold else 0.0

    def _params(self) -> dict[str, Any]:
        return {"threshold": self.threshold, **super()._params()}


class VariableUncertainty(Strategy):
    """Asks when the confidence is below a threshold that adapts to spend the budget.

    The paper's Variable Uncertainty: ``theta`` starts at 1 and is multiplied by ``1 - step``
    after each label asked, by ``1 + step`` after each prediction not asked for.
    """

    name = "variable_uncertainty"

    def __init__(
        self, budget: float = 0.1, step: float = DEFAULT_STEP, window: int = 1000, **credit: Any
    ) -> None:
        super().__init__(budget, window, **credit)
        self.step = check_step("step", step, type(self).__name__)
        self._theta = 1.0

    @property
    def threshold(self) -> float:
        """The current uncertainty threshold, ``1 - theta``: asked when the uncertainty is above.

        It is negative when ``theta`` grew above 1: every prediction then qualifies.
        """
        return 1.0 - self._theta

    def _wants(self, uncertainty: float) -> bool:
        if 1.0 - uncertainty < self._theta:
            theta = self._theta * (1.0 - self.step)
            self._theta = theta if theta > _MIN_THETA else _MIN_THETA
            return True
        self._theta *= 1.0 + self.step
        return False

    def _p_wants(self, uncertainty: float) -> float:
        return 1.0 if 1.0 - uncertainty < self._theta else 0.0

    def _params(self) -> dict[str, Any]:
        return {**super()._params(), "step": self.step}


class RandomizedVariableUncertainty(VariableUncertainty):
    """Variable uncertainty against a randomized threshold ``theta * eta``, ``eta ~ N(1, delta)``.

    The randomization asks now and then about points the model is sure of, where a drift can hide
    (the paper's Randomized Variable Uncertainty, with ``delta = 1``). ``delta`` is used as the
    standard deviation of ``eta`` (the paper calls it a variance; at 1 they agree).
    """

    name = "randomized_variable_uncertainty"

    def __init__(
        self,
        budget: float = 0.1,
        step: float = DEFAULT_STEP,
        delta: float = 1.0,
        window: int = 1000,
        seed: int = DEFAULT_SEED,
        **credit: Any,
    ) -> None:
        super().__init__(budget, step, window, **credit)
        self.delta = check_non_negative("delta", delta, type(self).__name__)
        self.seed = check_seed("seed", seed, type(self).__name__)
        self._rng = random.Random(seed)

    def _wants(self, uncertainty: float) -> bool:
        if 1.0 - uncertainty < self._theta * self._rng.gauss(1.0, self.delta):
            theta = self._theta * (1.0 - self.step)
            self._theta = theta if theta > _MIN_THETA else _MIN_THETA
            return True
        self._theta *= 1.0 + self.step
        return False

    @property
    def randomised(self) -> bool:  # type: ignore[override]
        return self.delta > 0

    def _p_wants(self, uncertainty: float) -> float:
        # P(c < theta * eta) for eta ~ N(1, delta), theta > 0: P(eta > c / theta).
        c = 1.0 - uncertainty
        if self.delta == 0:
            return 1.0 if c < self._theta else 0.0
        z = (c / self._theta - 1.0) / self.delta
        return 0.5 * math.erfc(z / math.sqrt(2.0))

    def _params(self) -> dict[str, Any]:
        return {**super()._params(), "delta": self.delta, "seed": self.seed}


class Split(VariableUncertainty):
    """A share ``random_share`` of the predictions is asked for at random, the rest by variable
    uncertainty (the paper's Split, with ``v = 0.2``; the random picks leave the threshold as it
    is). The random part keeps an unbiased view of the whole input space.
    """

    name = "split"

    def __init__(
        self,
        budget: float = 0.1,
        step: float = DEFAULT_STEP,
        random_share: float = 0.2,
        window: int = 1000,
        seed: int = DEFAULT_SEED,
        **credit: Any,
    ) -> None:
        super().__init__(budget, step, window, **credit)
        self.random_share = check_share("random_share", random_share, type(self).__name__)
        self.seed = check_seed("seed", seed, type(self).__name__)
        self._rng = random.Random(seed)

    def _wants(self, uncertainty: float) -> bool:
        if self._rng.random() < self.random_share:
            return True
        return super()._wants(uncertainty)

    @property
    def randomised(self) -> bool:  # type: ignore[override]
        return self.random_share > 0

    def _p_wants(self, uncertainty: float) -> float:
        share = self.random_share
        return share + (1.0 - share) * super()._p_wants(uncertainty)

    def _params(self) -> dict[str, Any]:
        return {**super()._params(), "random_share": self.random_share, "seed": self.seed}


STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (
        RandomSampling,
        FixedUncertainty,
        VariableUncertainty,
        RandomizedVariableUncertainty,
        Split,
    )
}
"""The strategies by config name."""
