"""The sampler: for every prediction, whether to ask a human for its label, why, and how urgently.

A ``Sampler`` joins three things:

- a **measure** of uncertainty (``onlearn.active.uncertainty``, or a committee measure from
  ``onlearn.active.committee`` when shadows answer too);
- a **strategy** that asks about uncertain predictions within a labelling budget
  (``onlearn.active.strategies``);
- a **random slice**: a small share of the traffic asked for at random, whatever the uncertainty
  and on top of the budget, so that accuracy can be estimated without the bias of labelling only
  the hard cases.

``decide`` returns a ``Decision``: ``ask``, ``reason`` (``"uncertain"``, ``"random"`` or
``None``), ``priority`` (higher is labelled first) and the ``uncertainty`` itself.

The slice and the strategy draw from separate random streams and both see every prediction, so
the slice is a plain random sample of the traffic. A prediction both would ask about is asked
once, as ``"random"``: the slice must contain every point it drew. Its items get priority
``1 + uncertainty``, above every ``"uncertain"`` item (whose priority is the uncertainty), so
that a full queue never evicts them; ``priority_of`` gives the rule to re-rankers.

A sampler is built from a config table with ``sampler_from_config``::

    [sampler]
    strategy = "variable_uncertainty"   # or random, fixed_uncertainty, split,
    measure = "margin"                  # randomized_variable_uncertainty
    budget = 0.1                        # share of predictions that may be asked about:
                                        # at most budget * n + credit over n predictions
    credit = 150                        # cap of the credit line (labels asked ahead)
    cold_start = 100                    # asked ahead on a fresh model
    drift_credit = 75                   # asked ahead again on a drift alarm
    repay = 0.75                        # share of the budget withheld while in debt
    max_rate = 0.5                      # rate cap: no `window` consecutive predictions hold
    window = 1000                       # more than floor(max_rate * window) asks
                                        # (max_rate defaults to min(1, 5 * budget))
    step = 0.03                         # variable strategies: theta moves 3 % per prediction
    steer = true                        # bought labels' surprise opens the credit line
    evaluation_rate = 0.01              # random slice, on top of the budget
    seed = 42
    importance_weights = false          # randomised strategies only: Decision.p, learned as
    weight_clip = 10                    # the weight min(1 / p, weight_clip) (onlearn/weights.py)
    pace_weight = true                  # bought labels teach linear models with the weight
                                        # min(1 / budget, weight_clip) (onlearn/weights.py)

>>> sampler = sampler_from_config({"budget": 0.5, "window": 10, "seed": 1})
>>> sampler.strategy
VariableUncertainty(budget=0.5, window=10, step=0.03)
>>> decision = sampler.decide({"spam": 0.55, "ham": 0.45})
>>> decision.ask, decision.reason, round(decision.priority, 4)
(True, <Reason.UNCERTAIN: 'uncertain'>, 0.9)
>>> sampler_from_config(sampler.to_config()).to_config() == sampler.to_config()
True

A sampler is not thread-safe: decide under the lock that guards the model, or on one thread.
"""

from __future__ import annotations

import enum
import inspect
import math
import random
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, NamedTuple

from onlearn.active._check import (
    check_bool,
    check_choice,
    check_count,
    check_non_negative,
    check_seed,
    check_share,
    check_step,
    check_whole,
)
from onlearn.active.budget import check_budget_window, default_max_rate
from onlearn.active.committee import COMMITTEE_MEASURES, _opinions
from onlearn.active.steering import SurpriseDetector
from onlearn.active.strategies import (
    CREDIT_KEYS,
    DEFAULT_SEED,
    STRATEGIES,
    Strategy,
    VariableUncertainty,
)
from onlearn.active.uncertainty import MEASURES, entropy
from onlearn.errors import ConfigError
from onlearn.weights import DEFAULT_WEIGHT_CLIP, check_weight_clip, check_weights

