from __future__ import annotations

import json
import pickle
import random

import pytest

from onlearn.drift import (
    AgreementMonitor,
    InputDriftMonitor,
    PredictionDriftMonitor,
    build_profile,
    prediction_profile,
)
from onlearn.errors import ConfigError


@pytest.fixture(scope="module")
def profile():
    rng = random.Random(1)
    rows = [
        {
            "x": rng.gauss(0, 1),
            "y": rng.expovariate(1.0) if rng.random() > 0.05 else None,
            "c": rng.choice(["a", "a", "b", "c"]),
        }
        for _ in range(4000)
    ]
    return build_profile(rows, numeric=["x", "y"], categorical=["c"], sample_size=2000)


def stable_row(rng):
    return {
        "x": rng.gauss(0, 1),
        "y": rng.expovariate(1.0) if rng.random() > 0.05 else None,
        "c": rng.choice(["a", "a", "b", "c"]),
    }


def fill(monitor, rows):
    for row in rows:
        monitor.update(row)
    return monitor.report()


def test_stable_window_reports_every_statistic_and_no_drift(profile):
    rng = random.Random(2)
    report = fill(InputDriftMonitor(profile, window=300), [stable_row(rng) for _ in range(300)])
    assert report.n == 300 and not report.alarm and report.drift_share == 0.0
    x = report["x"]
    assert x.kind == "numeric" and x.test == "ks" and x.n == 300
    assert set(x.statistics) == {"psi", "kl", "js", "hellinger", "chi2", "ks", "wasserstein"}
    assert set(x.p_values) == {"psi", "kl", "js", "hellinger", "chi2", "ks"}
    assert x.p_value == x.p_values["ks"] and x.missing_p_value is None
    y = report["y"]
    assert y.missing_p_value is not None and y.reference_missing_rate == pytest.approx(0.05, 0.2)
    # the decision combines the value test and the missing-rate test (Bonferroni)
    assert y.p_value == pytest.approx(min(1.0, 2 * min(y.p_values["ks"], y.missing_p_value)))
    c = report["c"]
    assert c.kind == "categorical" and c.test == "chi2" and "ks" not in c.statistics
    json.dumps(report.to_dict())  # a report goes out over HTTP as it is


def test_a_shifted_feature_drifts_alone(profile):
    rng = random.Random(3)
    rows = [{**stable_row(rng), "x": rng.gauss(1.0, 1)} for _ in range(300)]
    report = fill(InputDriftMonitor(profile, window=300), rows)
    assert report.drifted == ("x",) and report.alarm
    assert report.drift_share == pytest.approx(1 / 3)
    assert report["x"].statistics["wasserstein"] == pytest.approx(1.0 / 1.35, rel=0.25)


def test_missing_values_surge_and_new_categories_are_drift(profile):
    rng = random.Random(4)
    rows = [{**stable_row(rng), "y": None if rng.random() < 0.5 else 1.0} for _ in range(300)]
    assert "y" in fill(InputDriftMonitor(profile, window=300), rows).drifted
    rows = [{**stable_row(rng), "c": "zz" if i % 20 == 0 else "a"} for i in range(300)]
    assert fill(InputDriftMonitor(profile, window=300), rows).drifted == ("c",)


def test_share_threshold_asks_for_more_than_one_feature(profile):
    rng = random.Random(3)
    rows = [{**stable_row(rng), "x": rng.gauss(1.0, 1)} for _ in range(300)]
    report = fill(InputDriftMonitor(profile, window=300, share_threshold=0.5), rows)
    assert report.drifted == ("x",) and not report.alarm


def test_too_few_rows_test_nothing(profile):
    rng = random.Random(5)
    report = fill(InputDriftMonitor(profile, window=300), [stable_row(rng) for _ in range(10)])
    assert all(f.p_value is None and not f.drifted for f in report.features)
    assert not report.alarm and report.n == 10


def test_the_window_slides_and_reset_empties_it(profile):
    rng = random.Random(6)
    monitor = InputDriftMonitor(profile, window=100)
    fill(monitor, [{**stable_row(rng), "x": 5.0} for _ in range(100)])
    report = fill(monitor, [stable_row(rng) for _ in range(100)])
    assert report.n == 100 and "x" not in report.drifted
    monitor.reset()
    assert monitor.n == 0


def test_reports_are_deterministic_and_survive_pickling(profile):
    rng = random.Random(7)
    rows = [stable_row(rng) for _ in range(200)]
    a = InputDriftMonitor(profile, window=200)
    b = InputDriftMonitor(profile, window=200)
    for row in rows[:150]:
        a.update(row)
        b.update(row)
    b = pickle.loads(pickle.dumps(b))
    assert fill(a, rows[150:]) == fill(b, rows[150:])


