"""The ``memory://`` backend: every port in plain Python structures, behind one lock per port.

Shipped for tests and throw-away runs; nothing survives the process and no other process sees
it. It is on the in-process hot path (predict + learn), so records are kept as given, without
copying or serialising: records are frozen and their mappings must not be mutated after they are
handed over.

>>> from onlearn.records import Event, EventKind
>>> store = open_memory_store("memory://")
>>> store.log.append("m", [Event(EventKind.LABEL, {"label": 1}, at=0.0)])
[1]
>>> store.log.read("m", after=0)[0].seq
1
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import re
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from onlearn.errors import ConfigError
from onlearn.records import (
    Event,
    Job,
    JobState,
    PredictionRecord,
    QueueItem,
    QueueState,
    Snapshot,
    VersionInfo,
)
from onlearn.store.base import (
    AppendResult,
    ClaimOutcome,
    PushOutcome,
    QueueStats,
    RolesState,
    Store,
)
from onlearn.store.codec import decode_document, encode_document
from onlearn.store.leases import (
    FINISHED_STATES,
    cancellable,
    check_canary_share,
    check_job,
    check_priority,
    check_pushable,
    claim_verdict,
    job_order,
    new_claim_id,
    rank,
    reclaim_error,
)

__all__ = [
    "MemoryEventLog",
    "MemoryJobQueue",
    "MemoryLabelQueue",
    "MemoryPredictionStore",
    "MemoryRegistry",
    "open_memory_store",
]


def _with_seq(event: Event, seq: int) -> Event:
    """``dataclasses.replace(event, seq=seq)``, about four times cheaper.

    A frozen dataclass's ``__init__`` pays one ``object.__setattr__`` per field (about 3 us per
    event here); filling the ``__dict__`` of a bare instance builds the same record, equal and
    still frozen to its users. This is the in-process hot path of every label.
    """
    if _EVENT_HAS_DICT:
        new = object.__new__(Event)
        fields = new.__dict__
        fields.update(event.__dict__)
        fields["seq"] = seq
        return new
    return Event(event.kind, event.payload, event.at, seq, event.key)


# False if Event ever becomes a slotted dataclass; the constructor is then used.
_EVENT_HAS_DICT = not hasattr(Event, "__slots__")


class _ModelLog:
    """One model's log. ``events[i].seq == base + i + 1``; ``base`` counts trimmed events."""

    __slots__ = ("base", "events", "keys")

    def __init__(self) -> None:
        self.base = 0
        self.events: list[Event] = []
        self.keys: dict[str, int] = {}


class MemoryEventLog:
    def __init__(self) -> None:
        # Also the registry's lock (see MemoryRegistry): change_roles appends a control event and
        # changes roles under it, so no reader sees one without the other.
        self._lock = threading.Lock()
        self._logs: dict[str, _ModelLog] = {}

    def append(self, model: str, events: Sequence[Event]) -> AppendResult:
        with self._lock:
            return self._append_locked(model, events)

    def _append_locked(self, model: str, events: Sequence[Event]) -> AppendResult:
        """``append`` for a caller that holds ``self._lock`` (append itself, change_roles)."""
        seqs = AppendResult()
        new = seqs.new
        log = self._logs.get(model)
        if log is None:
            log = self._logs[model] = _ModelLog()
        stored, keys = log.events, log.keys
        for event in events:
            key = event.key
            if key is not None:
                seq = keys.get(key)
                if seq is not None:
                    seqs.append(seq)
                    new.append(False)
                    continue
            seq = log.base + len(stored) + 1
            stored.append(_with_seq(event, seq))
            if key is not None:
                keys[key] = seq
            seqs.append(seq)
            new.append(True)
        return seqs

    def _seq_of_key(self, model: str, key: str) -> int | None:
        """The seq of the event with ``key``, for a caller that holds ``self._lock``."""
        log = self._logs.get(model)
        return None if log is None else log.keys.get(key)

    def read(self, model: str, after: int, limit: int = 1000) -> list[Event]:
        with self._lock:
            log = self._logs.get(model)
            if log is None or limit <= 0:
                return []
            start = max(after - log.base, 0)
            return log.events[start : start + limit]

    def head(self, model: str) -> int:
        with self._lock:
            log = self._logs.get(model)
            return 0 if log is None else log.base + len(log.events)

    def trim(self, model: str, upto: int) -> int:
        with self._lock:
            log = self._logs.get(model)
            if log is None:
                return 0
            count = min(upto - log.base, len(log.events))
            if count <= 0:
                return 0
            # A trimmed event's key is forgotten with it, as in the SQLite backend where the
            # key lives in the event's row.
            for event in log.events[:count]:
                if event.key is not None:
                    log.keys.pop(event.key, None)
            del log.events[:count]
            log.base += count
            return count