__all__ = [
    "ALL_MEASURES",
    "DEFAULT_MEASURE",
    "LABEL_SHARE_HALF_LIFE",
    "Decision",
    "RandomSlice",
    "Reason",
    "Sampler",
    "priority_of",
    "sampler_from_config",
]

DEFAULT_MEASURE = "margin"
"""The uncertainty measure of a sampler whose config names none: the margin between the two
likeliest classes (1 minus their difference). It was ``entropy`` until issue 14's fourth round:
on the multi-class streams the margin asks about the pairs of classes the model confuses, where
entropy also counts the classes it has ruled out (benchmarks/RESULTS.md, "Active learning")."""

LABEL_SHARE_HALF_LIFE = 2000
"""Predictions after which a label the strategy did not buy counts half in the pace's share."""
_DECAY = 0.5 ** (1.0 / LABEL_SHARE_HALF_LIFE)

Proba = Mapping[Hashable, float]

ALL_MEASURES = (*MEASURES, *COMMITTEE_MEASURES)
"""Every measure a sampler accepts, by config name."""

# Committee measures that are 0 for a committee of one: alone, the champion's entropy stands in.
_NEEDS_TWO = frozenset({"vote_entropy", "kl_max_disagreement"})


class Reason(str, enum.Enum):
    """Why a label is asked for."""

    UNCERTAIN = "uncertain"  # the strategy asked: the model is unsure, within the budget
    RANDOM = "random"  # the random evaluation slice picked it


_RANDOM, _UNCERTAIN = Reason.RANDOM, Reason.UNCERTAIN  # enum attribute lookups are slow


class Decision(NamedTuple):
    """The sampler's answer for one prediction."""

    ask: bool
    reason: Reason | None
    priority: float
    uncertainty: float
    # The probability this prediction was asked for, floored at 1 / weight_clip (so that its
    # importance weight 1 / p is at most weight_clip): set on asks of a sampler with
    # importance_weights on, None otherwise (no weight: the label counts once).
    p: float | None = None


def priority_of(uncertainty: float, reason: Reason | str | None) -> float:
    """The queue priority of an item: its uncertainty, plus 1 for the random slice."""
    return uncertainty + 1.0 if reason == Reason.RANDOM else uncertainty


class RandomSlice:
    """Flags a share ``rate`` of the predictions at random, whatever their uncertainty.

    The random stream is seeded from ``seed`` and a salt of its own, so a slice and a strategy
    given the same seed draw independent numbers.

    >>> picks = RandomSlice(rate=0.1, seed=7)
    >>> sum(picks.decide() for _ in range(10_000))
    963
    """

    def __init__(self, rate: float = 0.01, seed: int = DEFAULT_SEED) -> None:
        self.rate = check_share("rate", rate, type(self).__name__)
        self.seed = check_seed("seed", seed, type(self).__name__)
        # A str seed is hashed with SHA-512: the same stream in every process.
        self._rng = random.Random(f"onlearn.active.RandomSlice:{seed}")

    def decide(self) -> bool:
        """Whether this prediction belongs to the slice."""
        return self._rng.random() < self.rate

    def __repr__(self) -> str:
        return f"RandomSlice(rate={self.rate!r}, seed={self.seed!r})"


