"""The accuracy estimated from probabilities, against synthetic models whose truth is known.

A *calibrated* model draws each label from its own probabilities, so an answer of confidence c
is right with probability c: the estimate must equal the measured accuracy within the noise of
the Bernoulli draws (computed from the confidences), and its ECE must be within the noise of
the bins. An overconfident model (it reports sharpened probabilities) has a large ECE, and the
calibration learned from its labels brings its estimate back to the truth.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from onlearn.drift import (
    ConfidenceCalibrator,
    PerformanceEstimator,
    confidence_of,
    expected_calibration_error,
)


def synthetic(n, classes, seed, sharpen=1.0):
    """(reported confidence, right) of a model whose true class probabilities are Dirichlet
    draws; it reports them raised to ``sharpen`` (1: calibrated) and answers their argmax."""
    rng = np.random.default_rng(seed)
    true = rng.dirichlet(np.full(classes, 0.7), size=n)
    reported = true**sharpen
    reported /= reported.sum(axis=1, keepdims=True)
    predicted = reported.argmax(axis=1)
    y = np.array([rng.choice(classes, p=p) for p in true])
    return reported[np.arange(n), predicted], predicted == y, true[np.arange(n), predicted]


def noise(c):
    """Standard deviation of the mean of Bernoulli(c) draws."""
    return math.sqrt(float(np.sum(c * (1 - c)))) / len(c)


@pytest.mark.parametrize("classes", [2, 7])
def test_the_estimate_of_a_calibrated_model_equals_its_measured_accuracy(classes):
    confidence, right, _ = synthetic(20_000, classes, seed=classes)
    window = 5000
    estimator = PerformanceEstimator(window=window, reference_size=1000, calibration_window=5000)
    for c, r in zip(confidence, right, strict=True):
        estimator.observe(float(c))
        estimator.learn(float(c), bool(r))
    measured = right[-window:].mean()
    # Two independent noises: the window's labels around their confidences, and the
    # calibration's labels (its last 5000, the same ones here) around theirs. 4 sigma each.
    tolerance = 4 * noise(confidence[-window:]) + 4 * noise(confidence[-5000:])
    assert abs(estimator.estimate() - measured) <= tolerance
    # ...and the estimate is not trivially right: the accuracy is far from 1 and from chance.
    assert 1 / classes + 0.1 < measured < 0.95


@pytest.mark.parametrize("classes", [2, 7])
def test_a_calibrated_model_has_an_ece_within_its_noise_and_an_overconfident_one_a_large_one(
    classes,
):
    confidence, right, _ = synthetic(20_000, classes, seed=10 + classes)
    ece = expected_calibration_error(confidence, right)
    # Each bin's |hits - confidences| is the absolute value of a sum of independent centred
    # draws: 4 of its standard deviations bound it, and the bins add up.
    bins = np.minimum((confidence * 10).astype(int), 9)
    bound = sum(
        4 * math.sqrt(float(np.sum(confidence[bins == b] * (1 - confidence[bins == b]))))
        for b in range(10)
    ) / len(confidence)
    assert ece <= bound < 0.05

    sharp, right_sharp, _ = synthetic(20_000, classes, seed=20 + classes, sharpen=3.0)
    overconfidence = float(sharp.mean() - right_sharp.mean())
    assert overconfidence > 0.1 > 2 * bound  # far beyond a calibrated model's noise
    # ECE is at least the gap between mean confidence and accuracy (triangle inequality).
    assert expected_calibration_error(sharp, right_sharp) >= overconfidence - 1e-12


def test_the_calibration_brings_an_overconfident_models_estimate_back_to_its_accuracy():
    confidence, right, true = synthetic(20_000, 2, seed=5, sharpen=3.0)
    estimator = PerformanceEstimator(window=5000, reference_size=1000, calibration_window=20_000)
    for c, r in zip(confidence, right, strict=True):
        estimator.observe(float(c))
        estimator.learn(float(c), bool(r))
    measured = right[-5000:].mean()
    raw = confidence[-5000:].mean()
    assert raw - measured > 0.1  # uncalibrated, the estimate would be far off
    # Calibrated per bin, what is left is the bias within each bin (the residual is not the
    # same at both ends of a bin): a few points at most for this model.
    assert abs(estimator.estimate() - measured) < 0.02
    assert estimator.to_dict()["expected_calibration_error"] > 0.1


def test_reconciliation_compares_each_window_of_labels_with_its_prequential_estimate():
    confidence, right, _ = synthetic(3050, 3, seed=7)
    estimator = PerformanceEstimator(window=500, reference_size=500, reconcile_every=100)
    calibrator = ConfidenceCalibrator(window=5000)
    expected = []
    for start in range(0, 3000, 100):
        chunk = slice(start, start + 100)
        # The batch oracle: each label estimated by a calibration of the labels before it.
        estimates = []
        for c, r in zip(confidence[chunk], right[chunk], strict=True):
            estimates.append(calibrator.calibrate(float(c)))
            calibrator.learn_one(float(c), bool(r))
        expected.append((np.mean(estimates), right[chunk].mean()))
    for c, r in zip(confidence, right, strict=True):
        estimator.learn(float(c), bool(r))
    report = estimator.to_dict()["reconciliation"]
    assert report["window_labels"] == 100 and report["windows"] == 30  # the last 50: still open
    last = report["last"][-1]
    assert last["estimated"] == pytest.approx(expected[-1][0])
    assert last["measured"] == pytest.approx(expected[-1][1])
    mean_abs = np.mean([abs(e - m) for e, m in expected])
    assert report["mean_abs_error"] == pytest.approx(mean_abs)
    # A calibrated model: each window's gap is the noise of its 100 Bernoulli draws (E|N(0, s)|
    # is 0.8 s); half as much again for the mean of 30 of them, and 0.02 for the calibration's
    # own noise while it holds few labels.
    per_window = np.mean([noise(confidence[i : i + 100]) for i in range(0, 3000, 100)])
    assert report["mean_abs_error"] < 1.5 * 0.8 * per_window + 0.02


def test_a_sliding_calibration_equals_one_fed_only_its_window():
    confidence, right, _ = synthetic(1000, 4, seed=3)
    sliding, batch = ConfidenceCalibrator(window=200), ConfidenceCalibrator(window=200)
    for c, r in zip(confidence, right, strict=True):
        sliding.learn_one(float(c), bool(r))
    for c, r in zip(confidence[-200:], right[-200:], strict=True):
        batch.learn_one(float(c), bool(r))
    for c in np.linspace(0, 1, 41):
        assert sliding.calibrate(c) == pytest.approx(batch.calibrate(c), abs=1e-12)
    assert sliding.ece() == pytest.approx(batch.ece())
    assert sliding.n == 200


def test_a_drop_is_flagged_when_the_window_is_surer_of_nothing():
    estimator = PerformanceEstimator(window=100, reference_size=200, drop=0.05)
    rng = np.random.default_rng(1)
    for c in rng.uniform(0.85, 1.0, size=400):
        estimator.observe(float(c))
    assert estimator.dropped() is False
    for c in rng.uniform(0.5, 0.8, size=100):
        estimator.observe(float(c))
    assert estimator.dropped() is True
    assert estimator.estimate() < estimator.reference_estimate() - 0.05


def test_confidence_is_that_of_the_answered_label():
    assert confidence_of("b", {"a": 0.3, "b": 0.7}) == 0.7
    assert confidence_of("c", {"a": 0.3, "b": 0.7}) == 0.7  # a label outside the probabilities
    assert confidence_of("a", {}) is None
    assert confidence_of("a", {"a": float("nan")}) is None
