"""Predict: validate the features, make sure the record writer has room for the records
(else 503: a prediction is never answered without its record), answer from the versions that
hold a role (under the model's lock), and hand the prediction record to the background writer;
a predict never waits for the store."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from onlearn.errors import SchemaViolation, Violations
from onlearn.ids import new_prediction_id, new_prediction_ids
from onlearn.learner import proba_pairs
from onlearn.prediction_writer import PredictionWriter
from onlearn.records import PredictionRecord
from onlearn.runtime import ModelRuntime

_PLAIN = (bool, int, str, float)


@dataclass(frozen=True, slots=True)
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
        self._records.admit(1)
        return self._predict(rt, clean, self.clock(), key)

    def predict_many(
        self, rt: ModelRuntime, rows: Sequence[Any], keys: Sequence[str | None] | None
    ) -> list[Prediction]:
        schema = rt.schema
        columns = schema.validate_columns(rows)
        if columns is None:  # an invalid row (or rows that are not plain dicts): row by row
            clean = self._validate_rows(rt, rows)
        else:
            clean = schema.rows_of(columns)
        self._records.admit(len(clean))  # before predicting: the sampler's budget moves
        if len(rt.states) > 1 or keys is not None:  # several versions answer: row by row
            now = self.clock()
            keys = keys or [None] * len(clean)
            return [self._predict(rt, row, now, k) for row, k in zip(clean, keys, strict=True)]
        if columns is not None:
            predictions = self._predict_table(rt, clean, columns)
            if predictions is not None:
                return predictions
        xs = [schema.model_input(row) for row in clean]
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

    @staticmethod
    def _validate_rows(rt: ModelRuntime, rows: Sequence[Any]) -> list[dict]:
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
        return clean

    def _predict_table(
        self, rt: ModelRuntime, clean: list[dict], columns: Mapping[str, Sequence[Any]]
    ) -> list[Prediction] | None:
        """The champion's answers for a batch, computed a column at a time (onlearn.models.batch:
        the same floats as ``predict_proba_one`` row by row), or None when its pipeline or the
        answers (a NaN) need the row-by-row path. The sampler still decides row by row, in
        order, under the lock: its budget moves with each call."""
        n = len(clean)
        now = self.clock()
        sampler = rt.sampler
        with rt.lock:
            state = rt.champion
            version = state.version
            table = state.predict_columns(columns, n)
            if table is None:
                return None
            if state.task != "classification":
                values = table
                if not np.isfinite(values).all():
                    return None
                labels = values.tolist()
                probas: list = [None] * n
                pairs: list = [None] * n
                uncertainties: list = [None] * n
                decisions: list = [None] * n
            else:
                keys, p = table
                if not np.isfinite(p).all() or not all(type(k) in _PLAIN for k in keys):
                    return None
                rows = p.tolist()
                classes = np.array(keys, dtype=object)
                labels = classes[p.argmax(axis=1)].tolist()  # the first of equal maxima
                probas = [dict(zip(keys, row, strict=True)) for row in rows]
                pairs = [[[k, v] for k, v in zip(keys, row, strict=True)] for row in rows]
                if sampler is not None:
                    decisions = [sampler.decide(proba, []) for proba in probas]
                    uncertainties = [d.uncertainty for d in decisions]
                else:
                    decisions = [None] * n
                    uncertainties = (1.0 - p.max(axis=1)).tolist()
        ttl = rt.config.prediction_ttl_s
        name = rt.name
        ids = new_prediction_ids(now, n)
        expires = now + ttl
        records, predictions = [], []
        for pid, row, label, proba, pair, uncertainty, decision in zip(
            ids, clean, labels, probas, pairs, uncertainties, decisions, strict=True
        ):
            queued = decision is not None and decision.ask
            records.append(
                _build_record(
                    pid,
                    name,
                    now,
                    row,
                    version,
                    {version: {"label": label, "proba": pair}},
                    uncertainty,
                    queued,
                    expires,
                    decision.reason.value if queued else None,
                    decision.p if queued else None,
                )
            )
            predictions.append(
                _build_prediction(pid, name, version, label, proba, uncertainty, queued)
            )
        self._records.put_many(records)
        rt.predictions += n
        return predictions

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
            _build_record(
                pid,
                rt.name,
                now,
                clean,
                version,
                {v: {"label": lb, "proba": proba_pairs(p)} for v, (lb, p) in outputs.items()},
                uncertainty,
                queued,
                now + rt.config.prediction_ttl_s,
                decision.reason.value if queued else None,
                decision.p if queued else None,
            )
        )
        rt.predictions += 1
        return _build_prediction(pid, rt.name, version, label, proba, uncertainty, queued)


# Builders of the two objects made per prediction. The generated ``__init__`` of a frozen
# dataclass pays a lookup and a call of ``object.__setattr__`` per field: 2.8 us for a
# Prediction, and as much again for its record, measured in a batch of 1000 (py-spy put a
# sixth of a batch predict in them). Both classes are slotted: setting each slot through its
# descriptor builds the same instance (equal, hashed, pickled and frozen alike) in 0.6 us.
# tests/core/test_predict_batch.py checks both against the constructors, field by field.
_new = object.__new__
(
    _p_id,
    _p_model,
    _p_version,
    _p_label,
    _p_proba,
    _p_uncertainty,
    _p_queued,
) = (Prediction.__dict__[f.name].__set__ for f in dataclasses.fields(Prediction))
(
    _r_id,
    _r_model,
    _r_at,
    _r_features,
    _r_version,
    _r_outputs,
    _r_uncertainty,
    _r_queued,
    _r_expires_at,
    _r_reason,
    _r_sample_p,
) = (PredictionRecord.__dict__[f.name].__set__ for f in dataclasses.fields(PredictionRecord))


def _build_prediction(
    prediction_id, model, version, label, proba, uncertainty, queued
) -> Prediction:
    p = _new(Prediction)
    _p_id(p, prediction_id)
    _p_model(p, model)
    _p_version(p, version)
    _p_label(p, label)
    _p_proba(p, proba)
    _p_uncertainty(p, uncertainty)
    _p_queued(p, queued)
    return p


def _build_record(
    id, model, at, features, version, outputs, uncertainty, queued, expires_at, reason, sample_p
) -> PredictionRecord:
    r = _new(PredictionRecord)
    _r_id(r, id)
    _r_model(r, model)
    _r_at(r, at)
    _r_features(r, features)
    _r_version(r, version)
    _r_outputs(r, outputs)
    _r_uncertainty(r, uncertainty)
    _r_queued(r, queued)
    _r_expires_at(r, expires_at)
    _r_reason(r, reason)
    _r_sample_p(r, sample_p)
    return r


def _plain(label: Any, proba: dict | None) -> tuple[Any, dict | None]:
    """Plain JSON values: a model may answer numpy scalars, or NaN when it diverged."""
    if label is not None and type(label) not in _PLAIN:
        label = label.item()
    if type(label) is float:
        label = _finite(label)
    if proba is not None:
        # _finite inlined: a call per class showed in profiles. q - q is 0.0 for a finite q,
        # NaN for NaN and the infinities.
        proba = {
            (k if type(k) in _PLAIN else k.item()): (q if (q := float(p)) - q == 0.0 else None)
            for k, p in proba.items()
        }
    return label, proba


def _finite(p: float) -> float | None:
    p = float(p)
    return p if math.isfinite(p) else None
