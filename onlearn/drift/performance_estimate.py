"""A classifier's accuracy estimated from its probabilities, before the labels arrive.

Confidence-based performance estimation, as NannyML's CBPE: a prediction whose predicted class
has a *calibrated* confidence ``c`` is right with probability ``c``, so the expected accuracy of
a window of predictions is the mean of their calibrated confidences. The calibration is learned
from the labelled answers (``ConfidenceCalibrator``): ``BINS`` equal-width bins of the raw
confidence, each correcting it by the mean residual ``right - confidence`` of its labels, shrunk
towards no correction by ``prior`` pseudo-labels (a bin with few labels keeps the model's own
confidence; binning by confidence also keeps the calibration unbiased when labels were asked for
*because* of their confidence, as an uncertainty sampler does, as long as each bin has some).

``PerformanceEstimator`` keeps one version's estimate: the last ``window`` predictions, the
reference (its first ``reference_size`` predictions, seen through the current calibration, so
that a drop can only come from the traffic), and the reconciliation with the labels: each label
is first estimated with the calibration that had not seen it (test, then train: prequential),
and every ``reconcile_every`` labels the mean estimate is compared with the measured accuracy.

Its limit is CBPE's: it assumes no concept drift. It sees the model grow unsure on inputs it
was not trained for (covariate shift); a change of ``P(y | x)`` that leaves the model as
confident as before is invisible to it (the concept drift detectors on labels see that).

>>> estimator = PerformanceEstimator(window=4, reference_size=4)
>>> for confidence in (0.9, 0.8, 0.9, 0.8):
...     estimator.observe(confidence)
>>> round(estimator.estimate(), 3)  # no labels yet: the model's own confidence
0.85
>>> for _ in range(200):
...     estimator.learn(0.9, False)  # the 0.9 answers are always wrong
>>> round(estimator.estimate(), 3) < 0.5
True
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable, Mapping
from typing import Any

BINS = 10
RECONCILED_KEPT = 20  # reconciliation windows kept in the report


def confidence_of(label: Any, proba: Mapping[Any, float]) -> float | None:
    """The probability the model gave to the label it answered (its largest when absent)."""
    if not proba:
        return None
    value = proba.get(label)
    if value is None:
        value = max(proba.values())
    value = float(value)
    return min(1.0, max(0.0, value)) if math.isfinite(value) else None


def _bin(confidence: float, bins: int) -> int:
    return min(int(confidence * bins), bins - 1)


def expected_calibration_error(
    confidences: Iterable[float], correct: Iterable[bool], bins: int = BINS
) -> float | None:
    """ECE: the gap between confidence and accuracy in each of ``bins`` equal-width bins,
    weighted by the bin's share of the answers. None without answers.

    >>> round(expected_calibration_error([0.9, 0.9, 0.6, 0.6], [True, False, True, True]), 3)
    0.4
    """
    n = [0] * bins
    conf = [0.0] * bins
    hits = [0] * bins
    for c, right in zip(confidences, correct, strict=True):
        b = _bin(c, bins)
        n[b] += 1
        conf[b] += c
        hits[b] += bool(right)
    total = sum(n)
    if not total:
        return None
    return sum(abs(hits[b] - conf[b]) for b in range(bins)) / total


class ConfidenceCalibrator:
    """P(right | confidence), learned from the last ``window`` labelled answers.

    ``calibrate(c)`` is ``c`` plus its bin's mean residual, shrunk by ``prior`` pseudo-labels
    that carry no correction, clipped to [0, 1].
    """

    def __init__(self, bins: int = BINS, window: int = 5000, prior: float = 5.0) -> None:
        self.bins = bins
        self.window = window
        self.prior = prior
        self._labels: collections.deque[tuple[float, bool]] = collections.deque()
        self._n = [0] * bins
        self._residual = [0.0] * bins  # sum of (right - confidence) per bin

    @property
    def n(self) -> int:
        return len(self._labels)

    def learn_one(self, confidence: float, correct: bool) -> None:
        self._labels.append((confidence, correct))
        self._add(confidence, correct, 1)
        if len(self._labels) > self.window:
            self._add(*self._labels.popleft(), -1)

    def _add(self, confidence: float, correct: bool, sign: int) -> None:
        b = _bin(confidence, self.bins)
        self._n[b] += sign
        self._residual[b] += sign * (float(correct) - confidence)
        if self._n[b] == 0:
            self._residual[b] = 0.0  # no rounding left behind by the labels that left

    def calibrate(self, confidence: float) -> float:
        b = _bin(confidence, self.bins)
        shift = self._residual[b] / (self._n[b] + self.prior)
        return min(1.0, max(0.0, confidence + shift))

    def ece(self) -> float | None:
        """The raw confidences' expected calibration error over the labels in the window."""
        return expected_calibration_error(
            (c for c, _ in self._labels), (r for _, r in self._labels), self.bins
        )

    def accuracy(self) -> float | None:
        return sum(r for _, r in self._labels) / len(self._labels) if self._labels else None


