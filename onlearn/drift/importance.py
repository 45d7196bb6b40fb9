"""Feature importance of a version over a window of labelled traffic, and its drift.

What a model leans on can move while the inputs do not (the label starts to depend on another
feature) or before accuracy shows it. For each served version the worker computes, on its
snapshot schedule (it holds the model state there), the features' relative importance (shares
that sum to 1):

- **linear models** (river's logistic and linear regression, alone, behind
  :class:`~onlearn.models.binary.BinaryClassifier` or one-vs-rest): the absolute weights, which
  the catalog's pipelines put on standardised numbers (the effect of one standard deviation),
  a category taking its largest one-hot weight, classes averaged. No data needed: exact.
- **any other model**: permutation importance on a seeded sample of the labelled window: how
  much accuracy (a regressor: mean absolute error) worsens when one feature's column is
  shuffled across the sample. Its cost is ``rows x (1 + features)`` predictions, kept within a
  CPU budget (:class:`ImportanceBudget`): a sample of at most ``sample_size`` rows, shrunk so
  that the estimated CPU time of the computing thread stays under ``time_cap_s``, and
  abandoned past twice the cap (CPU time, not the clock: a busy machine does not shrink it).

:class:`ImportanceDrift` compares each new ranking with the version's reference ranking (its
first one, then the one at the last alarm) by the **average overlap** of their top ``top_k``
features (the unweighted, truncated form of rank-biased overlap): the mean over depths ``d = 1
.. k`` of the share of the reference's top ``d`` found in the current top ``d``. Only features
holding at least ``min_share`` of the reference's importance count (noise features swap places
freely). An alarm when the overlap stays below ``threshold`` for ``patience`` computations in a
row: two top features trading places give 0.67 (no alarm at 0.5); the top feature falling to
third gives 0.33 or less.

>>> drift = ImportanceDrift(top_k=3, threshold=0.5, patience=1)
>>> drift.update({"a": 0.5, "b": 0.3, "c": 0.15, "d": 0.05})
>>> drift.update({"b": 0.5, "a": 0.3, "c": 0.15, "d": 0.05}); drift.overlap, drift.drift_detected
(0.667, False)
>>> drift.update({"d": 0.5, "c": 0.3, "a": 0.15, "b": 0.05}); drift.overlap, drift.drift_detected
(0.222, True)
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from onlearn.errors import ConfigError

__all__ = [
    "BUDGET_KEYS",
    "DRIFT_KEYS",
    "FeatureImportance",
    "ImportanceBudget",
    "ImportanceDrift",
    "ImportanceSettings",
    "average_overlap",
    "feature_importance",
    "linear_importance",
    "permutation_importance",
]


@dataclass(frozen=True)
class ImportanceBudget:
    """How much CPU one computation of permutation importance may take.

    ``sample_size`` rows at most from the labelled window; fewer when the model's time on
    ``min_rows`` of them says ``rows x (1 + features)`` predictions would take longer than
    what is left of ``time_cap_s``; nothing below ``min_rows`` (then the answer says why); the
    computation is abandoned past twice the cap. ``window`` labelled rows are
    read, the newest.
    """

    window: int = 1000
    sample_size: int = 300
    time_cap_s: float = 1.0
    min_rows: int = 50

    def __post_init__(self) -> None:
        for key in ("window", "sample_size", "min_rows"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"importance {key} must be an integer >= 1, got {value!r}")
        if self.min_rows > self.sample_size:
            raise ConfigError(
                f"importance min_rows ({self.min_rows}) must be <= sample_size ({self.sample_size})"
            )
        if not self.time_cap_s > 0:
            raise ConfigError(f"importance time_cap_s must be > 0, got {self.time_cap_s!r}")


@dataclass(frozen=True)
class FeatureImportance:
    """One computation: relative importances (summing to 1, or all 0 when nothing matters)."""

    method: str  # "weights" or "permutation"
    importances: Mapping[str, float]
    rows: int = 0  # rows of the sample (permutation)
    seconds: float = 0.0  # CPU time of the computing thread
    detail: str | None = None  # why there is none, when importances is empty

    @property
    def ranking(self) -> list[str]:
        return sorted(self.importances, key=lambda f: (-self.importances[f], f))

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "importances": dict(self.importances),
            "ranking": self.ranking,
            "rows": self.rows,
            "seconds": round(self.seconds, 4),
            "detail": self.detail,
        }


def _relative(scores: Mapping[str, float]) -> dict[str, float]:
    clipped = {f: max(0.0, float(v)) for f, v in scores.items()}
    total = sum(clipped.values())
    if total <= 0:
        return {f: 0.0 for f in clipped}
    return {f: v / total for f, v in clipped.items()}


def _linear_models(estimator: Any) -> list[Any]:
    """river's linear models inside a pipeline, a wrapper or a one-vs-rest classifier."""
    if hasattr(estimator, "_weights") and hasattr(estimator, "intercept"):
        return [estimator]
    steps = getattr(estimator, "steps", None)
    if isinstance(steps, Mapping) and steps:
        return _linear_models(list(steps.values())[-1])
    classifiers = getattr(estimator, "classifiers", None)
    if isinstance(classifiers, Mapping):
        return [m for c in classifiers.values() for m in _linear_models(c)]
    inner = getattr(estimator, "classifier", None) or getattr(estimator, "regressor", None)
    if inner is not None and inner is not estimator:
        return _linear_models(inner)
    return []


