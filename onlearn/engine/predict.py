"""Predict: validate the features, answer from the versions that hold a role (under the model's
lock), and hand the prediction record to the background writer; a predict never waits for the
store."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from onlearn.errors import SchemaViolation, Violations
from onlearn.ids import new_prediction_id
from onlearn.learner import proba_pairs
from onlearn.prediction_writer import PredictionWriter
from onlearn.records import PredictionRecord
from onlearn.runtime import ModelRuntime

_PLAIN = (bool, int, str, float)


@dataclass(frozen=True)
class Prediction:
    prediction_id: str
    model: str
    version: str
    label: Any
    proba: dict[Any, float] | None
    uncertainty: float | None
    queued: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "prediction_id": self.prediction_id,
            "model": self.model,
            "version": self.version,
            "label": self.label,
            "proba": self.proba,
            "uncertainty": self.uncertainty,
            "queued": self.queued,
        }


class Predictor:
    """Answers the predict calls of every model of an engine and records what it answered."""

    def __init__(self, records: PredictionWriter, clock: Callable[[], float]) -> None:
        self._records = records
        self.clock = clock

    def predict_one(self, rt: ModelRuntime, features: Any, key: str | None) -> Prediction:
        """Predict one row. ``key`` routes the request (a canary answers a sticky share of keys;
        without a key, the share is of requests)."""
        try:
            clean = rt.schema.validate(features)
        except SchemaViolation as e:
            rt.count_violations(e)
            raise
        return self._predict(rt, clean, self.clock(), key)

    def predict_many(
        self, rt: ModelRuntime, rows: Sequence[Any], keys: Sequence[str | None] | None
    ) -> list[Prediction]:
        clean, errors = [], Violations()
        validate = rt.schema.validate
        for i, features in enumerate(rows):
            try:
                # Every row is checked (its violations are counted for the monitor), but only
                # the errors the answer lists are worded in full.
                clean.append(validate(features, hints=not errors.full))
            except SchemaViolation as e:
                rt.count_violations(e)
                errors.add(e.at(i))
        if errors:
            raise errors.violation()
        if len(rt.states) > 1 or keys is not None:  # several versions answer: row by row
            now = self.clock()
            keys = keys or [None] * len(clean)
            return [self._predict(rt, row, now, k) for row, k in zip(clean, keys, strict=True)]
        xs = [rt.schema.model_input(row) for row in clean]
        now = self.clock()
        with rt.lock:
            state = rt.champion
            version = state.version
            answers = [
                self._decide(rt, {version: _plain(*answer)}, version)
                for answer in state.predict_many(xs)
            ]
        return [
            self._record(rt, version, row, answer, now)
            for row, answer in zip(clean, answers, strict=True)
        ]

    def _predict(self, rt: ModelRuntime, clean: dict, now: float, key: str | None) -> Prediction:
        x = rt.schema.model_input(clean)
        with rt.lock:
            states = rt.states
            if len(states) == 1:
                version = next(iter(states))
                outputs = {version: _plain(*states[version].predict(x))}
            else:
                version = rt.answering(key if key is not None else new_prediction_id(now))
                outputs = {v: _plain(*st.predict(x)) for v, st in states.items()}
            answer = self._decide(rt, outputs, version)
        return self._record(rt, version, clean, answer, now)

    @staticmethod
    def _decide(rt: ModelRuntime, outputs: dict, version: str) -> tuple:
        """The answering version's answer, its uncertainty and the sampler's decision; under the
        model lock (the sampler's budget and random streams move with each call)."""
        label, proba = outputs[version]
        if proba is None:
            return outputs, label, None, None, None
        if rt.sampler is not None:
            others = [p for v, (_, p) in outputs.items() if v != version and p is not None]
            decision = rt.sampler.decide(proba, others)
            return outputs, label, proba, decision.uncertainty, decision
        uncertainty = 1.0 - max((p for p in proba.values() if p is not None), default=0.0)
        return outputs, label, proba, uncertainty, None

    def _record(
        self, rt: ModelRuntime, version: str, clean: dict, answer: tuple, now: float
    ) -> Prediction:
        outputs, label, proba, uncertainty, decision = answer
        pid = new_prediction_id(now)
        queued = decision is not None and decision.ask
        self._records.put(
            PredictionRecord(
                id=pid,
                model=rt.name,
                at=now,
                features=clean,
                version=version,
                outputs={
                    v: {"label": lb, "proba": proba_pairs(p)} for v, (lb, p) in outputs.items()
                },
                uncertainty=uncertainty,
                queued=queued,
                expires_at=now + rt.config.prediction_ttl_s,
                reason=decision.reason.value if queued else None,
            )
        )
        rt.predictions += 1
        return Prediction(pid, rt.name, version, label, proba, uncertainty, queued)


def _plain(label: Any, proba: dict | None) -> tuple[Any, dict | None]:
    """Plain JSON values: a model may answer numpy scalars, or NaN when it diverged."""
    if label is not None and type(label) not in _PLAIN:
        label = label.item()
    if type(label) is float:
        label = _finite(label)
    if proba is not None:
        proba = {k if type(k) in _PLAIN else k.item(): _finite(p) for k, p in proba.items()}
    return label, proba


def _finite(p: float) -> float | None:
    p = float(p)
    return p if math.isfinite(p) else None