class Sampler:
    """Decides, for each prediction, whether to ask for its label.

    Parameters
    ----------
    strategy
        The budgeted stream strategy; ``VariableUncertainty()`` if not given.
    measure
        The uncertainty measure, one of ``ALL_MEASURES``. A committee measure reads the answers
        of the champion and of the versions passed as ``others``; ``vote_entropy`` and
        ``kl_max_disagreement`` need two opinions, and fall back to the champion's entropy when
        there is only one (no shadow, or shadows that learned nothing yet).
    evaluation_rate
        The share of predictions asked for at random (the evaluation slice), on top of the
        budget. 0 disables it.
    seed
        Seeds the evaluation slice. ``sampler_from_config`` seeds the strategy with it too.
    importance_weights
        Give each ask its probability ``p`` (``Decision.p``), for labels learned with the
        weight ``1 / p`` (onlearn/weights.py). Needs a randomised strategy
        (``strategy.randomised``): a deterministic one asks with p 0 or 1, and every weight
        would be 1.
    weight_clip
        The largest weight: ``p`` is floored at ``1 / weight_clip``; at least 1.
    pace_weight
        Whether a label the strategy bought (reason ``uncertain``) carries the pace weight
        ``min(1 / budget, weight_clip)`` (``pace``), which river's linear models learn it with
        (onlearn/weights.py): a tenth of the labels, steps ten times as long. Ignored with
        ``importance_weights`` (``1 / p`` already counts the rate of asks).
    steer
        Whether the labels bought steer the budget: ``learn_one`` feeds them to a
        ``SurpriseDetector``, whose alarms open the strategy's credit line (``on_drift``).
        Each replica steers on its own purchases; nothing is shared.
    """

    def __init__(
        self,
        strategy: Strategy | None = None,
        measure: str = DEFAULT_MEASURE,
        evaluation_rate: float = 0.0,
        seed: int = DEFAULT_SEED,
        importance_weights: bool = False,
        weight_clip: float = DEFAULT_WEIGHT_CLIP,
        steer: bool = True,
        pace_weight: bool = True,
    ) -> None:
        self.strategy = VariableUncertainty() if strategy is None else strategy
        if not isinstance(self.strategy, Strategy):
            raise TypeError(f"strategy must be a Strategy, got {type(strategy).__name__}")
        self.importance_weights = check_weights(importance_weights, self.strategy, "Sampler")
        self.weight_clip = check_weight_clip("weight_clip", weight_clip, "Sampler")
        self.measure = check_choice("measure", measure, "Sampler", ALL_MEASURES)
        self.evaluation_rate = check_share("evaluation_rate", evaluation_rate, "Sampler")
        self.seed = check_seed("seed", seed, "Sampler")
        self._slice = RandomSlice(evaluation_rate, seed)
        self.steer = check_bool("steer", steer, "Sampler")
        self.pace_weight = check_bool("pace_weight", pace_weight, "Sampler")
        self._detector = SurpriseDetector() if steer else None
        self._committee = measure in COMMITTEE_MEASURES
        self._measure = COMMITTEE_MEASURES[measure] if self._committee else MEASURES[measure]
        # Labels the strategy did not buy, per prediction, for the pace (``other_label_share``):
        # predictions decided here, and such labels decayed by the predictions since.
        self._seen = 0
        self._other = 0.0
        self._other_at = 0

    def uncertainty(self, proba: Proba, others: Sequence[Proba] = ()) -> float:
        """The uncertainty of one prediction by ``measure``; changes no state."""
        if not self._committee:
            return self._measure(proba)
        members = [proba, *others]
        if self.measure in _NEEDS_TWO and len(_opinions(members)) < 2:
            return entropy(proba)
        return self._measure(members)

    def decide(self, proba: Proba, others: Sequence[Proba] = ()) -> Decision:
        """The decision for one prediction: the champion's ``proba`` and, for committee
        measures, the probabilities ``others`` (shadows, challengers) gave for the same input.

        Call it once per prediction, in order: it moves the budget and the random streams.
        """
        u = self.uncertainty(proba, others) if self._committee else self._measure(proba)
        self._seen += 1
        if self.importance_weights:
            return self._decide_weighted(u)
        uncertain = self.strategy.decide(u)
        if self._slice.decide():
            return Decision(True, _RANDOM, u + 1.0, u)
        if uncertain:
            return Decision(True, _UNCERTAIN, u, u)
        return Decision(False, None, u, u)

    def _decide_weighted(self, u: float) -> Decision:
        # Asked when the slice or the strategy asks, two independent draws: p is the chance
        # that either does, read before the strategy's state moves.
        q = self.strategy.ask_probability(u)
        p = 1.0 - (1.0 - self.evaluation_rate) * (1.0 - q)
        p = max(p, 1.0 / self.weight_clip)
        uncertain = self.strategy.decide(u)
        if self._slice.decide():
            return Decision(True, _RANDOM, u + 1.0, u, p)
        if uncertain:
            return Decision(True, _UNCERTAIN, u, u, p)
        return Decision(False, None, u, u)

    def pace(self, reason: Reason | str | None) -> float | None:
        """The pace weight of a label asked for with ``reason`` (a prediction record's; from the
        store, so anything) when ``pace_weight`` is on and ``importance_weights`` off, None
        otherwise: ``(1 - s) / budget`` for the strategy's asks, at least 1 and at most
        ``weight_clip``, where ``s`` is the share of predictions labelled without the strategy
        (``other_label_share``). Labels learned per prediction then weigh about 1 in all: an
        application that labels only what the strategy asks gets ``1 / budget``, one that
        labels every prediction anyway gets 1 (no bought label outweighs the others).

        >>> sampler = Sampler(VariableUncertainty(budget=0.25))
        >>> sampler.pace("uncertain"), sampler.pace("random"), sampler.pace(None)
        (4.0, None, None)
        >>> Sampler(VariableUncertainty(budget=0.01)).pace("uncertain")  # clipped
        10.0
        """
        if reason != _UNCERTAIN or not self.pace_weight or self.importance_weights:
            return None
        pace = (1.0 - self.other_label_share()) / self.strategy.budget
        return min(max(1.0, pace), self.weight_clip)

    def count_label(self, reason: Reason | str | None) -> None:
        """A label arrived (the feedback path tells every one, with its prediction record's
        ``reason``; None for an inline label or one never asked about): those the strategy did
        not buy count in ``other_label_share``. Counted per process, as the budget is; two
        threads counting at once may lose a count, which only blurs a rate."""
        if reason == _UNCERTAIN:
            return
        self._decay()
        self._other += 1.0

    def other_label_share(self) -> float:
        """Labels the strategy did not buy (the random slice's, an application's own, inline
        ones) per prediction decided here, over the recent predictions: each counts half after
        ``LABEL_SHARE_HALF_LIFE`` predictions. In [0, 1]; 0 before any prediction.

        >>> sampler = Sampler(VariableUncertainty(budget=0.1))
        >>> for i in range(1000):
        ...     _ = sampler.decide({"a": 0.9, "b": 0.1})
        ...     sampler.count_label(None) if i % 2 else None
        >>> round(sampler.other_label_share(), 2), round(sampler.pace("uncertain"), 1)
        (0.5, 5.0)
        """
        if self._seen == 0:
            return 0.0
        self._decay()
        # The predictions, decayed alike: the sum of _DECAY ** k over the last _seen of them.
        seen = (1.0 - _DECAY**self._seen) / (1.0 - _DECAY)
        return min(1.0, self._other / seen)

    def _decay(self) -> None:
        if self._seen != self._other_at:
            self._other *= _DECAY ** (self._seen - self._other_at)
            self._other_at = self._seen

    def learn_one(self, proba: Proba, label: Hashable) -> None:
        """A label this sampler asked for arrived: ``proba`` is what the model answered when it
        was asked, ``label`` the truth. More errors than the answer's confidence promised, for
        long enough, is a drift alarm (``SurpriseDetector``) and opens the credit line."""
        if self._detector is not None and self._detector.update(proba, label):
            self.strategy.on_drift()

    def learn_label(self, payload: Mapping[str, Any]) -> None:
        """``learn_one`` from a label event's payload (``onlearn.engine.feedback``): labels of
        predictions a sampler picked (``sampled`` set), with the answer the model gave then
        (``outputs[answered_by]["proba"]``); other labels are ignored, and so is a payload
        whose stored answer is not pairs of a class and a finite probability: it comes from the
        store, and a malformed one must not stop the model from applying its log."""
        if payload.get("sampled") is None or not payload.get("outputs"):
            return
        try:
            answer = payload["outputs"].get(payload.get("answered_by")) or {}
            proba = {label: float(p) for label, p in answer.get("proba") or ()}
            label = payload["label"]
            hash(label)
        except (AttributeError, KeyError, TypeError, ValueError):
            return
        if proba and all(math.isfinite(p) for p in proba.values()):
            self.learn_one(proba, label)

    def on_drift(self, alarm: Mapping[str, Any] | None = None) -> None:
        """A drift alarm from outside (the monitor's ``concept_drift``, ``input_drift`` or
        ``prediction_drift``; other kinds are ignored): the strategy's credit line opens again,
        and its allowance goes to the uncertain cases among the predictions that follow."""
        # The alarm comes from the log: a kind that is not a string (even unhashable) is ignored.
        kind = None if alarm is None else alarm.get("kind")
        if alarm is None or (isinstance(kind, str) and kind in DRIFT_ALARMS):
            self.strategy.on_drift()

    def decide_many(
        self, probas: Sequence[Proba], others: Sequence[Sequence[Proba]] | None = None
    ) -> list[Decision]:
        """``decide`` for each row in order (``others[i]`` goes with ``probas[i]``).

        Row by row on purpose: a prediction gets the same decision whether it came alone or in a
        batch (a vectorised measure may differ in the last bit and flip a threshold).
        """
        if others is None:
            return [self.decide(proba) for proba in probas]
        return [self.decide(p, o) for p, o in zip(probas, others, strict=True)]

    def to_config(self) -> dict[str, Any]:
        """The config table; ``sampler_from_config`` turns it back into an equal fresh sampler."""
        config = {
            **self.strategy.to_config(),
            "measure": self.measure,
            "evaluation_rate": self.evaluation_rate,
        }
        if config.get("seed", self.seed) != self.seed:
            raise ValueError(
                f"the strategy's seed ({config['seed']}) differs from the sampler's ({self.seed}); "
                "a config table has one seed for both"
            )
        config["seed"] = self.seed
        if self.importance_weights:
            config.update(importance_weights=True, weight_clip=self.weight_clip)
        if not self.steer:
            config["steer"] = False
        if not self.pace_weight:
            config["pace_weight"] = False
        return config

    def __repr__(self) -> str:
        weights = (
            f", importance_weights=True, weight_clip={self.weight_clip!r}"
            if self.importance_weights
            else ""
        )
        return (
            f"Sampler({self.strategy!r}, measure={self.measure!r}, "
            f"evaluation_rate={self.evaluation_rate!r}, seed={self.seed!r}{weights}"
            + ("" if self.steer else ", steer=False")
            + ("" if self.pace_weight else ", pace_weight=False")
            + ")"
        )


