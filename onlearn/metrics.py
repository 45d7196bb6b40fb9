"""Prequential metrics of one version, updated from the prediction it actually served.

A label event carries the stored prediction of each version that answered or shadowed it, so
a version is scored on what it said at predict time, not on a re-prediction after it may have
learned more. An event with inline features has no stored prediction: the version predicts just
before it learns (test-then-train), and the two kinds are counted apart.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Collection, Hashable, Mapping
from typing import Any

from river import metrics as river_metrics

EPSILON = 1e-15  # probability floor of the log loss, as scikit-learn clips


def _json_number(value: float | None) -> float | None:
    """None for what JSON cannot carry: extreme labels may overflow a running sum to infinity."""
    return value if value is None or math.isfinite(value) else None


def absolute_error(y_true: float, y_pred: float | None) -> float:
    """``|y_true - y_pred|`` as a float: no answer counts as 0.0, and a difference beyond float
    range (an int label) as infinity.

    >>> absolute_error(3, 1.5), absolute_error(2.0, None), absolute_error(10**400, 0.0)
    (1.5, 2.0, inf)
    """
    try:
        return float(abs(y_true - (y_pred if y_pred is not None else 0.0)))
    except OverflowError:
        return math.inf


def mean_error(errors: Collection[float]) -> float | None:
    """The exact mean of non-negative errors (``math.fsum``), ``inf`` when they overflow a float
    (fsum raises there, where a plain sum would give inf), ``None`` when there are none.

    >>> mean_error([1.0, 2.0]), mean_error([1e308, 1e308]), mean_error([])
    (1.5, inf, None)
    """
    if not errors:
        return None
    try:
        return math.fsum(errors) / len(errors)
    except OverflowError:
        return math.inf


class ClassificationMetrics:
    """Accuracy, log loss and macro F1 of a stream of (true label, predicted label, proba).

    >>> m = ClassificationMetrics()
    >>> m.update(True, True, {True: 0.8, False: 0.2})
    >>> m.update(False, True, {True: 0.6, False: 0.4})
    >>> m.n, m.accuracy, round(m.log_loss, 4)
    (2, 0.5, 0.5697)
    """

    RECENT = 500  # labels in the rolling accuracy, the signal a retrain trigger watches

    def __init__(self) -> None:
        self.n = 0
        self._correct = 0
        self._log_loss_sum = 0.0
        self._f1 = river_metrics.MacroF1()
        self._recent: deque[bool] = deque(maxlen=self.RECENT)
        self._recent_correct = 0

    def update(
        self, y_true: Hashable, y_pred: Hashable | None, proba: Mapping[Any, float] | None
    ) -> None:
        self.n += 1
        correct = y_pred == y_true
        self._correct += correct
        if len(self._recent) == self.RECENT:
            self._recent_correct -= self._recent[0]
        self._recent.append(correct)
        self._recent_correct += correct
        p_true = proba.get(y_true, 0.0) if proba else 0.0
        if p_true is None:
            # Answers carry a probability that is not finite as null (a model whose weights
            # overflowed on huge inputs): no confidence in the truth, not a failed learn.
            p_true = 0.0
        self._log_loss_sum -= math.log(min(max(p_true, EPSILON), 1.0))
        if y_pred is not None:
            # A model that has seen no label yet answers nothing; counting "nothing" as a class
            # would drag macro F1 down forever. It still counts as wrong for accuracy.
            self._f1.update(y_true, y_pred)

    def revise(
        self,
        y_old: Hashable,
        y_true: Hashable,
        y_pred: Hashable | None,
        proba: Mapping[Any, float] | None,
    ) -> None:
        """Score a prediction counted with ``y_old`` with its corrected label ``y_true``
        instead (``n`` unchanged): accuracy, log loss and macro F1 (river's ``revert``) are
        exact. The rolling ``recent_accuracy`` is not revised: the old answer may have left its
        window, and it is a drift signal about recent labels, not a total."""
        self._correct += (y_pred == y_true) - (y_pred == y_old)
        old = proba.get(y_old, 0.0) if proba else 0.0
        new = proba.get(y_true, 0.0) if proba else 0.0
        self._log_loss_sum += math.log(min(max(old, EPSILON), 1.0))
        self._log_loss_sum -= math.log(min(max(new, EPSILON), 1.0))
        if y_pred is not None:
            self._f1.revert(y_old, y_pred)
            self._f1.update(y_true, y_pred)

    @property
    def accuracy(self) -> float | None:
        return self._correct / self.n if self.n else None

    @property
    def recent_accuracy(self) -> float | None:
        """Accuracy over the last ``RECENT`` labels."""
        return self._recent_correct / len(self._recent) if self._recent else None

    @property
    def log_loss(self) -> float | None:
        return self._log_loss_sum / self.n if self.n else None

    @property
    def macro_f1(self) -> float | None:
        return self._f1.get() if self.n else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "accuracy": self.accuracy,
            "recent_accuracy": self.recent_accuracy,
            "log_loss": _json_number(self.log_loss),
            "macro_f1": self.macro_f1,
        }


class RegressionMetrics:
    """Mean absolute error and root mean squared error of a stream of (true, predicted).

    >>> m = RegressionMetrics()
    >>> m.update(3.0, 1.0, None)
    >>> m.update(0.0, 1.0, None)
    >>> m.mae, round(m.rmse, 4), m.recent_mae
    (1.5, 1.5811, 1.5)
    >>> m.update(1e308, 0.0, None); m.update(1e308, 0.0, None); m.recent_mae
    inf
    """

    RECENT = 500  # labels in the rolling MAE, the signal a retrain trigger watches

    def __init__(self) -> None:
        self.n = 0
        self._abs_sum = 0.0
        self._sq_sum = 0.0
        self._recent: deque[float] = deque(maxlen=self.RECENT)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Snapshots pickled before the rolling MAE existed: it starts empty, and fills as the
        # replay of the tail and new labels come (it is not part of what was learned).
        self.__dict__.update(state)
        if "_recent" not in state:
            self._recent = deque(maxlen=self.RECENT)

    def update(self, y_true: float, y_pred: float | None, proba: Any = None) -> None:
        error = y_true - (y_pred if y_pred is not None else 0.0)
        self.n += 1
        self._abs_sum += abs(error)
        self._recent.append(absolute_error(y_true, y_pred))
        try:
            self._sq_sum += error * error
        except OverflowError:  # an int label beyond float range squares to an int; keep it float
            self._sq_sum = math.inf

    def revise(self, y_old: float, y_true: float, y_pred: float | None, proba: Any = None) -> None:
        """Score a prediction counted with ``y_old`` with its corrected value ``y_true`` instead
        (``n`` unchanged): the sums behind MAE and RMSE take the old error back. The rolling
        ``recent_mae`` is not revised (see :meth:`ClassificationMetrics.revise`)."""
        pred = y_pred if y_pred is not None else 0.0
        try:
            old, new = y_old - pred, y_true - pred
            self._abs_sum += abs(new) - abs(old)
            self._sq_sum += new * new - old * old
        except OverflowError:
            self._sq_sum = math.inf

    @property
    def mae(self) -> float | None:
        return self._abs_sum / self.n if self.n else None

    @property
    def rmse(self) -> float | None:
        if not self.n:
            return None
        try:
            return math.sqrt(self._sq_sum / self.n)
        except OverflowError:
            return math.inf

    @property
    def recent_mae(self) -> float | None:
        """Mean absolute error over the last ``RECENT`` labels (summed exactly when read: a
        running sum would carry the rounding of every label that left the window)."""
        return mean_error(self._recent)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "mae": _json_number(self.mae),
            "rmse": _json_number(self.rmse),
            "recent_mae": _json_number(self.recent_mae),
        }


class VersionMetrics:
    """Everything measured about one version's answers: quality, label sources, label delay."""

    def __init__(self, task: str) -> None:
        self.task = task
        self.served = self._new()
        # Labels asked for by the sampler, apart: "random" (the evaluation slice, an unbiased
        # estimate of quality) and "uncertain" (the hard cases, biased by construction).
        self.by_reason: dict[str, ClassificationMetrics | RegressionMetrics] = {}
        self.labels_by_source: Counter[str] = Counter()
        self.labels_by_labeller: Counter[str] = Counter()
        # Corrections: by the source and labeller that corrected, and by the source and
        # labeller whose label was corrected (their disagreement rate is that over their labels).
        self.corrections_by_source: Counter[str] = Counter()
        self.corrections_by_labeller: Counter[str] = Counter()
        self.corrected_by_source: Counter[str] = Counter()
        self.corrected_by_labeller: Counter[str] = Counter()
        self.corrections_rescored = 0
        self.corrections_not_rescored = 0
        self.scored_on_stored = 0
        self.scored_on_replay = 0
        self._delay_sum = 0.0
        self._delay_n = 0
        self._delay_max = 0.0

    def update(
        self,
        y_true: Any,
        y_pred: Any,
        proba: Mapping[Any, float] | None,
        *,
        source: str,
        stored: bool,
        delay_s: float | None,
        sampled: str | None = None,
    ) -> None:
        self.served.update(y_true, y_pred, proba)
        if sampled is not None:
            if sampled not in self.by_reason:
                self.by_reason[sampled] = self._new()
            self.by_reason[sampled].update(y_true, y_pred, proba)
        self.labels_by_source[source] += 1
        if stored:
            self.scored_on_stored += 1
        else:
            self.scored_on_replay += 1
        if delay_s is not None:
            self._delay_n += 1
            self._delay_sum += delay_s
            self._delay_max = max(self._delay_max, delay_s)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Snapshots pickled before corrections existed: their counters start at zero.
        self.__dict__.update(state)
        for name in (
            "labels_by_labeller",
            "corrections_by_source",
            "corrections_by_labeller",
            "corrected_by_source",
            "corrected_by_labeller",
        ):
            if name not in state:
                setattr(self, name, Counter())
        self.__dict__.setdefault("corrections_rescored", 0)
        self.__dict__.setdefault("corrections_not_rescored", 0)

    def count_labeller(self, labeller: str | None) -> None:
        if labeller is not None:
            self.labels_by_labeller[labeller] += 1

    def revise(
        self,
        y_old: Any,
        y_true: Any,
        y_pred: Any,
        proba: Mapping[Any, float] | None,
        *,
        source: str,
        labeller: str | None,
        previous_source: str,
        previous_labeller: str | None,
        scored: bool,
        sampled: str | None = None,
    ) -> None:
        """A correction of a label counted before: scored once (the prediction's metrics now
        use the corrected label) when ``scored``, i.e. the version's answer to it is known (a
        stored prediction); else the old score stays and the correction is counted as not
        rescored (a version that predicted at learn time has no record of what it said)."""
        if scored:
            self.served.revise(y_old, y_true, y_pred, proba)
            if sampled is not None and sampled in self.by_reason:
                self.by_reason[sampled].revise(y_old, y_true, y_pred, proba)
            self.corrections_rescored += 1
        else:
            self.corrections_not_rescored += 1
        self.corrections_by_source[source] += 1
        self.corrected_by_source[previous_source] += 1
        if labeller is not None:
            self.corrections_by_labeller[labeller] += 1
        if previous_labeller is not None:
            self.corrected_by_labeller[previous_labeller] += 1

    def _new(self) -> ClassificationMetrics | RegressionMetrics:
        return ClassificationMetrics() if self.task == "classification" else RegressionMetrics()

    def _corrections(self) -> dict[str, Any]:
        def rate(corrected: Counter, labels: Counter) -> dict[str, float | None]:
            return {k: (corrected[k] / n if (n := labels[k]) else None) for k in sorted(labels)}

        return {
            "total": sum(self.corrections_by_source.values()),
            "rescored": self.corrections_rescored,
            "not_rescored": self.corrections_not_rescored,
            "by_source": dict(self.corrections_by_source),
            "by_labeller": dict(self.corrections_by_labeller),
            "corrected_by_source": dict(self.corrected_by_source),
            "corrected_by_labeller": dict(self.corrected_by_labeller),
            # The share of a source's (a labeller's) first labels that a correction overruled.
            "disagreement_rate_by_source": rate(self.corrected_by_source, self.labels_by_source),
            "disagreement_rate_by_labeller": rate(
                self.corrected_by_labeller, self.labels_by_labeller
            ),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.served.to_dict(),
            "by_sampling_reason": {r: m.to_dict() for r, m in sorted(self.by_reason.items())},
            "labels_by_source": dict(self.labels_by_source),
            "labels_by_labeller": dict(self.labels_by_labeller),
            "corrections": self._corrections(),
            "scored_on_stored_prediction": self.scored_on_stored,
            "scored_on_replay": self.scored_on_replay,
            "label_delay_s": {
                "mean": self._delay_sum / self._delay_n if self._delay_n else None,
                "max": self._delay_max if self._delay_n else None,
                "n": self._delay_n,
            },
        }
