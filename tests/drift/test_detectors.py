from __future__ import annotations

import pickle
import random

import pytest
from river import drift as river_drift
from river.drift import binary as river_binary

from onlearn.drift import DETECTORS, LinearFourRates, detector_from_config
from onlearn.errors import ConfigError


def error_stream(seed, n=1000, at=600, before=0.1, after=0.5):
    rng = random.Random(seed)
    return [rng.random() >= (before if i < at else after) for i in range(n)]  # True = correct


def first_detection(detector, correct, pairs=False):
    for i, ok in enumerate(correct):
        if pairs:
            detector.update_pair(True, ok)  # the positive class, predicted right or not
        else:
            detector.update(ok)
        if detector.drift_detected:
            return i
    return None


@pytest.mark.parametrize("name", DETECTORS)
def test_every_detector_catches_a_jump_of_the_error_rate(name):
    detector = detector_from_config({"name": name})
    stream = error_stream(seed=1)
    found = first_detection(detector, stream, pairs=name == "lfr")
    assert found is not None and 600 <= found < 1000, (name, found)


@pytest.mark.parametrize("name", DETECTORS)
def test_detectors_are_deterministic_and_pickle_mid_stream(name):
    stream = error_stream(seed=2, n=800, at=400, after=0.4)
    a = detector_from_config({"name": name})
    b = detector_from_config({"name": name})
    hits_a, hits_b = [], []
    for i, ok in enumerate(stream):
        if i == 500:
            b = pickle.loads(pickle.dumps(b))
        for detector, hits in ((a, hits_a), (b, hits_b)):
            detector.update_pair(True, ok)
            if detector.drift_detected:
                hits.append(i)
    assert hits_a == hits_b and hits_a
    assert a.n == b.n == len(stream) and a.n_detections == len(hits_a)


def test_wrappers_feed_the_right_input():
    fed = {}
    for name in DETECTORS:
        if name == "lfr":
            continue
        d = detector_from_config(name)
        seen = []
        original = d.detector.update
        d.detector.update = lambda x, seen=seen, original=original: (seen.append(x), original(x))
        d.update(True)
        d.update(False)
        fed[name] = seen
    assert fed.pop("fhddm") == [1, 0]  # correctness: it detects a fall of its input
    assert all(v == [0, 1] for v in fed.values()), fed  # errors: they detect a rise


def test_defaults_and_the_wrapped_classes():
    expected = {
        "adwin": river_drift.ADWIN,
        "ddm": river_binary.DDM,
        "eddm": river_binary.EDDM,
        "hddm_a": river_binary.HDDMA,
        "hddm_w": river_binary.HDDMW,
        "kswin": river_drift.KSWIN,
        "page_hinkley": river_drift.PageHinkley,
        "fhddm": river_binary.FHDDM,
        "lfr": LinearFourRates,
    }
    for name, cls in expected.items():
        detector = detector_from_config(name).detector
        if name == "kswin":  # river's, with its p-values cached (decides alike, tested below)
            assert isinstance(detector, cls) and type(detector).__module__ == "onlearn.drift.kswin"
        else:
            assert type(detector) is cls
    kswin = detector_from_config("kswin").detector
    assert (kswin.seed, kswin.window_size, kswin.stat_size) == (42, 500, 150)
    assert detector_from_config("page_hinkley").detector.mode == "up"
    d = detector_from_config({"name": "adwin", "delta": 0.01})
    assert d.detector.delta == 0.01 and d.to_config() == {"name": "adwin", "delta": 0.01}
    assert d.clone().to_config() == d.to_config() and d.clone() is not d
    assert detector_from_config("HDDM_A").name == "hddm_a"


def test_warnings_where_the_detector_has_them():
    assert detector_from_config("ddm").has_warning
    assert not detector_from_config("adwin").has_warning
    d = detector_from_config({"name": "ddm"})
    warned = False
    for ok in error_stream(seed=3, n=3000, at=1000, after=0.3):
        d.update(ok)
        warned |= d.warning_detected
        if d.drift_detected:
            break
    assert warned
    assert detector_from_config("adwin").warning_detected is False


