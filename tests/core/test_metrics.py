"""Incremental metrics equal the batch computation of the same prefix, at every step."""

from __future__ import annotations

import random

import numpy as np
import pytest
from sklearn import metrics as skm

from onlearn.metrics import ClassificationMetrics, RegressionMetrics, VersionMetrics


def test_classification_metrics_equal_scikit_learn_at_every_step():
    rng = random.Random(7)
    classes = ["a", "b", "c"]
    m = ClassificationMetrics()
    y_true, y_pred, probas = [], [], []
    for _ in range(300):
        y = rng.choice(classes)
        weights = [rng.random() + 0.01 for _ in classes]
        proba = {c: w / sum(weights) for c, w in zip(classes, weights, strict=True)}
        pred = max(proba, key=proba.get)
        m.update(y, pred, proba)
        y_true.append(y)
        y_pred.append(pred)
        probas.append([proba[c] for c in classes])
        assert m.accuracy == pytest.approx(skm.accuracy_score(y_true, y_pred))
        assert m.log_loss == pytest.approx(skm.log_loss(y_true, probas, labels=classes))
        assert m.macro_f1 == pytest.approx(
            skm.f1_score(y_true, y_pred, average="macro", labels=sorted(set(y_true) | set(y_pred)))
        )


def test_regression_metrics_equal_numpy_at_every_step():
    rng = np.random.default_rng(3)
    truth, guess = rng.normal(size=200), rng.normal(size=200)
    m = RegressionMetrics()
    for i in range(200):
        m.update(float(truth[i]), float(guess[i]))
        err = truth[: i + 1] - guess[: i + 1]
        assert m.mae == pytest.approx(np.abs(err).mean())
        assert m.rmse == pytest.approx(np.sqrt((err**2).mean()))


def test_a_missing_prediction_is_wrong_and_a_missing_class_probability_is_clipped():
    m = ClassificationMetrics()
    m.update(True, None, {})
    assert m.accuracy == 0.0
    assert m.log_loss == pytest.approx(-np.log(1e-15))
    assert m.macro_f1 == 0.0


def test_a_probability_that_was_not_finite_counts_as_no_confidence():
    # Answers carry a NaN probability (a model whose weights overflowed) as null: learning the
    # label failed on it, found by the fuzzing, and the model stopped learning.
    m = ClassificationMetrics()
    m.update(True, False, {True: None, False: None})
    assert m.n == 1 and m.accuracy == 0.0
    assert m.log_loss == pytest.approx(-np.log(1e-15))


def test_version_metrics_count_sources_and_delays():
    m = VersionMetrics("classification")
    m.update(True, True, {True: 1.0}, source="app", stored=True, delay_s=2.0)
    m.update(False, True, {True: 1.0}, source="human", stored=False, delay_s=None)
    m.update(False, False, {False: 1.0}, source="human", stored=True, delay_s=4.0)
    d = m.to_dict()
    assert d["labels_by_source"] == {"app": 1, "human": 2}
    assert (d["scored_on_stored_prediction"], d["scored_on_replay"]) == (2, 1)
    assert d["label_delay_s"] == {"mean": 3.0, "max": 4.0, "n": 2}
    assert d["accuracy"] == pytest.approx(2 / 3)


def test_recent_accuracy_is_the_accuracy_of_the_last_labels_at_every_step():
    rng = random.Random(3)
    m = ClassificationMetrics()
    hits = []
    for _ in range(1200):
        y, guess = rng.choice("ab"), rng.choice("ab")
        m.update(y, guess, {guess: 1.0})
        hits.append(y == guess)
        window = hits[-ClassificationMetrics.RECENT :]
        assert m.recent_accuracy == pytest.approx(sum(window) / len(window))


def test_recent_mae_is_the_mae_of_the_last_labels_at_every_step():
    rng = np.random.default_rng(5)
    truth, guess = rng.normal(size=1200) * 10, rng.normal(size=1200) * 10
    m = RegressionMetrics()
    for i in range(1200):
        m.update(float(truth[i]), float(guess[i]))
        window = np.abs(truth[: i + 1] - guess[: i + 1])[-RegressionMetrics.RECENT :]
        assert m.recent_mae == pytest.approx(window.mean(), rel=1e-12)
    assert m.to_dict()["recent_mae"] == m.recent_mae
    assert RegressionMetrics().recent_mae is None


def test_regression_metrics_pickled_before_the_recent_mae_still_load():
    """Snapshots pickle the metrics: one written before the rolling MAE existed loads, keeps
    what it learned, and starts the rolling window empty."""
    import pickle

    m = RegressionMetrics()
    for y, p in [(3.0, 1.0), (0.0, 1.0)]:
        m.update(y, p)
    old = RegressionMetrics.__new__(RegressionMetrics)
    old.__dict__.update({k: v for k, v in m.__dict__.items() if k != "_recent"})
    restored = pickle.loads(pickle.dumps(old))
    assert (restored.n, restored.mae, restored.recent_mae) == (2, 1.5, None)
    restored.update(4.0, 0.0)
    assert restored.recent_mae == 4.0 and restored.n == 3
