"""The learned state of one version: a fold of ``learn_one`` over the label events of the log.

``state(seq) = replay(snapshot(s0), events(s0, seq])``: a LearnerState is what a snapshot
pickles, so it holds only what replay rebuilds (estimator, metrics, the seq it includes).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from onlearn.compare import PairedCounts, PairedErrors
from onlearn.metrics import VersionMetrics, absolute_error
from onlearn.models import (
    predict_batch,
    predict_columns,
    predict_proba_batch,
    predict_proba_columns,
)
from onlearn.records import Event
from onlearn.two_sample import TwoSampleCounts, TwoSampleErrors, count_answered
from onlearn.weights import event_pace, label_weight, learn_weighted, takes_pace, takes_weight


def proba_pairs(proba: Mapping[Hashable, float] | None) -> list[list[Any]] | None:
    """Probabilities as ``[[label, p], ...]``: JSON keeps a bool or int label only as a value."""
    return None if proba is None else [[label, p] for label, p in proba.items()]


def proba_dict(pairs: list[list[Any]] | None) -> dict[Any, float] | None:
    return None if pairs is None else {label: p for label, p in pairs}


class LearnerState:
    """One version's estimator with its prequential metrics, at log position ``seq``.

    A *scorecard* (:meth:`scorecard`) is a state without its estimator: it keeps the metrics and
    the paired comparisons up to date from the answers stored in label events and learns
    nothing. The worker process holds scorecards to check promotion gates and retrain triggers,
    instead of learning every label a second time.
    """

    # Label events a scorecard could not score: no stored answer of this version, and no model to
    # ask (a class attribute, so states pickled before it existed read 0).
    unscored = 0

    def __init__(self, version: str, task: str, estimator: Any, seq: int = 0) -> None:
        self.version = version
        self.task = task
        self.estimator = estimator
        self.seq = seq
        self.metrics = VersionMetrics(task)
        # other version -> its correctness (a) against this one's (b) on the same requests
        # (classification), or its absolute errors against this one's (regression), since the
        # last change of roles (a new comparison starts with each change).
        self.paired: dict[str, PairedCounts | PairedErrors] = {}
        # other version -> the A/B comparison: its answers (a) and this one's (b), each scored
        # only on the labels of requests it answered (onlearn/two_sample.py); reset with paired.
        self.ab: dict[str, TwoSampleCounts | TwoSampleErrors] = {}
        self.learn_errors = 0

    def scorecard(self) -> LearnerState:
        """Drop the estimator (and the memory it holds); metrics and comparisons stay."""
        self.estimator = None
        return self

    @property
    def learns(self) -> bool:
        return self.estimator is not None

    def predict(self, x: Mapping[str, Any]) -> tuple[Any, dict[Any, float] | None]:
        """``(label, proba)``; proba is None for regression and may be empty before any label."""
        if self.estimator is None:
            raise RuntimeError(f"version {self.version} is held as a scorecard: it cannot predict")
        if self.task == "classification":
            proba = self.estimator.predict_proba_one(x)
            return (max(proba, key=proba.get) if proba else None), proba
        return self.estimator.predict_one(x), None

    def predict_many(self, xs: list[Mapping[str, Any]]) -> list[tuple[Any, dict | None]]:
        """``predict`` for each row, vectorised where the pipeline allows (same numbers)."""
        if self.task == "classification":
            probas = predict_proba_batch(self.estimator, xs)
            return [((max(p, key=p.get) if p else None), p) for p in probas]
        return [(y, None) for y in predict_batch(self.estimator, xs)]

    def predict_columns(self, columns: Mapping[str, Any], n: int) -> Any:
        """``predict`` of ``n`` rows held as columns (feature -> values, None where absent),
        vectorised: ``(labels, p)`` (classification, see
        :func:`onlearn.models.predict_proba_columns`) or an array of values (regression); None
        when the pipeline does not allow it, for the caller to predict row by row."""
        if self.task == "classification":
            return predict_proba_columns(self.estimator, columns, n)
        return predict_columns(self.estimator, columns, n)

    def learn(self, event: Event, x: Mapping[str, Any] | None) -> None:
        """Score this version on the event, then learn from it. ``x`` is the model's input (a
        scorecard needs none).

        A correction (onlearn/corrections.py) is learned like any label, once more: an online
        model cannot unlearn the label it corrects. Its score replaces the corrected label's
        (scored once), when this version's answer is stored in the event.
        """
        payload = event.payload
        if payload.get("corrects") is not None:
            self._learn_correction(event, x)
            return
        y = payload["label"]
        outputs = payload.get("outputs") or {}
        served = outputs.get(self.version)
        if served is not None:
            y_pred, proba = served["label"], proba_dict(served["proba"])
            if len(outputs) > 1:  # only then is there another version to compare with
                ab = self.__dict__.setdefault("ab", {})  # states pickled before A/B had none
                count_answered(ab, self.version, self.task, y, outputs, payload.get("answered_by"))
            if self.task == "classification":
                # Compared with every other version that answered the same request.
                right = y_pred == y
                for other, answer in outputs.items():
                    if other != self.version:
                        if other not in self.paired:
                            self.paired[other] = PairedCounts()
                        self.paired[other].update(answer["label"] == y, right)
            else:
                error = absolute_error(y, y_pred)
                for other, answer in outputs.items():
                    if other != self.version:
                        if other not in self.paired:
                            self.paired[other] = PairedErrors()
                        self.paired[other].update(absolute_error(y, answer["label"]), error)
        elif self.estimator is None:
            # Without a stored answer only the model could say what it would have answered.
            self.unscored += 1
            self.seq = event.seq
            return
        else:
            y_pred, proba = self.predict(x)
        predicted_at = payload.get("predicted_at")
        self.metrics.update(
            y,
            y_pred,
            proba,
            source=payload.get("source", "app"),
            stored=served is not None,
            delay_s=(event.at - predicted_at) if predicted_at is not None else None,
            sampled=payload.get("sampled"),
        )
        self.metrics.count_labeller(payload.get("labeller"))
        if self.estimator is not None:
            self._learn_one(x, y, payload)
        self.seq = event.seq

    # Whether the estimator learns with a weight, and whether that weight is a step's length
    # (pace weights): None until first needed (and in states pickled before weights existed).
    _takes_weight: bool | None = None
    _takes_pace: bool | None = None

    def _learn_one(self, x: Mapping[str, Any] | None, y: Any, payload: Mapping[str, Any]) -> None:
        """``learn_one`` with the event's importance or pace weight, and a Hoeffding tree's
        split checks at its pace (onlearn/weights.py), read from the event alone so that a
        replay learns what the live model did."""
        if payload.get("sample_p") is None and payload.get("pace") is None:
            self.estimator.learn_one(x, y)  # the usual label: no weight to look up
            return
        if self._takes_weight is None or self._takes_pace is None:
            self._takes_weight = takes_weight(self.estimator)
            self._takes_pace = takes_pace(self.estimator)
        w = label_weight(payload, paced=self._takes_pace)
        learn_weighted(self.estimator, x, y, w, self._takes_weight, event_pace(payload))

    def _learn_correction(self, event: Event, x: Mapping[str, Any] | None) -> None:
        payload = event.payload
        y, y_old = payload["label"], payload["previous_label"]
        outputs = payload.get("outputs") or {}
        served = outputs.get(self.version)
        y_pred = proba = None
        if served is not None:
            y_pred, proba = served["label"], proba_dict(served["proba"])
            if self.task == "classification":
                # The paired counts take the pair back and count it with the corrected label.
                # (A regression's paired errors are a window of the last errors, which a
                # correction does not revise.)
                for other, answer in outputs.items():
                    paired = self.paired.get(other)
                    if other != self.version and isinstance(paired, PairedCounts):
                        paired.update(answer["label"] == y_old, y_pred == y_old, by=-1)
                        paired.update(answer["label"] == y, y_pred == y)
                ab, who = self.__dict__.setdefault("ab", {}), payload.get("answered_by")
                count_answered(ab, self.version, self.task, y_old, outputs, who, by=-1)
                count_answered(ab, self.version, self.task, y, outputs, who)
        self.metrics.revise(
            y_old,
            y,
            y_pred,
            proba,
            source=payload.get("source") or "app",
            labeller=payload.get("labeller"),
            previous_source=payload.get("previous_source") or "app",
            previous_labeller=payload.get("previous_labeller"),
            scored=served is not None,
            sampled=payload.get("sampled"),
        )
        if self.estimator is not None:
            self._learn_one(x, y, payload)
        self.seq = event.seq

    def skip(self, event: Event) -> None:
        """Advance past an event this version cannot learn from (counted, never retried)."""
        self.learn_errors += 1
        self.seq = event.seq
