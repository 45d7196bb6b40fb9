"""Batch predictions: vectorised for the catalog's linear pipelines, row by row otherwise.

Predicting rows one ``predict_proba_one`` at a time costs 5 to 16 µs a row (by machine), mostly
Python overhead: walking the pipeline and building a dict per step per row. The catalog's linear
pipelines (``logistic_regression`` in both of its forms, ``linear_regression``) are, per row,

    select -> scale numeric / one-hot categorical -> w . x + b -> sigmoid (-> one-vs-rest norm)

so for a batch this module reads the current state of each step (the scaler's running means and
variances, the model's weights and intercept) once, at call time, and does the arithmetic with
numpy, column by column.

Results are those of the per-row methods, not an approximation of them: every floating-point
operation is the one river does, in the same order (river's ``VectorDict.dot`` sums
``w[k] * x[k]`` in the order of ``x``, which the union of the numeric and categorical branches
fixes; columns are accumulated in that order), and the sigmoid takes ``math.exp`` of each
score, as river does: numpy's ``exp`` is a SIMD one on CPUs with AVX-512 and may differ from
libm's in the last bit, which made the batch route answer ``...971`` where predict answered
``...969``. The probabilities are bit-identical. Even the types match: river's sigmoid answers
the ints ``0`` and ``1`` beyond ``|z| > 30``, and so does the binary answer here.

Any other estimator, a pipeline of another shape, or rows the vectorised path does not handle
(strings in numeric features, list-valued categories, unexpected value types) go through the
per-row methods, so the answer (or the error) is always the per-row one. Neither function
changes the estimator; call them under the lock that guards ``learn_one``, like
``predict_proba_one``.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from typing import Any

import numpy as np
from river import compose, linear_model, multiclass, optim, preprocessing

from onlearn.models.binary import BinaryClassifier
from onlearn.models.select import SelectPresent

__all__ = ["predict_batch", "predict_columns", "predict_proba_batch", "predict_proba_columns"]

_RAW, _SCALED, _ONE_HOT = "raw", "scaled", "one_hot"
_NUMBER_TYPES = frozenset({int, float, bool, type(None)})
_CATEGORY_TYPES = frozenset({str, int, bool, type(None)})
_STR_TYPES = frozenset({str, type(None)})
_SIGMOID = optim.losses.BinaryLoss.mean_func
_IDENTITY = optim.losses.RegressionLoss.mean_func


class _Unsupported(Exception):
    """The rows hold values the vectorised path does not reproduce; go row by row."""


def predict_proba_batch(
    estimator: Any, rows: Iterable[Mapping[str, Any]]
) -> list[dict[Hashable, float]]:
    """``[estimator.predict_proba_one(x) for x in rows]``, vectorised where the model allows.

    >>> from onlearn.models import PipelineSpec, build_pipeline
    >>> model = build_pipeline(
    ...     PipelineSpec("logistic_regression"), task="classification", numeric=["size"],
    ...     categorical=["colour"], classes=["big", "small"],
    ... )
    >>> for x, y in [({"size": 9, "colour": "red"}, "big"), ({"size": 1}, "small")] * 5:
    ...     model.learn_one(x, y)
    >>> rows = [{"size": 8, "colour": "red"}, {"size": 2, "colour": "blue"}, {}]
    >>> predict_proba_batch(model, rows) == [model.predict_proba_one(x) for x in rows]
    True
    """
    rows = rows if isinstance(rows, list) else list(rows)
    plan = _plan(estimator)
    if plan is not None and plan.head != "regression" and rows:
        try:
            scores = _scores(plan, rows)
        except _Unsupported:
            pass
        else:
            return _probas(plan, scores)
    predict = estimator.predict_proba_one
    return [predict(x) for x in rows]


def predict_batch(estimator: Any, rows: Iterable[Mapping[str, Any]]) -> list[Any]:
    """``[estimator.predict_one(x) for x in rows]``, vectorised where the model allows.

    For a linear regression pipeline that is ``w . x + b`` per row; for a linear classifier, the
    label of highest probability (the first one on a tie, None for an empty answer), as river's
    ``predict_one`` answers.
    """
    rows = rows if isinstance(rows, list) else list(rows)
    plan = _plan(estimator)
    if plan is not None and rows:
        try:
            scores = _scores(plan, rows)
        except _Unsupported:
            pass
        else:
            if plan.head == "regression":
                return scores[:, 0].tolist()
            return [max(p, key=p.get) if p else None for p in _probas(plan, scores)]
    predict = estimator.predict_one
    return [predict(x) for x in rows]


def predict_proba_columns(
    estimator: Any, columns: Mapping[Any, Sequence[Any]], n: int
) -> tuple[tuple, np.ndarray] | None:
    """The probabilities ``predict_proba_one`` answers for ``n`` rows held as columns (feature
    -> values in row order, None where a feature is absent), as a matrix: ``(labels, p)`` with
    ``p[i, j]`` the probability of ``labels[j]`` for row ``i``, ``labels`` in the order of the
    keys of river's answer. None when the pipeline or the values are not ones this module
    vectorises, or the model has learnt nothing yet (river answers ``{}``): predict row by row
    then. River's saturated ints ``0`` and ``1`` are the floats ``0.0`` and ``1.0`` here.

    >>> from onlearn.models import PipelineSpec, build_pipeline
    >>> model = build_pipeline(
    ...     PipelineSpec("logistic_regression"), task="classification", numeric=["size"],
    ...     categorical=[], classes=["big", "small"],
    ... )
    >>> for x, y in [({"size": 9}, "big"), ({"size": 1}, "small")] * 5:
    ...     model.learn_one(x, y)
    >>> labels, p = predict_proba_columns(model, {"size": [8, 2]}, 2)
    >>> [dict(zip(labels, row)) for row in p.tolist()] == [
    ...     model.predict_proba_one({"size": 8}), model.predict_proba_one({"size": 2})]
    True
    """
    plan = _plan(estimator)
    if plan is None or plan.head == "regression" or not plan.models or n <= 0:
        return None
    try:
        scores = _column_scores(plan, _GivenColumns(columns, n), n)
    except _Unsupported:
        return None
    return _proba_matrix(plan, scores)


def predict_columns(estimator: Any, columns: Mapping[Any, Sequence[Any]], n: int) -> Any:
    """``predict_one`` of a linear regression pipeline for ``n`` rows held as columns (see
    :func:`predict_proba_columns`): an array of the ``n`` values, or None when this module does
    not vectorise the pipeline or the values."""
    plan = _plan(estimator)
    if plan is None or plan.head != "regression" or n <= 0:
        return None
    try:
        return _column_scores(plan, _GivenColumns(columns, n), n)[:, 0]
    except _Unsupported:
        return None


# ---------------------------------------------------------------------------------------------
# the plan: what the pipeline computes, read from its steps


@dataclass
class _Plan:
    terms: list[tuple[str, Any, Any]]  # (kind, feature, scaler) in the order river sums them
    models: list[Any]  # the GLMs: one column of scores each
    head: str  # "binary", "boolean", "one_vs_rest" or "regression"
    labels: tuple  # the answer's keys (binary, one-vs-rest)


def _plan(estimator: Any) -> _Plan | None:
    """How to vectorise ``estimator``, or None when it is not a pipeline this module knows."""
    if (
        type(estimator) is not compose.Pipeline
        or compose.Pipeline._LEARN_UNSUPERVISED_DURING_PREDICT  # predictions would learn
        or not estimator.steps
    ):
        return None
    *transformers, last = estimator.steps.values()
    terms = _terms(transformers)
    if terms is None or not _distinct_keys(terms):
        return None
    if type(last) is multiclass.OneVsRestClassifier:
        models = list(last.classifiers.values())
        if all(map(_is_logistic, models)):
            return _Plan(terms, models, "one_vs_rest", tuple(last.classifiers))
    elif type(last) is BinaryClassifier:
        if _is_logistic(last.classifier):
            models = [last.classifier] if last._learnt else []  # it answers {} until it learns
            return _Plan(terms, models, "binary", last.classes)
    elif _is_logistic(last):
        return _Plan(terms, [last], "boolean", (False, True))
    elif type(last) is linear_model.LinearRegression and type(last.loss).mean_func is _IDENTITY:
        return _Plan(terms, [last], "regression", ())
    return None


def _is_logistic(model: Any) -> bool:
    return type(model) is linear_model.LogisticRegression and type(model.loss).mean_func is _SIGMOID


def _terms(steps: list[Any]) -> list[tuple[str, Any, Any]] | None:
    """The features the final model sees, in order, for a chain of the catalog's transformers:
    ``SelectPresent`` alone, followed by a ``StandardScaler`` or a ``OneHotEncoder``, or a union
    of such chains."""
    if len(steps) == 1 and type(steps[0]) is compose.TransformerUnion:
        terms: list[tuple[str, Any, Any]] = []
        # TransformerUnion.transform_one updates its output with its branches in reverse order.
        for branch in reversed(list(steps[0].transformers.values())):
            sub = _terms(
                list(branch.steps.values()) if type(branch) is compose.Pipeline else [branch]
            )
            if sub is None:
                return None
            terms.extend(sub)
        return terms
    if not steps or type(steps[0]) is not SelectPresent or len(steps) > 2:
        return None
    keys = steps[0].keys
    if len(steps) == 1:
        return [(_RAW, key, None) for key in keys]
    step = steps[1]
    if type(step) is preprocessing.StandardScaler and getattr(step, "window_size", None) is None:
        return [(_SCALED, key, step) for key in keys]
    if (
        type(step) is preprocessing.OneHotEncoder
        and step.drop_zeros
        and not step.drop_first
        and step.categories is None
    ):
        return [(_ONE_HOT, key, None) for key in keys]
    return None


def _distinct_keys(terms: list[tuple[str, Any, Any]]) -> bool:
    """Whether no two terms can write the same key of the model's input: ``f"{name}_{value}"``
    of a one-hot feature may be another feature's name, or another one-hot feature's key
    (``a_b`` + ``c`` and ``a`` + ``b_c``), and river would keep one of them."""
    names = [key for kind, key, _ in terms if kind != _ONE_HOT]
    prefixes = [f"{key}_" for kind, key, _ in terms if kind == _ONE_HOT]
    if len(set(names)) != len(names) or len(set(prefixes)) != len(prefixes):
        return False
    if not prefixes:
        return True
    known = set(prefixes)
    for text, own in [(n, None) for n in names if isinstance(n, str)] + [(p, p) for p in prefixes]:
        end = text.find("_")
        while end != -1:
            head = text[: end + 1]
            if head in known and head != own:
                return False
            end = text.find("_", end + 1)
    return True


# ---------------------------------------------------------------------------------------------
# the arithmetic


def _scores(plan: _Plan, rows: list[Mapping[str, Any]]) -> np.ndarray:
    """``w . x + b`` of each model (columns) for each row (rows), summed as river sums it."""
    return _column_scores(plan, _RowColumns(rows), len(rows))


class _RowColumns:
    """The columns of rows of features: ``self[key]``, the values (None where absent)."""

    def __init__(self, rows: list[Mapping[str, Any]]) -> None:
        self.rows = rows

    def __getitem__(self, key: Any) -> list:
        return [row.get(key) for row in self.rows]

    def dense(self, keys: list) -> np.ndarray | None:
        return _dense_numbers(self.rows, keys)


class _GivenColumns:
    """Columns given as a mapping of feature to values (None where absent)."""

    def __init__(self, columns: Mapping[Any, Sequence[Any]], n: int) -> None:
        self.columns = columns
        self.n = n

    def __getitem__(self, key: Any) -> Sequence[Any]:
        column = self.columns.get(key)
        return [None] * self.n if column is None else column

    def dense(self, keys: list) -> np.ndarray | None:
        columns = [self.columns.get(key) for key in keys]
        if any(c is None for c in columns):
            return None
        try:
            values = np.array(columns)
        except (TypeError, ValueError, OverflowError):
            return None
        if values.shape != (len(keys), self.n) or values.dtype.kind not in "fiub":
            return None
        return values.astype(np.float64, copy=False)


def _column_scores(plan: _Plan, table: Any, n: int) -> np.ndarray:
    models = plan.models
    numeric = [key for kind, key, _ in plan.terms if kind != _ONE_HOT]
    dense = table.dense(numeric) if len(numeric) > 1 else None
    position = {key: j for j, key in enumerate(numeric)}
    total = np.zeros((n, len(models)))
    for kind, key, scaler in plan.terms:
        if kind == _ONE_HOT:
            codes, values = _category_column(table[key])
            weights = np.array(
                [
                    [0.0] * len(models)
                    if value is None
                    else [m._weights.get(f"{key}_{value}", 0.0) for m in models]
                    for value in values
                ]
            )
            total += weights[codes]  # one-hot value 1: the weight itself; an absent one adds 0.0
            continue
        if dense is not None:
            x, present = dense[position[key]], None
        else:
            x, present = _number_column(table[key])
        if kind == _SCALED:
            mean = scaler.means.get(key, 0.0)
            if scaler.with_std:
                var = scaler.vars.get(key, 0.0)
                if var:
                    std = var**0.5
                    if type(std) is complex:  # a var rounded below zero: river would fail
                        raise _Unsupported
                    x = (x - mean) / std
                else:
                    x = np.zeros(n)
            else:
                x = x - mean
        weights = np.array([m._weights.get(key, 0.0) for m in models])
        terms = x[:, None] * weights
        if present is not None:
            terms[~present] = 0.0  # an absent feature is no term at all
        total += terms
    return total + np.array([m.intercept for m in models])


def _dense_numbers(rows: list[Mapping[str, Any]], keys: list) -> np.ndarray | None:
    """The values of numeric features, one row per feature, when every row has a number for
    each of them (the common case, and the fast one); else None."""
    try:
        values = np.array(list(map(itemgetter(*keys), rows)))
    except (LookupError, TypeError, ValueError, OverflowError):
        return None
    if values.shape != (len(rows), len(keys)) or values.dtype.kind not in "fiub":
        return None
    return np.ascontiguousarray(values.T, dtype=np.float64)


def _number_column(column: Sequence[Any]) -> tuple[np.ndarray, Any]:
    """The values of a numeric feature as floats, and which rows have one (None: all do)."""
    try:
        values = np.array(column)
    except (TypeError, ValueError, OverflowError):
        raise _Unsupported from None
    if values.ndim == 1 and values.dtype.kind in "fiub":
        return values.astype(np.float64, copy=False), None
    if values.dtype.kind != "O" or not set(map(type, column)) <= _NUMBER_TYPES:
        raise _Unsupported  # strings, lists, numpy scalars next to None...
    present = values != None  # noqa: E711 (elementwise)
    try:
        values = np.array([0.0 if v is None else v for v in column], dtype=np.float64)
    except OverflowError:
        raise _Unsupported from None
    return values, present


def _category_column(column: Sequence[Any]) -> tuple[np.ndarray, list]:
    """Codes of a categorical feature's values, and the values (None: absent) they index."""
    types = set(map(type, column))
    if types <= _STR_TYPES:
        index: dict = {}
        codes = [index.setdefault(v, len(index)) for v in column]
        return np.array(codes), list(index)
    if not types <= _CATEGORY_TYPES:
        raise _Unsupported  # lists and sets are several categories to river; others, who knows
    # 1 and True (and their f"{key}_{value}") differ: keep their types apart.
    index = {}
    codes = [index.setdefault((type(v), v), len(index)) for v in column]
    return np.array(codes), [v for _, v in index]


