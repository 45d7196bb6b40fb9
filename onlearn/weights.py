"""Importance weights: a label asked for with probability ``p`` is learned with weight ``1 / p``.

A sampler with ``importance_weights = true`` gives each ask its probability ``p`` (floored at
``1 / weight_clip``, so no weight exceeds the clip). The predict path stores ``p`` on the
prediction record as ``sample_p``, the label event copies it, and learning reads the weight
from the event alone: a replay of the log gives the model the live one learned, whatever the
config says at replay time.

Why weights: an uncertainty sampler labels the hard cases more often than they occur, so the
labelled sample is biased; weighting each label by ``1 / p`` makes sums over labelled points
unbiased estimates of sums over all predictions (Horvitz-Thompson). The clip trades that
unbiasedness for variance: a label asked with ``p = 0.001`` would otherwise count 1000 times.

Pace weights are the other kind, on by default for a model with an ``active`` table: a label
the budgeted strategy bought (reason ``uncertain``) is learned with ``min(1 / budget,
weight_clip)`` by a model whose weight is the length of a gradient step, river's linear models
(:func:`takes_pace`). A model that learns from a tenth of the labels takes a tenth of the SGD
steps; steps ten times as long restore the pace of a model given every label. The feedback path
writes the weight into the label event as ``pace``, so replay stays exact. Trees get no pace
weight: their split test (the Hoeffding bound) counts weight as evidence, and a weight of 10
splits on a tenth of the evidence it needs (measured: 5-10 points lost on noisy streams,
benchmarks/RESULTS.md). An importance weight, when the event has one, wins: ``1 / p`` already
counts the rate at which labels were bought.

A Hoeffding tree takes the pace another way (:func:`paced_trees`): it checks a leaf for a split
every ``grace_period / pace`` labels instead of every ``grace_period``. The grace period is a
compute throttle, not evidence: the split test still counts real labels against the same
bound, so a tree given a tenth of the labels looks as often, per label it has, as one given
them all looks per ten (measured under a 10 % budget on agrawal_abrupt: 88.8 -> 94.1 % of the
accuracy of the tree given every label; benchmarks/RESULTS.md). Its ``grace_period`` is back to
the spec's value after each label; at pace 1 it is the plain tree.

Only estimators whose ``learn_one`` takes a weight ``w`` use it (:func:`takes_weight`): of the
catalog, ``logistic_regression``, ``hoeffding_tree``, ``linear_regression`` and
``hoeffding_tree_regressor``. ``gaussian_naive_bayes`` (river's ``GaussianNB.learn_one`` has no
weight) and the adaptive random forests (river's ``ARF*.learn_one`` draws its own Poisson weights
and ignores ``w``) learn every label once; so do scikit-learn models online. Refits pass the
weights on: river candidates replay the events, scikit-learn ones get ``sample_weight``.

>>> event_weight({"sample_p": 0.25}), event_weight({"sample_p": None}), event_weight({})
(4.0, 1.0, 1.0)
>>> label_weight({"pace": 10.0}, paced=True), label_weight({"pace": 10.0}, paced=False)
(10.0, 1.0)
>>> label_weight({"pace": 10.0, "sample_p": 0.5}, paced=True)  # the importance weight wins
2.0
>>> from river import linear_model, naive_bayes, preprocessing
>>> takes_weight(preprocessing.StandardScaler() | linear_model.LogisticRegression())
True
>>> takes_weight(naive_bayes.GaussianNB())
False
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any

from river import compose, forest, linear_model, tree

from onlearn.errors import ConfigError

__all__ = [
    "DEFAULT_WEIGHT_CLIP",
    "MAX_WEIGHT",
    "check_weight_clip",
    "check_weights",
    "event_pace",
    "event_weight",
    "label_weight",
    "learn_weighted",
    "paced_trees",
    "takes_pace",
    "takes_weight",
]

DEFAULT_WEIGHT_CLIP = 10.0
"""The largest weight a label gets by default: ten times a label asked for with certainty."""

MAX_WEIGHT = 1000.0
"""The largest weight of any label, whatever the store or an imported file says: the largest
``weight_clip`` a config may set. A weight read from the log above it (a ``sample_p`` below
1 / 1000, a ``pace`` above 1000) is not one onlearn wrote; learning caps it here rather than
let one event push a linear model's coefficients to infinity."""

# river's forests accept ``**kwargs`` in learn_one but weigh each tree by their own Poisson draw.
_IGNORES_WEIGHT = (
    forest.ARFClassifier,
    forest.ARFRegressor,
)


def check_weight_clip(name: str, value: Any, where: str) -> float:
    """A number in [1, MAX_WEIGHT] (a weight below 1 would make an asked label count less than
    one)."""
    if not (
        isinstance(value, int | float) and not isinstance(value, bool) and 1 <= value <= MAX_WEIGHT
    ):
        raise ConfigError(
            f"{where}: {name!r} must be a number in [1, {MAX_WEIGHT:g}], got {value!r}"
        )
    return float(value)


def check_weights(value: Any, strategy: Any, where: str) -> bool:
    """``importance_weights``: a boolean, true only with a randomised strategy."""
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: 'importance_weights' must be true or false, got {value!r}")
    if value and not strategy.randomised:
        raise ConfigError(
            f"{where}: 'importance_weights' needs a randomised strategy with a floor probability "
            "(random; split with random_share > 0; randomized_variable_uncertainty with "
            f"delta > 0); {strategy!r} asks with probability 0 or 1, so every weight would be 1"
        )
    return value


