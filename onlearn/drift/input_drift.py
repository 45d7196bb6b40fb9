"""Input drift: each feature of a live window against its reference profile, and the dataset.

Every feature gets one p-value from the test that decides for it (by default Kolmogorov-Smirnov
for a number, or the chi-squared of its bins when its values tie a lot; chi-squared for a
category), combined with a test of its missing rate when either side has missing values; the
p-values of all features are corrected together (Benjamini-Hochberg by default) and a feature
drifts when its adjusted p-value is at most ``alpha``. The dataset
alarm goes off when any feature drifts (so its false-alarm rate is at most ``alpha`` when no
feature drifts, by the Simes inequality for BH), or, with ``share_threshold``, when the share of
drifting features reaches it.

All the statistics of a feature are in its report, each with its own calibrated p-value (see
:class:`onlearn.drift.stats.HistogramNull`): a rule like "PSI above 0.1" is a rule for large
windows only; with no drift at all, PSI exceeds 0.1 on about 30% of windows of 100 rows and on
about 80% of windows of 50 (the drift benchmark, a reference of 10,000 rows in 10 bins).

The p-values hold their level given the reference the monitor has (``reference_confidence``, by
default for 99% of references), not only on average over references: a two-sample test treats
the reference as one random draw among many, and against an unlucky one a window with no drift
alarms several times as often as ``alpha`` (see :mod:`onlearn.drift.stats`).
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as _scipy_stats

from onlearn.drift import stats
from onlearn.drift.profiles import (
    CategoricalProfile,
    NumericProfile,
    Profile,
    _category,
    _number,
    category_key,
)
from onlearn.errors import ConfigError

__all__ = ["DriftReport", "FeatureDrift", "InputDriftMonitor"]

NUMERIC_TESTS = ("auto", "ks", *stats.HISTOGRAM_STATISTICS)
CATEGORICAL_TESTS = stats.HISTOGRAM_STATISTICS
CALIBRATIONS = ("monte_carlo", "asymptotic")
_NULL_CACHE_SIZE = 4  # window sizes remembered per feature (100 kB each)


@dataclass(frozen=True)
class FeatureDrift:
    """The drift of one feature over the window.

    ``statistics`` and ``p_values`` hold every statistic computed (``p_values`` lacks the ones
    with no test: ``wasserstein``, the W1 distance divided by the reference's IQR). ``p_value``
    is the decision's: the p-value of ``test``, Bonferroni-combined with ``missing_p_value``
    when there are missing values; ``adjusted_p_value`` is after the correction over features.
    ``p_value`` is None when the window has fewer than ``min_window`` rows.
    """

    name: str
    kind: str
    n: int
    missing_rate: float | None
    reference_missing_rate: float
    test: str
    statistics: Mapping[str, float] = field(default_factory=dict)
    p_values: Mapping[str, float] = field(default_factory=dict)
    missing_p_value: float | None = None
    p_value: float | None = None
    adjusted_p_value: float | None = None
    drifted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "n": self.n,
            "missing_rate": self.missing_rate,
            "reference_missing_rate": self.reference_missing_rate,
            "test": self.test,
            "statistics": dict(self.statistics),
            "p_values": dict(self.p_values),
            "missing_p_value": self.missing_p_value,
            "p_value": self.p_value,
            "adjusted_p_value": self.adjusted_p_value,
            "drifted": self.drifted,
        }


@dataclass(frozen=True)
class DriftReport:
    """The drift of every feature over a window of ``n`` rows, and the dataset's verdict."""

    n: int
    alpha: float
    correction: str
    features: tuple[FeatureDrift, ...]
    drift_share: float
    alarm: bool

    def __getitem__(self, name: str) -> FeatureDrift:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def drifted(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features if f.drifted)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "alpha": self.alpha,
            "correction": self.correction,
            "drift_share": self.drift_share,
            "alarm": self.alarm,
            "drifted": list(self.drifted),
            "features": [f.to_dict() for f in self.features],
        }


