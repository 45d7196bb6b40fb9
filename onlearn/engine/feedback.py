"""Feedback: check the label, join it with the prediction record (or take inline features),
append the label event durably, and wait until this process has applied it (read-your-writes)
unless the caller asked not to wait.

Every append goes through the group commit, for the library's synchronous calls as for HTTP's
async ones: one path to durability, so the sync API and the server cannot drift apart (seqs,
idempotency, the bound on pending labels, the apply right after commit).

A label is appended first and compared after (optimistically): the first label of a prediction,
the usual case, costs no read. When the log answers that the key was labelled before (``new``
false), the label is compared with the one recorded (:mod:`onlearn.corrections`): the same label
answers the recorded seq (idempotent); a different one is a correction, appended in a second
commit, when the item asks for it, else a :class:`~onlearn.errors.LabelConflict` (409) that
names the recorded label. Nothing is ever answered as used that the log did not record.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from onlearn.config import Settings
from onlearn.corrections import decide, recorded, retraction_event
from onlearn.engine.follower import Follower
from onlearn.errors import (
    FieldError,
    LabelConflict,
    OnlearnError,
    Overloaded,
    PredictionExpired,
    SchemaViolation,
    UnknownPrediction,
    Violations,
)
from onlearn.group_commit import GroupCommitter
from onlearn.ids import prediction_time
from onlearn.labels import check_label
from onlearn.prediction_writer import PredictionWriter
from onlearn.records import Event, EventKind, FeedbackItem, LabelSource, PredictionRecord
from onlearn.registry import CHAMPION
from onlearn.runtime import ModelRuntime
from onlearn.store.base import AppendResult, Store

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
    or one whose wait ran out). ``error``: why this item of a batch was not taken.
    ``correction``: the label was recorded as a correction of an earlier, different one."""

    seq: int | None
    version: str | None
    applied: bool = False
    error: OnlearnError | None = field(default=None, compare=False)
    correction: bool = False

    @property
    def durable(self) -> bool:
        return self.seq is not None and self.error is None

    def to_dict(self) -> dict[str, Any]:
        """The answer's fields (of a taken label)."""
        answer = {
            "seq": self.seq,
            "version": self.version,
            "durable": self.durable,
            "applied": self.applied,
        }
        if self.correction:
            answer["correction"] = True  # recorded as a correction of an earlier, different label
        return answer


