"""The engine: predict, take feedback, and follow the log. No web framework here.

Predict reads the champion under the model's lock and hands the record to a background
writer. Feedback joins the label with the stored prediction, appends the label event durably
(the only thing a feedback call waits for besides its own apply), and the model's learner applies
events in seq order. A follower thread per model also picks up events other processes appended.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from onlearn.config import ModelConfig, Settings, Task
from onlearn.errors import (
    FieldError,
    OnlearnError,
    PredictionExpired,
    RoleConflict,
    SchemaViolation,
    StoreUnavailable,
    UnknownModel,
    UnknownPrediction,
    UnknownVersion,
    Violations,
)
from onlearn.group_commit import GroupCommitter
from onlearn.ids import new_prediction_id, prediction_time
from onlearn.keys import resolve_secret
from onlearn.labelling import Labelling
from onlearn.learner import proba_pairs
from onlearn.prediction_writer import PredictionWriter
from onlearn.records import Event, EventKind, LabelSource, PredictionRecord
from onlearn.registry import (
    CANARY,
    CHALLENGER,
    CHAMPION,
    PREVIOUS,
    ROLES,
    SHADOW,
    control_event,
    ensure_registered,
)
from onlearn.runtime import ModelRuntime
from onlearn.snapshots import restore, save_snapshot
from onlearn.store.base import Store, open_store

log = logging.getLogger(__name__)

_SOURCES = frozenset(s.value for s in LabelSource)
_PLAIN = (bool, int, str, float)


# How long feedback waits for a fresh prediction record written by another process to appear.
JOIN_WAIT_S = 1.0
JOIN_POLL_S = 0.01


class _NotYetVisible(Exception):
    """The record of a very recent prediction is not in the store yet."""


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


@dataclass(frozen=True)
class FeedbackItem:
    """A true label, for a prediction id (joined with its record) or for inline features.

    When both are given, the stored record wins and the inline features are the fallback for a
    record that expired. ``event_id`` makes inline feedback idempotent too.
    """

    label: Any
    prediction_id: str | None = None
    features: Mapping[str, Any] | None = None
    source: str = "app"
    labeller: str | None = None
    event_id: str | None = None


@dataclass(frozen=True)
class FeedbackResult:
    seq: int | None
    version: str | None
    applied: bool = False
    error: OnlearnError | None = field(default=None, compare=False)


class Engine:
    """Serves the configured models from one store. ``start()`` before use, ``close()`` after.

    >>> from onlearn.config import settings_from_mapping
    >>> settings = settings_from_mapping({"store": {"url": "memory://"}, "models": {"m": {
    ...     "pipeline": {"name": "logistic_regression"},
    ...     "features": {"x": {"type": "number"}}}}})
    >>> with Engine.from_settings(settings) as engine:
    ...     p = engine.predict_one("m", {"x": 1.0})
    ...     result = engine.feedback_one("m", FeedbackItem(label=True, prediction_id=p.prediction_id))
    ...     (p.version, result.seq, result.applied)
    ('v1', 1, True)
    """

    def __init__(self, settings: Settings, store: Store, *, secret: bytes, clock=time.time):
        self.settings = settings
        self.store = store
        self.secret = secret
        self.clock = clock
        self.runtimes: dict[str, ModelRuntime] = {}
        self._records: PredictionWriter | None = None
        self._committer: GroupCommitter | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self.started = False
        self.labelling = Labelling(self)
        # model -> (its applied seq, the log's head) when the log was seen behind the model
        self.log_behind: dict[str, tuple[int, int]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> Engine:
        secret = resolve_secret(settings.secret_key, settings.store_url)
        return cls(settings, open_store(settings.store_url), secret=secret)

    # Life cycle

    def start(self) -> Engine:
        es = self.settings.engine
        for config in self.settings.models:
            self.runtimes[config.name] = self._load(config)
        self._records = PredictionWriter(
            self.store.predictions,
            flush_interval_s=es.prediction_flush_ms / 1000,
            max_pending=es.max_pending_predictions,
            clock=self.clock,
            after_write=self.labelling.enqueue,
        )
        self._committer = GroupCommitter(
            self.store.log, max_pending=es.max_pending_labels, on_commit=self._committed
        )
        for rt in self.runtimes.values():
            self._spawn(f"onlearn-follow-{rt.name}", self._follow, rt)
        self._spawn("onlearn-maintenance", self._maintenance_loop)
        self.started = True
        return self

    def close(self) -> None:
        if not self.started:
            self.store.close()
            return
        self.started = False
        self._committer.close()
        self._stopping.set()
        for rt in self.runtimes.values():
            rt.wake.set()
        for thread in self._threads:
            thread.join()
        for rt in self.runtimes.values():
            try:
                self.catch_up(rt)
                self._snapshot_live(rt)
            except OnlearnError:
                log.warning("model %r: no snapshot at shutdown; replay will rebuild it", rt.name)
        self._records.close()
        self.store.close()

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def _load(self, config: ModelConfig) -> ModelRuntime:
        name = config.name
        ensure_registered(self.store, config, at=self.clock(), secret=self.secret)
        # Roles and the log position must agree: read the head, then the roles; roles changed by
        # a control event after that head would be applied twice, so read again if so.
        while True:
            head = self.store.log.head(name)
            roles_state = self.store.registry.roles_state(name)
            if roles_state.seq <= head:
                break
        started = time.monotonic()
        states = {
            version: self.version_state(name, version, head)
            for version in sorted(set(roles_state.roles.values()))
        }
        snapshots = {
            version: (
                s.seq
                if (s := self.store.registry.latest_snapshot(name, version, max_seq=head))
                else 0
            )
            for version in states
        }
        rt = ModelRuntime(
            config,
            states,
            dict(roles_state.roles),
            seq=head,
            canary_share=roles_state.canary_share,
            loader=lambda version, upto: self.version_state(name, version, upto),
        )
        rt.snapshot_seq = snapshots.get(rt.roles[CHAMPION], 0)
        # How this process got its states: what a new replica took from snapshots, what it replayed.
        rt.restored = {
            "at_seq": head,
            "from_snapshots": snapshots,
            "seconds": round(time.monotonic() - started, 3),
        }
        log.info("model %r: %s serving at seq %d", config.name, rt.roles[CHAMPION], head)
        return rt

    def version_state(self, name: str, version: str, upto: int):
        """A version's state at ``upto``: its newest snapshot there, then a replay of the log."""
        info = self.store.registry.get_version(name, version)
        if info is None:
            raise UnknownVersion(f"model {name!r} has no version {version!r}")
        return restore(self.store, info, self.secret, upto=upto)

    def _spawn(self, name: str, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # Queries

    def runtime(self, name: str) -> ModelRuntime:
        try:
            return self.runtimes[name]
        except KeyError:
            served = ", ".join(sorted(self.runtimes)) or "none"
            raise UnknownModel(f"model {name!r} is not served; served models: {served}") from None

    def describe(self, name: str) -> dict[str, Any]:
        rt = self.runtime(name)
        versions = [
            {"version": v.version, "created_at": v.created_at, "meta": dict(v.meta)}
            for v in self.store.registry.list_versions(name)
        ]
        return {**rt.describe(), "versions": versions}

    def metrics(self, name: str) -> dict[str, Any]:
        rt = self.runtime(name)
        roles_of: dict[str, list[str]] = {}
        for role, version in rt.roles.items():
            roles_of.setdefault(version, []).append(role)
        with rt.lock:
            versions = {
                v: {
                    "roles": roles_of.get(v, []),
                    **s.metrics.to_dict(),
                    "learn_errors": s.learn_errors,
                }
                for v, s in rt.states.items()
            }
        return {
            "model": name,
            "task": rt.config.task.value,
            "applied_seq": rt.seq,
            "versions": versions,
        }

    def drift(self, name: str) -> dict[str, Any]:
        """The monitor's latest report of the model (input drift, skew, prediction drift,
        agreement, concept drift, alarms, timeline) and this process's validation counters."""
        rt = self.runtime(name)
        from onlearn.monitor import DOCUMENT

        report = self.store.registry.get_document(name, DOCUMENT)
        violations: dict[str, dict[str, int]] = {}
        for (feature, rule), count in sorted(rt.violations.items()):
            violations.setdefault(feature, {})[rule] = count
        if report is None:
            report = {
                "model": name,
                "updated_at": None,
                "detail": "no monitor report yet: run `onlearn monitor` (onlearn serve runs one "
                "with the embedded store) and send some traffic",
            }
        report = dict(report)
        report.pop("cursor", None)
        report["violations"] = violations
        return report

    def ready(self) -> tuple[bool, str]:
        if not self.started:
            return False, "models are not loaded yet"
        try:
            self.store.ping()
        except OnlearnError as e:
            return False, f"store unavailable: {e}"
        if self.log_behind:
            name, (seq, head) = next(iter(self.log_behind.items()))
            return False, (
                f"model {name!r} has applied the log up to seq {seq}, but the store's log ends at "
                f"{head}: the store was restored from an older copy or replaced under this "
                "process, and new labels would reuse seqs it has applied; restart it"
            )
        return True, "ok"

    def stats(self) -> dict[str, Any]:
        """Counters for monitoring, read at scrape time so the hot path only bumps integers."""
        return {
            "models": {
                name: {
                    "predictions": rt.predictions,
                    "labels_applied": rt.labels_applied,
                    "applied_seq": rt.seq,
                    "snapshot_seq": rt.snapshot_seq,
                    "champion": rt.roles[CHAMPION],
                    "versions": {v: s.metrics.to_dict() for v, s in rt.states.items()},
                    "paired": self._paired(rt),
                }
                for name, rt in self.runtimes.items()
            },
            "prediction_records": {
                "pending": self._records.pending if self._records else 0,
                "written": self._records.written if self._records else 0,
                "dropped": self._records.dropped if self._records else 0,
                "unwritable": self._records.unwritable if self._records else 0,
            },
            "log_commits": {
                "batches": self._committer.batches if self._committer else 0,
                "events": self._committer.events if self._committer else 0,
                "pending": self._committer.pending if self._committer else 0,
                "refused": self._committer.refused if self._committer else 0,
            },
        }

    @staticmethod
    def _paired(rt: ModelRuntime) -> dict[str, dict[str, dict[str, Any]]]:
        """Each version's comparison with every other on the same labels (``b`` = the version,
        ``a`` = the other), copied under the lock and tested outside it."""
        with rt.lock:
            paired = {v: copy.deepcopy(s.paired) for v, s in rt.states.items() if s.paired}
        return {v: {o: p.to_dict() for o, p in ps.items()} for v, ps in paired.items()}

    # Versions and roles

    def versions(self, name: str) -> list[dict[str, Any]]:
        """Every version with its lineage, its roles, and (when held here) live metrics and
        paired comparisons."""
        rt = self.runtime(name)
        roles_of: dict[str, list[str]] = {}
        for role, version in rt.roles.items():
            roles_of.setdefault(version, []).append(role)
        out = []
        with rt.lock:
            for info in self.store.registry.list_versions(name):
                state = rt.states.get(info.version)
                out.append(
                    {
                        "version": info.version,
                        "created_at": info.created_at,
                        "roles": roles_of.get(info.version, []),
                        "spec": dict(info.spec),
                        "lineage": dict(info.meta),
                        "metrics": state.metrics.to_dict() if state else None,
                        # copied under the lock, tested outside it: a regression comparison's
                        # test ranks thousands of errors, too long to hold predicts back
                        "paired": copy.deepcopy(state.paired) if state else None,
                    }
                )
        for version in out:
            if version["paired"] is not None:
                version["paired"] = {o: p.to_dict() for o, p in version["paired"].items()}
        return out

    def role_history(self, name: str) -> list[dict]:
        self.runtime(name)
        return self.store.registry.role_history(name)

    def change_roles(
        self,
        name: str,
        changes: Mapping[str, str | None],
        *,
        actor: str,
        reason: str,
        kind: EventKind = EventKind.PROMOTE,
        canary_share: float | None = None,
        key: str | None = None,
    ) -> int:
        """Change roles through the log (every follower switches at the same seq) and apply the
        change here before answering. Versions must exist and share the model's schema."""
        rt = self.runtime(name)
        for role, version in changes.items():
            if role not in ROLES:
                raise RoleConflict(f"{role!r} is not a role; roles: {', '.join(ROLES)}")
            if version is None:
                continue
            info = self.store.registry.get_version(name, version)
            if info is None:
                raise UnknownVersion(f"model {name!r} has no version {version!r}")
            expected = rt.schema.to_config()
            if json.loads(json.dumps(info.spec.get("schema"))) != json.loads(json.dumps(expected)):
                raise RoleConflict(
                    f"version {version} was trained on another schema than model {name!r} "
                    "serves now; it cannot take a role (register it again from the new config)"
                )
        if canary_share is not None and not 0.0 <= canary_share <= 1.0:
            raise SchemaViolation([FieldError(("share",), "range", "share must be in [0, 1]")])
        now = self.clock()
        event = control_event(
            dict(changes), actor=actor, reason=reason, at=now, key=key, kind=kind,
            canary_share=canary_share,
        )  # fmt: skip
        seq = self.store.registry.change_roles(
            name,
            dict(changes),
            event,
            actor=actor,
            reason=reason,
            at=now,
            canary_share=canary_share,
        )
        self.catch_up(rt, upto=seq)
        return seq

    def promote(
        self,
        name: str,
        version: str,
        role: str,
        *,
        actor: str,
        reason: str,
        share: float | None = None,
        key: str | None = None,
    ) -> int:
        """Give ``role`` to ``version``. A new champion keeps the old one as ``previous`` (live,
        for an instant rollback) and leaves the roles it held before."""
        rt = self.runtime(name)
        roles = dict(rt.roles)
        champion = roles[CHAMPION]
        if role == CHAMPION:
            if version == champion:
                raise RoleConflict(f"{version} is already the champion of {name!r}")
            changes: dict[str, str | None] = {CHAMPION: version, PREVIOUS: champion}
            for other in (CHALLENGER, SHADOW, CANARY):
                if roles.get(other) == version:
                    changes[other] = None
        elif role in (CHALLENGER, SHADOW, CANARY):
            if version == champion:
                raise RoleConflict(
                    f"{version} is the champion of {name!r}; it cannot also be {role}"
                )
            changes = {role: version}
        else:
            raise RoleConflict(
                f"one can promote to champion, challenger, shadow or canary, not {role!r}"
            )
        if role == CANARY and share is None:
            share = rt.canary_share or 0.1
        return self.change_roles(
            name,
            changes,
            actor=actor,
            reason=reason,
            canary_share=share if role == CANARY else None,
            key=key,
        )

    def rollback(self, name: str, *, actor: str, reason: str, key: str | None = None) -> int:
        """The previous champion answers again, in one step: it kept learning as ``previous``,
        so it is exactly the state it would be had it never left."""
        rt = self.runtime(name)
        previous = rt.roles.get(PREVIOUS)
        if previous is None:
            raise RoleConflict(f"model {name!r} has no previous champion to roll back to")
        changes = {CHAMPION: previous, PREVIOUS: None}
        return self.change_roles(
            name, changes, actor=actor, reason=reason, kind=EventKind.ROLLBACK, key=key
        )

    def raise_alarm(self, name: str, alarm: Mapping[str, Any], *, key: str | None = None) -> int:
        """Append an alarm (drift, performance) to the model's log, where retrain triggers read it."""
        self.runtime(name)
        event = Event(kind=EventKind.ALARM, payload=dict(alarm), at=self.clock(), key=key)
        (seq,) = self.store.log.append(name, [event])
        return seq

    # Predict

    def predict_one(self, name: str, features: Any, *, key: str | None = None) -> Prediction:
        """Predict one row. ``key`` routes the request (a canary answers a sticky share of keys;
        without a key, the share is of requests)."""
        rt = self.runtime(name)
        try:
            clean = rt.schema.validate(features)
        except SchemaViolation as e:
            rt.count_violations(e)
            raise
        return self._predict(rt, clean, self.clock(), key)

    def predict_many(
        self, name: str, rows: Sequence[Any], *, keys: Sequence[str | None] | None = None
    ) -> list[Prediction]:
        rt = self.runtime(name)
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

    # Feedback

    def feedback_one(self, name: str, item: FeedbackItem, *, wait: bool = True) -> FeedbackResult:
        rt = self.runtime(name)
        deadline = time.monotonic() + JOIN_WAIT_S
        while True:
            try:
                event = self._label_event(rt, item, self.clock(), deadline)
                break
            except _NotYetVisible:
                time.sleep(JOIN_POLL_S)
        result = self.store.log.append(name, [event])
        self._offer(rt, [event], result)
        (seq,) = result
        applied = self._apply_now(rt, seq) if wait else rt.seq >= seq
        return FeedbackResult(seq, rt.roles[CHAMPION], applied)

    def feedback_many(
        self, name: str, items: Sequence[FeedbackItem], *, wait: bool = True
    ) -> list[FeedbackResult]:
        rt = self.runtime(name)
        deadline = time.monotonic() + JOIN_WAIT_S
        prepared = self._prepare_many(rt, items, deadline)
        while any(isinstance(p, _NotYetVisible) for p in prepared):
            time.sleep(JOIN_POLL_S)
            prepared = self._prepare_many(rt, items, deadline, prepared)
        events = [p for p in prepared if isinstance(p, Event)]
        seqs = self.store.log.append(name, events) if events else []
        if seqs:
            self._offer(rt, events, seqs)
        applied = (
            self._apply_now(rt, max(seqs)) if wait and seqs else bool(seqs) and rt.seq >= max(seqs)
        )
        return self._results(rt, prepared, seqs, applied)

    async def feedback_one_async(
        self, name: str, item: FeedbackItem, *, wait: bool = True
    ) -> FeedbackResult:
        rt = self.runtime(name)
        deadline = time.monotonic() + JOIN_WAIT_S
        while True:
            try:
                event = await self._off_loop(self._label_event, rt, item, self.clock(), deadline)
                break
            except _NotYetVisible:
                await asyncio.sleep(JOIN_POLL_S)
        (seq,) = await self._committer.submit_async(name, [event])
        applied = await self._applied_async(rt, seq, wait)
        return FeedbackResult(seq, rt.roles[CHAMPION], applied)

    async def feedback_many_async(
        self, name: str, items: Sequence[FeedbackItem], *, wait: bool = True
    ) -> list[FeedbackResult]:
        rt = self.runtime(name)
        deadline = time.monotonic() + JOIN_WAIT_S
        prepared = await self._off_loop(self._prepare_many, rt, items, deadline)
        while any(isinstance(p, _NotYetVisible) for p in prepared):
            await asyncio.sleep(JOIN_POLL_S)
            prepared = await self._off_loop(self._prepare_many, rt, items, deadline, prepared)
        events = [p for p in prepared if isinstance(p, Event)]
        seqs = await self._committer.submit_async(name, events) if events else []
        applied = await self._applied_async(rt, max(seqs), wait) if seqs else False
        return self._results(rt, prepared, seqs, applied)

    async def _off_loop(self, call, *args):
        """``call(*args)`` in a thread when it may read a networked store: a record lookup in
        Redis can wait out a socket timeout, and the event loop also serves predict. A local
        store answers in microseconds, less than the thread hop costs."""
        if self.store.networked:
            return await asyncio.to_thread(call, *args)
        return call(*args)

    def _prepare_many(
        self,
        rt: ModelRuntime,
        items: Sequence[FeedbackItem],
        deadline: float,
        earlier: list | None = None,
    ) -> list:
        """One label event per item, or the lookup error of that item; schema errors raise.

        With ``earlier``, only the items whose record was not yet visible are looked up again.
        """
        now = self.clock()
        prepared: list = []
        errors = Violations()
        for i, item in enumerate(items):
            if earlier is not None and not isinstance(earlier[i], _NotYetVisible):
                prepared.append(earlier[i])
                continue
            try:
                prepared.append(self._label_event(rt, item, now, deadline, hints=not errors.full))
            except SchemaViolation as e:
                errors.add(e.at(i))
            except (UnknownPrediction, PredictionExpired, _NotYetVisible) as e:
                prepared.append(e)
        if errors:
            raise errors.violation()
        return prepared

    def _results(self, rt, prepared, seqs, applied) -> list[FeedbackResult]:
        version = rt.roles[CHAMPION]
        it = iter(seqs)
        return [
            FeedbackResult(None, None, False, p)
            if isinstance(p, OnlearnError)
            else FeedbackResult(next(it), version, applied)
            for p in prepared
        ]

    def _label_event(
        self,
        rt: ModelRuntime,
        item: FeedbackItem,
        now: float,
        deadline: float = 0.0,
        *,
        hints: bool = True,
    ) -> Event:
        errors = _check_label(rt.config, item.label)
        if item.source not in _SOURCES:
            errors.append(
                FieldError(
                    ("source",), "enum", f"source must be one of {', '.join(sorted(_SOURCES))}"
                )
            )
        if item.labeller is not None and (
            not isinstance(item.labeller, str) or len(item.labeller) > 200
        ):
            errors.append(
                FieldError(
                    ("labeller",), "type", "labeller must be a string of at most 200 characters"
                )
            )
        if item.prediction_id is None and item.features is None:
            errors.append(
                FieldError((), "missing", "give prediction_id (from predict) or inline features")
            )
        clean = None
        omitted = 0
        if item.features is not None:
            try:
                clean = rt.schema.validate(item.features, hints=hints)
            except SchemaViolation as e:
                rt.count_violations(e)
                errors.extend(e.at("features").errors)
                omitted = e.omitted
        if errors:
            raise SchemaViolation(errors, omitted)

        payload: dict[str, Any] = {
            "label": item.label,
            "source": item.source,
            "labeller": item.labeller,
            "prediction_id": item.prediction_id,
        }
        key = f"event:{item.event_id}" if item.event_id else None
        if item.prediction_id is not None:
            key = f"prediction:{item.prediction_id}"  # one label per prediction, however sent
        record = self._find_record(
            rt, item.prediction_id, now, fallback=clean is not None, deadline=deadline
        )
        if record is not None:
            payload.update(
                features=dict(record.features),
                predicted_at=record.at,
                outputs=dict(record.outputs),
                answered_by=record.version,
                sampled=record.reason,
            )
        else:
            payload.update(
                features=clean, predicted_at=None, outputs=None, answered_by=None, sampled=None
            )
        return Event(kind=EventKind.LABEL, payload=payload, at=now, key=key)

    def _find_record(
        self,
        rt: ModelRuntime,
        prediction_id: str | None,
        now: float,
        *,
        fallback: bool,
        deadline: float = 0.0,
    ) -> PredictionRecord | None:
        if prediction_id is None:
            return None
        record = self._records.get(prediction_id) or self.store.predictions.get(prediction_id)
        if record is not None and record.model == rt.name:
            return record
        made = prediction_time(prediction_id)
        if (
            record is None
            and made is not None
            and self.store.shared
            and -JOIN_WAIT_S < now - made < JOIN_WAIT_S
            and time.monotonic() < deadline
        ):
            # A prediction made a moment ago by another process may still sit in that process's
            # write buffer (flushed every few ms): look again shortly rather than answer 404.
            raise _NotYetVisible(prediction_id)
        if fallback:
            return None
        if made is not None and record is None and now - made > rt.config.prediction_ttl_s:
            raise PredictionExpired(
                f"prediction {prediction_id} expired (kept {rt.config.prediction_ttl_s:g} s); "
                "send the label with inline features instead"
            )
        raise UnknownPrediction(
            f"no prediction {prediction_id} for model {rt.name!r}; "
            "use the prediction_id a predict call returned, or send inline features"
        )

    # Following the log

    def catch_up(self, rt: ModelRuntime, upto: int | None = None) -> None:
        """Apply the events after ``rt.seq`` in order: those this process appended from memory,
        the rest from the log. With ``upto``, stop reading the log once it is applied (events of
        other processes beyond it are the follower's)."""
        with rt.apply_lock:
            self._catch_up_locked(rt, upto)

    def _catch_up_locked(self, rt: ModelRuntime, upto: int | None) -> None:
        while upto is None or rt.seq < upto:
            events = rt.take_offered() or self.store.log.read(rt.name, after=rt.seq, limit=1000)
            if not events:
                break
            for event in events:
                rt.apply(event)
            rt.notify_applied()

    def _apply_now(self, rt: ModelRuntime, seq: int) -> bool:
        self.catch_up(rt, upto=seq)
        return rt.seq >= seq

    def _committed(self, model: str, events: Sequence[Event], result) -> None:
        """After a durable append (in the commit thread): hand the new events to the learner and
        apply them right here when no one else is applying, saving a thread hop per request."""
        rt = self.runtimes.get(model)
        if rt is None:
            return
        self._offer(rt, events, result)
        if rt.apply_lock.acquire(blocking=False):
            try:
                self._catch_up_locked(rt, upto=max(result))
            except Exception:
                log.exception("model %r: applying after commit failed; the follower retries", model)
                rt.wake.set()
            finally:
                rt.apply_lock.release()
        else:
            rt.wake.set()

    @staticmethod
    def _offer(rt: ModelRuntime, events: Sequence[Event], result) -> None:
        rt.offer(
            [
                replace(event, seq=seq)
                for event, seq, new in zip(events, result, result.new, strict=True)
                if new
            ]
        )

    async def _applied_async(self, rt: ModelRuntime, seq: int, wait: bool) -> bool:
        if not wait:
            return rt.seq >= seq
        timeout = self.settings.engine.apply_timeout_s
        if self.settings.limits.request_timeout_s:
            # The label is durable by now: answer 200 with applied false rather than let the
            # request run into its timeout (504), which would hide that it was recorded.
            timeout = min(timeout, self.settings.limits.request_timeout_s / 2)
        return await rt.wait_applied_async(seq, timeout)

    def _follow(self, rt: ModelRuntime) -> None:
        # Other processes append to a shared store: poll it. A memory store has only us.
        interval = self.settings.engine.poll_interval_ms / 1000 if self.store.shared else None
        backoff = 0.05
        while not self._stopping.is_set():
            rt.wake.wait(interval)
            rt.wake.clear()
            if self._stopping.is_set():
                return
            try:
                self.catch_up(rt)
                backoff = 0.05
            except StoreUnavailable as e:
                log.warning("model %r: cannot read the log (%s); retrying", rt.name, e)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 2.0)
            except Exception:
                log.exception("model %r: the follower failed; retrying", rt.name)
                self._stopping.wait(1.0)

    # Snapshots

    def _maintenance_loop(self) -> None:
        es = self.settings.engine
        while not self._stopping.wait(es.snapshot_check_s):
            self.labelling.maintain()
            self.refresh_snapshot_seqs()
            self.check_log_position()

    def check_log_position(self) -> None:
        """A log never shrinks (trimming keeps its head): one that ends before what a model
        applied was swapped for an older copy, and the follower would skip the new events that
        reuse those seqs. Readiness fails for good then; the process must start again."""
        for rt in self.runtimes.values():
            # The applied seq first: read after the head, it could count an event appended
            # (and applied) in between.
            applied = rt.seq
            try:
                head = self.store.log.head(rt.name)
            except OnlearnError:
                return  # the next round tries again
            if head < applied and rt.name not in self.log_behind:
                self.log_behind[rt.name] = (applied, head)
                log.error(
                    "model %r: applied up to seq %d but the log ends at %d (store restored or "
                    "replaced?); restart this process",
                    rt.name,
                    applied,
                    head,
                )

    def refresh_snapshot_seqs(self) -> None:
        """Learn the newest snapshot of each champion from the store: beside a worker process
        (the layout of ``onlearn serve``), snapshots are written by another process, and
        ``onlearn_snapshot_seq`` would otherwise stay at this process's own."""
        for rt in self.runtimes.values():
            try:
                seq = self.store.registry.latest_snapshot_seq(rt.name, rt.roles[CHAMPION])
            except OnlearnError:
                return  # the next round tries again
            rt.snapshot_seq = max(rt.snapshot_seq, seq)

    def _snapshot_live(self, rt: ModelRuntime) -> None:
        """At shutdown nothing learns any more: pickling the live states is exact and quick."""
        if rt.seq <= rt.snapshot_seq:
            return
        with rt.lock:
            for state in rt.states.values():
                save_snapshot(self.store, rt.name, state, self.secret)
        rt.snapshot_seq = rt.seq


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


def _finite_number(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _check_label(config: ModelConfig, label: Any) -> list[FieldError]:
    if config.task is Task.CLASSIFICATION:
        if label is None or not isinstance(label, bool | int | str):
            return [
                FieldError(
                    ("label",), "type", "label must be a class label: a string, integer or boolean"
                )
            ]
        if config.classes is not None and not any(
            type(c) is type(label) and c == label for c in config.classes
        ):
            shown = ", ".join(map(repr, config.classes[:10]))
            return [
                FieldError(("label",), "allowed", f"label must be one of {shown}; got {label!r}")
            ]
        return []
    if isinstance(label, bool) or not isinstance(label, int | float) or not _finite_number(label):
        return [
            FieldError(("label",), "finite", "label must be a finite number for a regression model")
        ]
    return []