def _simulated_size(n: int) -> int:
    """The window size the null is simulated for: ``n`` itself up to 128, then ``n`` rounded to
    within 1/128 (when missing values make the window's count vary from report to report, a
    few simulations serve them all; a change of 1% in ``n`` moves the null by about 1%).

    >>> [_simulated_size(n) for n in (100, 500, 501, 1000, 1001, 1003)]
    [100, 500, 500, 1000, 1000, 1004]
    """
    if n <= 128:
        return n
    step = 1 << (n.bit_length() - 8)
    return max(step, round(n / step) * step)


class _Feature:
    """What the monitor keeps of one feature: how to bin a value, the reference, the window."""

    __slots__ = (
        "profile",
        "index",
        "test",
        "values",
        "nulls",
        "lookup",
        "reference_counts",
        "sample",
    )

    def __init__(
        self, profile: NumericProfile | CategoricalProfile, index: int, window: int, test: str
    ):
        self.profile = profile
        self.index = index
        self.test = test
        self.values: deque = deque(maxlen=window)
        self.nulls: OrderedDict[int, stats.HistogramNull] = OrderedDict()
        self.reference_counts = np.asarray(profile.bin_counts, dtype=float)
        if isinstance(profile, NumericProfile):
            self.lookup = None
            self.sample = np.asarray(profile.sample, dtype=float)
        else:
            self.lookup = profile.index()
            self.sample = None


