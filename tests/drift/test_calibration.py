"""Null calibration and power of the per-feature decisions, seeded.

With no drift, a decision at level ``alpha`` must alarm on about ``alpha`` of the windows, at
every window size; PSI's customary "above 0.1" rule does not. The reference is fixed, as in
production, so the rate is the one conditional on it: a two-sample test accounts for the
reference's own noise, which makes it a little conservative when the window approaches the
reference's size (1000 against 10000 here).
"""

from __future__ import annotations

import numpy as np
import pytest

from onlearn.drift import stats
from onlearn.drift.input_drift import InputDriftMonitor
from onlearn.drift.profiles import build_profile

ALPHA = 0.05
TRIALS = 300
CATEGORY_P = np.array([0.4, 0.2, 0.15, 0.1, 0.08, 0.04, 0.02, 0.01])


@pytest.fixture(scope="module")
def reference():
    rng = np.random.default_rng(123)
    m = 10_000
    rows = [
        {"x": float(v), "c": int(c)}
        for v, c in zip(rng.normal(size=m), rng.choice(8, size=m, p=CATEGORY_P), strict=True)
    ]
    profile = build_profile(rows, numeric=["x"], categorical=["c"])
    x, c = profile["x"], profile["c"]
    return {
        "edges": np.asarray(x.edges),
        "sample": np.asarray(x.sample),
        "x_counts": np.asarray(x.bin_counts),
        "c_counts": np.asarray(c.bin_counts),
        "c_index": np.array([c.categories.index(i) for i in range(8)]),
    }


def decisions(reference, n, rng, shift=0.0, category_p=CATEGORY_P):
    """The decisions of one window of n rows: numeric (KS, calibrated PSI, raw PSI > 0.1) and
    categorical (calibrated chi-squared)."""
    x_null = stats.HistogramNull(reference["x_counts"], n, seed=(1, n))
    c_null = stats.HistogramNull(reference["c_counts"], n, seed=(2, n))
    out = []
    for _ in range(TRIALS):
        w = rng.normal(shift, 1.0, size=n)
        counts = np.bincount(
            np.searchsorted(reference["edges"], w), minlength=len(reference["x_counts"])
        )
        psi = float(stats.psi(reference["x_counts"], counts))
        cats = reference["c_index"][rng.choice(8, size=n, p=category_p)]
        c_counts = np.bincount(cats, minlength=len(reference["c_counts"]))
        chi2 = float(stats.chi2_statistic(reference["c_counts"], c_counts)[0])
        out.append(
            (
                stats.ks_test(reference["sample"], w)[1] <= ALPHA,
                x_null.p_value("psi", psi) <= ALPHA,
                psi > 0.1,
                c_null.p_value("chi2", chi2) <= ALPHA,
            )
        )
    return np.mean(out, axis=0)


@pytest.mark.parametrize("n", [50, 100, 500, 1000])
def test_false_alarm_rate_is_close_to_alpha_at_every_window_size(reference, n):
    ks, psi, raw_psi, chi2 = decisions(reference, n, np.random.default_rng(n))
    for name, rate in (("ks", ks), ("psi", psi), ("chi2", chi2)):
        # 300 trials: one standard error is 0.0126 at 0.05
        assert 0.01 <= rate <= 0.09, (name, n, rate)
    if n <= 100:
        # PSI > 0.1 is a large-window rule: at 100 rows it alarms on a third of stable windows
        assert raw_psi > 0.2 > psi
    else:
        assert raw_psi == 0.0


def test_power_against_a_shift(reference):
    rng = np.random.default_rng(5)
    moved = np.array([0.3, 0.2, 0.15, 0.1, 0.08, 0.04, 0.02, 0.11])
    ks, psi, _, chi2 = decisions(reference, 100, rng, shift=0.5, category_p=moved)
    assert ks > 0.95 and psi > 0.85 and chi2 > 0.95


def test_dataset_alarm_is_controlled_by_the_correction():
    """Ten stable features, 80 windows: without a correction the dataset alarm would go off on
    about 1 - 0.95^10 = 40% of them; with BH (the monitor's) or Holm, on about 5%."""
    rng = np.random.default_rng(9)
    names = [f"f{i}" for i in range(10)]
    reference_rows = [dict(zip(names, rng.normal(size=10), strict=True)) for _ in range(2000)]
    # the plain two-sample p-values (exact level on average over references): the reference
    # bound would make every feature conservative and hide what the correction does
    monitor = InputDriftMonitor(
        build_profile(reference_rows, numeric=names), 200, ALPHA, "bh", reference_confidence=None
    )
    alarms = {"none": 0, "bh": 0, "holm": 0}
    windows = 80
    for _ in range(windows):
        monitor.reset()
        for values in rng.normal(size=(200, 10)):
            monitor.update(dict(zip(names, values, strict=True)))
        report = monitor.report()
        p_values = [f.p_value for f in report.features]
        assert report.alarm == any(stats.reject(p_values, ALPHA, "bh"))
        alarms["bh"] += report.alarm
        alarms["none"] += min(p_values) <= ALPHA
        alarms["holm"] += any(stats.reject(p_values, ALPHA, "holm"))
    assert alarms["none"] / windows > 0.25
    assert alarms["bh"] / windows <= 0.12 and alarms["holm"] / windows <= 0.12
