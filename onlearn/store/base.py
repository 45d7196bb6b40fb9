"""Storage ports: the small Protocols the core talks to. Backends live next to this module.

Every backend passes the same contract checks (``onlearn.store.checks``). Only modules in
``onlearn/store/`` open SQLite or Redis. Stores are opened with ``onlearn.store.open_store``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, runtime_checkable

from onlearn.errors import StoreUnavailable
from onlearn.records import (
    Event,
    Job,
    PredictionRecord,
    QueueItem,
    Snapshot,
    VersionInfo,
)
from onlearn.store.capabilities import Capabilities
from onlearn.store.generation import Generation

# The lease rule of every backend, for the core to tell a label sure to be refused before it
# builds its event (the store's atomic call still decides).
from onlearn.store.leases import claim_verdict
from onlearn.store.schemes import capabilities_of

__all__ = [
    "AppendResult",
    "Capabilities",
    "ClaimOutcome",
    "EventLog",
    "JobQueue",
    "LabelOutcome",
    "LabelQueue",
    "PredictionStore",
    "PushOutcome",
    "QueueStats",
    "Registry",
    "RolesState",
    "Store",
    "StoreUnavailable",
    "claim_verdict",
]


class AppendResult(list):
    """The seqs an ``append`` gave, one per event, and ``new``: whether each event was appended
    (False for a duplicate key, whose seq is the existing event's). A list, so it compares and
    unpacks as the plain seqs.

    >>> r = AppendResult([5, 3], new=[True, False])
    >>> r == [5, 3], r.new
    (True, [True, False])
    """

    def __init__(self, seqs=(), new=None):
        super().__init__(seqs)
        self.new = list(new) if new is not None else [True] * len(self)


@runtime_checkable
class EventLog(Protocol):
    """The append-only, ordered log of each model. Seqs start at 1 and have no gaps."""

    def append(self, model: str, events: Sequence[Event]) -> AppendResult:
        """Append durably and return one seq per event, in order.

        An event whose ``key`` is already in the model's log (or earlier in the same call) is not
        appended again: its seq is the existing one and its ``new`` flag False. Returns only once
        the events are durable.
        """
        ...

    def read(self, model: str, after: int, limit: int = 1000) -> list[Event]:
        """Events with ``seq > after``, in seq order, at most ``limit``."""
        ...

    def by_keys(self, model: str, keys: Sequence[str]) -> dict[str, Event]:
        """The events of the model's log that have these keys, by key (with their seqs); keys
        of no event (never appended, or trimmed) are left out. One query or round trip of
        lookups whatever the number of keys: how a label is compared with the one recorded
        for its prediction, and a correction finds what it corrects."""
        ...

    def head(self, model: str) -> int:
        """The highest seq of the model's log, 0 when empty."""
        ...

    def heads(self, models: Sequence[str]) -> dict[str, int]:
        """``head`` of each of ``models`` in one round trip (one query, one command): what a
        process checks for all its models at once, whatever their number."""
        ...

    def follow(
        self, positions: Mapping[str, int], *, block_s: float = 0.0, limit: int = 1000
    ) -> dict[str, list[Event]]:
        """The events after ``positions[model]`` (at most ``limit`` per model), for the models
        that have some; the others are left out. One query or command for all the models, so a
        process follows a thousand logs at the cost of one.

        When none has events, a backend that can block (``follow_blocks``) waits up to
        ``block_s`` for the first; the others answer at once and the caller polls.
        """
        ...

    def trim(self, model: str, upto: int) -> int:
        """Forget events with ``seq <= upto`` (covered by a snapshot); return how many."""
        ...


@runtime_checkable
class PredictionStore(Protocol):
    """Prediction records, kept until their ``expires_at`` so that late labels can be joined."""

    def put_many(self, records: Sequence[PredictionRecord]) -> None: ...

    def get(self, prediction_id: str) -> PredictionRecord | None:
        """The record, or None when unknown or expired."""
        ...

    def purge_expired(self, now: float) -> int:
        """Delete records whose ``expires_at <= now``; return how many."""
        ...

    def models_after(self, cursors: Mapping[str, str | None], upto: str) -> set[str]:
        """Which models of ``cursors`` have a record with ``cursors[model] < id <= upto`` (None:
        any id up to ``upto``), in one statement or round trip: the monitor's look at a
        thousand models between two of its rounds, an index probe per model."""
        ...

    def scan(
        self, model: str, after: str | None, limit: int = 1000, upto: str | None = None
    ) -> list[PredictionRecord]:
        """Unexpired records of ``model`` whose id is greater than ``after`` (all when None) and
        not greater than ``upto`` (no bound when None), in id order (ids start with their time,
        so this is time order), at most ``limit``: how the monitor reads the traffic, with the
        last id it saw as its cursor and the present it trusts as its bound."""
        ...


@runtime_checkable
class Registry(Protocol):
    """Versions of each model, the roles they play, and snapshots of their learned state."""

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
        """Register the next version (``v1``, ``v2``, ...) of ``model``, with the signature of
        its spec (kept as given: the core computes and checks it, the store never does).

        With ``key``, a version registered before under the same key (for the same model) is
        returned instead of a new one, as stored (its spec, meta and signature, not the ones
        given): a retried job registers its version once."""
        ...

    def set_spec_signature(self, model: str, version: str, signature: str) -> VersionInfo | None:
        """Set (or replace) the spec signature of an existing version and return the version;
        its spec and meta stay as they are. None for an unknown model or version (nothing is
        written). How specs stored without a signature (by an earlier onlearn) get one."""
        ...

    def get_version(self, model: str, version: str) -> VersionInfo | None: ...

    def list_versions(self, model: str) -> list[VersionInfo]:
        """All versions of ``model``, oldest first."""
        ...

    def roles(self, model: str) -> dict[str, str]:
        """Role name -> version, e.g. ``{"champion": "v2"}``."""
        ...

    def set_role(
        self, model: str, role: str, version: str | None, *, actor: str, reason: str, at: float
    ) -> None:
        """Give ``role`` to ``version`` (None removes the role) and record it in the audit history."""
        ...

    def role_history(self, model: str) -> list[dict]:
        """Audit history of role changes, oldest first: role, version, previous, actor, reason, at,
        and seq (the control event's seq; None for ``set_role``)."""
        ...

    def roles_state(self, model: str) -> RolesState:
        """Roles, the canary's share, and the seq of the last ``change_roles``, read together."""
        ...

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
        """Append the control ``event`` to the model's log and apply ``changes`` (role -> version;
        None removes the role) and ``canary_share`` (when given), atomically, with one audit row
        per role that changed, carrying the event's seq. Return the seq.

        Every follower of the log switches roles at that seq, so the log and the roles must never
        disagree: both change, or neither does. When the event's key is already in the log,
        nothing changes and the existing seq is returned (a retried promotion happens once).
        A version that does not exist raises LookupError and changes nothing."""
        ...

    def put_snapshot(self, snapshot: Snapshot) -> None: ...

    def prune_snapshots(self, model: str, version: str, keep: int) -> int:
        """Delete all but the ``keep`` newest snapshots of ``version``; return how many went."""
        ...

    def put_document(self, model: str, name: str, document: Mapping[str, Any]) -> None:
        """Store a small JSON document under ``name`` for ``model``, replacing any before
        (reference profiles, the monitor's reports)."""
        ...

    def get_document(self, model: str, name: str) -> dict | None: ...

    def latest_snapshot(
        self, model: str, version: str, max_seq: int | None = None
    ) -> Snapshot | None:
        """The snapshot of ``version`` with the highest seq (not above ``max_seq`` when given)."""
        ...

    def latest_snapshot_seq(self, model: str, version: str) -> int:
        """The seq of ``version``'s newest snapshot (0: none), without reading its artifact."""
        ...

    def latest_snapshot_at(self, model: str, version: str) -> float | None:
        """When ``version``'s newest snapshot (the highest seq) was written, None when it has
        none, without reading its artifact (``onlearn_snapshot_age_seconds``, every scrape)."""
        ...


@dataclass(frozen=True)
class RolesState:
    roles: dict[str, str] = field(default_factory=dict)  # role -> version
    canary_share: float = 0.0  # share of requests the canary answers
    seq: int = 0  # seq of the control event of the last change_roles (0: none)


@dataclass(frozen=True)
class PushOutcome:
    """``status``: ``"queued"``, ``"duplicate"`` (an item with that dedupe key exists) or
    ``"rejected"`` (queue full and the item ranks below every queued one). ``evicted``: the item
    pushed out to make room, if any."""

    status: str
    item_id: str | None = None
    evicted: str | None = None


@dataclass(frozen=True)
class ClaimOutcome:
    """The answer to complete/skip of a claimed item.

    ``status``: ``"ok"``; ``"already_done"`` (labelled before: ``item.result`` is what that
    produced); ``"conflict"`` (the lease expired and another claim holds the item now);
    ``"unknown"`` (no such item); ``"gone"`` (skipped out or evicted).
    """

    status: str
    item: QueueItem | None = None


@dataclass(frozen=True)
class LabelOutcome:
    """The answer to ``LabelQueue.label``: ``status`` and ``item`` as in :class:`ClaimOutcome`;
    with ``"ok"``, ``seqs`` holds the seq of each event given, and ``seqs.new`` whether it was
    appended (False: an event with its key was in the log already, and its seq is that
    event's). Nothing was appended unless the status is ``"ok"``."""

    status: str
    item: QueueItem | None = None
    seqs: AppendResult | None = None


@dataclass(frozen=True)
class QueueStats:
    depth: int = 0  # queued now
    claimed: int = 0  # leased now
    labelled: int = 0  # done, ever
    skipped: int = 0  # skip calls, ever
    released: int = 0  # claims given back without a label (release), ever
    expired: int = 0  # leases that ran out, ever
    evicted: int = 0  # pushed out by higher priorities, ever
    rejected: int = 0  # refused because the queue was full, ever
    duplicates: int = 0  # refused by dedupe, ever
    pushed: int = 0  # queued, ever
    answered_elsewhere: int = 0  # closed because their prediction got a label by feedback, ever


# The counters each backend keeps per model, apart from the items (depth and claimed are
# counted from the items): one list, in QueueStats' order, for every backend.
QUEUE_COUNTERS = tuple(f.name for f in fields(QueueStats) if f.name not in ("depth", "claimed"))


@runtime_checkable
class LabelQueue(Protocol):
    """Predictions waiting for human labels, per model: priorities, leases, dedupe, a bound."""

    def push(self, item: QueueItem, *, max_size: int) -> PushOutcome:
        """Queue ``item`` unless an item with its id exists (in any state: a retried push is
        harmless) or an item with its ``dedupe_key`` is still waiting (queued or claimed): once
        that one is done, skipped out or evicted, the same input can be asked again. When
        ``max_size`` items are queued, the lowest-priority queued item is evicted if ``item``
        ranks above it; otherwise ``item`` is rejected."""
        ...

    def peek(self, model: str, limit: int, *, passing_over: str | None = None) -> list[QueueItem]:
        """The ``limit`` queued items of highest priority (ties: oldest first), not claimed;
        with ``passing_over``, without the items that labeller skipped last."""
        ...

    def reprioritize(self, model: str, priorities: dict[str, float]) -> None:
        """Set new priorities of queued items (others are left alone)."""
        ...

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
        """Atomically lease up to ``limit`` items of highest priority to ``labeller``.

        With ``item_ids``, lease those of them that are queued, in that order (the caller ranked
        them), up to ``limit``. Expired leases are released first. Each claimed item gets a new
        ``claim_id``, ``attempts + 1`` and ``lease_expires_at = now + lease_s``. Items the
        ``labeller`` skipped last are passed over (:func:`~onlearn.store.leases.passes_over`).
        Two concurrent claims never get the same item."""
        ...

    def complete(
        self, model: str, item_id: str, claim_id: str | None, result: dict, now: float
    ) -> ClaimOutcome:
        """Mark the item labelled, keeping ``result``, when
        :func:`~onlearn.store.leases.claim_verdict` accepts ``claim_id`` at ``now``. Labelling
        a done item answers ``already_done`` with the first result, whoever asks."""
        ...

    def label(
        self,
        model: str,
        item_id: str,
        claim_id: str | None,
        events: Sequence[Event],
        result: dict,
        now: float,
    ) -> LabelOutcome:
        """In one atomic step: check the lease as ``complete`` does; if accepted, append
        ``events`` to the model's log (deduped by key, exactly as ``EventLog.append``) and mark
        the item done with ``result`` plus ``"seq"``, the highest seq of the events. Refused,
        nothing is appended: a label refused here was not used, and a label appended here
        cannot lose its item to another claim."""
        ...

    def close_answered(self, model: str, results: Mapping[str, dict], now: float) -> int:
        """Close the items of ``results`` (item id -> what their label produced) that are queued
        or claimed: DONE with that result, counted as ``answered_elsewhere``; others (unknown,
        done, skipped, evicted) are left as they are. Return how many were closed. Atomic per
        item against claim, complete and skip: a closed item is never claimed again."""
        ...

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
        """Give the item back to the queue (``skips + 1``); after ``max_skips`` it is SKIPPED.
        The skipper (:func:`~onlearn.store.leases.skipper`) is kept as ``skipped_by``."""
        ...

    def release(self, model: str, item_id: str, claim_id: str, now: float) -> ClaimOutcome:
        """Give a claim back without a label: the item is queued again, no skip counted. The
        same verdicts as ``complete``; releasing a queued item with its last claim id is
        accepted and changes nothing."""
        ...

    def release_expired(self, model: str, now: float) -> int:
        """Put claimed items whose lease ran out back in the queue; return how many."""
        ...

    def get(self, model: str, item_id: str) -> QueueItem | None: ...

    def stats(self, model: str) -> QueueStats: ...

    def oldest_waiting(self, model: str) -> float | None:
        """The ``enqueued_at`` of the oldest item still waiting for a label (queued or claimed),
        None when none waits: how far labelling lags behind (``onlearn_queue_oldest_age_seconds``).
        Read at every scrape, so a shared backend answers from an index (SQLite) or one sorted
        set (Redis), never by reading the items."""
        ...

    def purge_finished(self, model: str, before: float) -> int:
        """Forget done, skipped and evicted items finished before ``before``."""
        ...


@runtime_checkable
class JobQueue(Protocol):
    """Work for the training worker: idempotent enqueue, leases, retries with back-off,
    cancellation.

    A job's life: QUEUED -> (claim) RUNNING -> DONE, or back to QUEUED (a failed attempt with
    retries left, a release), or FAILED; QUEUED or RUNNING -> CANCELLED until the worker
    ``commit``s (starts writing the job's effects). "``worker`` holds the job" means the job is
    RUNNING with that worker, even if its lease ran out, as long as nobody reclaimed it. Every
    call that changes a job is atomic against every other (claim, cancel, commit, complete,
    fail, release, heartbeat), across threads and processes.
    """

    def enqueue(self, job: Job) -> Job:
        """Store ``job``; when a job with the same ``key`` exists, return that one instead."""
        ...

    def claim(
        self, worker: str, *, lease_s: float, now: float, kinds: Sequence[str] | None = None
    ) -> Job | None:
        """Lease the oldest runnable job (queued with ``run_after <= now``, or running with an
        expired lease, which a dead worker left) to ``worker``: RUNNING, ``attempts + 1``.
        A reclaimed job keeps ``committed``. Cancelled, done and failed jobs are never claimed."""
        ...

    def heartbeat(self, job_id: str, worker: str, *, lease_s: float, now: float) -> bool:
        """Extend the lease; False when ``worker`` no longer holds the job (cancelled, done,
        failed, released, or reclaimed by another worker)."""
        ...

    def complete(self, job_id: str, worker: str, result: dict, now: float) -> Job | None:
        """Mark DONE with ``result`` when ``worker`` holds the job (committed or not); a job
        already done is returned unchanged (finishing twice has the effect of finishing once);
        None when ``worker`` lost the lease to another, or the job was cancelled."""
        ...

    def fail(
        self, job_id: str, worker: str, error: str, now: float, *, retry_in: float | None
    ) -> Job | None:
        """Record a failed attempt: back to QUEUED with ``run_after = now + retry_in``, or
        FAILED once ``attempts >= max_attempts``. ``retry_in=None``: the error cannot go away
        (a bad configuration), FAILED at once whatever attempts are left. None when ``worker``
        does not hold the job."""
        ...

    def cancel(self, job_id: str, now: float, *, reason: str) -> Job | None:
        """Cancel a job that has not committed anything, and return it.

        A QUEUED job, or a RUNNING one that is not ``committed``, becomes CANCELLED at once:
        ``error = reason``, no lease, ``updated_at = now``; it is never claimed again and its
        worker's next heartbeat, commit, complete, fail or release is refused. A CANCELLED job
        is returned unchanged (cancelling twice is cancelling once). A DONE or FAILED job, or a
        RUNNING ``committed`` one, is returned unchanged and nothing is written: the caller
        reads ``state`` and ``committed`` to say why it could not be cancelled. None for an
        unknown job. Atomic with ``commit``: a job ends cancelled or committed, never both."""
        ...

    def commit(self, job_id: str, worker: str, now: float) -> Job | None:
        """Mark that ``worker`` starts writing the job's effects, so that it can no longer be
        cancelled: when ``worker`` holds the job, set ``committed`` (and ``updated_at = now``
        the first time; committing again changes nothing) and return the job. None otherwise:
        cancelled (the worker must write nothing), lease lost to another worker, done, failed,
        unknown. Call it right before the first effect is written, never after."""
        ...

    def release(self, job_id: str, worker: str, now: float) -> Job | None:
        """Give back a job unfinished (the worker is shutting down): when ``worker`` holds it,
        QUEUED again with ``run_after = now``, ``attempts - 1`` (a shutdown is not a failed
        attempt), no lease and no worker, ``committed`` kept; return it. None otherwise."""
        ...

    def get(self, job_id: str) -> Job | None: ...

    def list(self, model: str | None = None, limit: int = 100) -> list[Job]:
        """Newest first."""
        ...


@dataclass
class Store:
    """The ports of one backend, opened together from a URL."""

    url: str
    log: EventLog
    predictions: PredictionStore
    registry: Registry
    queue: LabelQueue | None = None
    jobs: JobQueue | None = None
    closers: list = field(default_factory=list, repr=False)
    # What the backend can do. None: what its scheme's entry in the table (onlearn.store)
    # declares; a backend opened outside the table passes its own.
    capabilities: Capabilities = None  # type: ignore[assignment]
    # The store's generation id as read at open, and whether it changed since (see
    # onlearn.store.generation). None: one that cannot change (a store opened outside the table).
    generation: Generation = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.capabilities is None:
            self.capabilities = capabilities_of(self.url)
        if self.generation is None:
            self.generation = Generation.fixed(f"store {self.url}")

    @property
    def shared(self) -> bool:
        """Whether other processes can see this store (False for ``memory://``)."""
        return self.capabilities.shared

    @property
    def networked(self) -> bool:
        """Whether a call goes over a socket (Redis), and may wait out its timeout; a local
        store (memory, an SQLite file, whose readers do not wait for its writer in WAL mode)
        answers a read in microseconds."""
        return self.capabilities.networked

    def ping(self) -> None:
        """Raise StoreUnavailable when the backend cannot be reached."""
        self.log.head("__ping__")

    def close(self) -> None:
        for close in reversed(self.closers):
            close()
        self.closers.clear()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
