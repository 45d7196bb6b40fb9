"""Feedback: check the label, join it with the prediction record (or take inline features),
append the label event durably, and wait until this process has applied it (read-your-writes)
unless the caller asked not to wait.

Every append goes through the group commit, for the library's synchronous calls as for HTTP's
async ones: one path to durability, so the sync API and the server cannot drift apart (seqs,
idempotency, the bound on pending labels, the apply right after commit).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from onlearn.config import ModelConfig, Settings, Task
from onlearn.engine.follower import Follower
from onlearn.errors import (
    FieldError,
    OnlearnError,
    Overloaded,
    PredictionExpired,
    SchemaViolation,
    UnknownPrediction,
    Violations,
)
from onlearn.group_commit import GroupCommitter
from onlearn.ids import prediction_time
from onlearn.prediction_writer import PredictionWriter
from onlearn.records import Event, EventKind, FeedbackItem, LabelSource, PredictionRecord
from onlearn.registry import CHAMPION
from onlearn.runtime import ModelRuntime
from onlearn.store.base import Store

_SOURCES = frozenset(s.value for s in LabelSource)

# How often a model past its snapshot bound looks again for a newer snapshot in the store.
SNAPSHOT_RECHECK_S = 0.5
# How long feedback waits for a fresh prediction record written by another process to appear.
JOIN_WAIT_S = 1.0
JOIN_POLL_S = 0.01


class _NotYetVisible(Exception):
    """The record of a very recent prediction is not in the store yet."""


@dataclass(frozen=True)
class FeedbackResult:
    """What a label came to. ``durable``: its event is in the log (it has a seq), so it will be
    learned by every process that follows the log. ``applied``: this process's model has
    learned it already (False for a ``wait=False`` call answered before the learner got to it,
    or one whose wait ran out). ``error``: why this item of a batch was not taken."""

    seq: int | None
    version: str | None
    applied: bool = False
    error: OnlearnError | None = field(default=None, compare=False)

    @property
    def durable(self) -> bool:
        return self.seq is not None and self.error is None

    def to_dict(self) -> dict[str, Any]:
        """The answer's fields (of a taken label)."""
        return {
            "seq": self.seq,
            "version": self.version,
            "durable": self.durable,
            "applied": self.applied,
        }


