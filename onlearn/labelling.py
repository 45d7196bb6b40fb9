"""The labelling queue seen from the engine: enqueue what the sampler picked, claim with
re-ranking, label (which becomes feedback from a person), skip, stats.

A queue item is one prediction: its id is the prediction id, so pushing it twice is harmless,
and its label is feedback keyed by that prediction, so labelling it twice teaches once.

A prediction whose label arrives by feedback from the application or a person leaves the queue
(closed as answered elsewhere when that label commits, :meth:`Labelling.answered`, and skipped
by a claim that finds it labelled); a ``weak`` label leaves it claimable. A person's label
through the queue over an ``app`` or ``weak`` label is a correction of it; over a ``human`` one
it is a conflict (409) unless sent as a correction (:func:`onlearn.corrections.decide`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any, Protocol

from onlearn.active import priority_of
from onlearn.config import Task
from onlearn.corrections import recorded
from onlearn.errors import (
    ActiveLearningOff,
    FieldError,
    LeaseConflict,
    OnlearnError,
    QueueItemGone,
    SchemaViolation,
    UnknownQueueItem,
)
from onlearn.labels import check_label
from onlearn.records import (
    Event,
    EventKind,
    FeedbackItem,
    LabelSource,
    PredictionRecord,
    QueueItem,
    QueueState,
)
from onlearn.registry import CHAMPION
from onlearn.runtime import ModelRuntime
from onlearn.store.base import AppendResult, LabelOutcome, Store, claim_verdict

log = logging.getLogger(__name__)

# Sources whose label closes a prediction's queue item: a weak label leaves it for a person.
CLOSING_SOURCES = frozenset({LabelSource.APP.value, LabelSource.HUMAN.value})
# The sources a person's label through the queue corrects without being asked to.
QUEUE_OVERRIDES = frozenset({LabelSource.APP.value, LabelSource.WEAK.value})


def dedupe_key(features: dict) -> str:
    """Identical feature vectors get one key (and one queue item)."""
    text = json.dumps(features, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(text.encode()).hexdigest()


class Answer(Protocol):
    """A feedback answer, as a label call gives it back."""

    def to_dict(self) -> dict[str, Any]: ...


class LabellingEngine(Protocol):
    """What labelling needs from the engine. Declared here, not imported: the engine builds its
    ``Labelling``, so an import of the engine from here would go both ways."""

    store: Store
    runtimes: Mapping[str, ModelRuntime]
    clock: Callable[[], float]

    def runtime(self, name: str) -> ModelRuntime: ...

    def label_event(self, name: str, item: FeedbackItem) -> Event: ...

    def feedback_one(self, name: str, item: FeedbackItem) -> Answer: ...

    async def feedback_one_async(self, name: str, item: FeedbackItem) -> Answer: ...

    async def label_event_async(self, name: str, item: FeedbackItem) -> Event: ...

    def check_lag(self, name: str) -> None: ...

    def learn_appended(
        self, name: str, events: Sequence[Event], seqs: AppendResult, *, wait: bool = True
    ) -> bool: ...

    async def learn_appended_async(
        self, name: str, events: Sequence[Event], seqs: AppendResult, *, wait: bool = True
    ) -> bool: ...


_NOT_USED = "your label was not used"


class _AlreadyDone(Exception):
    """The store found the item labelled meanwhile: answered as a label of a done item."""

    def __init__(self, item: QueueItem) -> None:
        super().__init__(item.item_id)
        self.item = item


class Labelling:
    def __init__(self, engine: LabellingEngine) -> None:
        self.engine = engine

    @property
    def queue(self):
        return self.engine.store.queue

    def _active(self, name: str) -> ModelRuntime:
        rt = self.engine.runtime(name)
        task = rt.config.task
        if task is not Task.CLASSIFICATION:
            # Not the advice below: the config refuses an active table on such a model.
            raise ActiveLearningOff(
                f"model {name!r} has no labelling queue: it is a {task.value} model, and "
                "active learning is for classification models only (its samplers weigh the "
                f"uncertainty of class probabilities, which a {task.value} model does not give)"
            )
        if rt.config.active is None or self.queue is None:
            raise ActiveLearningOff(
                f"model {name!r} has no labelling queue: add a [models.{name}.active] table "
                "to its config (e.g. budget = 0.1)"
            )
        return rt

    # Called by the prediction writer's thread once the records are written.

    def enqueue(self, records: Sequence[PredictionRecord]) -> None:
        for record in records:
            if not record.queued:
                continue
            rt = self.engine.runtimes.get(record.model)
            if rt is None or rt.config.active is None:
                continue
            output = record.outputs[record.version]
            item = QueueItem(
                item_id=record.id,
                model=record.model,
                features=record.features,
                priority=priority_of(record.uncertainty or 0.0, record.reason),
                enqueued_at=record.at,
                prediction_id=record.id,
                dedupe_key=dedupe_key(dict(record.features)),
                proba=output["proba"],
                uncertainty=record.uncertainty,
                reason=record.reason or "uncertain",
            )
            self.queue.push(item, max_size=rt.config.active.queue_max_size)

    # Called by the commit thread after each durable append.

    def answered(self, model: str, events: Sequence[Event], result) -> None:
        """Close the queue items of the predictions that just got a first label (or a
        correction) from ``app`` or ``human`` by feedback, counted as answered elsewhere."""
        rt = self.engine.runtimes.get(model)
        if rt is None or rt.config.active is None or self.queue is None:
            return
        results = {}
        for event, seq, new in zip(events, result, result.new, strict=True):
            if not new or event.kind is not EventKind.LABEL:
                continue
            payload = event.payload
            pid = payload.get("prediction_id")
            if pid is None or payload.get("source") not in CLOSING_SOURCES:
                continue
            results[pid] = _answered_result(seq, rt.roles[CHAMPION], payload)
        if results:
            self.queue.close_answered(model, results, self.engine.clock())

    # Labelling clients

    def claim(
        self,
        name: str,
        *,
        limit: int = 1,
        lease_s: float | None = None,
        labeller: str | None = None,
    ) -> list[dict[str, Any]]:
        """Lease the ``limit`` most useful items now, re-ranked with the current model.

        Items were ranked by the model that predicted them; it has learned since. The top
        candidates (``limit * rerank_pool``) get their uncertainty again from the champion of
        now, so that a case the model has meanwhile learned to answer drops down the queue.
        """
        rt = self._active(name)
        active = rt.config.active
        errors = []
        if (
            not isinstance(limit, int)
            or isinstance(limit, bool)
            or not 1 <= limit <= active.max_claim
        ):
            errors.append(
                FieldError(
                    ("limit",), "range", f"limit must be an integer in [1, {active.max_claim}]"
                )
            )
        lease_s = active.lease_s if lease_s is None else lease_s
        if (
            not isinstance(lease_s, int | float)
            or isinstance(lease_s, bool)
            or not 0 < lease_s <= active.max_lease_s
        ):
            errors.append(
                FieldError(
                    ("lease_s",),
                    "range",
                    f"lease_s must be a number of seconds in (0, {active.max_lease_s:g}]",
                )
            )
        if errors:
            raise SchemaViolation(errors)
        now = self.engine.clock()
        self.queue.release_expired(name, now)
        # Not what this labeller skipped last: the claim would pass it over anyway.
        pool = self.queue.peek(name, limit * active.rerank_pool, passing_over=labeller)
        current = self._current(rt, [item.features for item in pool])
        fresh = {item.item_id: answer for item, answer in zip(pool, current, strict=True)}
        priorities = {
            item.item_id: priority_of(u, item.reason)
            for item, (_, u) in zip(pool, current, strict=True)
        }
        if priorities:
            self.queue.reprioritize(name, priorities)
        # Claim from the re-scored pool only: items outside it still carry their old scores,
        # which would outrank the pool's fresh (usually lower) ones. They are scored in turn,
        # when a later claim finds them at the top.
        ranked = sorted(priorities, key=priorities.__getitem__, reverse=True)
        claimed = self.queue.claim(
            name, limit=limit, lease_s=float(lease_s), labeller=labeller, now=now, item_ids=ranked
        )
        claimed = self._unlabelled(rt, claimed, now)
        return [self._shown(rt, item, *fresh[item.item_id]) for item in claimed]

    def _unlabelled(self, rt: ModelRuntime, claimed: list[QueueItem], now: float) -> list:
        """The claimed items whose prediction has no label from ``app`` or ``human`` yet; the
        others are closed as answered elsewhere. Their closing at commit may not have happened
        (the committing process died in between, or it served no queue for the model). An
        app label committing right after this look is the label path's to handle: the
        person's label then corrects it, or is the same label (idempotent)."""
        keys = {f"prediction:{i.prediction_id}": i for i in claimed if i.prediction_id}
        if not keys:
            return claimed
        ends = recorded(self.engine.store.log, rt.name, keys)
        results = {
            keys[key].item_id: _answered_result(end.seq, rt.roles[CHAMPION], end.payload)
            for key, end in ends.items()
            if end.payload.get("source") in CLOSING_SOURCES
        }
        if not results:
            return claimed
        self.queue.close_answered(rt.name, results, now)
        return [item for item in claimed if item.item_id not in results]

    def _current(self, rt: ModelRuntime, rows: list) -> list[tuple[dict | None, float]]:
        answers = []
        with rt.lock:
            for features in rows:
                _, proba = rt.champion.predict(rt.schema.model_input(features))
                answers.append((proba, rt.sampler.uncertainty(proba)))
        return answers

    def _shown(
        self, rt: ModelRuntime, item: QueueItem, proba: dict | None, uncertainty: float
    ) -> dict:
        return {
            "item_id": item.item_id,
            "prediction_id": item.prediction_id,
            "claim_id": item.claim_id,
            "features": dict(item.features),
            "proba": [[label, p] for label, p in (proba or {}).items()],
            "guess": max(proba, key=proba.get) if proba else None,
            "uncertainty": uncertainty,
            "reason": item.reason,
            "attempts": item.attempts,
            "lease_expires_at": item.lease_expires_at,
            "classes": list(rt.config.classes) if rt.config.classes else None,
        }

    # Label, skip, release. Each is one atomic store call that checks the lease
    # (leases.claim_verdict) and makes its change; its refusals become the same errors, whichever
    # call meets them and whether a first read or the store call itself finds them, so that one
    # situation always gets one status (docs/operations.md, "The labelling queue's rules").

    def _refused(
        self, name: str, item_id: str, status: str, item: QueueItem | None, action: str
    ) -> OnlearnError:
        """The error of a refused label, skip or release (``action``: "your label was not
        used", ...): 404 unknown; 410 gone (the item left the queue: skipped out or evicted);
        409 conflict (someone else holds or labelled the item, or it is labelled already)."""
        if status == "unknown":
            return UnknownQueueItem(
                f"no queue item {item_id} for model {name!r}; claim items first"
            )
        if status == "gone":
            how = item.state.value if item is not None else "gone"
            return QueueItemGone(f"queue item {item_id} was {how}; {action}; claim another item")
        if status == "already_done":
            return LeaseConflict(
                f"queue item {item_id} is labelled already; {action}; claim another item"
            )
        if item is not None and item.state is QueueState.CLAIMED:
            who = "is claimed by someone else now (your lease ran out, or you sent no claim_id)"
        else:
            who = "was claimed by someone else since your claim"
        return LeaseConflict(
            f"queue item {item_id} {who}; {action}: send the claim_id your claim returned, or "
            "claim another item"
        )

    def _check_done(self, item_id: str, item: QueueItem, claim_id: str | None) -> None:
        """A label for a done item: a retry of the claim that labelled it (or a label without a
        claim id) is compared with the recorded label like any feedback; a stale claim, whose
        lease ran out before another labeller took and labelled the item, is told its label was
        not used."""
        if claim_id is not None and claim_id != item.claim_id:
            raise LeaseConflict(
                f"queue item {item_id} was labelled by someone else after your lease ran out; "
                "your label was not used, claim another item"
            )

    def _to_label(self, name: str, item_id: str, claim_id: str | None) -> QueueItem:
        """The item a label is for: its prediction and features go into the label event. A
        first read, so that a label sure to be refused is refused before its event is built;
        the store call decides."""
        item = self.queue.get(name, item_id)
        if item is None:
            raise self._refused(name, item_id, "unknown", None, _NOT_USED)
        status = claim_verdict(item, claim_id, self.engine.clock())
        if status not in (None, "already_done"):
            raise self._refused(name, item_id, status, item, _NOT_USED)
        return item

    def _finish_label(self, name: str, item_id: str, claim_id: str | None, outcome) -> QueueItem:
        if outcome.status == "already_done":
            raise _AlreadyDone(outcome.item)
        if outcome.status != "ok":
            raise self._refused(name, item_id, outcome.status, outcome.item, _NOT_USED)
        return outcome.item

    @staticmethod
    def _answered(result: Answer) -> dict:
        """A label call's answer from the feedback path's result (seq, version, durable,
        applied, and whether it was recorded as a correction)."""
        return result.to_dict()

    def _feedback(
        self, item: QueueItem, label: Any, labeller: str | None, correction: bool = False
    ) -> FeedbackItem:
        """The feedback a person's label through the queue is: its event is built as any
        feedback's (checks, the join with the prediction record), and it corrects an ``app`` or
        ``weak`` label without being asked to."""
        return FeedbackItem(
            label=label,
            prediction_id=item.prediction_id,
            features=item.features,  # the fallback when the prediction record expired
            source=LabelSource.HUMAN.value,
            labeller=labeller or item.labeller,
            correction=correction,
            overrides=QUEUE_OVERRIDES,
        )

    def _label_in_store(
        self, rt: ModelRuntime, item_id: str, claim_id: str | None, events: list[Event]
    ) -> LabelOutcome:
        """The atomic step: lease check, append with the log's key dedup, item done. Never on a
        store found changed (onlearn.store.generation): its append checks it again."""
        self.engine.store.generation.refuse()
        result = {"version": rt.roles[CHAMPION]}
        return self.queue.label(rt.name, item_id, claim_id, events, result, self.engine.clock())

    # A person's label: the lease check and the append of its event are one atomic store step
    # (issue 13, section 3). When the prediction had a label already (the application's or a
    # weak one that came after the claim, or a retry of a done item), the label is compared with
    # the recorded one as feedback is (onlearn/corrections.py): the same label answers its seq, a
    # different one is a correction of an app or weak label, else a 409. That goes through the
    # feedback path: the item is done by then, and the log's key dedup settles the races.

    async def label_async(
        self,
        name: str,
        item_id: str,
        label: Any,
        *,
        claim_id: str | None = None,
        labeller: str | None = None,
        correction: bool = False,
    ) -> dict:
        rt = self._active(name)
        # A label the model cannot take is a 422 whatever became of the item (a 410 would
        # tell the labeller to claim another, to send the same wrong label again).
        if errors := check_label(rt.config, label):
            raise SchemaViolation(errors)
        item = await asyncio.to_thread(self._to_label, name, item_id, claim_id)
        feedback = self._feedback(item, label, labeller, correction)
        if item.state is QueueState.DONE:
            self._check_done(item_id, item, claim_id)
            return self._answered(await self.engine.feedback_one_async(name, feedback))
        events = [await self.engine.label_event_async(name, feedback)]
        self.engine.check_lag(name)
        # Off the event loop: an fsync on SQLite, a round trip on Redis.
        outcome = await asyncio.to_thread(self._label_in_store, rt, item_id, claim_id, events)
        try:
            done = self._finish_label(name, item_id, claim_id, outcome)
        except _AlreadyDone as e:
            self._check_done(item_id, e.item, claim_id)
            return self._answered(await self.engine.feedback_one_async(name, feedback))
        if not outcome.seqs.new[0]:
            return self._answered(await self.engine.feedback_one_async(name, feedback))
        applied = await self.engine.learn_appended_async(name, events, outcome.seqs)
        return {**done.result, "durable": True, "applied": applied}

    def label(
        self,
        name: str,
        item_id: str,
        label: Any,
        *,
        claim_id: str | None = None,
        labeller: str | None = None,
        correction: bool = False,
    ) -> dict:
        rt = self._active(name)
        # A label the model cannot take is a 422 whatever became of the item (a 410 would
        # tell the labeller to claim another, to send the same wrong label again).
        if errors := check_label(rt.config, label):
            raise SchemaViolation(errors)
        item = self._to_label(name, item_id, claim_id)
        feedback = self._feedback(item, label, labeller, correction)
        if item.state is QueueState.DONE:
            self._check_done(item_id, item, claim_id)
            return self._answered(self.engine.feedback_one(name, feedback))
        events = [self.engine.label_event(name, feedback)]
        self.engine.check_lag(name)
        outcome = self._label_in_store(rt, item_id, claim_id, events)
        try:
            done = self._finish_label(name, item_id, claim_id, outcome)
        except _AlreadyDone as e:
            self._check_done(item_id, e.item, claim_id)
            return self._answered(self.engine.feedback_one(name, feedback))
        if not outcome.seqs.new[0]:
            return self._answered(self.engine.feedback_one(name, feedback))
        applied = self.engine.learn_appended(name, events, outcome.seqs)
        return {**done.result, "durable": True, "applied": applied}

    def skip(
        self, name: str, item_id: str, *, claim_id: str | None = None, labeller: str | None = None
    ) -> dict:
        """Give the item back; claims by this labeller (named, or the claim's) pass it over."""
        rt = self._active(name)
        outcome = self.queue.skip(
            name,
            item_id,
            claim_id,
            self.engine.clock(),
            max_skips=rt.config.active.max_skips,
            labeller=labeller,
        )
        if outcome.status != "ok":
            raise self._refused(
                name, item_id, outcome.status, outcome.item, "the item was not skipped"
            )
        return {"item_id": item_id, "state": outcome.item.state.value, "skips": outcome.item.skips}

    def release(self, name: str, item_id: str, *, claim_id: str) -> dict:
        """Give a claim back without a label: the item is queued again for anyone."""
        self._active(name)
        if not isinstance(claim_id, str) or not claim_id:
            raise SchemaViolation(
                [FieldError(("claim_id",), "missing", "give the claim_id your claim returned")]
            )
        outcome = self.queue.release(name, item_id, claim_id, self.engine.clock())
        if outcome.status != "ok":
            raise self._refused(
                name, item_id, outcome.status, outcome.item, "the claim was not released"
            )
        return {"item_id": item_id, "state": outcome.item.state.value}

    def stats(self, name: str) -> dict[str, Any]:
        rt = self._active(name)
        stats = asdict(self.queue.stats(name))
        strategy = rt.sampler.strategy
        with rt.lock:
            champion = rt.champion.metrics
            by_reason = {r: m.to_dict() for r, m in champion.by_reason.items()}
            budget = {
                "budget": strategy.budget,
                "spending": strategy.spending,
                "seen": strategy.n_seen,
                "asked": strategy.n_asked,
                "evaluation_rate": rt.sampler.evaluation_rate,
            }
            delay = champion.to_dict()["label_delay_s"]
        return {
            "model": name,
            **stats,
            "budget": budget,
            "label_delay_s": delay,
            "accuracy_random_slice": by_reason.get("random", {}).get("accuracy"),
            "accuracy_queried": by_reason.get("uncertain", {}).get("accuracy"),
            "labels_random_slice": by_reason.get("random", {}).get("n", 0),
            "labels_queried": by_reason.get("uncertain", {}).get("n", 0),
        }

    def maintain(self) -> None:
        """Return expired leases to the queue and forget long-finished items."""
        now = self.engine.clock()
        for rt in self.engine.runtimes.values():
            if rt.config.active is None or self.queue is None:
                continue
            try:
                self.queue.release_expired(rt.name, now)
                self.queue.purge_finished(rt.name, now - rt.config.active.keep_finished_s)
            except OnlearnError as e:
                log.warning("model %r: queue maintenance failed (%s); will retry", rt.name, e)


def recorded_key(item: QueueItem) -> str:
    """The key of the first label event of the item's prediction (its chain's key)."""
    return f"prediction:{item.prediction_id}"


def _answered_result(seq: int, version: str, payload) -> dict:
    """An item's result when it was closed because its prediction got a label elsewhere."""
    return {
        "seq": seq,
        "version": version,
        "answered_elsewhere": True,
        "source": payload.get("source") or "app",
        "labeller": payload.get("labeller"),
    }


__all__ = ["Labelling", "dedupe_key", "recorded_key"]