DRIFT_ALARMS = frozenset({"concept_drift", "input_drift", "prediction_drift"})
"""The monitor's alarm kinds that open a sampler's credit line (``Sampler.on_drift``)."""

_SAMPLER_KEYS = (
    "strategy",
    "measure",
    "evaluation_rate",
    "seed",
    "importance_weights",
    "weight_clip",
    "steer",
    "pace_weight",
)


def _check_max_rate(name: str, value: Any, where: str) -> float | None:
    return None if value is None else check_share(name, value, where, zero=False)


# Every hyperparameter a config table may hold, with its check (the constructors check the
# same rules; checking here first lets the message name the table).
_CHECKS: dict[str, Callable[[str, Any, str], Any]] = {
    "budget": lambda k, v, w: check_share(k, v, w, zero=False),
    "window": check_count,
    "step": check_step,
    "threshold": check_share,
    "delta": check_non_negative,
    "random_share": check_share,
    "evaluation_rate": check_share,
    "seed": check_seed,
    "measure": lambda k, v, w: check_choice(k, v, w, ALL_MEASURES),
    "weight_clip": check_weight_clip,
    "steer": check_bool,
    "pace_weight": check_bool,
    "credit": check_whole,
    "cold_start": check_whole,
    "drift_credit": check_whole,
    "repay": lambda k, v, w: check_share(k, v, w, zero=False),
    "max_rate": _check_max_rate,
}


