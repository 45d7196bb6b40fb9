"""Concept drift detectors on the stream of a model's errors, behind one small interface.

:func:`detector_from_config` builds one from its config table, e.g. ``{ name = "adwin",
delta = 0.002 }``; a bad entry raises :class:`ConfigError` naming it. Every detector is fed the
same way, whatever it watches:

- ``update(correct)`` with whether the prediction was right;
- or ``update_pair(y_true, y_pred)``, which works for all of them, including ``lfr`` (Linear
  Four Rates, :mod:`onlearn.drift.lfr`), which watches the confusion matrix and so needs both;
- or, for a regressor, ``update_error(error)`` with its absolute error: only the detectors that
  watch any number (``REAL_VALUED``: ADWIN, KSWIN, Page-Hinkley) take it; the others model a
  stream of right and wrong answers.

Each wrapper feeds its detector what it expects: the error (``1 - correct``) for ADWIN, DDM,
EDDM, HDDM_A, HDDM_W, KSWIN and Page-Hinkley, which all look for an increase of their input;
the correctness for FHDDM, which looks for a decrease of its input (river 0.26 documents it as
fed errors, but then it detects only improvements). Then ``drift_detected`` (and
``warning_detected``, False for the detectors without a warning zone) say what the last update
found; like river's, a detector starts afresh at the update after a drift.

Names and the parameters they take (defaults are river's, except where noted):

============  ================================================================================
name          parameters
============  ================================================================================
adwin         delta, clock, max_buckets, min_window_length, grace_period
ddm           warm_start, warning_threshold, drift_threshold
eddm          warm_start, alpha, beta
hddm_a        drift_confidence, warning_confidence, two_sided_test
hddm_w        drift_confidence, warning_confidence, lambda_val, two_sided_test
kswin         alpha, window_size (default 500), stat_size (default 150), seed (default 42)
page_hinkley  min_instances, delta, threshold, alpha, mode (default ``"up"``: errors rising)
fhddm         sliding_window_size, confidence_level, short_window_size
lfr           eta, warn_level, detect_level, positive
============  ================================================================================

>>> detector = detector_from_config({"name": "ddm"})
>>> for i in range(2000):
...     detector.update(correct=(i % 10 != 0) if i < 1000 else (i % 2 == 0))
...     if detector.drift_detected:
...         print("drift at", i)
...         break
drift at 1049
>>> detector_from_config({"name": "adwin", "delt": 0.01})
Traceback (most recent call last):
...
onlearn.errors.ConfigError: detector 'adwin': unknown parameter 'delt' (did you mean delta?); \
parameters: delta, clock, max_buckets, min_window_length, grace_period
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from onlearn.drift.lfr import LinearFourRates
from onlearn.errors import ConfigError

__all__ = ["DETECTORS", "REAL_VALUED", "ConceptDriftDetector", "detector_from_config"]


def _probability(v: Any) -> str | None:
    return None if 0 < v < 1 else "must be between 0 and 1 (exclusive)"


def _unit(v: Any) -> str | None:
    return None if 0 < v <= 1 else "must be in (0, 1]"


def _positive(v: Any) -> str | None:
    return None if v > 0 else "must be > 0"


def _non_negative(v: Any) -> str | None:
    return None if v >= 0 else "must be >= 0"


def _choice(*options: str) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return None if v in options else f"must be one of {', '.join(map(repr, options))}"

    return check


# kind: "float" (int or float), "int", "bool", "str", "int?" (int or None), "any"
_SPECS: dict[str, dict[str, tuple[str, Callable[[Any], str | None] | None]]] = {
    "adwin": {
        "delta": ("float", _probability),
        "clock": ("int", _positive),
        "max_buckets": ("int", _positive),
        "min_window_length": ("int", _positive),
        "grace_period": ("int", _positive),
    },
    "ddm": {
        "warm_start": ("int", _non_negative),
        "warning_threshold": ("float", _positive),
        "drift_threshold": ("float", _positive),
    },
    "eddm": {
        "warm_start": ("int", _non_negative),
        "alpha": ("float", _unit),
        "beta": ("float", _unit),
    },
    "hddm_a": {
        "drift_confidence": ("float", _probability),
        "warning_confidence": ("float", _probability),
        "two_sided_test": ("bool", None),
    },
    "hddm_w": {
        "drift_confidence": ("float", _probability),
        "warning_confidence": ("float", _probability),
        "lambda_val": ("float", _probability),
        "two_sided_test": ("bool", None),
    },
    "kswin": {
        "alpha": ("float", _probability),
        "window_size": ("int", _positive),
        "stat_size": ("int", _positive),
        "seed": ("int", None),
    },
    "page_hinkley": {
        "min_instances": ("int", _positive),
        "delta": ("float", _non_negative),
        "threshold": ("float", _positive),
        "alpha": ("float", _unit),
        "mode": ("str", _choice("up", "down", "both")),
    },
    "fhddm": {
        "sliding_window_size": ("int", _positive),
        "confidence_level": ("float", _probability),
        "short_window_size": ("int?", _positive),
    },
    "lfr": {
        "eta": ("float", _probability),
        "warn_level": ("float", _probability),
        "detect_level": ("float", _probability),
        "positive": ("any", None),
    },
}

# name -> (class name in river.drift, or LFR; what it is fed; our defaults over the class's)
_CLASSES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "adwin": ("ADWIN", "errors", {}),
    "ddm": ("binary.DDM", "errors", {}),
    "eddm": ("binary.EDDM", "errors", {}),
    "hddm_a": ("binary.HDDMA", "errors", {}),
    "hddm_w": ("binary.HDDMW", "errors", {}),
    # river's window (100, 30 against 30) found 45 of 100 abrupt changes of an error rate in the
    # drift benchmark (20 seeds): a KS test of 30 against 30 right-or-wrong answers has little
    # power. 150 against 150 of a window of 500 found 60 (every abrupt 0.1 -> 0.3 change), with
    # 0 to 0.75 false alarms per 10,000 stationary events.
    "kswin": ("KSWIN", "errors", {"seed": 42, "window_size": 500, "stat_size": 150}),
    "page_hinkley": ("PageHinkley", "errors", {"mode": "up"}),
    "fhddm": ("binary.FHDDM", "correctness", {}),
    "lfr": ("", "pairs", {}),
}


def _class(name: str) -> type:
    """The detector class of a name; river is imported on first use (it imports slowly, and
    ``from river.drift import *`` fails in river 0.26, so each class is taken by name)."""
    path = _CLASSES[name][0]
    if not path:
        return LinearFourRates
    if name == "kswin":
        from onlearn.drift.kswin import KSWIN

        return KSWIN
    from river import drift as river_drift

    module = river_drift.binary if path.startswith("binary.") else river_drift
    return getattr(module, path.rpartition(".")[2])


DETECTORS = tuple(_CLASSES)
# Detectors of a change in the mean (ADWIN, Page-Hinkley) or the distribution (KSWIN) of any
# numbers, so of a regressor's absolute errors too; Page-Hinkley's delta and threshold are then
# in the label's units. The others assume 0/1 inputs (their bounds are binomial).
REAL_VALUED = ("adwin", "kswin", "page_hinkley")
_ALIASES = {
    "hddma": "hddm_a",
    "hddmw": "hddm_w",
    "ph": "page_hinkley",
    "pagehinkley": "page_hinkley",
    "page-hinkley": "page_hinkley",
    "linear_four_rates": "lfr",
}


class ConceptDriftDetector:
    """A drift detector fed whether each prediction was right (or the labels themselves).

    ``name`` and ``params`` are its config; the wrapped detector is ``detector``. ``feeds``
    says what it is given: ``"errors"``, ``"correctness"`` or ``"pairs"`` (``y_true, y_pred``).
    """

    def __init__(self, name: str, params: Mapping[str, Any], detector: Any, feeds: str):
        self.name = name
        self.params = dict(params)
        self.detector = detector
        self.feeds = feeds
        self._n = 0
        self._n_detections = 0

    def update(self, correct: bool) -> None:
        """One prediction, right (True) or wrong (False)."""
        if self.feeds == "pairs":
            raise TypeError(
                f"{self.name} watches the confusion matrix: feed it "
                "update_pair(y_true, y_pred), not update(correct)"
            )
        self._n += 1
        if self.feeds == "errors":
            self.detector.update(0 if correct else 1)
        else:
            self.detector.update(1 if correct else 0)
        if self.detector.drift_detected:
            self._n_detections += 1

    def update_pair(self, y_true: Hashable, y_pred: Hashable) -> None:
        """One prediction and its true label."""
        self._n += 1
        detector = self.detector
        feeds = self.feeds
        if feeds == "pairs":
            detector.update(y_true, y_pred)
        elif feeds == "errors":
            detector.update(0 if y_true == y_pred else 1)
        else:
            detector.update(1 if y_true == y_pred else 0)
        if detector.drift_detected:
            self._n_detections += 1

    def update_error(self, error: float) -> None:
        """One absolute error of a regressor (a detector of ``REAL_VALUED`` only)."""
        if self.name not in REAL_VALUED:
            raise TypeError(
                f"{self.name} watches right and wrong answers; a regressor's errors are numbers: "
                f"use one of {', '.join(REAL_VALUED)}"
            )
        self._n += 1
        self.detector.update(error)
        if self.detector.drift_detected:
            self._n_detections += 1

    @property
    def drift_detected(self) -> bool:
        return bool(self.detector.drift_detected)

    @property
    def warning_detected(self) -> bool:
        return bool(getattr(self.detector, "warning_detected", False))

    @property
    def has_warning(self) -> bool:
        """Whether this detector has a warning zone at all."""
        return hasattr(self.detector, "warning_detected")

    @property
    def n(self) -> int:
        """Updates seen."""
        return self._n

    @property
    def n_detections(self) -> int:
        return self._n_detections

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name, **self.params}

    def clone(self) -> ConceptDriftDetector:
        """A fresh detector with the same config."""
        return detector_from_config(self.to_config())

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"ConceptDriftDetector({self.name}{', ' if params else ''}{params})"


def _check_kind(where: str, key: str, kind: str, value: Any) -> None:
    if kind == "any":
        return
    if kind == "bool":
        ok = isinstance(value, bool)
        expected = "true or false"
    elif kind == "str":
        ok = isinstance(value, str)
        expected = "a string"
    elif kind == "int" or kind == "int?":
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (
            kind == "int?" and value is None
        )
        expected = "an integer"
    else:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        expected = "a number"
    if not ok:
        raise ConfigError(f"{where}: {key} must be {expected}, got {value!r}")


def _cross_check(where: str, cls: type, params: Mapping[str, Any]) -> None:
    """Checks between two parameters, on the values with the class's defaults filled in."""
    full = {
        k: p.default
        for k, p in inspect.signature(cls).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    full.update(params)
    pairs = [
        ("warning_threshold", "drift_threshold", "<="),  # ddm
        ("beta", "alpha", "<="),  # eddm
        ("drift_confidence", "warning_confidence", "<="),  # hddm_a, hddm_w
        ("stat_size", "window_size", "<"),  # kswin
        ("detect_level", "warn_level", "<="),  # lfr
    ]
    for a, b, op in pairs:
        if a in full and b in full and full[a] is not None and full[b] is not None:
            ok = full[a] <= full[b] if op == "<=" else full[a] < full[b]
            if not ok:
                raise ConfigError(f"{where}: {a} ({full[a]}) must be {op} {b} ({full[b]})")


def detector_from_config(config: Mapping[str, Any] | str) -> ConceptDriftDetector:
    """A detector from its config table (or just its name), e.g. ``{"name": "kswin", "alpha":
    0.001}``. Raises :class:`ConfigError` naming the bad entry."""
    if isinstance(config, str):
        config = {"name": config}
    if not isinstance(config, Mapping):
        raise ConfigError(
            f'detector: expected a table like {{ name = "adwin" }}, got {type(config).__name__}'
        )
    if "name" not in config:
        raise ConfigError(f"detector: name is missing; use one of {', '.join(DETECTORS)}")
    raw_name = config["name"]
    if not isinstance(raw_name, str):
        raise ConfigError(f"detector: name must be a string, got {raw_name!r}")
    name = _ALIASES.get(raw_name.lower(), raw_name.lower())
    if name not in _CLASSES:
        close = difflib.get_close_matches(name, DETECTORS, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(
            f"detector: unknown name {raw_name!r}{hint}; use one of {', '.join(DETECTORS)}"
        )
    where = f"detector {name!r}"
    spec = _SPECS[name]
    _, feeds, defaults = _CLASSES[name]
    cls = _class(name)
    params = {k: v for k, v in config.items() if k != "name"}
    for key, value in params.items():
        if key not in spec:
            close = difflib.get_close_matches(str(key), list(spec), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(
                f"{where}: unknown parameter {key!r}{hint}; parameters: {', '.join(spec)}"
            )
        kind, check = spec[key]
        _check_kind(where, key, kind, value)
        problem = check(value) if check is not None and value is not None else None
        if problem:
            raise ConfigError(f"{where}: {key} {problem}, got {value!r}")
    params = {**defaults, **params}
    _cross_check(where, cls, params)
    try:
        detector = cls(**params)
    except (ValueError, TypeError) as e:  # river's own checks, e.g. eddm's alpha >= beta
        raise ConfigError(f"{where}: {e}") from None
    return ConceptDriftDetector(name, params, detector, feeds)