class MemoryPredictionStore:
    """Records by id, and per model the ids of its records in sorted order (for ``scan``).

    Ids usually arrive in increasing order (they start with their creation time), so indexing a
    record is an append; one out of order is inserted with bisect.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, PredictionRecord] = {}
        self._ids: dict[str, list[str]] = {}  # model -> sorted ids of its records

    def put_many(self, records: Sequence[PredictionRecord]) -> None:
        with self._lock:
            stored, index = self._records, self._ids
            for record in records:
                rid, model = record.id, record.model
                old = stored.get(rid)
                stored[rid] = record
                if old is not None:
                    if old.model == model:
                        continue  # indexed already
                    moved = index[old.model]  # put again under another model
                    del moved[bisect.bisect_left(moved, rid)]
                ids = index.get(model)
                if ids is None:
                    index[model] = [rid]
                elif ids[-1] < rid:
                    ids.append(rid)
                else:
                    bisect.insort(ids, rid)

    def get(self, prediction_id: str) -> PredictionRecord | None:
        record = self._records.get(prediction_id)  # a single dict read is atomic in CPython
        if record is None or record.expires_at <= time.time():
            return None
        return record

    def purge_expired(self, now: float) -> int:
        with self._lock:
            expired = [r for r in self._records.values() if r.expires_at <= now]
            if not expired:
                return 0
            for record in expired:
                del self._records[record.id]
            gone = {r.id for r in expired}
            for model in {r.model for r in expired}:
                ids = [rid for rid in self._ids[model] if rid not in gone]
                if ids:
                    self._ids[model] = ids
                else:
                    del self._ids[model]
            return len(expired)

    def scan(
        self, model: str, after: str | None, limit: int = 1000, upto: str | None = None
    ) -> list[PredictionRecord]:
        now = time.time()
        found: list[PredictionRecord] = []
        with self._lock:
            ids = self._ids.get(model)
            if not ids or limit <= 0:
                return found
            start = 0 if after is None else bisect.bisect_right(ids, after)
            stop = None if upto is None else bisect.bisect_right(ids, upto)
            for rid in itertools.islice(ids, start, stop):
                record = self._records[rid]
                if record.expires_at > now:  # expired but not purged yet: invisible
                    found.append(record)
                    if len(found) == limit:
                        break
        return found


_VERSION_NAME = re.compile(r"v([1-9][0-9]*)")


class MemoryRegistry:
    """Versions, roles and snapshots in dicts.

    ``log`` is the store's event log (:func:`open_memory_store` passes it), where
    ``change_roles`` appends its control events; without one the registry keeps a log of its own.
    The registry shares that log's lock, so that ``change_roles`` appends its event and changes
    the roles in one step that no reader of either can split. Registry calls are rare and short,
    so sharing the log's lock costs the label path nothing noticeable.
    """

    def __init__(self, log: MemoryEventLog | None = None) -> None:
        self._log = log if log is not None else MemoryEventLog()
        self._lock = self._log._lock
        self._versions: dict[str, list[VersionInfo]] = {}
        # key -> version number: the number, not the info, so that a key finds the version as
        # it is now (set_spec_signature replaces the info).
        self._version_keys: dict[str, dict[str, int]] = {}
        self._roles: dict[str, dict[str, str]] = {}
        self._state: dict[str, tuple[float, int]] = {}  # model -> (canary_share, seq)
        self._history: dict[str, list[dict]] = {}
        self._snapshots: dict[tuple[str, str], dict[int, Snapshot]] = {}
        # JSON text, as the other backends keep it: what comes back is a copy that neither the
        # caller's later changes nor the reader's reach, with the same types as elsewhere.
        self._documents: dict[tuple[str, str], str] = {}

    def create_version(
        self,
        model: str,
        spec: dict,
        meta: dict,
        at: float,
        key: str | None = None,
        *,
        spec_signature: str | None = None,
    ) -> VersionInfo:
        with self._lock:
            keyed = self._version_keys.setdefault(model, {})
            versions = self._versions.setdefault(model, [])
            if key is not None and key in keyed:
                return versions[keyed[key] - 1]
            info = VersionInfo(
                model, f"v{len(versions) + 1}", at, dict(spec), dict(meta), spec_signature
            )
            versions.append(info)
            if key is not None:
                keyed[key] = len(versions)
            return info

    def set_spec_signature(self, model: str, version: str, signature: str) -> VersionInfo | None:
        with self._lock:
            info = self._get_locked(model, version)
            if info is None:
                return None
            info = dataclasses.replace(info, spec_signature=signature)
            self._versions[model][int(version[1:]) - 1] = info
            return info

    def _get_locked(self, model: str, version: str) -> VersionInfo | None:
        match = _VERSION_NAME.fullmatch(version)
        if match is None:
            return None
        versions = self._versions.get(model, [])
        number = int(match.group(1))
        return versions[number - 1] if number <= len(versions) else None

    def get_version(self, model: str, version: str) -> VersionInfo | None:
        with self._lock:
            return self._get_locked(model, version)

    def list_versions(self, model: str) -> list[VersionInfo]:
        with self._lock:
            return list(self._versions.get(model, []))

    def roles(self, model: str) -> dict[str, str]:
        with self._lock:
            return dict(self._roles.get(model, {}))

    def roles_state(self, model: str) -> RolesState:
        with self._lock:
            share, seq = self._state.get(model, (0.0, 0))
            return RolesState(dict(self._roles.get(model, {})), share, seq)

    def _apply_locked(
        self,
        model: str,
        changes: Mapping[str, str | None],
        *,
        actor: str,
        reason: str,
        at: float,
        seq: int | None,
        always_audit: bool,
    ) -> None:
        roles = self._roles.setdefault(model, {})
        history = self._history.setdefault(model, [])
        for role, version in changes.items():
            previous = roles.get(role)
            if previous == version and not always_audit:
                continue
            if version is None:
                roles.pop(role, None)
            else:
                roles[role] = version
            history.append(
                {
                    "role": role,
                    "version": version,
                    "previous": previous,
                    "actor": actor,
                    "reason": reason,
                    "at": at,
                    "seq": seq,
                }
            )

    def set_role(
        self, model: str, role: str, version: str | None, *, actor: str, reason: str, at: float
    ) -> None:
        with self._lock:
            if version is not None and self._get_locked(model, version) is None:
                raise LookupError(f"model {model!r} has no version {version!r}")
            self._apply_locked(
                model,
                {role: version},
                actor=actor,
                reason=reason,
                at=at,
                seq=None,
                always_audit=True,
            )

    def change_roles(
        self,
        model: str,
        changes: Mapping[str, str | None],
        event: Event,
        *,
        actor: str,
        reason: str,
        at: float,
        canary_share: float | None = None,
    ) -> int:
        check_canary_share(canary_share)
        changes = dict(changes)
        with self._lock:
            if event.key is not None:
                known = self._log._seq_of_key(model, event.key)
                if known is not None:
                    return known  # a retried change: it happened once already
            for version in changes.values():
                if version is not None and self._get_locked(model, version) is None:
                    raise LookupError(f"model {model!r} has no version {version!r}")
            (seq,) = self._log._append_locked(model, [event])
            self._apply_locked(
                model, changes, actor=actor, reason=reason, at=at, seq=seq, always_audit=False
            )
            share = self._state.get(model, (0.0, 0))[0] if canary_share is None else canary_share
            self._state[model] = (float(share), seq)
            return seq

    def role_history(self, model: str) -> list[dict]:
        with self._lock:
            return [dict(row) for row in self._history.get(model, [])]

    def put_snapshot(self, snapshot: Snapshot) -> None:
        with self._lock:
            key = (snapshot.model, snapshot.version)
            self._snapshots.setdefault(key, {})[snapshot.seq] = snapshot

    def prune_snapshots(self, model: str, version: str, keep: int) -> int:
        with self._lock:
            snapshots = self._snapshots.get((model, version), {})
            old = sorted(snapshots)[: max(0, len(snapshots) - max(keep, 0))]
            for seq in old:
                del snapshots[seq]
            return len(old)

    def put_document(self, model: str, name: str, document: Mapping[str, Any]) -> None:
        text = encode_document(document)
        with self._lock:
            self._documents[(model, name)] = text

    def get_document(self, model: str, name: str) -> dict | None:
        with self._lock:
            text = self._documents.get((model, name))
        return None if text is None else decode_document(text)

    def latest_snapshot(
        self, model: str, version: str, max_seq: int | None = None
    ) -> Snapshot | None:
        with self._lock:
            snapshots = self._snapshots.get((model, version), {})
            seqs = [s for s in snapshots if max_seq is None or s <= max_seq]
            return snapshots[max(seqs)] if seqs else None

    def latest_snapshot_seq(self, model: str, version: str) -> int:
        with self._lock:
            return max(self._snapshots.get((model, version), {}), default=0)


_QUEUE_COUNTERS = ("labelled", "skipped", "expired", "evicted", "rejected", "duplicates", "pushed")


class _ModelQueue:
    """One model's labelling queue.

    ``order`` holds the ranks (:func:`~onlearn.store.leases.rank`) of the queued items, sorted,
    so that the best item is ``order[0]`` and the one a full queue evicts is ``order[-1]``.
    ``dedupe`` maps each dedupe key to its item, for items in any state but evicted. Counters
    are kept apart from the items so that purge_finished does not reset them.
    """

    __slots__ = ("claimed", "counters", "dedupe", "items", "order")

    def __init__(self) -> None:
        self.items: dict[str, QueueItem] = {}
        self.order: list[tuple[float, float, str]] = []
        self.claimed: set[str] = set()
        self.dedupe: dict[str, str] = {}
        self.counters = dict.fromkeys(_QUEUE_COUNTERS, 0)

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

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, _ModelQueue] = {}

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
                queue.items[victim.item_id] = dataclasses.replace(
                    victim, state=QueueState.EVICTED, finished_at=item.enqueued_at
                )
                if victim.dedupe_key is not None:
                    del queue.dedupe[victim.dedupe_key]
                queue.counters["evicted"] += 1
                evicted = victim.item_id
            queue.enqueue(item)
            if item.dedupe_key is not None:
                queue.dedupe[item.dedupe_key] = item.item_id
            queue.counters["pushed"] += 1
            return PushOutcome("queued", item.item_id, evicted)

    def peek(self, model: str, limit: int) -> list[QueueItem]:
        with self._lock:
            queue = self._queues.get(model)
            if queue is None or limit <= 0:
                return []
            return [queue.items[key[2]] for key in queue.order[:limit]]

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
            if item_ids is None:
                taken = [item_id for _, _, item_id in queue.order[:limit]]
                del queue.order[:limit]
            else:
                taken = []
                for item_id in dict.fromkeys(item_ids):
                    item = queue.items.get(item_id)
                    if item is not None and item.state is QueueState.QUEUED:
                        queue.unqueue(item)
                        taken.append(item_id)
                        if len(taken) == limit:
                            break
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
            refused = claim_verdict(item, claim_id)
            if refused is not None:
                return ClaimOutcome(refused, item)
            queue.unqueue(item)
            done = queue.items[item_id] = dataclasses.replace(
                item,
                state=QueueState.DONE,
                result=dict(result),
                finished_at=now,
                lease_expires_at=None,
            )
            queue.counters["labelled"] += 1
            return ClaimOutcome("ok", done)

    def skip(
        self, model: str, item_id: str, claim_id: str | None, now: float, *, max_skips: int
    ) -> ClaimOutcome:
        with self._lock:
            queue, item = self._lookup(model, item_id)
            if queue is None or item is None:
                return ClaimOutcome("unknown")
            refused = claim_verdict(item, claim_id)
            if refused is not None:
                return ClaimOutcome(refused, item)
            queue.unqueue(item)
            skips = item.skips + 1
            if skips >= max_skips:
                item = queue.items[item_id] = dataclasses.replace(
                    item,
                    state=QueueState.SKIPPED,
                    skips=skips,
                    lease_expires_at=None,
                    finished_at=now,
                )
            else:
                item = dataclasses.replace(
                    item, state=QueueState.QUEUED, skips=skips, lease_expires_at=None
                )
                queue.enqueue(item)
            queue.counters["skipped"] += 1
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


class MemoryJobQueue:
    """Jobs in a dict; claim scans them in created_at order (a worker's queue is short)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._keys: dict[str, str] = {}

    def enqueue(self, job: Job) -> Job:
        check_job(job)
        with self._lock:
            existing = self._jobs.get(job.job_id)
            if existing is None and job.key is not None and job.key in self._keys:
                existing = self._jobs[self._keys[job.key]]
            if existing is not None:
                return existing
            self._jobs[job.job_id] = job
            if job.key is not None:
                self._keys[job.key] = job.job_id
            return job

    def claim(
        self, worker: str, *, lease_s: float, now: float, kinds: Sequence[str] | None = None
    ) -> Job | None:
        with self._lock:
            runnable = [
                job
                for job in self._jobs.values()
                if (kinds is None or job.kind in kinds)
                and (
                    (job.state is JobState.QUEUED and job.run_after <= now)
                    or (
                        job.state is JobState.RUNNING
                        and job.lease_expires_at is not None
                        and job.lease_expires_at <= now
                    )
                )
            ]
            for job in sorted(runnable, key=job_order):
                if job.state is JobState.RUNNING and job.attempts >= job.max_attempts:
                    # Its worker died on the last allowed attempt: a job that kills its worker
                    # must not be handed out forever.
                    self._jobs[job.job_id] = dataclasses.replace(
                        job,
                        state=JobState.FAILED,
                        error=reclaim_error(job),
                        lease_expires_at=None,
                        updated_at=now,
                    )
                    continue
                job = self._jobs[job.job_id] = dataclasses.replace(
                    job,
                    state=JobState.RUNNING,
                    attempts=job.attempts + 1,
                    worker=worker,
                    lease_expires_at=now + lease_s,
                    updated_at=now,
                )
                return job
            return None

    def _held(self, job_id: str, worker: str) -> Job | None:
        job = self._jobs.get(job_id)
        if job is None or job.state is not JobState.RUNNING or job.worker != worker:
            return None
        return job

    def heartbeat(self, job_id: str, worker: str, *, lease_s: float, now: float) -> bool:
        with self._lock:
            job = self._held(job_id, worker)
            if job is None:
                return False
            self._jobs[job_id] = dataclasses.replace(
                job, lease_expires_at=now + lease_s, updated_at=now
            )
            return True

    def complete(self, job_id: str, worker: str, result: dict, now: float) -> Job | None:
        with self._lock:
            done = self._jobs.get(job_id)
            if done is not None and done.state is JobState.DONE:
                return done
            job = self._held(job_id, worker)
            if job is None:
                return None
            job = self._jobs[job_id] = dataclasses.replace(
                job, state=JobState.DONE, result=dict(result), lease_expires_at=None, updated_at=now
            )
            return job

    def fail(
        self, job_id: str, worker: str, error: str, now: float, *, retry_in: float | None
    ) -> Job | None:
        with self._lock:
            job = self._held(job_id, worker)
            if job is None:
                return None
            if retry_in is None or job.attempts >= job.max_attempts:
                job = dataclasses.replace(job, state=JobState.FAILED)
            else:
                job = dataclasses.replace(job, state=JobState.QUEUED, run_after=now + retry_in)
            job = self._jobs[job_id] = dataclasses.replace(
                job, error=error, lease_expires_at=None, updated_at=now
            )
            return job

    def cancel(self, job_id: str, now: float, *, reason: str) -> Job | None:
        # Under the queue's lock, like commit: a commit cannot land between reading
        # ``committed`` here and writing CANCELLED, so no job ends both cancelled and committed.
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or not cancellable(job):
                return job
            job = self._jobs[job_id] = dataclasses.replace(
                job, state=JobState.CANCELLED, error=reason, lease_expires_at=None, updated_at=now
            )
            return job

    def commit(self, job_id: str, worker: str, now: float) -> Job | None:
        with self._lock:
            job = self._held(job_id, worker)
            if job is None or job.committed:
                return job
            job = self._jobs[job_id] = dataclasses.replace(job, committed=True, updated_at=now)
            return job

    def release(self, job_id: str, worker: str, now: float) -> Job | None:
        with self._lock:
            job = self._held(job_id, worker)
            if job is None:
                return None
            job = self._jobs[job_id] = dataclasses.replace(
                job,
                state=JobState.QUEUED,
                run_after=now,
                attempts=max(job.attempts - 1, 0),
                worker=None,
                lease_expires_at=None,
                updated_at=now,
            )
            return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def list(self, model: str | None = None, limit: int = 100) -> list[Job]:
        if limit <= 0:
            return []
        with self._lock:
            jobs = [j for j in self._jobs.values() if model is None or j.model == model]
        jobs.sort(key=job_order, reverse=True)
        return jobs[:limit]


def open_memory_store(url: str = "memory://") -> Store:
    """Open a fresh, empty in-process store. Each call gives a new, independent store."""
    if url not in ("memory://", "memory:"):
        raise ConfigError(f"store URL {url!r}: the memory backend takes no path; use memory://")
    log = MemoryEventLog()
    return Store(
        url=url,
        log=log,
        predictions=MemoryPredictionStore(),
        registry=MemoryRegistry(log),
        queue=MemoryLabelQueue(),
        jobs=MemoryJobQueue(),
    )