def _sigmoid(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """river's ``utils.math.sigmoid``: ``1 / (1 + exp(-z))``, exactly 0 below -30 and 1 above 30.
    Also returns where it saturated: river answers the ints 0 and 1 there."""
    # math.exp, not np.exp (see the module's docstring). Clipped first: only |z| <= 30 is kept,
    # and math.exp raises beyond ~709.
    minus = np.clip(-scores, -31.0, 31.0)
    exps = np.fromiter(map(math.exp, minus.ravel().tolist()), float, minus.size)
    p = 1.0 / (1.0 + exps.reshape(minus.shape))
    low, high = scores < -30, scores > 30
    p[low] = 0.0
    p[high] = 1.0
    return p, low, high


def _proba_matrix(plan: _Plan, scores: np.ndarray) -> tuple[tuple, np.ndarray]:
    """The answers of :func:`_probas` as ``(labels, matrix)``, the same floats."""
    if plan.head == "one_vs_rest":
        labels = plan.labels
        p, _, _ = _sigmoid(scores)
        total = np.zeros(len(p))
        for j in range(len(labels)):  # `total += yp` per label, in label order
            total += p[:, j]
        zero = total == 0
        with np.errstate(invalid="ignore", divide="ignore"):
            p = p / total[:, None]
        if zero.any():
            p[zero] = 1 / len(labels)
        return tuple(labels), p
    p, _, _ = _sigmoid(scores[:, 0])  # saturated already: 0.0 below -30, 1.0 above 30
    q = 1.0 - p
    if plan.head == "binary":
        return tuple(plan.labels), np.column_stack((p, q))
    return (False, True), np.column_stack((q, p))  # river's LogisticRegression itself


def _probas(plan: _Plan, scores: np.ndarray) -> list[dict[Hashable, float]]:
    if not plan.models:  # nothing learnt yet
        return [{} for _ in range(len(scores))]
    if plan.head == "one_vs_rest":
        labels = plan.labels
        p, _, _ = _sigmoid(scores)
        total = np.zeros(len(p))
        for j in range(len(labels)):  # `total += yp` per label, in label order
            total += p[:, j]
        zero = total == 0
        with np.errstate(invalid="ignore", divide="ignore"):
            p = p / total[:, None]
        if zero.any():
            p[zero] = 1 / len(labels)
        if len(labels) == 2:
            first, second = labels
            return [{first: a, second: b} for a, b in p.tolist()]
        return list(map(dict, map(zip, repeat(labels), p.tolist())))
    p, low, high = _sigmoid(scores[:, 0])
    q = (1.0 - p).tolist()
    p = p.tolist()
    if plan.head == "binary":
        first, second = plan.labels
        answers = [{first: a, second: b} for a, b in zip(p, q, strict=True)]
    else:  # river's LogisticRegression itself
        first = True
        answers = [{False: b, True: a} for a, b in zip(p, q, strict=True)]
    for i in np.flatnonzero(low).tolist():
        answers[i][first] = 0
    for i in np.flatnonzero(high).tolist():
        answers[i][first] = 1
    return answers