def test_asymptotic_calibration_and_other_tests(profile):
    rng = random.Random(8)
    rows = [stable_row(rng) for _ in range(300)]
    monitor = InputDriftMonitor(
        profile, window=300, calibration="asymptotic", numeric_test="psi", categorical_test="js"
    )
    report = fill(monitor, rows)
    assert report["x"].test == "psi" and report["x"].p_value == report["x"].p_values["psi"]
    assert report["c"].test == "js" and not report.alarm


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": 1}, "window must be an integer >= 2"),
        ({"alpha": 1.5}, "alpha must be between 0 and 1"),
        ({"correction": "fdr"}, "correction must be one of bh, holm"),
        ({"numeric_test": "t"}, "numeric_test must be one of auto, ks, psi"),
        ({"categorical_test": "ks"}, "categorical_test must be one of psi"),
        ({"calibration": "bootstrap"}, "calibration must be one of"),
        ({"share_threshold": 0}, "share_threshold"),
    ],
)
def test_config_errors(profile, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        InputDriftMonitor(profile, **kwargs)


# -- predictions and agreement ---------------------------------------------------------------


def answers(rng, p_yes, sharp=1.0, n=500):
    for _ in range(n):
        confidence = 0.5 + 0.5 * rng.betavariate(2 * sharp, 2) if sharp else 0.5
        label = "yes" if rng.random() < p_yes else "no"
        yield label, {label: confidence, "no" if label == "yes" else "yes": 1 - confidence}


def test_prediction_drift_watches_labels_and_confidence():
    rng = random.Random(9)
    reference = prediction_profile(answers(rng, 0.3, n=3000))
    stable = PredictionDriftMonitor(reference, window=400)
    for label, proba in answers(rng, 0.3, n=400):
        stable.update(label, proba)
    assert not stable.report().alarm
    unsure = PredictionDriftMonitor(reference, window=400)
    for label, proba in answers(rng, 0.3, sharp=0.3, n=400):
        unsure.update(label, proba)
    assert unsure.report().drifted == ("confidence",)
    with pytest.raises(ConfigError, match="prediction_profile"):
        PredictionDriftMonitor(build_profile([{"x": 1.0}], numeric=["x"]))


def test_agreement_falls_when_a_challenger_parts_ways():
    rng = random.Random(10)
    monitor = AgreementMonitor(window=200, alpha=0.01)
    for i in range(800):
        champion = rng.choice("ab")
        flip = 0.05 if i < 400 else 0.3
        steady = champion if rng.random() > 0.05 else "c"
        parting = champion if rng.random() > flip else "c"
        monitor.update(champion, {"steady": steady, "parting": parting})
    report = monitor.report()
    assert report["parting"].dropped and not report["steady"].dropped and report.alarm
    assert report["steady"].baseline == pytest.approx(0.95, abs=0.04)
    assert report["parting"].agreement == pytest.approx(0.7, abs=0.07)
    json.dumps(report.to_dict())


def test_agreement_against_a_given_baseline():
    monitor = AgreementMonitor(window=100, baselines={"v2": 0.9})
    for i in range(100):
        monitor.update(1, {"v2": 1 if i % 4 else 0})  # 75% agreement
    r = monitor.report()["v2"]
    assert r.agreement == 0.75 and r.baseline == 0.9 and r.dropped
    assert r.baseline_n is None
    with pytest.raises(ConfigError, match="baseline"):
        AgreementMonitor(baselines={"v2": 2.0})


def test_true_is_not_1_in_agreement():
    monitor = AgreementMonitor(window=2, baselines={"v2": 1.0})
    monitor.update(True, {"v2": 1})
    monitor.update(True, {"v2": True})
    assert monitor.agreement() == {"v2": 0.5}


def test_numbers_with_many_ties_are_decided_by_their_bins():
    rng = random.Random(11)
    rows = [{"k": 3.0 if i % 5 else 0.0, "x": rng.random()} for i in range(1000)]
    monitor = InputDriftMonitor(build_profile(rows, numeric=["k", "x"]), window=100)
    for i in range(100):
        monitor.update({"k": 4.0 if i % 10 == 0 else 3.0 if i % 5 else 0.0, "x": rng.random()})
    report = monitor.report()
    assert report["k"].test == "chi2" and report["x"].test == "ks"
    assert report["k"].p_values["ks"] > 0.05  # KS barely sees the new value...
    assert report.drifted == ("k",)  # ...the bins do
    forced = InputDriftMonitor(build_profile(rows, numeric=["k"]), window=100, numeric_test="ks")
    assert forced._features[0].test == "ks"