def event_weight(payload: Mapping[str, Any]) -> float:
    """The weight a label event is learned with: ``1 / sample_p``, or 1 without one.

    The payload comes from the store: a ``sample_p`` that is not a probability in (0, 1] (a
    string, 0, a negative, NaN) is no weight at all, the same on every replica, rather than an
    error that would skip the label.

    >>> [event_weight({"sample_p": p}) for p in (0.25, None, 0, -1, "0.5", float("nan"), True)]
    [4.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    >>> event_weight({"sample_p": 1e-300})  # no sampler wrote this: capped
    1000.0
    """
    p = payload.get("sample_p")
    if isinstance(p, int | float) and not isinstance(p, bool) and 0 < p <= 1:
        return min(1.0 / p, MAX_WEIGHT)
    return 1.0


def event_pace(payload: Mapping[str, Any]) -> float:
    """The pace weight of a label event (``pace``, written by the feedback path), or 1.

    As for ``sample_p``, a stored value that is not a finite number >= 1 is no weight at all, and
    one above ``MAX_WEIGHT`` is capped.

    >>> [event_pace({"pace": v}) for v in (10, 2.5, None, 0.5, "10", float("inf"), True, 1e300)]
    [10.0, 2.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1000.0]
    """
    pace = payload.get("pace")
    if isinstance(pace, int | float) and not isinstance(pace, bool) and 1 <= pace < math.inf:
        return min(float(pace), MAX_WEIGHT)
    return 1.0


def label_weight(payload: Mapping[str, Any], *, paced: bool) -> float:
    """The weight a label event is learned with by an estimator that takes a weight:
    the importance weight when the event has one, else the pace weight for an estimator that
    ``takes_pace`` (``paced``), else 1."""
    w = event_weight(payload)
    if w == 1.0 and paced:
        return event_pace(payload)
    return w


def takes_pace(estimator: Any) -> bool:
    """Whether the estimator's weight scales a gradient step: a river linear model (GLM), bare
    or as the last step of a pipeline, in one-vs-rest or onlearn's binary wrapper.

    >>> from river import multiclass, preprocessing, tree
    >>> takes_pace(preprocessing.StandardScaler() | linear_model.LogisticRegression())
    True
    >>> takes_pace(multiclass.OneVsRestClassifier(linear_model.LogisticRegression()))
    True
    >>> takes_pace(tree.HoeffdingTreeClassifier())
    False
    """
    if isinstance(estimator, compose.Pipeline):
        return takes_pace(list(estimator.steps.values())[-1])
    if isinstance(estimator, linear_model.base.GLM):
        return True
    wrapped = getattr(estimator, "classifier", None)
    return wrapped is not None and takes_pace(wrapped)


def takes_weight(estimator: Any) -> bool:
    """Whether ``estimator.learn_one(x, y, w=...)`` learns with the weight.

    A river pipeline passes ``w`` on to the steps that declare it, so its final step decides;
    wrappers (one-vs-rest, onlearn's binary classifier) pass it to the classifier they wrap.
    """
    if isinstance(estimator, compose.Pipeline):
        return takes_weight(list(estimator.steps.values())[-1])
    if isinstance(estimator, _IGNORES_WEIGHT):
        return False
    learn = getattr(type(estimator), "learn_one", None)
    if learn is None:
        return False
    try:
        params = inspect.signature(learn).parameters
    except (TypeError, ValueError):
        return False
    if "w" in params:
        return True
    wrapped = getattr(estimator, "classifier", None)
    if wrapped is not None and any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return takes_weight(wrapped)
    return False


def paced_trees(estimator: Any) -> list[Any]:
    """The Hoeffding trees that check for splits at the label's pace: the estimator, or the
    last step of its pipeline, when it is one (classifier or regressor), or the trees of a
    ``RecoveringClassifier`` (its model and background copy); else none. The members of a
    forest are not: a forest's trees split at a loose confidence (river's ``delta`` 0.01),
    where more frequent checks are more splits on noise (measured: a loss on phishing).

    >>> from river import preprocessing
    >>> len(paced_trees(preprocessing.StandardScaler() | tree.HoeffdingTreeClassifier()))
    1
    >>> paced_trees(forest.ARFClassifier()), paced_trees(linear_model.LogisticRegression())
    ([], [])
    """
    # Imported here: the recovering classifier uses the sampler's detector, and the sampler
    # imports this module.
    from onlearn.models.recovering import RecoveringClassifier

    if isinstance(estimator, compose.Pipeline):
        return paced_trees(list(estimator.steps.values())[-1])
    if isinstance(estimator, tree.hoeffding_tree.HoeffdingTree):
        return [estimator]
    if isinstance(estimator, RecoveringClassifier):
        return [t for model in estimator.models() for t in paced_trees(model)]
    return []


def learn_weighted(
    estimator: Any, x: Mapping[str, Any], y: Any, w: float, takes: bool, pace: float = 1.0
) -> None:
    """``learn_one`` with the weight ``w`` when the estimator ``takes`` one and ``w`` is not 1
    (an unweighted label learns through the very call it always did); a Hoeffding tree checks
    for splits at the ``pace`` (an ``event_pace``: :func:`paced_trees`)."""
    kwargs = {"w": w} if takes and w != 1.0 else {}
    trees = paced_trees(estimator) if pace != 1.0 else []
    if not trees:
        estimator.learn_one(x, y, **kwargs)
        return
    grace = trees[0].grace_period  # the spec's: every tree of one estimator is built from it
    for found in trees:
        found.grace_period = max(1, round(grace / pace))
    try:
        estimator.learn_one(x, y, **kwargs)
    finally:
        # Found again: a RecoveringClassifier may have cloned a copy (with the paced grace) or
        # handed over to it during the label.
        for found in paced_trees(estimator):
            found.grace_period = grace
