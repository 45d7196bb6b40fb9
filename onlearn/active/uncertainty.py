"""How unsure one model is about one prediction, from its class probabilities.

Every measure maps river's ``proba`` (``{label: p}``) to an uncertainty in ``[0, 1]``, higher
meaning less sure, so that a threshold or a queue priority reads the same whatever the measure:

==================== ===================================== =================================
measure              value                                 modAL function it equals
==================== ===================================== =================================
``least_confident``  ``1 - p1``                            ``classifier_uncertainty``
``margin``           ``1 - (p1 - p2)``                     ``1 - classifier_margin``
``entropy``          ``H(p) / log(k)``                     ``classifier_entropy / log(k)``
==================== ===================================== =================================

``p1 >= p2`` are the two highest probabilities and ``k`` the number of classes in ``proba``
(labels with probability 0 count: river lists every class the model knows). Entropy is divided
by its maximum ``log(k)`` so that a threshold means the same for 2 classes and for 7; pass
``normalize=False`` for the raw value in nats.

Probabilities are divided by their sum first (``scipy.stats.entropy``, which modAL uses, does
so for entropy; here every measure does, so a model whose probabilities do not quite sum to 1
is measured consistently). Some answers have no ranking of doubts, and all give 1.0, the most
uncertain value, so that a sampler asks about them first:

- an empty ``proba`` (or one summing to 0): the model has learned nothing yet;
- a single class: the model has seen one label only and cannot tell classes apart;
- a NaN or ``None`` probability: the model's answer is broken (the engine turns NaN into
  ``None`` for JSON).

Two implementations of the same numbers:

- ``least_confident``, ``margin``, ``entropy``: pure Python on one dict, a microsecond or less;
  they are what the per-request predict path calls (a numpy round trip costs 10-20 us).
- ``uncertainty_many``: many rows at once through modAL's own functions, for batches and for
  re-ranking a labelling queue (``rank_by_uncertainty``). The tests check that both agree.

>>> round(least_confident({"spam": 0.8, "ham": 0.2}), 6)
0.2
>>> round(margin({"spam": 0.8, "ham": 0.2}), 6)
0.4
>>> round(entropy({"spam": 0.5, "ham": 0.5}), 6)
1.0
>>> entropy({}), entropy({"spam": 1.0})
(1.0, 1.0)
>>> uncertainty_many([{"a": 0.8, "b": 0.2}, {}], "least_confident").round(6).tolist()
[0.2, 1.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from math import log

import numpy as np

__all__ = [
    "MEASURES",
    "entropy",
    "least_confident",
    "margin",
    "rank_by_uncertainty",
    "uncertainty_many",
]

Proba = Mapping[Hashable, float]


def _total(values) -> float:
    """The sum of the probabilities; NaN if one is None (how the engine passes on a NaN)."""
    try:
        return sum(values)
    except TypeError:
        return math.nan


def least_confident(proba: Proba) -> float:
    """``1 - p1``: one minus the highest probability. At most ``1 - 1/k`` for ``k`` classes."""
    if len(proba) < 2:
        return 1.0
    values = proba.values()
    try:
        total = sum(values)
    except TypeError:  # a None probability: see _total
        return 1.0
    if not total > 0.0:  # also NaN
        return 1.0
    return 1.0 - max(values) / total


def margin(proba: Proba) -> float:
    """``1 - (p1 - p2)``: one minus the gap between the two most likely classes."""
    if len(proba) < 2:
        return 1.0
    try:
        total = sum(proba.values())
    except TypeError:
        return 1.0
    if not total > 0.0:
        return 1.0
    first = second = -1.0
    for p in proba.values():
        if p > first:
            first, second = p, first
        elif p > second:
            second = p
    # Divided one by one, as numpy does on the normalised row, so both give the same bits.
    return 1.0 - (first / total - second / total)


def entropy(proba: Proba, normalize: bool = True) -> float:
    """Shannon entropy (natural log) of ``proba``, divided by ``log(k)`` unless ``normalize``
    is false."""
    k = len(proba)
    if k < 2:
        return 1.0
    try:
        total = sum(proba.values())
    except TypeError:
        return 1.0
    if not total > 0.0:
        return 1.0
    h = 0.0
    for p in proba.values():
        if p > 0.0:
            q = p / total
            h -= q * log(q)
    if normalize:
        h /= log(k)
        return 1.0 if h > 1.0 else h  # rounding may step over the bound
    return h


MEASURES: Mapping[str, Callable[[Proba], float]] = {
    "least_confident": least_confident,
    "margin": margin,
    "entropy": entropy,
}
"""The single-model measures by config name."""


# ---------------------------------------------------------------------------------------------
# many rows at once, through modAL


class _Probabilities:
    """A "classifier" whose predictions are its input: modAL's measures take a classifier and
    call ``predict_proba(X)``; handing them the probability matrix as ``X`` measures it as is."""

    @staticmethod
    def predict_proba(X: np.ndarray) -> np.ndarray:
        return X


def _modal(measure: str, P: np.ndarray) -> np.ndarray:
    # Imported here: the per-request path (the functions above) needs neither modAL nor scipy.
    from modAL.uncertainty import classifier_entropy, classifier_margin, classifier_uncertainty

    if measure == "least_confident":
        return classifier_uncertainty(_Probabilities, P)
    if measure == "margin":
        return 1.0 - classifier_margin(_Probabilities, P)
    return classifier_entropy(_Probabilities, P)


def uncertainty_many(probas: Sequence[Proba], measure: str = "entropy") -> np.ndarray:
    """The uncertainty of every row, computed by modAL's function for ``measure``.

    Rows may know different classes: the matrix handed to modAL has a column per label seen in
    any row, zero where a row lacks it (zeros change none of the measures), and entropy is
    divided by ``log(k)`` with each row's own ``k``, as ``entropy`` does.
    """
    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r}; choose one of {', '.join(MEASURES)}")
    out = np.ones(len(probas))
    columns: dict[Hashable, int] = {}
    rows, totals, counts = [], [], []
    for i, proba in enumerate(probas):
        if len(proba) < 2:
            continue
        total = _total(proba.values())
        if not total > 0.0:
            continue
        rows.append(i)
        totals.append(total)
        counts.append(len(proba))
        for label in proba:
            columns.setdefault(label, len(columns))
    if not rows:
        return out
    matrix = np.zeros((len(rows), len(columns)))
    for r, i in enumerate(rows):
        for label, p in probas[i].items():
            matrix[r, columns[label]] = p
    matrix /= np.asarray(totals)[:, None]
    values = _modal(measure, matrix)
    if measure == "entropy":
        values = np.minimum(values / np.log(np.asarray(counts, dtype=float)), 1.0)
    out[rows] = values
    return out


def rank_by_uncertainty(
    probas: Sequence[Proba], measure: str = "entropy", limit: int | None = None
) -> list[int]:
    """Row indices, most uncertain first (ties keep their order); the first ``limit`` only if
    given. For re-ranking queued items with the current model's probabilities.

    >>> rank_by_uncertainty([{"a": 0.9, "b": 0.1}, {"a": 0.5, "b": 0.5}, {"a": 0.7, "b": 0.3}])
    [1, 2, 0]
    """
    order = np.argsort(-uncertainty_many(probas, measure), kind="stable")
    return order[:limit].tolist()
