"""The labelling queue seen from the engine: enqueue what the sampler picked, claim with
re-ranking, label (which becomes feedback from a person), skip, stats.

A queue item is one prediction: its id is the prediction id, so pushing it twice is harmless,
and its label is feedback keyed by that prediction, so labelling it twice teaches once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any, Protocol

from onlearn.active import priority_of
from onlearn.config import Task
from onlearn.errors import (
    ActiveLearningOff,
    FieldError,
    LeaseConflict,
    OnlearnError,
    QueueItemGone,
    SchemaViolation,
    UnknownQueueItem,
)
from onlearn.records import FeedbackItem, PredictionRecord, QueueItem, QueueState
from onlearn.runtime import ModelRuntime
from onlearn.store.base import Store

log = logging.getLogger(__name__)


def dedupe_key(features: dict) -> str:
    """Identical feature vectors get one key (and one queue item)."""
    text = json.dumps(features, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(text.encode()).hexdigest()


class Answer(Protocol):
    """The part of a feedback answer a label call keeps."""

    seq: int | None
    version: str | None


class LabellingEngine(Protocol):
    """What labelling needs from the engine. Declared here, not imported: the engine builds its
    ``Labelling``, so an import of the engine from here would go both ways."""

    store: Store
    runtimes: Mapping[str, ModelRuntime]
    clock: Callable[[], float]

    def runtime(self, name: str) -> ModelRuntime: ...

    def feedback_one(self, name: str, item: FeedbackItem) -> Answer: ...

    async def feedback_one_async(self, name: str, item: FeedbackItem) -> Answer: ...


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
        pool = self.queue.peek(name, limit * active.rerank_pool)
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
        return [self._shown(rt, item, *fresh[item.item_id]) for item in claimed]

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

    def _check_claim(
        self, name: str, item_id: str, claim_id: str | None, labeller: str | None
    ) -> QueueItem:
        item = self.queue.get(name, item_id)
        if item is None:
            raise UnknownQueueItem(f"no queue item {item_id} for model {name!r}; claim items first")
        if item.state in (QueueState.SKIPPED, QueueState.EVICTED):
            raise QueueItemGone(f"queue item {item_id} was {item.state.value}; claim another")
        if item.state is QueueState.CLAIMED and (
            (claim_id is not None and claim_id != item.claim_id)
            or (claim_id is None and labeller is not None and item.labeller not in (None, labeller))
        ):
            raise LeaseConflict(
                f"queue item {item_id} is claimed by someone else now (your lease ran out); "
                "claim another item"
            )
        if item.state is QueueState.DONE and claim_id is not None and claim_id != item.claim_id:
            # A retry of the claim that labelled it answers that label (idempotent); a stale
            # claim, whose lease ran out before another labeller took and labelled the item, is
            # told that its label was not used.
            raise LeaseConflict(
                f"queue item {item_id} was labelled by someone else after your lease ran out; "
                "your label was not used, claim another item"
            )
        return item

    def _complete(self, name, item, claim_id, result) -> dict:
        outcome = self.queue.complete(
            name, item.item_id, claim_id or item.claim_id, result, self.engine.clock()
        )
        if outcome.status == "conflict":
            raise LeaseConflict(
                f"queue item {item.item_id} was claimed by someone else meanwhile; claim another item"
            )
        if outcome.status == "gone":
            raise QueueItemGone(f"queue item {item.item_id} left the queue; claim another")
        if outcome.status == "unknown":
            raise UnknownQueueItem(f"no queue item {item.item_id} for model {name!r}")
        return dict(outcome.item.result) if outcome.item and outcome.item.result else result

    def _answer(self, name: str, stored: Any) -> dict:
        """The answer of a label call, as feedback's: seq, version, durable (the label is in
        the log), and whether this process's model has learned it. The item keeps seq and
        version only; "applied" is about now. Refused (StoreReplaced) once the store was found
        changed: its seqs say nothing about what the model learned."""
        rt = self.engine.runtime(name)
        self.engine.store.generation.refuse()
        answer = dict(stored)
        answer["durable"] = True
        answer["applied"] = rt.learned(answer["seq"])
        return answer

    def _feedback(self, item: QueueItem, label: Any, labeller: str | None) -> FeedbackItem:
        return FeedbackItem(
            label=label,
            prediction_id=item.prediction_id,
            features=item.features,  # the fallback when the prediction record expired
            source="human",
            labeller=labeller or item.labeller,
        )

    async def label_async(
        self,
        name: str,
        item_id: str,
        label: Any,
        *,
        claim_id: str | None = None,
        labeller: str | None = None,
    ) -> dict:
        self._active(name)
        item = self._check_claim(name, item_id, claim_id, labeller)
        if item.state is QueueState.DONE:
            return self._answer(name, item.result)
        result = await self.engine.feedback_one_async(name, self._feedback(item, label, labeller))
        stored = {"seq": result.seq, "version": result.version}
        return self._answer(name, self._complete(name, item, claim_id, stored))

    def label(
        self,
        name: str,
        item_id: str,
        label: Any,
        *,
        claim_id: str | None = None,
        labeller: str | None = None,
    ) -> dict:
        self._active(name)
        item = self._check_claim(name, item_id, claim_id, labeller)
        if item.state is QueueState.DONE:
            return self._answer(name, item.result)
        result = self.engine.feedback_one(name, self._feedback(item, label, labeller))
        stored = {"seq": result.seq, "version": result.version}
        return self._answer(name, self._complete(name, item, claim_id, stored))

    def skip(
        self, name: str, item_id: str, *, claim_id: str | None = None, labeller: str | None = None
    ) -> dict:
        rt = self._active(name)
        item = self._check_claim(name, item_id, claim_id, labeller)
        if item.state is QueueState.DONE:
            raise LeaseConflict(f"queue item {item_id} is already labelled; it cannot be skipped")
        outcome = self.queue.skip(
            name,
            item_id,
            claim_id or item.claim_id,
            self.engine.clock(),
            max_skips=rt.config.active.max_skips,
        )
        if outcome.status == "conflict":
            raise LeaseConflict(f"queue item {item_id} was claimed by someone else meanwhile")
        if outcome.status not in ("ok",):
            raise QueueItemGone(f"queue item {item_id} cannot be skipped ({outcome.status})")
        return {"item_id": item_id, "state": outcome.item.state.value, "skips": outcome.item.skips}

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


__all__ = ["Labelling", "dedupe_key"]