def linear_importance(estimator: Any, features: Sequence[str]) -> dict[str, float] | None:
    """Relative importance from a linear model's weights; None when there is no linear model
    at the end of ``estimator`` (a one-vs-rest one that has not seen a class yet counts none).

    A weight belongs to the feature of its name, or, for a one-hot column ``"{feature}_{value}"``,
    to the longest feature name it starts with; a feature's score is its largest absolute
    weight, averaged over the classes' models.
    """
    models = _linear_models(estimator)
    if not models:
        return None
    by_length = sorted(features, key=len, reverse=True)
    totals = dict.fromkeys(features, 0.0)
    for model in models:
        best: dict[str, float] = {}
        for key, weight in dict(model._weights).items():
            name = key if key in totals else _owner(str(key), by_length)
            if name is not None:
                best[name] = max(best.get(name, 0.0), abs(float(weight)))
        for name, value in best.items():
            totals[name] += value / len(models)
    return _relative(totals)


def _owner(key: str, by_length: Sequence[str]) -> str | None:
    for name in by_length:
        if key.startswith(f"{name}_"):
            return name
    return None


def permutation_importance(
    predict: Callable[[Mapping[str, Any]], Any],
    rows: Sequence[Mapping[str, Any]],
    labels: Sequence[Any],
    features: Sequence[str],
    *,
    task: str = "classification",
    seed: int = 42,
    deadline: float | None = None,
) -> dict[str, float] | None:
    """Relative permutation importance: the loss of accuracy (regression: the rise of the
    mean absolute error) when one feature's values are shuffled across ``rows``, one seeded
    shuffle per feature. None when ``deadline`` (a ``time.thread_time()``) passes first."""
    n = len(rows)
    if n == 0:
        return dict.fromkeys(features, 0.0)
    rng = random.Random(seed)

    def loss(xs: Sequence[Mapping[str, Any]]) -> float:
        if task == "classification":
            return sum(predict(x) != y for x, y in zip(xs, labels, strict=True)) / n
        return sum(abs(float(predict(x)) - float(y)) for x, y in zip(xs, labels, strict=True)) / n

    base = loss(rows)
    scores = {}
    for feature in features:
        if deadline is not None and time.thread_time() > deadline:
            return None
        column = [x.get(feature) for x in rows]
        rng.shuffle(column)
        shuffled = [{**x, feature: v} for x, v in zip(rows, column, strict=True)]
        scores[feature] = loss(shuffled) - base
    return _relative(scores)


