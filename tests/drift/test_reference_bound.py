"""The false alarm rate holds given the reference a deployment has, not only on average.

A reference is one draw: against a reference whose mean happens to sit 2.6 standard errors off
(about one reference in a hundred), the plain two-sample tests alarm on several times ``alpha``
of the windows drawn from the true distribution. With ``reference_confidence`` (the monitor's
default) every reference of a seeded grid stays at most 2 x alpha, the adversarial one included.
Sizes are the monitor's defaults: a reference of 1000 rows, windows of 500.
"""

from __future__ import annotations

import numpy as np
import pytest

from onlearn.drift import InputDriftMonitor, build_profile, stats

ALPHA = 0.01
M, N = 1000, 500
WINDOWS = 300
CONFIDENCE = 0.99
CATEGORY_P = np.array([0.4, 0.2, 0.15, 0.1, 0.08, 0.04, 0.02, 0.01])


def numeric_reference(seed: int, offset_se: float = 0.0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=M)
    # an unlucky reference: its mean moved to offset_se standard errors from the truth's
    return np.sort(x - x.mean() + offset_se / np.sqrt(M))


def ks_alarms(reference: np.ndarray, seed: int) -> tuple[int, int]:
    """Alarms of the plain and of the bounded KS test over no-drift windows."""
    rng = np.random.default_rng(seed)
    plain = bounded = 0
    for _ in range(WINDOWS):
        d, p = stats.ks_test(reference, rng.normal(size=N))
        plain += p <= ALPHA
        bounded += stats.ks_bound_p_value(d, N, M, CONFIDENCE) <= ALPHA
    return plain, bounded


def test_ks_false_alarms_hold_for_every_reference_of_the_grid():
    references = [numeric_reference(s) for s in range(4)] + [numeric_reference(99, 2.6)]
    results = [ks_alarms(ref, 1000 + i) for i, ref in enumerate(references)]
    plain = [p for p, _ in results]
    bounded = [b for _, b in results]
    # the unlucky reference breaks the plain test (which is why the bound exists)...
    assert plain[-1] / WINDOWS > 2 * ALPHA, plain
    # ...and no reference breaks the bounded one
    assert all(b / WINDOWS <= 2 * ALPHA for b in bounded), bounded
    assert all(b <= p for p, b in results)


def test_ks_bound_is_the_kolmogorov_quantiles_summed():
    """At level alpha the bounded test alarms exactly past the sum of the one-sample quantiles
    (reference at its confidence, window at alpha)."""
    from scipy.stats import kstwo

    edge = kstwo.isf(1 - CONFIDENCE, M) + kstwo.isf(ALPHA, N)
    assert stats.ks_bound_p_value(edge, N, M, CONFIDENCE) == pytest.approx(ALPHA, rel=1e-4)
    assert stats.ks_bound_p_value(kstwo.isf(1 - CONFIDENCE, M), N, M, CONFIDENCE) == 1.0


def chi2_alarms(reference_p: np.ndarray, seed: int) -> tuple[int, int]:
    rng = np.random.default_rng(seed)
    ref_counts = rng.multinomial(M, reference_p)
    plain_null = stats.HistogramNull(ref_counts, N, n_simulations=2000, seed=seed)
    bounded_null = stats.HistogramNull(
        ref_counts, N, n_simulations=2000, seed=seed, reference_confidence=CONFIDENCE
    )
    plain = bounded = 0
    for _ in range(WINDOWS):
        counts = rng.multinomial(N, CATEGORY_P)
        chi2 = float(stats.chi2_statistic(ref_counts, counts)[0])
        plain += plain_null.p_value("chi2", chi2) <= ALPHA
        bounded += bounded_null.p_value("chi2", chi2) <= ALPHA
    return plain, bounded


def test_chi2_false_alarms_hold_for_every_reference_of_the_grid():
    """Categories: references drawn from the truth, and an unlucky one (3 points of the top
    category's share in the reference went to the rarest, about 3 standard errors)."""
    unlucky = CATEGORY_P + np.array([-0.03, 0, 0, 0, 0, 0, 0, 0.03])
    results = [chi2_alarms(CATEGORY_P, s) for s in range(4)]
    results.append(chi2_alarms(unlucky, 7))
    assert results[-1][0] / WINDOWS > 2 * ALPHA, results
    assert all(b / WINDOWS <= 2 * ALPHA for _, b in results), results


def test_the_monitor_bounds_by_default_and_still_sees_a_real_shift():
    rng = np.random.default_rng(11)
    ref = numeric_reference(99, 2.6)
    profile = build_profile(({"x": float(v)} for v in ref), numeric=["x"], sample_size=M)
    bounded = InputDriftMonitor(profile, window=N)
    plain = InputDriftMonitor(profile, window=N, reference_confidence=None)
    alarms = {"bounded": 0, "plain": 0}
    for _ in range(100):
        bounded.reset()
        plain.reset()
        for v in rng.normal(size=N):
            bounded.update({"x": float(v)})
            plain.update({"x": float(v)})
        alarms["bounded"] += bounded.report().alarm
        alarms["plain"] += plain.report().alarm
    assert alarms["bounded"] <= 2 < 4 <= alarms["plain"], alarms
    for v in rng.normal(0.6, 1.0, size=N):
        bounded.update({"x": float(v)})
    assert bounded.report().drifted == ("x",)