def sampler_from_config(config: Mapping[str, Any], *, where: str = "sampler") -> Sampler:
    """A fresh ``Sampler`` from a config table; ``where`` names the table in error messages.

    Keys: ``strategy`` (default ``"variable_uncertainty"``), ``measure`` (default
    ``"margin"``), ``evaluation_rate`` (default 0), ``seed`` (default 42, seeds the strategy
    and the evaluation slice), ``importance_weights`` (default false; true needs a randomised
    strategy), ``weight_clip`` (default 10), ``pace_weight`` (default true), and the strategy's
    hyperparameters (``budget``, ``window``, ``step``, ``threshold``, ``delta``,
    ``random_share``; each strategy takes some of them, with the defaults of its class), the
    budget's keys every strategy takes (``credit``, ``cold_start``, ``drift_credit``,
    ``repay``, ``max_rate``: see ``CreditBudget``) and ``steer`` (default true). A key the chosen strategy does not take is an error, so that a
    typo does not pass silently, and so is ``max_rate * window < 1`` (the rate cap would allow
    nothing; ``max_rate`` defaults to ``min(1, 5 * budget)``).

    >>> sampler_from_config({"strategy": "split", "budget": 1.5})
    Traceback (most recent call last):
    ...
    onlearn.errors.ConfigError: sampler: 'budget' must be a number in (0, 1], got 1.5
    >>> sampler_from_config({"strategy": "fixed_uncertainty", "step": 0.1})
    Traceback (most recent call last):
    ...
    onlearn.errors.ConfigError: sampler: unknown entry 'step' for strategy 'fixed_uncertainty'; \
it accepts: budget, cold_start, credit, drift_credit, evaluation_rate, importance_weights, \
max_rate, measure, pace_weight, repay, seed, steer, strategy, threshold, weight_clip, window
    >>> sampler_from_config({"budget": 0.001, "window": 100})
    Traceback (most recent call last):
    ...
    onlearn.errors.ConfigError: sampler: max_rate * window must be at least 1, got 0.005 * 100 = \
0.5: no window of 100 predictions may hold a label, so nothing would ever be asked; use a window \
of at least 200 predictions (or a larger max_rate)
    """
    if not isinstance(config, Mapping):
        raise ConfigError(f"{where} must be a table, got {type(config).__name__}")
    name = check_choice(
        "strategy", config.get("strategy", VariableUncertainty.name), where, STRATEGIES
    )
    cls = STRATEGIES[name]
    defaults = inspect.signature(cls).parameters
    takes = (*(k for k, p in defaults.items() if p.kind is not p.VAR_KEYWORD), *CREDIT_KEYS)
    for key, value in config.items():
        if key not in _SAMPLER_KEYS and (key not in takes or key == "seed"):
            raise ConfigError(
                f"{where}: unknown entry {key!r} for strategy {name!r}; it accepts: "
                + ", ".join(sorted({*_SAMPLER_KEYS, *takes}))
            )
        if key in _CHECKS:
            _CHECKS[key](key, value, where)
    budget, window = (config.get(k, defaults[k].default) for k in ("budget", "window"))
    max_rate = config.get("max_rate")
    check_budget_window(
        default_max_rate(budget) if max_rate is None else max_rate, window, where, name="max_rate"
    )
    seed = config.get("seed", DEFAULT_SEED)
    params = {k: config[k] for k in takes if k in config}
    if "seed" in takes:
        params["seed"] = seed
    strategy = cls(**params)
    return Sampler(
        strategy,
        measure=config.get("measure", DEFAULT_MEASURE),
        evaluation_rate=config.get("evaluation_rate", 0.0),
        seed=seed,
        importance_weights=check_weights(config.get("importance_weights", False), strategy, where),
        weight_clip=config.get("weight_clip", DEFAULT_WEIGHT_CLIP),
        steer=config.get("steer", True),
        pace_weight=config.get("pace_weight", True),
    )