class InputDriftMonitor:
    """Drift of the features of a live window of rows against a reference :class:`Profile`.

    Parameters
    ----------
    reference
        The profile of the data the model was trained on.
    window
        Number of most recent rows compared with the reference.
    alpha
        Level of each decision, after the correction over features.
    correction
        ``"bh"`` (false discovery rate), ``"holm"`` (family-wise error rate), ``"bonferroni"``
        or ``"none"``.
    numeric_test, categorical_test
        The statistic whose p-value decides for a number (``"ks"``, or a histogram statistic:
        ``"psi"``, ``"kl"``, ``"js"``, ``"hellinger"``, ``"chi2"``) and for a category (a
        histogram statistic). ``"auto"`` (the default for numbers) takes KS, unless fewer than
        half the reference sample's values are distinct: then the chi-squared of the bins,
        which sees values next to a big atom (a constant column, a count mostly 0) that KS
        barely notices.
    calibration
        How histogram statistics get p-values: ``"monte_carlo"`` (seeded simulation of the
        null for the reference and window sizes, cached per window size) or ``"asymptotic"``
        (their chi-squared approximations).
    min_window
        Fewer rows than this in the window: no test, no drift.
    share_threshold
        When set, the dataset alarm needs at least this share of features drifting; otherwise
        one drifting feature is enough.
    reference_confidence
        The share of references for which each p-value holds its level given the reference
        (0.99); None: the plain two-sample tests, which hold it on average over references
        only. The price is power: at 500 rows against 1000 a shift must be about 1.4 times
        as large to be seen as often. Applies to KS and to the Monte Carlo calibration (the
        ``"asymptotic"`` one stays plain).
    n_simulations, seed
        Of the Monte Carlo calibration. A simulation (some 50 ms) is cached per feature and
        window size; window sizes above 128 are rounded to within 1% for it.

    >>> import random
    >>> from onlearn.drift.profiles import build_profile
    >>> rng = random.Random(1)
    >>> rows = [{"x": rng.gauss(0, 1), "c": rng.choice("aab")} for _ in range(5000)]
    >>> monitor = InputDriftMonitor(build_profile(rows, numeric=["x"], categorical=["c"]),
    ...                             window=500)
    >>> for _ in range(500):
    ...     monitor.update({"x": rng.gauss(0.5, 1), "c": rng.choice("aab")})
    >>> report = monitor.report()
    >>> report.drifted, report.alarm, report.drift_share
    (('x',), True, 0.5)
    """

    def __init__(
        self,
        reference: Profile,
        window: int = 500,
        alpha: float = 0.01,
        correction: str = "bh",
        *,
        numeric_test: str = "auto",
        categorical_test: str = "chi2",
        calibration: str = "monte_carlo",
        min_window: int = 30,
        share_threshold: float | None = None,
        reference_confidence: float | None = 0.99,
        n_simulations: int = 5000,
        seed: int = 42,
    ):
        self.reference = reference
        self.window = window
        self.alpha = alpha
        self.correction = correction
        self.numeric_test = numeric_test
        self.categorical_test = categorical_test
        self.calibration = calibration
        self.min_window = min_window
        self.share_threshold = share_threshold
        self.reference_confidence = reference_confidence
        self.n_simulations = n_simulations
        self.seed = seed
        if not isinstance(reference, Profile):
            raise ConfigError(f"reference must be a Profile, got {type(reference).__name__}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 2:
            raise ConfigError(f"window must be an integer >= 2, got {window!r}")
        if not (isinstance(alpha, int | float) and 0 < alpha < 1):
            raise ConfigError(f"alpha must be between 0 and 1, got {alpha!r}")
        if correction not in stats.CORRECTIONS:
            raise ConfigError(
                f"correction must be one of {', '.join(stats.CORRECTIONS)}, got {correction!r}"
            )
        if numeric_test not in NUMERIC_TESTS:
            raise ConfigError(
                f"numeric_test must be one of {', '.join(NUMERIC_TESTS)}, got {numeric_test!r}"
            )
        if categorical_test not in CATEGORICAL_TESTS:
            raise ConfigError(
                f"categorical_test must be one of {', '.join(CATEGORICAL_TESTS)}, "
                f"got {categorical_test!r}"
            )
        if calibration not in CALIBRATIONS:
            raise ConfigError(
                f"calibration must be one of {', '.join(CALIBRATIONS)}, got {calibration!r}"
            )
        if isinstance(min_window, bool) or not isinstance(min_window, int) or min_window < 1:
            raise ConfigError(f"min_window must be an integer >= 1, got {min_window!r}")
        if share_threshold is not None and not 0 < share_threshold <= 1:
            raise ConfigError(f"share_threshold must be in (0, 1], got {share_threshold!r}")
        if reference_confidence is not None and not (
            isinstance(reference_confidence, float) and 0 < reference_confidence < 1
        ):
            raise ConfigError(
                f"reference_confidence must be in (0, 1) or None, got {reference_confidence!r}"
            )
        self._features = [
            _Feature(p, i, window, self._test_of(p)) for i, p in enumerate(reference.features)
        ]
        self._rows = 0

    def _test_of(self, profile: NumericProfile | CategoricalProfile) -> str:
        if isinstance(profile, CategoricalProfile):
            return self.categorical_test
        if self.numeric_test != "auto":
            return self.numeric_test
        # KS is blind to new values next to a big atom (a constant, a zero-inflated count):
        # with many ties, the calibrated chi-squared of the bins decides
        distinct = len(set(profile.sample))
        return "ks" if distinct >= 0.5 * len(profile.sample) else "chi2"

    @property
    def n(self) -> int:
        """Rows in the window."""
        return min(self._rows, self.window)

    def update(self, row: Mapping[str, Any]) -> None:
        """Add one row (a dict of features; absent or None means missing) to the window."""
        self._rows += 1
        get = row.get
        for f in self._features:
            lookup = f.lookup
            if lookup is None:
                f.values.append(_number(get(f.profile.name)))
            else:
                v = _category(get(f.profile.name))
                if v is None:
                    f.values.append(None)
                else:
                    f.values.append(lookup.get(category_key(v), len(lookup)))

    def reset(self) -> None:
        """Empty the window (the calibration caches stay)."""
        self._rows = 0
        for f in self._features:
            f.values.clear()

    def report(self) -> DriftReport:
        n_rows = self.n
        results = [self._feature_report(f, n_rows) for f in self._features]
        tested = [i for i, r in enumerate(results) if r.p_value is not None]
        adjusted = stats.adjust_p_values([results[i].p_value for i in tested], self.correction)
        final = list(results)
        for i, q in zip(tested, adjusted, strict=True):
            r = results[i]
            final[i] = dataclasses.replace(r, adjusted_p_value=q, drifted=q <= self.alpha)
        n_drifted = sum(f.drifted for f in final)
        share = n_drifted / len(tested) if tested else 0.0
        if self.share_threshold is None:
            alarm = n_drifted > 0
        else:
            alarm = n_drifted > 0 and share >= self.share_threshold
        return DriftReport(n_rows, self.alpha, self.correction, tuple(final), share, alarm)

    # -- one feature -----------------------------------------------------------------------

    def _feature_report(self, f: _Feature, n_rows: int) -> FeatureDrift:
        profile = f.profile
        numeric = f.lookup is None
        test = f.test
        present = [v for v in f.values if v is not None]
        n = len(present)
        base = {
            "name": profile.name,
            "kind": profile.kind,
            "n": n,
            "missing_rate": (n_rows - n) / n_rows if n_rows else None,
            "reference_missing_rate": profile.missing_rate,
            "test": test,
        }
        if n_rows < self.min_window:
            return FeatureDrift(**base)
        m = int(f.reference_counts.sum())
        statistics: dict[str, float] = {}
        p_values: dict[str, float] = {}
        if n > 0 and m > 0:
            if numeric:
                x = np.asarray(present, dtype=float)
                edges = np.asarray(profile.edges, dtype=float)
                bins = np.searchsorted(edges, x, side="left")
            else:
                bins = np.asarray(present, dtype=np.int64)
            counts = np.bincount(bins, minlength=len(f.reference_counts)).astype(float)
            hist = stats.histogram_statistics(f.reference_counts, counts)
            statistics.update({k: float(v) for k, v in hist.items()})
            p_values.update(self._histogram_p_values(f, statistics, counts, n, m))
            if numeric:
                d, p = stats.ks_test(f.sample, x)
                if self.reference_confidence is not None:
                    p = stats.ks_bound_p_value(d, n, len(f.sample), self.reference_confidence)
                statistics["ks"] = d
                p_values["ks"] = p
                w1 = stats.wasserstein(f.sample, x)
                statistics["wasserstein"] = w1 / profile.scale
        p_value = p_values.get(test, 1.0)
        missing_p = self._missing_p_value(profile, n_rows - n, n_rows)
        if missing_p is not None:
            p_value = min(1.0, 2.0 * min(p_value, missing_p))
        return FeatureDrift(
            **base,
            statistics=statistics,
            p_values=p_values,
            missing_p_value=missing_p,
            p_value=p_value,
        )

    def _histogram_p_values(
        self, f: _Feature, statistics: Mapping[str, float], counts: np.ndarray, n: int, m: int
    ) -> dict[str, float]:
        names = stats.HISTOGRAM_STATISTICS
        if self.calibration == "asymptotic":
            used = int(np.count_nonzero((f.reference_counts + counts) > 0))
            return {k: stats.asymptotic_p_value(k, statistics[k], n, m, used) for k in names}
        size = _simulated_size(n)
        null = f.nulls.get(size)
        if null is None:
            null = stats.HistogramNull(
                f.reference_counts,
                size,
                n_simulations=self.n_simulations,
                seed=(self.seed, f.index, size),
                reference_confidence=self.reference_confidence,
            )
            f.nulls[size] = null
            if len(f.nulls) > _NULL_CACHE_SIZE:
                f.nulls.popitem(last=False)
        else:
            f.nulls.move_to_end(size)
        return {k: null.p_value(k, statistics[k]) for k in names}

    @staticmethod
    def _missing_p_value(profile, missing: int, n_rows: int) -> float | None:
        """Fisher's exact test of the window's missing rate against the reference's; None when
        neither has missing values."""
        ref_missing = profile.missing
        if missing == 0 and ref_missing == 0:
            return None
        table = [[missing, n_rows - missing], [ref_missing, profile.count]]
        if math.prod(sum(row) for row in table) == 0:
            return None
        return float(_scipy_stats.fisher_exact(table).pvalue)
