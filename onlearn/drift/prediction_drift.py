"""Signals that need no labels: drift of what the model answers, and agreement between versions.

- :class:`PredictionDriftMonitor`: the predicted labels (a category, chi-squared) and the
  confidence, the largest class probability (a number, Kolmogorov-Smirnov), against a
  reference profile of predictions, with the machinery of :class:`InputDriftMonitor`.
- :class:`AgreementMonitor`: how often each challenger answers the same label as the champion
  over a sliding window, and whether that rate fell below its baseline.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from scipy import stats as _scipy_stats

from onlearn.drift import stats
from onlearn.drift.input_drift import DriftReport, InputDriftMonitor
from onlearn.drift.profiles import Profile, ProfileBuilder, category_key
from onlearn.errors import ConfigError

__all__ = [
    "AgreementMonitor",
    "AgreementReport",
    "ChallengerAgreement",
    "PredictionDriftMonitor",
    "prediction_profile",
    "prediction_row",
]

LABEL = "label"
CONFIDENCE = "confidence"


def prediction_row(label: Hashable, proba: Mapping[Any, float] | None = None) -> dict[str, Any]:
    """A prediction as a row of two features: the label and the largest probability.

    >>> prediction_row("spam", {"spam": 0.7, "ham": 0.3})
    {'label': 'spam', 'confidence': 0.7}
    """
    return {LABEL: label, CONFIDENCE: max(proba.values()) if proba else None}


def prediction_profile(
    predictions: Iterable[tuple[Hashable, Mapping[Any, float] | None]], **kwargs: Any
) -> Profile:
    """The reference profile of ``(label, proba)`` pairs, e.g. a version's answers on its
    validation data. Keyword arguments go to :class:`ProfileBuilder`."""
    builder = ProfileBuilder(numeric=[CONFIDENCE], categorical=[LABEL], **kwargs)
    for label, proba in predictions:
        builder.update(prediction_row(label, proba))
    return builder.profile()


class PredictionDriftMonitor:
    """Drift of the predicted labels and of the confidence over a window of predictions.

    >>> import random
    >>> rng = random.Random(1)
    >>> def answer(p_yes):
    ...     p = rng.betavariate(2, 2) * 0.5 + 0.5
    ...     label = "yes" if rng.random() < p_yes else "no"
    ...     return label, {label: p, "no" if label == "yes" else "yes": 1 - p}
    >>> monitor = PredictionDriftMonitor(prediction_profile(answer(0.3) for _ in range(3000)))
    >>> for _ in range(500):
    ...     monitor.update(*answer(0.6))
    >>> monitor.report().drifted
    ('label',)
    """

    def __init__(self, reference: Profile, window: int = 500, alpha: float = 0.01, **kwargs: Any):
        self.reference = reference
        self.window = window
        self.alpha = alpha
        for name in (LABEL, CONFIDENCE):
            if name not in reference:
                raise ConfigError(
                    f"the reference of a prediction monitor has no {name!r} feature; "
                    "build it with prediction_profile()"
                )
        self._monitor = InputDriftMonitor(reference, window, alpha, **kwargs)

    @property
    def n(self) -> int:
        """Predictions in the window."""
        return self._monitor.n

    def update(self, label: Hashable, proba: Mapping[Any, float] | None = None) -> None:
        self._monitor.update(prediction_row(label, proba))

    def report(self) -> DriftReport:
        return self._monitor.report()


@dataclass(frozen=True)
class ChallengerAgreement:
    """How often one challenger agreed with the champion: over the window, and at baseline.
    ``p_value`` is a one-sided test of a fall from the baseline (None until both exist)."""

    name: str
    n: int
    agreement: float | None
    baseline: float | None
    baseline_n: int | None
    p_value: float | None = None
    adjusted_p_value: float | None = None
    dropped: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class AgreementReport:
    challengers: tuple[ChallengerAgreement, ...]
    alarm: bool

    def __getitem__(self, name: str) -> ChallengerAgreement:
        for c in self.challengers:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {"alarm": self.alarm, "challengers": [c.to_dict() for c in self.challengers]}


class AgreementMonitor:
    """Agreement of challengers with the champion, a drift signal that needs no labels: when
    the data moves where two models were trained to agree, they start to disagree.

    The baseline of a challenger is given (``baselines``, e.g. measured offline; tested with a
    binomial test), or else it is its agreement over its first ``window`` comparisons (tested
    against the current window with Fisher's exact test). Both tests are one-sided: only a fall
    in agreement is a signal. The p-values of the challengers are corrected together.

    >>> monitor = AgreementMonitor(window=100)
    >>> for i in range(300):
    ...     same = i < 200 or i % 2 == 0  # agrees always, then half of the time
    ...     monitor.update("a", {"v2": "a" if same else "b"})
    >>> r = monitor.report()["v2"]
    >>> r.agreement, r.baseline, r.dropped
    (0.5, 1.0, True)
    """

    def __init__(
        self,
        window: int = 500,
        alpha: float = 0.01,
        correction: str = "holm",
        baselines: Mapping[str, float] | None = None,
    ):
        self.window = window
        self.alpha = alpha
        self.correction = correction
        self.baselines = dict(baselines or {})
        if isinstance(window, bool) or not isinstance(window, int) or window < 2:
            raise ConfigError(f"window must be an integer >= 2, got {window!r}")
        if correction not in stats.CORRECTIONS:
            raise ConfigError(
                f"correction must be one of {', '.join(stats.CORRECTIONS)}, got {correction!r}"
            )
        for name, rate in self.baselines.items():
            if not 0 <= rate <= 1:
                raise ConfigError(f"baseline of {name!r} must be in [0, 1], got {rate!r}")
        self._windows: dict[str, deque] = {}
        self._baseline_counts: dict[str, list[int]] = {}  # [agreed, compared]

    def update(self, champion: Hashable, challengers: Mapping[str, Hashable]) -> None:
        """One prediction of the champion and of each challenger that answered."""
        key = category_key(champion)
        for name, label in challengers.items():
            same = category_key(label) == key
            recent = self._windows.get(name)
            if recent is None:
                recent = self._windows[name] = deque(maxlen=self.window)
                self._baseline_counts[name] = [0, 0]
            base = self._baseline_counts[name]
            if name not in self.baselines and base[1] < self.window:
                base[0] += same
                base[1] += 1
                continue  # the baseline's comparisons are not also the window's
            recent.append(same)

    def agreement(self) -> dict[str, float | None]:
        return {n: (sum(w) / len(w) if w else None) for n, w in self._windows.items()}

    def report(self) -> AgreementReport:
        rows = []
        for name, recent in self._windows.items():
            n = len(recent)
            agreed = sum(recent)
            rate = agreed / n if n else None
            p_value = baseline = baseline_n = None
            if name in self.baselines:
                baseline = self.baselines[name]
                if n >= self.window:
                    p_value = _scipy_stats.binomtest(agreed, n, baseline, alternative="less")
                    p_value = float(p_value.pvalue)
            else:
                b_agreed, b_n = self._baseline_counts[name]
                baseline, baseline_n = (b_agreed / b_n if b_n else None), b_n
                if b_n >= self.window and n >= self.window:
                    table = [[agreed, n - agreed], [b_agreed, b_n - b_agreed]]
                    p_value = float(_scipy_stats.fisher_exact(table, alternative="less").pvalue)
            rows.append(ChallengerAgreement(name, n, rate, baseline, baseline_n, p_value))
        tested = [i for i, r in enumerate(rows) if r.p_value is not None]
        adjusted = stats.adjust_p_values([rows[i].p_value for i in tested], self.correction)
        for i, q in zip(tested, adjusted, strict=True):
            r = rows[i]
            rows[i] = ChallengerAgreement(
                r.name, r.n, r.agreement, r.baseline, r.baseline_n, r.p_value, q, q <= self.alpha
            )
        return AgreementReport(tuple(rows), any(r.dropped for r in rows))
