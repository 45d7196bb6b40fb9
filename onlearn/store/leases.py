"""Rules that every backend's LabelQueue and JobQueue apply alike: order, claims, validation.

Kept apart from the backends so that ``memory://``, ``sqlite://`` and ``redis://`` cannot drift
apart on who may finish a claimed item or which item ranks first; the Redis scripts implement
the same rules (their comments point here). The registry's one shared rule, the range of a
canary share, lives here too.

>>> item = QueueItem("a", "m", {}, priority=0.5, enqueued_at=10.0)
>>> rank(item)
(-0.5, 10.0, 'a')
>>> claim_verdict(item, None, now=0.0) is None, claim_verdict(item, "0123", now=0.0)
(True, 'conflict')
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from onlearn.records import Event, Job, JobState, QueueItem, QueueState

__all__ = [
    "FINISHED_STATES",
    "cancellable",
    "check_canary_share",
    "check_job",
    "check_label_events",
    "check_priority",
    "check_pushable",
    "claim_verdict",
    "job_order",
    "new_claim_id",
    "passes_over",
    "rank",
    "reclaim_error",
    "skipper",
]

# States an item never leaves, except by purge_finished.
FINISHED_STATES = (QueueState.DONE, QueueState.SKIPPED, QueueState.EVICTED)


def new_claim_id() -> str:
    """A random claim id: 16 hex digits, unguessable by another labeller."""
    return os.urandom(8).hex()


def rank(item: QueueItem) -> tuple[float, float, str]:
    """The claim order of queued items, smallest first: priority descending, then oldest first,
    then ``item_id``. The lowest-ranked queued item (the largest key: lowest priority, newest) is
    the one a full queue evicts, and a new item evicts it only if its key is strictly smaller."""
    return (-item.priority, item.enqueued_at, item.item_id)


def job_order(job: Job) -> tuple[float, str]:
    """Claim order of jobs, oldest first (``job_id`` breaks ties); ``list`` is the reverse."""
    return (job.created_at, job.job_id)


def claim_verdict(item: QueueItem, claim_id: str | None, now: float) -> str | None:
    """Why ``label``/``complete``/``skip``/``release`` with ``claim_id`` at ``now`` is refused for
    ``item``, or None to accept.

    Accepted: the item's current claim, or its last one when the lease ran out and nobody claimed
    the item since (it is queued again with that ``claim_id``, or still claimed); or no
    ``claim_id`` for an item nobody holds: queued, or claimed with a lease that ran out. Refused:
    ``already_done`` (labelled), ``gone`` (skipped out or evicted), ``conflict`` (another claim,
    or no claim id while someone's lease is live: a label without a claim must not take an item
    from the person who holds it).

    >>> held = QueueItem("a", "m", {}, 0.5, 1.0, state=QueueState.CLAIMED, claim_id="c1",
    ...                  lease_expires_at=100.0)
    >>> claim_verdict(held, "c1", 50.0), claim_verdict(held, None, 50.0)
    (None, 'conflict')
    >>> claim_verdict(held, None, 100.0), claim_verdict(held, "c2", 150.0)
    (None, 'conflict')
    """
    if item.state is QueueState.DONE:
        return "already_done"
    if item.state in (QueueState.SKIPPED, QueueState.EVICTED):
        return "gone"
    if claim_id is not None:
        return None if claim_id == item.claim_id else "conflict"
    if (
        item.state is QueueState.CLAIMED
        and item.lease_expires_at is not None
        and item.lease_expires_at > now
    ):
        return "conflict"
    return None


def passes_over(item: QueueItem, labeller: str | None) -> bool:
    """Whether a claim by ``labeller`` leaves ``item`` alone: the item was last skipped by that
    labeller, who should not get it straight back (anyone else does).

    >>> item = QueueItem("a", "m", {}, 0.5, 1.0, skipped_by="ann")
    >>> passes_over(item, "ann"), passes_over(item, "bob"), passes_over(item, None)
    (True, False, False)
    """
    return labeller is not None and item.skipped_by == labeller


def skipper(item: QueueItem, claim_id: str | None, labeller: str | None) -> str | None:
    """Who skips ``item``: the labeller named, else the holder of the claim given (an item
    skipped without a claim id or a name has nobody to pass it over for)."""
    if labeller is not None:
        return labeller
    return item.labeller if claim_id is not None else None


def cancellable(job: Job) -> bool:
    """Whether ``cancel`` cancels ``job``: queued, or running before its worker committed any
    effect. A cancelled job is not (cancelling again returns it unchanged), nor a finished one.

    >>> running = dict(kind="refit", model="m", params={}, created_at=0.0, state=JobState.RUNNING)
    >>> cancellable(Job("a", **running)), cancellable(Job("b", committed=True, **running))
    (True, False)
    """
    if job.state is JobState.QUEUED:
        return True
    return job.state is JobState.RUNNING and not job.committed


def reclaim_error(job: Job) -> str:
    """The error of a job whose worker died on its last allowed attempt."""
    return (
        f"the lease ran out on attempt {job.attempts} of {job.max_attempts} "
        f"(worker {job.worker!r} stopped without finishing)"
    )


def check_priority(priority: float) -> None:
    # SQLite stores NaN as NULL and NaN has no place in an order: refuse it in every backend.
    try:
        finite = math.isfinite(priority)
    except TypeError:
        finite = False
    if not finite:
        raise ValueError(f"a queue priority must be a finite number, got {priority!r}")


def check_pushable(item: QueueItem) -> None:
    """Refuse an item that ``push`` cannot queue as given."""
    if item.state is not QueueState.QUEUED:
        raise ValueError(f"push takes a queued item, got state {item.state.value!r}")
    check_priority(item.priority)


def check_label_events(events: Sequence[Event]) -> None:
    """Refuse a ``label`` call without events: the item's seq would be nobody's."""
    if not events:
        raise ValueError("label takes the label's events (at least one)")


def check_job(job: Job) -> None:
    """Refuse a job that ``enqueue`` cannot store as given."""
    if job.state is not JobState.QUEUED:
        raise ValueError(f"enqueue takes a queued job, got state {job.state.value!r}")


def check_canary_share(share: float | None) -> None:
    """Refuse a canary share outside [0, 1]; None (leave the share as it is) is fine.

    >>> check_canary_share(0.25), check_canary_share(None)
    (None, None)
    """
    if share is None:
        return
    try:
        valid = 0.0 <= share <= 1.0  # False for NaN
    except TypeError:
        valid = False
    if not valid or isinstance(share, bool):
        raise ValueError(f"canary_share must be a number in [0, 1], got {share!r}")