class PerformanceEstimator:
    """One version's estimated accuracy, its reference, its drop, and its reconciliation."""

    def __init__(
        self,
        *,
        window: int = 500,
        reference_size: int = 1000,
        reconcile_every: int = 100,
        calibration_window: int = 5000,
        drop: float = 0.05,
    ) -> None:
        self.window = window
        self.reference_size = reference_size
        self.reconcile_every = reconcile_every
        self.drop = drop
        self.calibrator = ConfidenceCalibrator(window=calibration_window)
        self.predictions = 0
        self._recent: collections.deque[float] = collections.deque(maxlen=window)
        self._reference: list[float] = []
        self._pending = [0.0, 0, 0]  # estimates, labels, right answers of the open window
        self.reconciled: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=RECONCILED_KEPT
        )
        self._abs_error = [0.0, 0]  # over every closed window

    def observe(self, confidence: float) -> None:
        """A prediction of this version (its confidence in the label it answered)."""
        self.predictions += 1
        self._recent.append(confidence)
        if len(self._reference) < self.reference_size:
            self._reference.append(confidence)

    def learn(self, confidence: float, correct: bool) -> None:
        """A labelled answer of this version: reconciled with what the calibration said before
        seeing it, then learned by the calibration."""
        pending = self._pending
        pending[0] += self.calibrator.calibrate(confidence)
        pending[1] += 1
        pending[2] += bool(correct)
        if pending[1] >= self.reconcile_every:
            estimated, measured = pending[0] / pending[1], pending[2] / pending[1]
            self.reconciled.append(
                {
                    "labels": pending[1],
                    "estimated": estimated,
                    "measured": measured,
                    "error": estimated - measured,
                }
            )
            self._abs_error[0] += abs(estimated - measured)
            self._abs_error[1] += 1
            self._pending = [0.0, 0, 0]
        self.calibrator.learn_one(confidence, correct)

    def _mean_calibrated(self, confidences: Iterable[float]) -> float | None:
        values = [self.calibrator.calibrate(c) for c in confidences]
        return sum(values) / len(values) if values else None

    def estimate(self) -> float | None:
        """The expected accuracy of the last ``window`` predictions."""
        return self._mean_calibrated(self._recent)

    def reference_estimate(self) -> float | None:
        """The expected accuracy of the first ``reference_size`` predictions, once complete."""
        if len(self._reference) < self.reference_size:
            return None
        return self._mean_calibrated(self._reference)

    def dropped(self) -> bool:
        """The window is full and its estimate is ``drop`` or more below the reference's."""
        reference = self.reference_estimate()
        if reference is None or len(self._recent) < self.window:
            return False
        return self.estimate() <= reference - self.drop

    def to_dict(self) -> dict[str, Any]:
        closed = self._abs_error[1]
        return {
            "estimated_accuracy": self.estimate(),
            "reference_estimated_accuracy": self.reference_estimate(),
            "dropped": self.dropped(),
            "predictions": self.predictions,
            "window": len(self._recent),
            "calibration_labels": self.calibrator.n,
            "calibration_accuracy": self.calibrator.accuracy(),
            "expected_calibration_error": self.calibrator.ece(),
            "reconciliation": {
                "window_labels": self.reconcile_every,
                "windows": closed,
                "mean_abs_error": self._abs_error[0] / closed if closed else None,
                "last": list(self.reconciled),
            },
        }


__all__ = [
    "BINS",
    "ConfidenceCalibrator",
    "PerformanceEstimator",
    "confidence_of",
    "expected_calibration_error",
]
