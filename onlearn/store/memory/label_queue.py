"""``MemoryLabelQueue``: items waiting for a human label, per model, with leases."""

from __future__ import annotations

import bisect
import dataclasses
import threading
from collections.abc import Mapping, Sequence

from onlearn.records import (
    Event,
    QueueItem,
    QueueState,
)
from onlearn.store.base import (
    QUEUE_COUNTERS,
    ClaimOutcome,
    LabelOutcome,
    PushOutcome,
    QueueStats,
)
from onlearn.store.leases import (
    FINISHED_STATES,
    check_label_events,
    check_priority,
    check_pushable,
    claim_verdict,
    new_claim_id,
    passes_over,
    rank,
    skipper,
)
from onlearn.store.memory.log import MemoryEventLog


class _ModelQueue:
    """One model's labelling queue.

    ``order`` holds the ranks (:func:`~onlearn.store.leases.rank`) of the queued items, sorted,
    so that the best item is ``order[0]`` and the one a full queue evicts is ``order[-1]``.
    ``dedupe`` maps each dedupe key to its item, for items still waiting (queued or claimed):
    :meth:`finish` drops the key. Counters are kept apart from the items so that purge_finished
    does not reset them.
    """

    __slots__ = ("claimed", "counters", "dedupe", "items", "order")

    def __init__(self) -> None:
        self.items: dict[str, QueueItem] = {}
        self.order: list[tuple[float, float, str]] = []
        self.claimed: set[str] = set()
        self.dedupe: dict[str, str] = {}
        self.counters = dict.fromkeys(QUEUE_COUNTERS, 0)

    def unqueue(self, item: QueueItem) -> None:
        """Take ``item`` out of the queued order or the claimed set, whichever holds it."""
        if item.state is QueueState.QUEUED:
            key = rank(item)
            del self.order[bisect.bisect_left(self.order, key)]
        elif item.state is QueueState.CLAIMED:
            self.claimed.discard(item.item_id)

    def enqueue(self, item: QueueItem) -> None:
        self.items[item.item_id] = item
        bisect.insort(self.order, rank(item))

    def finish(self, item: QueueItem) -> QueueItem:
        """Store ``item``, which has left the waiting states (done, skipped out, evicted): its
        dedupe key is free again, so the same input can be asked again."""
        self.items[item.item_id] = item
        key = item.dedupe_key
        if key is not None and self.dedupe.get(key) == item.item_id:
            del self.dedupe[key]
        return item

    def release_expired(self, now: float) -> int:
        expired = [
            self.items[i]
            for i in self.claimed
            if self.items[i].lease_expires_at is not None and self.items[i].lease_expires_at <= now  # type: ignore[operator]
        ]
        for item in expired:
            self.claimed.discard(item.item_id)
            self.enqueue(dataclasses.replace(item, state=QueueState.QUEUED, lease_expires_at=None))
        self.counters["expired"] += len(expired)
        return len(expired)