class FeedbackHandler:
    """Turns feedback items into durable, applied label events, for every model of an engine."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        records: PredictionWriter,
        committer: GroupCommitter,
        follower: Follower,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.store = store
        self._records = records
        self._committer = committer
        self._follower = follower
        self.clock = clock

    def feedback_one(self, rt: ModelRuntime, item: FeedbackItem, wait: bool) -> FeedbackResult:
        generation = self.store.generation
        generation.refuse()  # a store found changed takes no label (onlearn.store.generation)
        deadline = time.monotonic() + JOIN_WAIT_S
        while True:
            try:
                event = self._label_event(rt, item, self.clock(), deadline)
                break
            except _NotYetVisible:
                time.sleep(JOIN_POLL_S)
        self._check_lag(rt)
        with self._follower.applying_here() if wait else nullcontext():
            (seq,) = self._committer.commit(rt.name, [event])
        applied = self._follower.apply_now(rt, seq) if wait else rt.seq >= seq
        generation.refuse()  # the append showed the log went back: its seq means nothing here
        return FeedbackResult(seq, rt.roles[CHAMPION], applied and rt.learned(seq))

    def feedback_many(
        self, rt: ModelRuntime, items: Sequence[FeedbackItem], wait: bool
    ) -> list[FeedbackResult]:
        generation = self.store.generation
        generation.refuse()
        deadline = time.monotonic() + JOIN_WAIT_S
        prepared = self._prepare_many(rt, items, deadline)
        while any(isinstance(p, _NotYetVisible) for p in prepared):
            time.sleep(JOIN_POLL_S)
            prepared = self._prepare_many(rt, items, deadline, prepared)
        events = [p for p in prepared if isinstance(p, Event)]
        if events:
            self._check_lag(rt)
        with self._follower.applying_here() if wait else nullcontext():
            seqs = self._committer.commit(rt.name, events) if events else []
        applied = (
            self._follower.apply_now(rt, max(seqs))
            if wait and seqs
            else bool(seqs) and rt.seq >= max(seqs)
        )
        generation.refuse()
        return self._results(rt, prepared, seqs, applied)

    async def feedback_one_async(
        self, rt: ModelRuntime, item: FeedbackItem, wait: bool
    ) -> FeedbackResult:
        self.store.generation.refuse()
        deadline = time.monotonic() + JOIN_WAIT_S
        while True:
            try:
                event = await self._off_loop(self._label_event, rt, item, self.clock(), deadline)
                break
            except _NotYetVisible:
                await asyncio.sleep(JOIN_POLL_S)
        self._check_lag(rt)
        (seq,) = await self._committer.submit_async(rt.name, [event])
        applied = await self._applied_async(rt, seq, wait)
        return FeedbackResult(seq, rt.roles[CHAMPION], applied and rt.learned(seq))

    async def feedback_many_async(
        self, rt: ModelRuntime, items: Sequence[FeedbackItem], wait: bool
    ) -> list[FeedbackResult]:
        self.store.generation.refuse()
        deadline = time.monotonic() + JOIN_WAIT_S
        prepared = await self._off_loop(self._prepare_many, rt, items, deadline)
        while any(isinstance(p, _NotYetVisible) for p in prepared):
            await asyncio.sleep(JOIN_POLL_S)
            prepared = await self._off_loop(self._prepare_many, rt, items, deadline, prepared)
        events = [p for p in prepared if isinstance(p, Event)]
        if events:
            self._check_lag(rt)
        seqs = await self._committer.submit_async(rt.name, events) if events else []
        applied = await self._applied_async(rt, max(seqs), wait) if seqs else False
        return self._results(rt, prepared, seqs, applied)

    def _check_lag(self, rt: ModelRuntime) -> None:
        """Refuse new labels while this process is ``max_learn_lag`` events behind the model's
        log: a model that learns slower than labels arrive must not grow its backlog (memory,
        and the replay after a crash) without bound. Other models are not concerned."""
        es = self.settings.engine
        bound = es.max_learn_lag
        if not bound:
            return
        if rt.backlog >= bound:
            rt.lag_refused += 1
            raise Overloaded(
                f"model {rt.name!r} has {rt.backlog} label events it has not learned yet "
                f"([engine] max_learn_lag = {bound}): it learns slower than labels arrive; "
                "retry after Retry-After, or slow the labels down"
            )
        # What a restart replays: the events after the newest snapshot. Bounded too once a
        # worker is seen writing snapshots, so that a worker falling behind (or gone) shows as
        # 503s naming it rather than as a restart that replays hours of labels.
        if not rt.snapshots_advance or not es.snapshot_every_events:
            return
        allowed = es.snapshot_every_events + bound
        if rt.known_head - rt.snapshot_seq < allowed:
            return
        now = time.monotonic()
        if now - rt.snapshot_checked_at >= SNAPSHOT_RECHECK_S:
            rt.snapshot_checked_at = now
            rt.note_snapshot(self.store.registry.latest_snapshot_seq(rt.name, rt.roles[CHAMPION]))
        behind = rt.known_head - rt.snapshot_seq
        if behind >= allowed:
            rt.lag_refused += 1
            raise Overloaded(
                f"model {rt.name!r}: its newest snapshot is {behind} label events behind the log "
                f"(at most snapshot_every_events + max_learn_lag = {allowed}): the worker "
                "that writes snapshots does not keep up or is not running; retry after "
                "Retry-After, and check `onlearn worker`"
            )

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
            else FeedbackResult(seq := next(it), version, applied and rt.learned(seq))
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

    async def _applied_async(self, rt: ModelRuntime, seq: int, wait: bool) -> bool:
        """Whether this process has learned ``seq`` (after waiting for it, with ``wait``).
        Raises StoreReplaced when the append showed the store went back: the seq was given
        again by another log, and says nothing about what the model learned."""
        generation = self.store.generation
        if not wait:
            generation.refuse()
            return rt.seq >= seq
        timeout = self.settings.engine.apply_timeout_s
        if self.settings.limits.request_timeout_s:
            # The label is durable by now: answer 200 with applied false rather than let the
            # request run into its timeout (504), which would hide that it was recorded.
            timeout = min(timeout, self.settings.limits.request_timeout_s / 2)
        applied = await rt.wait_applied_async(seq, timeout)
        generation.refuse()
        return applied


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