def feature_importance(
    estimator: Any,
    features: Sequence[str],
    rows: Sequence[Mapping[str, Any]] = (),
    labels: Sequence[Any] = (),
    *,
    task: str = "classification",
    budget: ImportanceBudget | None = None,
    seed: int = 42,
) -> FeatureImportance:
    """The importances of ``estimator``: its weights when it is linear, else permutation
    importance on a sample of ``rows`` (model inputs) and ``labels`` within ``budget``."""
    t0 = time.thread_time()
    weights = linear_importance(estimator, features)
    if weights is not None:
        return FeatureImportance("weights", weights, 0, time.thread_time() - t0)
    budget = budget or ImportanceBudget()
    if len(rows) < budget.min_rows:
        return FeatureImportance(
            "permutation",
            {},
            len(rows),
            0.0,
            f"{len(rows)} labelled rows, {budget.min_rows} needed",
        )
    rng = random.Random(seed)
    index = sorted(rng.sample(range(len(rows)), min(budget.sample_size, len(rows))))
    sample = [rows[i] for i in index]
    truth = [labels[i] for i in index]
    predict = estimator.predict_one
    # time the model on a few rows: the run costs (1 + features) predictions a row
    probe = sample[: budget.min_rows]
    start = time.thread_time()
    for x in probe:
        predict(x)
    per_row = (time.thread_time() - start) / len(probe)
    left = budget.time_cap_s - (time.thread_time() - t0)
    fits = int(left / max(per_row * (1 + len(features)), 1e-9))
    if fits < budget.min_rows:
        return FeatureImportance(
            "permutation",
            {},
            0,
            time.thread_time() - t0,
            f"over budget: {per_row * 1e3:.2f} ms a prediction, {budget.min_rows} rows x "
            f"{1 + len(features)} passes exceed {budget.time_cap_s} s",
        )
    sample, truth = sample[:fits], truth[:fits]
    deadline = time.thread_time() + 2 * budget.time_cap_s
    scores = permutation_importance(
        predict, sample, truth, features, task=task, seed=seed, deadline=deadline
    )
    seconds = time.thread_time() - t0
    if scores is None:
        return FeatureImportance(
            "permutation", {}, len(sample), seconds, "abandoned past twice the time cap"
        )
    return FeatureImportance("permutation", scores, len(sample), seconds)


def average_overlap(
    reference: Sequence[Hashable], current: Sequence[Hashable], depth: int
) -> float:
    """Mean over ``d = 1 .. depth`` of the share of ``reference[:d]`` found in ``current[:d]``.

    >>> average_overlap("abc", "abc", 3), round(average_overlap("abc", "bac", 3), 3)
    (1.0, 0.667)
    """
    if depth < 1:
        return 1.0
    total = 0.0
    for d in range(1, depth + 1):
        total += len(set(reference[:d]) & set(current[:d])) / d
    return total / depth


