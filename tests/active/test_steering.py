"""Steering the budget: bought labels' surprise and the monitor's alarms open the credit line."""

from __future__ import annotations

import pickle
import random

import pytest

from onlearn.active import DEFAULT_STEP, SurpriseDetector, sampler_from_config
from onlearn.errors import ConfigError


def cusum(surprises, slack=0.1, threshold=8.0):
    """The detector re-derived: indices where g = max(0, g + r - slack) passes threshold."""
    g, out = 0.0, []
    for i, r in enumerate(surprises):
        g = max(0.0, g + r - slack)
        if g > threshold:
            out.append(i)
            g = 0.0
    return out


def test_the_detector_is_a_cusum_over_errors_minus_expected_errors():
    rng = random.Random(5)
    detector = SurpriseDetector()
    surprises, alarms = [], []
    for i in range(5000):
        p = rng.uniform(0.5, 1.0)
        wrong = rng.random() < (1 - p) + (0.3 if 2000 <= i < 2600 else 0.0)  # a drift
        proba = {"a": p, "b": 1 - p}
        surprises.append(wrong - (1 - p))
        if detector.update(proba, "b" if wrong else "a"):
            alarms.append(i)
    assert alarms == cusum(surprises)
    assert alarms and all(2000 <= i < 2700 for i in alarms)  # calibrated: no false alarm
    assert detector.n_alarms == len(alarms)


def test_a_calibrated_model_raises_no_alarm_whatever_the_selection():
    """Labels bought only where the model is unsure err often, and as often as promised."""
    rng = random.Random(8)
    detector = SurpriseDetector()
    for _ in range(50_000):
        p = rng.uniform(0.5, 0.6)  # the uncertain cases a strategy buys
        detector.update({"a": p, "b": 1 - p}, "a" if rng.random() < p else "b")
    assert detector.n_alarms <= 10  # measured: one per 11 000 labels (docstring)


def test_an_empty_answer_promises_nothing():
    detector = SurpriseDetector()
    assert not any(detector.update({}, "a") for _ in range(100))


def sure_and_wrong(sampler, n):
    for _ in range(n):
        sampler.learn_one({"a": 0.95, "b": 0.05}, "b")


def test_confident_errors_in_bought_labels_open_the_credit_line():
    sampler = sampler_from_config({"budget": 0.1, "window": 200})
    for _ in range(2000):  # spend the cold start; the line closes
        sampler.decide({"a": 0.5, "b": 0.5})
    before = sampler.strategy.n_asked
    sure_and_wrong(sampler, 10)
    assert sampler.strategy.n_drifts == 1
    asked = sum(sampler.decide({"a": 0.5, "b": 0.5}).ask for _ in range(200))
    assert asked >= 0.1 * 200 + 40  # the drift credit on top of the budget
    assert sampler.strategy.n_asked - before == asked


def test_steer_false_ignores_bought_labels_but_not_the_monitor():
    sampler = sampler_from_config({"steer": False})
    sure_and_wrong(sampler, 100)
    assert sampler.strategy.n_drifts == 0
    sampler.on_drift({"kind": "concept_drift"})
    assert sampler.strategy.n_drifts == 1
    assert sampler_from_config(sampler.to_config()).to_config() == sampler.to_config()
    assert sampler.to_config()["steer"] is False


@pytest.mark.parametrize(
    "kind, opens",
    [
        ("concept_drift", True),
        ("input_drift", True),
        ("prediction_drift", True),
        ("agreement_drop", False),
        ("performance", False),
    ],
)
def test_monitor_alarms_that_say_the_data_moved_open_the_line(kind, opens):
    sampler = sampler_from_config({})
    sampler.on_drift({"kind": kind, "detail": "x"})
    assert sampler.strategy.n_drifts == int(opens)
    for hostile in (["concept_drift"], {"a": 1}, None, 7):  # from the log: untrusted
        sampler.on_drift({"kind": hostile})
    assert sampler.strategy.n_drifts == int(opens)


def test_a_label_event_steers_only_when_a_sampler_picked_it():
    sampler = sampler_from_config({})
    answer = {"label": "a", "proba": [["a", 0.95], ["b", 0.05]]}
    event = {"label": "b", "outputs": {"v1": answer}, "answered_by": "v1", "sampled": "uncertain"}
    # What the store gives back is untrusted: a malformed stored answer steers nothing and
    # raises nothing (it would stop the model from applying its log).
    hostile = [
        {**event, "outputs": ["not", "a", "table"]},
        {**event, "outputs": {"v1": "text"}},
        {**event, "outputs": {"v1": {"proba": [["a"]]}}},
        {**event, "outputs": {"v1": {"proba": [["a", "high"]]}}},
        {**event, "outputs": {"v1": {"proba": [[["a"], 0.9]]}}},
        {**event, "outputs": {"v1": {"proba": [["a", float("nan")], ["b", 0.1]]}}},
        {**event, "label": ["b"]},
        {k: v for k, v in event.items() if k != "label"},
    ]
    for _ in range(10):
        sampler.learn_label({**event, "sampled": None})  # an app label: not bought
        sampler.learn_label({**event, "outputs": None})  # no record joined
        for payload in hostile:
            sampler.learn_label(payload)
    assert sampler.strategy.n_drifts == 0
    for _ in range(10):
        sampler.learn_label(event)
    assert sampler.strategy.n_drifts == 1


def test_the_credit_keys_round_trip_through_the_config():
    config = {
        "strategy": "split",
        "budget": 0.05,
        "credit": 30,
        "cold_start": 20,
        "drift_credit": 10,
        "repay": 0.8,
        "max_rate": 0.2,
        "window": 100,
    }
    sampler = sampler_from_config(config)
    assert sampler.to_config() == {
        **config,
        "step": DEFAULT_STEP,
        "random_share": 0.2,
        "measure": "margin",
        "evaluation_rate": 0.0,
        "seed": 42,
    }
    copy = pickle.loads(pickle.dumps(sampler))
    probas = [{"a": p, "b": 1 - p} for p in (random.Random(1).random() for _ in range(3000))]
    assert [sampler.decide(p) for p in probas] == [copy.decide(p) for p in probas]


def test_a_bad_detector_setting_is_refused_by_name():
    with pytest.raises(ConfigError, match="'slack' must be a finite number >= 0"):
        SurpriseDetector(slack=-1)
