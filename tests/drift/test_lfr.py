"""Linear Four Rates against its definitions (Wang and Abraham, IJCNN 2015)."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest

from onlearn.drift import lfr as lfr_module
from onlearn.drift.lfr import LinearFourRates
from onlearn.errors import ConfigError

ETA = 0.9

# (y_true, y_pred): every cell of the confusion matrix, in runs and alone
HAND_MADE = [
    (1, 1), (1, 1), (0, 0), (1, 0), (0, 1), (0, 0), (0, 0), (1, 1), (1, 0), (0, 0),
    (1, 1), (0, 1), (1, 1), (1, 1), (0, 0), (0, 0), (1, 0), (0, 0), (1, 1), (0, 1),
]  # fmt: skip


def stream(seed, n, p_positive=0.3, tpr=0.85, tnr=0.9, change_at=None, tpr_after=None):
    rng = random.Random(seed)
    for t in range(n):
        y = rng.random() < p_positive
        recall = tpr_after if change_at is not None and t >= change_at else tpr
        yield y, (rng.random() < recall) if y else (rng.random() >= tnr)


def test_decayed_rates_and_estimates_equal_a_direct_computation():
    """R of a rate after k of its events = 0.5 eta^k + sum_i (1 - eta) eta^(k-i) [correct_i],
    over the events that move it; P = the rate of the confusion matrix counted from ones."""
    detector = LinearFourRates(eta=ETA)
    moves = {
        "tpr": lambda y, p: y == 1,
        "tnr": lambda y, p: y == 0,
        "ppv": lambda y, p: p == 1,
        "npv": lambda y, p: p == 0,
    }
    for t in range(1, len(HAND_MADE) + 1):
        y, p = HAND_MADE[t - 1]
        detector.update(y, p)
        assert not detector.drift_detected
        seen = HAND_MADE[:t]
        for rate, moved in moves.items():
            hits = [yy == pp for yy, pp in seen if moved(yy, pp)]
            k = len(hits)
            direct = 0.5 * ETA**k + sum(
                (1 - ETA) * ETA ** (k - i) * h for i, h in enumerate(hits, start=1)
            )
            assert detector.rates[rate] == pytest.approx(direct, abs=1e-12), (t, rate)
        tp = sum(1 for yy, pp in seen if yy == pp == 1)
        tn = sum(1 for yy, pp in seen if yy == pp == 0)
        fp = sum(1 for yy, pp in seen if (yy, pp) == (0, 1))
        fn = sum(1 for yy, pp in seen if (yy, pp) == (1, 0))
        assert detector.confusion == {"tp": tp, "fn": fn, "tn": tn, "fp": fp}
        assert detector.estimates == pytest.approx(
            {
                "tpr": (tp + 1) / (tp + fn + 2),
                "tnr": (tn + 1) / (tn + fp + 2),
                "ppv": (tp + 1) / (tp + fp + 2),
                "npv": (tn + 1) / (tn + fn + 2),
            }
        )
    assert detector.n == len(HAND_MADE)


@pytest.mark.parametrize("p", [0.3, 0.8, 0.95])
@pytest.mark.parametrize("k", [1, 5, 20, 100])
def test_bounds_are_the_quantiles_of_the_simulated_recursion(p, k):
    """Monte Carlo, as the paper computes its bound table: R started at 0.5, fed k Bernoulli(p)
    indicators. Each bound holds its level, and is not loose."""
    warn, detect = 0.01, 0.001
    rows = lfr_module._bound_rows(ETA, warn, detect, p)
    lower_w, upper_w, lower_d, upper_d = rows[min(k, len(rows) - 1)]
    rng = np.random.default_rng(k)
    r = np.full(400_000, 0.5)
    for _ in range(k):
        r = ETA * r + (1 - ETA) * (rng.random(r.size) < p)
    for level, lower, upper in ((warn, lower_w, upper_w), (detect, lower_d, upper_d)):
        slack = 4 * np.sqrt(level / r.size)
        assert np.mean(r < lower) <= level + slack
        assert np.mean(r > upper) <= level + slack
        if k >= 20:  # a near-continuous distribution: the bounds sit at the quantiles
            assert np.mean(r < lower + 0.03) > level
            assert np.mean(r > upper - 0.03) > level or upper >= 1 - 1e-9


def test_bounds_grow_with_the_rate_and_the_table_is_deterministic():
    a = lfr_module._bound_rows(ETA, 0.01, 0.0001, 0.6)
    b = lfr_module._bound_rows(ETA, 0.01, 0.0001, 0.61)
    assert all(x[0] <= y[0] and x[1] <= y[1] for x, y in zip(a, b, strict=True))
    assert a == lfr_module._bound_rows(ETA, 0.01, 0.0001, 0.6)


def test_no_alarm_on_a_stationary_stream_beyond_the_false_alarm_bound():
    """Each update checks two rates, each against two bounds at detect_level: at most
    4 * detect_level false detections per update, 8 in 20000 updates."""
    detector = LinearFourRates()
    detections = warnings = 0
    for y, p in stream(seed=1, n=20_000):
        detector.update(y, p)
        detections += detector.drift_detected
        warnings += detector.warning_detected
    assert detections <= 8
    assert warnings / 20_000 <= 4 * 0.01 * 1.5


def test_an_abrupt_drop_of_recall_is_detected_soon():
    """Recall falls from 0.85 to 0.4 at t = 4000. A false alarm shortly before the change (as
    in seed 3, at 3729) restarts the estimates on few events and delays the detection."""
    delays = []
    for seed in range(6):
        detector = LinearFourRates()
        for t, (y, p) in enumerate(stream(seed, 6000, change_at=4000, tpr_after=0.4)):
            detector.update(y, p)
            if detector.drift_detected and t >= 4000:
                delays.append(t - 4000)
                break
    assert len(delays) == 6
    assert sum(d < 100 for d in delays) >= 5, delays


def test_a_recall_drop_that_hardly_moves_the_error_rate():
    """The paper's case: 5% positives whose recall falls from 0.9 to 0.4; the error rate
    only goes from 0.034 to 0.059."""
    detector = LinearFourRates()
    first = None
    for t, (y, p) in enumerate(
        stream(3, 12_000, p_positive=0.05, tnr=0.97, tpr=0.9, change_at=6000, tpr_after=0.4)
    ):
        detector.update(y, p)
        if detector.drift_detected and first is None:
            first = t
    assert first is not None and 6000 <= first < 8000


def test_state_restarts_after_a_detection_and_warning_start_marks_the_span():
    detector = LinearFourRates()
    history = []
    for t, (y, p) in enumerate(stream(4, 8000, change_at=4000, tpr_after=0.2), start=1):
        detector.update(y, p)
        history.append(detector.warning_start)
        if detector.drift_detected and t > 4000:
            break
    start = detector.warning_start
    assert start is not None and start <= t
    assert all(w == start for w in history[start - 1 :])  # it held until the detection
    assert detector.n_detections >= 1
    detector.update(True, True)
    assert detector.n == 1 and not detector.drift_detected
    assert detector.confusion == {"tp": 1, "fn": 0, "tn": 0, "fp": 0}
    assert detector.rates == pytest.approx({"tpr": 0.55, "tnr": 0.5, "ppv": 0.55, "npv": 0.5})


def test_pickling_mid_stream_changes_nothing():
    pairs = list(stream(5, 6000, change_at=3000, tpr_after=0.3))
    a = LinearFourRates()
    b = LinearFourRates()
    hits_a, hits_b = [], []
    for t, (y, p) in enumerate(pairs):
        if t == 2000:
            blob = pickle.dumps(b)
            assert len(blob) < 2000  # the state, not the shared table of bounds
            b = pickle.loads(blob)
        a.update(y, p)
        b.update(y, p)
        hits_a += [t] * a.drift_detected
        hits_b += [t] * b.drift_detected
    assert hits_a == hits_b and hits_a


def test_positive_names_the_positive_label():
    detector = LinearFourRates(positive="spam")
    detector.update("spam", "ham")
    detector.update("other", "ham")
    assert detector.confusion == {"tp": 0, "fn": 1, "tn": 1, "fp": 0}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"eta": 0}, "eta must be in"),
        ({"eta": True}, "eta must be a number"),
        ({"warn_level": 0.5}, "warn_level must be in"),
        ({"detect_level": 0.1}, "detect_level \\(0.1\\) must be <= warn_level"),
    ],
)
def test_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        LinearFourRates(**kwargs)