def test_lfr_needs_both_labels():
    d = detector_from_config({"name": "lfr", "positive": "spam"})
    with pytest.raises(TypeError, match="update_pair"):
        d.update(True)
    d.update_pair("spam", "ham")
    assert d.detector.confusion == {"tp": 0, "fn": 1, "tn": 0, "fp": 0}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ([1], "expected a table"),
        ({}, "name is missing; use one of adwin, ddm"),
        ({"name": 3}, "name must be a string"),
        ({"name": "adwn"}, "unknown name 'adwn' \\(did you mean adwin\\?\\)"),
        ({"name": "adwin", "delt": 0.1}, "unknown parameter 'delt' \\(did you mean delta\\?\\)"),
        ({"name": "adwin", "delta": "0.1"}, "delta must be a number, got '0.1'"),
        ({"name": "adwin", "delta": True}, "delta must be a number"),
        ({"name": "adwin", "delta": 2}, "delta must be between 0 and 1"),
        ({"name": "adwin", "clock": 1.5}, "clock must be an integer"),
        ({"name": "kswin", "window_size": 20}, "stat_size \\(150\\) must be < window_size"),
        ({"name": "eddm", "alpha": 0.5}, "beta \\(0.9\\) must be <= alpha"),
        ({"name": "ddm", "warning_threshold": 4.0}, "warning_threshold"),
        ({"name": "hddm_a", "drift_confidence": 0.1}, "drift_confidence"),
        ({"name": "page_hinkley", "mode": "sideways"}, "mode must be one of 'up'"),
        ({"name": "hddm_w", "two_sided_test": 1}, "two_sided_test must be true or false"),
        ({"name": "lfr", "eta": 1.0}, "eta must be between 0 and 1"),
        ({"name": "lfr", "warn_level": 0.00001}, "detect_level \\(0.0001\\) must be <="),
        ({"name": "lfr", "detect_level": 0.05}, "detect_level \\(0.05\\) must be <= warn_level"),
    ],
)
def test_config_errors_name_the_entry(config, message):
    with pytest.raises(ConfigError, match=message):
        detector_from_config(config)


def test_a_regressors_absolute_errors_feed_only_the_detectors_that_take_numbers():
    from onlearn.drift.detectors import REAL_VALUED

    rng = random.Random(2)
    errors = [abs(rng.gauss(0, 1)) for _ in range(1000)] + [
        abs(rng.gauss(5, 1)) for _ in range(300)
    ]
    for name in REAL_VALUED:
        detector = detector_from_config(name)
        at = None
        for i, error in enumerate(errors):
            detector.update_error(error)
            if detector.drift_detected and at is None:
                at = i
        assert at is not None and at >= 1000, (name, at)  # after the errors rose, not before
        assert detector.n == len(errors) and detector.n_detections >= 1
    for name in sorted(set(DETECTORS) - set(REAL_VALUED)):
        with pytest.raises(TypeError, match="use one of adwin, kswin, page_hinkley"):
            detector_from_config(name).update_error(0.5)


@pytest.mark.parametrize(
    "params",
    [{"window_size": 100, "stat_size": 30}, {"window_size": 200, "stat_size": 60, "alpha": 0.01}],
)
def test_kswin_decides_as_rivers_own(params):
    """Our KSWIN caches the p-value of each distance: the same drifts and p-values as river's."""
    from river.drift import KSWIN

    rng = random.Random(5)
    errors = [int(rng.random() < (0.1 if t < 1000 else 0.4)) for t in range(2000)]
    ours = detector_from_config({"name": "kswin", **params})
    theirs = KSWIN(**{"seed": 42, **params})
    for x in errors:
        ours.update(correct=not x)
        theirs.update(x)
        assert (ours.drift_detected, ours.detector.p_value) == (
            theirs.drift_detected,
            theirs.p_value,
        )
    assert ours.n_detections >= 1