@dataclass
class ImportanceDrift:
    """An alarm when the top of the importance ranking moves (see the module's docstring).

    ``reference`` is the ranking compared against; ``overlap`` the last comparison's average
    overlap; ``drift_detected`` whether the last update raised the alarm (the reference then
    becomes the current ranking, as a detector starts afresh)."""

    top_k: int = 3
    threshold: float = 0.5
    patience: int = 2
    min_share: float = 0.05
    reference: list[str] | None = None
    overlap: float | None = None
    drift_detected: bool = False
    _below: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
            raise ConfigError(f"importance top_k must be an integer >= 1, got {self.top_k!r}")
        if not 0 < self.threshold <= 1:
            raise ConfigError(f"importance threshold must be in (0, 1], got {self.threshold!r}")
        if (
            isinstance(self.patience, bool)
            or not isinstance(self.patience, int)
            or self.patience < 1
        ):
            raise ConfigError(f"importance patience must be an integer >= 1, got {self.patience!r}")
        if not 0 <= self.min_share < 1:
            raise ConfigError(f"importance min_share must be in [0, 1), got {self.min_share!r}")

    def update(self, importances: Mapping[str, float]) -> None:
        ranking = sorted(importances, key=lambda f: (-importances[f], f))
        self.drift_detected = False
        if not ranking or not any(importances.values()):
            return
        if self.reference is None:
            self._set_reference(ranking, importances)
            return
        depth = min(self.top_k, len(self.reference))
        self.overlap = round(average_overlap(self.reference, ranking, depth), 3)
        self._below = self._below + 1 if self.overlap < self.threshold else 0
        if self._below >= self.patience:
            self.drift_detected = True
            self._set_reference(ranking, importances)

    def _set_reference(self, ranking: list[str], importances: Mapping[str, float]) -> None:
        self.reference = [f for f in ranking[: self.top_k] if importances[f] >= self.min_share]
        self._below = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "overlap": self.overlap,
            "drift_detected": self.drift_detected,
            "top_k": self.top_k,
            "threshold": self.threshold,
            "patience": self.patience,
            "below": self._below,
        }

    def restore(self, saved: Any) -> None:
        """Take up the state a stopped process left in its document (``to_dict``), so that a
        restart neither forgets the reference nor the comparisons already below the threshold.
        From the store, so untrusted: anything not of the shape ``to_dict`` writes is ignored
        and the detector starts afresh."""
        if not isinstance(saved, Mapping):
            return
        reference, overlap, below = saved.get("reference"), saved.get("overlap"), saved.get("below")
        if not (
            isinstance(reference, list)
            and 0 < len(reference) <= self.top_k
            and all(isinstance(f, str) for f in reference)
        ):
            return
        self.reference = list(reference)
        if isinstance(overlap, int | float) and not isinstance(overlap, bool) and 0 <= overlap <= 1:
            self.overlap = float(overlap)
        if isinstance(below, int) and not isinstance(below, bool) and 0 <= below < self.patience:
            self._below = below


BUDGET_KEYS = ("window", "sample_size", "time_cap_s", "min_rows")
DRIFT_KEYS = ("top_k", "threshold", "patience", "min_share")


@dataclass(frozen=True)
class ImportanceSettings:
    """A model's ``[models.<name>.monitor.importance]`` table: ``enabled`` (false: no
    importances and no alarm for this model), the keys of :class:`ImportanceBudget` and those
    of :class:`ImportanceDrift`; a key not given keeps the worker's or the class's default.

    >>> settings = ImportanceSettings.from_config({"time_cap_s": 0.2, "patience": 3})
    >>> settings.budget(ImportanceBudget()).time_cap_s, settings.drift().patience
    (0.2, 3)
    >>> ImportanceSettings.from_config({"top_k": 0})
    Traceback (most recent call last):
    ...
    onlearn.errors.ConfigError: importance top_k must be an integer >= 1, got 0
    """

    enabled: bool = True
    budget_keys: Mapping[str, Any] = field(default_factory=dict)
    drift_keys: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, table: Any) -> ImportanceSettings:
        if not isinstance(table, Mapping):
            raise ConfigError("importance must be a table")
        unknown = sorted(set(table) - {"enabled", *BUDGET_KEYS, *DRIFT_KEYS})
        if unknown:
            raise ConfigError(
                f"importance: unknown key {unknown[0]!r} (known: enabled, "
                f"{', '.join((*BUDGET_KEYS, *DRIFT_KEYS))})"
            )
        enabled = table.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"importance enabled must be true or false, got {enabled!r}")
        for key in ("time_cap_s", "threshold", "min_share"):
            value = table.get(key)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise ConfigError(f"importance {key} must be a number, got {value!r}")
        settings = cls(
            enabled,
            {k: table[k] for k in BUDGET_KEYS if k in table},
            {k: table[k] for k in DRIFT_KEYS if k in table},
        )
        settings.budget(ImportanceBudget())  # each raises ConfigError naming a bad key
        settings.drift()
        return settings

    def budget(self, base: ImportanceBudget) -> ImportanceBudget:
        """``base`` (the worker's) with this model's keys."""
        return replace(base, **self.budget_keys) if self.budget_keys else base

    def drift(self) -> ImportanceDrift:
        """A fresh detector with this model's keys."""
        return ImportanceDrift(**self.drift_keys)