@dataclass
class _Outcome:
    """What became of one label: its seq, or its conflict, once settled."""

    item: FeedbackItem
    event: Event
    seq: int | None = None
    error: LabelConflict | None = None
    correction: bool = False
    key: str | None = None  # the key of the label's chain: its first event's key

    def __post_init__(self) -> None:
        self.key = self.event.key


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

    def label_event(self, rt: ModelRuntime, item: FeedbackItem) -> Event:
        """The label event of ``item``, checked and joined with its prediction record (waiting
        briefly for a record another process has not written yet), not appended: for
        ``feedback_one``, and for the labelling queue, which appends it with its lease check."""
        deadline = time.monotonic() + JOIN_WAIT_S
        while True:
            try:
                return self._label_event(rt, item, self.clock(), deadline)
            except _NotYetVisible:
                time.sleep(JOIN_POLL_S)

    async def label_event_async(self, rt: ModelRuntime, item: FeedbackItem) -> Event:
        """``label_event`` for the event loop."""
        deadline = time.monotonic() + JOIN_WAIT_S
        while True:
            try:
                return await self._off_loop(self._label_event, rt, item, self.clock(), deadline)
            except _NotYetVisible:
                await asyncio.sleep(JOIN_POLL_S)

    def check_lag(self, rt: ModelRuntime) -> None:
        """Refuse new labels for a model that is too far behind (see ``_check_lag``)."""
        self._check_lag(rt)

    def learn_appended(
        self, rt: ModelRuntime, events: Sequence[Event], seqs: AppendResult, wait: bool
    ) -> bool:
        """After ``events`` were appended outside the group commit (the labelling queue's
        atomic label): hand the new ones to the model as a commit does, and with ``wait`` apply
        them in this thread. Whether this process has applied them all."""
        with self._follower.applying_here() if wait else nullcontext():
            self._follower.committed(rt.name, events, seqs)
        top = max(seqs)
        applied = self._follower.apply_now(rt, top) if wait else rt.seq >= top
        self.store.generation.refuse()
        return applied and rt.learned(top)

    async def learn_appended_async(
        self, rt: ModelRuntime, events: Sequence[Event], seqs: AppendResult, wait: bool
    ) -> bool:
        """``learn_appended`` for the event loop: the learners apply them, the call waits."""
        self._follower.committed(rt.name, events, seqs)
        top = max(seqs)
        return await self._applied_async(rt, top, wait) and rt.learned(top)

    def feedback_one(self, rt: ModelRuntime, item: FeedbackItem, wait: bool) -> FeedbackResult:
        generation = self.store.generation
        generation.refuse()  # a store found changed takes no label (onlearn.store.generation)
        event = self.label_event(rt, item)
        self._check_lag(rt)
        with self._follower.applying_here() if wait else nullcontext():
            result = self._committer.commit(rt.name, [event])
        if result.new[0]:
            seq, correction = result[0], False
        else:
            (outcome,) = self._settle(rt, [_Outcome(item, event)], result, wait)
            if outcome.error is not None:
                raise outcome.error
            seq, correction = outcome.seq, outcome.correction
        applied = self._follower.apply_now(rt, seq) if wait else rt.seq >= seq
        generation.refuse()  # the append showed the log went back: its seq means nothing here
        return FeedbackResult(
            seq, rt.roles[CHAMPION], applied and rt.learned(seq), correction=correction
        )

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
        outcomes = [
            _Outcome(item, p)
            for item, p in zip(items, prepared, strict=True)
            if isinstance(p, Event)
        ]
        if outcomes:
            self._check_lag(rt)
            with self._follower.applying_here() if wait else nullcontext():
                result = self._committer.commit(rt.name, [o.event for o in outcomes])
            outcomes = self._settle(rt, outcomes, result, wait)
        seqs = [o.seq for o in outcomes if o.seq is not None]
        applied = (
            self._follower.apply_now(rt, max(seqs))
            if wait and seqs
            else bool(seqs) and rt.seq >= max(seqs)
        )
        generation.refuse()
        return self._results(rt, prepared, outcomes, applied)

    async def feedback_one_async(
        self, rt: ModelRuntime, item: FeedbackItem, wait: bool
    ) -> FeedbackResult:
        self.store.generation.refuse()
        event = await self.label_event_async(rt, item)
        self._check_lag(rt)
        result = await self._committer.submit_async(rt.name, [event])
        if result.new[0]:
            seq, correction = result[0], False
        else:
            (outcome,) = await self._settle_async(rt, [_Outcome(item, event)], result)
            if outcome.error is not None:
                raise outcome.error
            seq, correction = outcome.seq, outcome.correction
        applied = await self._applied_async(rt, seq, wait)
        return FeedbackResult(
            seq, rt.roles[CHAMPION], applied and rt.learned(seq), correction=correction
        )

    async def feedback_many_async(
        self, rt: ModelRuntime, items: Sequence[FeedbackItem], wait: bool
    ) -> list[FeedbackResult]:
        self.store.generation.refuse()
        deadline = time.monotonic() + JOIN_WAIT_S
        prepared = await self._off_loop(self._prepare_many, rt, items, deadline)
        while any(isinstance(p, _NotYetVisible) for p in prepared):
            await asyncio.sleep(JOIN_POLL_S)
            prepared = await self._off_loop(self._prepare_many, rt, items, deadline, prepared)
        outcomes = [
            _Outcome(item, p)
            for item, p in zip(items, prepared, strict=True)
            if isinstance(p, Event)
        ]
        if outcomes:
            self._check_lag(rt)
            result = await self._committer.submit_async(rt.name, [o.event for o in outcomes])
            outcomes = await self._settle_async(rt, outcomes, result)
        seqs = [o.seq for o in outcomes if o.seq is not None]
        applied = await self._applied_async(rt, max(seqs), wait) if seqs else False
        return self._results(rt, prepared, outcomes, applied)

    async def retract_async(
        self,
        rt: ModelRuntime,
        keys: Sequence[str],
        *,
        source: str,
        labeller: str | None,
        wait: bool,
    ) -> list[int | None]:
        """Withdraw the label recorded for each chain key (``event:<id>``, ``prediction:<id>``):
        the seq of its retraction event, or None for a key with no label recorded (never
        labelled, or trimmed). A retraction is keyed by its chain, so the same one again
        answers the seq it got. Learners skip it; refits leave the chain out."""
        self.store.generation.refuse()
        keys = list(dict.fromkeys(keys))
        ends = await self._off_loop(recorded, self.store.log, rt.name, keys)
        now = self.clock()
        events = [
            retraction_event(ends[k], chain_key=k, source=source, labeller=labeller, at=now)
            for k in keys
            if k in ends
        ]
        if not events:
            return [None] * len(keys)
        self._check_lag(rt)
        result = await self._committer.submit_async(rt.name, events)
        await self._applied_async(rt, max(result), wait)
        seqs = iter(result)
        return [next(seqs) if k in ends else None for k in keys]

    # Labels that met an earlier one

    def _settle(
        self, rt: ModelRuntime, outcomes: list[_Outcome], result, wait: bool = True
    ) -> list[_Outcome]:
        """Give each outcome its seq or its conflict, from the first commit's ``result``:
        corrections are appended (a second commit), then settled the same way once more."""
        fixes = self._compare(rt, outcomes, result, first=True)
        if fixes:
            with self._follower.applying_here() if wait else nullcontext():
                again = self._committer.commit(rt.name, [o.event for o in fixes])
            self._compare(rt, fixes, again, first=False)
        return outcomes

    async def _settle_async(
        self, rt: ModelRuntime, outcomes: list[_Outcome], result
    ) -> list[_Outcome]:
        fixes = await self._off_loop(self._compare, rt, outcomes, result, True)
        if fixes:
            again = await self._committer.submit_async(rt.name, [o.event for o in fixes])
            await self._off_loop(self._compare, rt, fixes, again, False)
        return outcomes

    def _compare(
        self, rt: ModelRuntime, outcomes: list[_Outcome], result, first: bool
    ) -> list[_Outcome]:
        """Settle ``outcomes`` from their append ``result``; return those that became
        corrections to append (``first`` only: a correction that lost its race to another
        correction of the same label is compared with the winner, never corrects it)."""
        for outcome, seq, new in zip(outcomes, result, result.new, strict=True):
            outcome.seq = seq if new else None
            outcome.correction = new and not first
        met = [o for o in outcomes if o.seq is None]
        if not met:
            return []
        ends = recorded(self.store.log, rt.name, {o.key for o in met})
        fixes = []
        now = self.clock()
        for outcome, seq, new in zip(outcomes, result, result.new, strict=True):
            if new:
                continue
            end = ends.get(outcome.key)
            if end is None:  # trimmed since the append: what the log answered
                outcome.seq = seq
                continue
            try:
                decided = decide(outcome.item, end, outcome.key, now, may_correct=first)
            except LabelConflict as conflict:
                rt.label_conflicts += 1
                outcome.error = conflict
                continue
            if isinstance(decided, Event):
                outcome.event = decided
                fixes.append(outcome)
            else:
                outcome.seq = decided  # the same label again: idempotent
                outcome.correction = end.payload.get("corrects") is not None
        return fixes

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

    def _results(self, rt, prepared, outcomes, applied) -> list[FeedbackResult]:
        version = rt.roles[CHAMPION]
        it = iter(outcomes)
        results = []
        for p in prepared:
            if isinstance(p, OnlearnError):
                results.append(FeedbackResult(None, None, False, p))
                continue
            o = next(it)
            if o.error is not None:
                results.append(FeedbackResult(None, None, False, o.error))
            else:
                results.append(
                    FeedbackResult(
                        o.seq, version, applied and rt.learned(o.seq), correction=o.correction
                    )
                )
        return results

    def _label_event(
        self,
        rt: ModelRuntime,
        item: FeedbackItem,
        now: float,
        deadline: float = 0.0,
        *,
        hints: bool = True,
    ) -> Event:
        errors = check_label(rt.config, item.label)
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
        if rt.sampler is not None:
            # Labels the strategy did not buy lower the pace of those it did (Sampler.pace).
            rt.sampler.count_label(record.reason if record is not None else None)
        if record is not None:
            payload.update(
                features=dict(record.features),
                predicted_at=record.at,
                outputs=dict(record.outputs),
                answered_by=record.version,
                sampled=record.reason,
                # The importance weight's probability (onlearn/weights.py), in the event so
                # that a replay learns with the weight the live model used.
                sample_p=record.sample_p,
                # The pace weight of a label the budgeted strategy bought (onlearn/weights.py),
                # from the sampler's budget and the labels it did not buy when the label
                # arrives, stored for the same reason.
                pace=rt.sampler.pace(record.reason) if rt.sampler is not None else None,
            )
        else:
            payload.update(
                features=clean,
                predicted_at=None,
                outputs=None,
                answered_by=None,
                sampled=None,
                sample_p=None,
                pace=None,
            )
        # Room for what a correction fills in (onlearn/corrections.py): a first label corrects
        # nothing.
        payload.update(corrects=None)
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