class MemoryLabelQueue:
    """Sorted ranks per model: claim and peek read the head, a full queue evicts the tail."""

    def __init__(self, log: MemoryEventLog | None = None) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, _ModelQueue] = {}
        # The store's log, which ``label`` appends to (taking its lock inside this one's: the
        # log never takes this lock, so the order cannot deadlock); a queue built alone has its
        # own.
        self._log = log if log is not None else MemoryEventLog()

    def _queue(self, model: str) -> _ModelQueue:
        queue = self._queues.get(model)
        if queue is None:
            queue = self._queues[model] = _ModelQueue()
        return queue

    def push(self, item: QueueItem, *, max_size: int) -> PushOutcome:
        check_pushable(item)
        with self._lock:
            queue = self._queue(item.model)
            # Pushing an item id again is a duplicate too, so that a retried push is harmless.
            existing = item.item_id if item.item_id in queue.items else None
            if existing is None and item.dedupe_key is not None:
                existing = queue.dedupe.get(item.dedupe_key)
            if existing is not None:
                queue.counters["duplicates"] += 1
                return PushOutcome("duplicate", existing)
            evicted = None
            if len(queue.order) >= max_size:
                if not queue.order or rank(item) >= queue.order[-1]:
                    queue.counters["rejected"] += 1
                    return PushOutcome("rejected")
                victim = queue.items[queue.order.pop()[2]]
                # push has no clock: the new item's enqueued_at is when the victim left.
                queue.finish(
                    dataclasses.replace(
                        victim, state=QueueState.EVICTED, finished_at=item.enqueued_at
                    )
                )
                queue.counters["evicted"] += 1
                evicted = victim.item_id
            queue.enqueue(item)
            if item.dedupe_key is not None:
                queue.dedupe[item.dedupe_key] = item.item_id
            queue.counters["pushed"] += 1
            return PushOutcome("queued", item.item_id, evicted)

    def peek(self, model: str, limit: int, *, passing_over: str | None = None) -> list[QueueItem]:
        with self._lock:
            queue = self._queues.get(model)
            if queue is None or limit <= 0:
                return []
            if passing_over is None:
                return [queue.items[key[2]] for key in queue.order[:limit]]
            found = []
            for key in queue.order:
                item = queue.items[key[2]]
                if not passes_over(item, passing_over):
                    found.append(item)
                    if len(found) == limit:
                        break
            return found

    def reprioritize(self, model: str, priorities: dict[str, float]) -> None:
        for priority in priorities.values():
            check_priority(priority)
        with self._lock:
            queue = self._queues.get(model)
            if queue is None:
                return
            for item_id, priority in priorities.items():
                item = queue.items.get(item_id)
                if item is not None and item.state is QueueState.QUEUED:
                    queue.unqueue(item)
                    queue.enqueue(dataclasses.replace(item, priority=priority))

    def claim(
        self,
        model: str,
        *,
        limit: int,
        lease_s: float,
        labeller: str | None,
        now: float,
        item_ids: Sequence[str] | None = None,
    ) -> list[QueueItem]:
        with self._lock:
            queue = self._queue(model)
            queue.release_expired(now)
            if limit <= 0:
                return []
            # In rank order, or the order given; read before any item leaves the order.
            ids = (k[2] for k in queue.order) if item_ids is None else dict.fromkeys(item_ids)
            taken = []
            for item_id in ids:
                item = queue.items.get(item_id)
                if (
                    item is not None
                    and item.state is QueueState.QUEUED
                    and not passes_over(item, labeller)
                ):
                    taken.append(item)
                    if len(taken) == limit:
                        break
            for item in taken:
                queue.unqueue(item)
            taken = [item.item_id for item in taken]
            claimed = []
            for item_id in taken:
                item = queue.items[item_id]
                item = queue.items[item_id] = dataclasses.replace(
                    item,
                    state=QueueState.CLAIMED,
                    claim_id=new_claim_id(),
                    attempts=item.attempts + 1,
                    labeller=labeller,
                    lease_expires_at=now + lease_s,
                )
                queue.claimed.add(item_id)
                claimed.append(item)
            return claimed

    def _lookup(self, model: str, item_id: str) -> tuple[_ModelQueue | None, QueueItem | None]:
        queue = self._queues.get(model)
        return queue, None if queue is None else queue.items.get(item_id)

    def complete(
        self, model: str, item_id: str, claim_id: str | None, result: dict, now: float
    ) -> ClaimOutcome:
        with self._lock:
            queue, item = self._lookup(model, item_id)
            if queue is None or item is None:
                return ClaimOutcome("unknown")
            refused = claim_verdict(item, claim_id, now)
            if refused is not None:
                return ClaimOutcome(refused, item)
            return ClaimOutcome("ok", self._done(queue, item, dict(result), now))

    @staticmethod
    def _done(queue: _ModelQueue, item: QueueItem, result: dict, now: float) -> QueueItem:
        queue.unqueue(item)
        queue.counters["labelled"] += 1
        return queue.finish(
            dataclasses.replace(
                item, state=QueueState.DONE, result=result, finished_at=now, lease_expires_at=None
            )
        )

    def label(
        self,
        model: str,
        item_id: str,
        claim_id: str | None,
        events: Sequence[Event],
        result: dict,
        now: float,
    ) -> LabelOutcome:
        check_label_events(events)
        with self._lock:
            queue, item = self._lookup(model, item_id)
            if queue is None or item is None:
                return LabelOutcome("unknown")
            refused = claim_verdict(item, claim_id, now)
            if refused is not None:
                return LabelOutcome(refused, item)
            # The log's own append, under its lock, inside this queue's: the verdict, the
            # append and the item's end are one step for every other caller of either.
            seqs = self._log.append(model, events)
            done = self._done(queue, item, {"seq": max(seqs), **result}, now)
            return LabelOutcome("ok", done, seqs)

    def close_answered(self, model: str, results: Mapping[str, dict], now: float) -> int:
        closed = 0
        with self._lock:
            queue = self._queues.get(model)
            if queue is None:
                return 0
            for item_id, result in results.items():
                item = queue.items.get(item_id)
                if item is None or item.state not in (QueueState.QUEUED, QueueState.CLAIMED):
                    continue
                queue.unqueue(item)
                queue.finish(  # frees its dedupe key, as every end does
                    dataclasses.replace(
                        item,
                        state=QueueState.DONE,
                        result=dict(result),
                        finished_at=now,
                        lease_expires_at=None,
                    )
                )
                closed += 1
            queue.counters["answered_elsewhere"] += closed
        return closed

    def skip(
        self,
        model: str,
        item_id: str,
        claim_id: str | None,
        now: float,
        *,
        max_skips: int,
        labeller: str | None = None,
    ) -> ClaimOutcome:
        with self._lock:
            queue, item = self._lookup(model, item_id)
            if queue is None or item is None:
                return ClaimOutcome("unknown")
            refused = claim_verdict(item, claim_id, now)
            if refused is not None:
                return ClaimOutcome(refused, item)
            queue.unqueue(item)
            skips = item.skips + 1
            by = skipper(item, claim_id, labeller)
            if skips >= max_skips:
                item = queue.finish(
                    dataclasses.replace(
                        item,
                        state=QueueState.SKIPPED,
                        skips=skips,
                        lease_expires_at=None,
                        finished_at=now,
                        skipped_by=by,
                    )
                )
            else:
                item = dataclasses.replace(
                    item,
                    state=QueueState.QUEUED,
                    skips=skips,
                    lease_expires_at=None,
                    skipped_by=by,
                )
                queue.enqueue(item)
            queue.counters["skipped"] += 1
            return ClaimOutcome("ok", item)

    def release(self, model: str, item_id: str, claim_id: str, now: float) -> ClaimOutcome:
        with self._lock:
            queue, item = self._lookup(model, item_id)
            if queue is None or item is None:
                return ClaimOutcome("unknown")
            refused = claim_verdict(item, claim_id, now)
            if refused is not None:
                return ClaimOutcome(refused, item)
            if item.state is QueueState.CLAIMED:
                queue.unqueue(item)
                item = dataclasses.replace(item, state=QueueState.QUEUED, lease_expires_at=None)
                queue.enqueue(item)
                queue.counters["released"] += 1
            return ClaimOutcome("ok", item)

    def release_expired(self, model: str, now: float) -> int:
        with self._lock:
            queue = self._queues.get(model)
            return 0 if queue is None else queue.release_expired(now)

    def get(self, model: str, item_id: str) -> QueueItem | None:
        with self._lock:
            return self._lookup(model, item_id)[1]

    def stats(self, model: str) -> QueueStats:
        with self._lock:
            queue = self._queues.get(model)
            if queue is None:
                return QueueStats()
            return QueueStats(depth=len(queue.order), claimed=len(queue.claimed), **queue.counters)

    def oldest_waiting(self, model: str) -> float | None:
        # A scan: in memory, a queue of the default 10 000 items takes about a millisecond.
        with self._lock:
            queue = self._queues.get(model)
            if queue is None:
                return None
            ages = [r[1] for r in queue.order]
            ages.extend(queue.items[i].enqueued_at for i in queue.claimed)
            return min(ages, default=None)

    def purge_finished(self, model: str, before: float) -> int:
        with self._lock:
            queue = self._queues.get(model)
            if queue is None:
                return 0
            gone = [
                item
                for item in queue.items.values()
                if item.state in FINISHED_STATES
                and item.finished_at is not None
                and item.finished_at < before
            ]
            for item in gone:
                del queue.items[item.item_id]
                if (
                    item.dedupe_key is not None
                    and queue.dedupe.get(item.dedupe_key) == item.item_id
                ):
                    del queue.dedupe[item.dedupe_key]
            return len(gone)
