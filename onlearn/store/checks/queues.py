"""Contract checks for the labelling queue and the job queue of a storage backend.

The same shape as :mod:`onlearn.store.checks.stores`: every check takes a fresh, empty
:class:`~onlearn.store.base.Store` whose ``queue`` (LabelQueue checks) or ``jobs`` (JobQueue
checks) is set, and raises ``AssertionError`` when the backend breaks the contract. Clocks are
explicit ``now`` values, so no check sleeps.

.. code-block:: python

    @pytest.mark.parametrize("check", all_queue_checks(), ids=lambda c: c.__name__)
    def test_my_backend(check, tmp_path):
        with open_my_store(tmp_path) as store:
            check(store)

>>> from onlearn.store import open_store
>>> check_queues(lambda: open_store("memory://"))
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from typing import Any

from onlearn.records import Event, EventKind, Job, JobState, QueueItem, QueueState
from onlearn.store.base import (
    ClaimOutcome,
    JobQueue,
    LabelOutcome,
    LabelQueue,
    PushOutcome,
    QueueStats,
    Store,
)

__all__ = ["QueueCheck", "all_job_checks", "all_queue_checks", "check_queues"]

QueueCheck = Callable[[Store], None]

_QUEUE_CHECKS: list[QueueCheck] = []
_JOB_CHECKS: list[QueueCheck] = []


def _queue_check(func: QueueCheck) -> QueueCheck:
    _QUEUE_CHECKS.append(func)
    return func


def _job_check(func: QueueCheck) -> QueueCheck:
    _JOB_CHECKS.append(func)
    return func


def all_queue_checks() -> Iterator[QueueCheck]:
    """Every LabelQueue check, in a stable order. Each needs its own fresh, empty store."""
    yield from _QUEUE_CHECKS


def all_job_checks() -> Iterator[QueueCheck]:
    """Every JobQueue check, in a stable order. Each needs its own fresh, empty store."""
    yield from _JOB_CHECKS


def check_queues(open_fresh: Callable[[], Store]) -> None:
    """Run every queue and job check, each on a new store from ``open_fresh``, closing it after."""
    for check in [*all_queue_checks(), *all_job_checks()]:
        with open_fresh() as store:
            check(store)


T0 = 1_700_000_000.0
BIG = 1_000_000  # a bound that is never reached


def _queue(store: Store) -> LabelQueue:
    assert store.queue is not None, "the store has no label queue (Store.queue is None)"
    return store.queue


def _jobs(store: Store) -> JobQueue:
    assert store.jobs is not None, "the store has no job queue (Store.jobs is None)"
    return store.jobs


def _item(item_id: str, priority: float = 0.5, at: float = T0, **changes: Any) -> QueueItem:
    item = QueueItem(
        item_id=item_id,
        model="m",
        features={"x": 1.5, "city": "Zürich", "tags": ["a", "b"], "ok": True},
        priority=priority,
        enqueued_at=at,
        prediction_id=f"p-{item_id}",
        proba=[[True, 0.5], [False, 0.5]],
        uncertainty=priority,
    )
    return dataclasses.replace(item, **changes)


def _ids(items: list[QueueItem]) -> list[str]:
    return [i.item_id for i in items]


def _push_all(queue: LabelQueue, items: list[QueueItem], max_size: int = BIG) -> None:
    for item in items:
        outcome = queue.push(item, max_size=max_size)
        assert outcome == PushOutcome("queued", item.item_id), f"push {item.item_id}: {outcome}"


def _raises(exc: type[BaseException], call: Callable[[], Any], why: str) -> None:
    try:
        call()
    except exc:
        return
    raise AssertionError(why)


# --- label queue: push, order, dedupe, bound -------------------------------------------------


@_queue_check
def check_queue_round_trips_items(store: Store) -> None:
    queue = _queue(store)
    item = _item(
        "i1",
        features={"age": 42, "income": 1234.5, "nested": {"l": [1, [2.5, None]]}, "flag": False},
        proba=[[True, 0.75], [False, 0.25]],
        dedupe_key="k1",
        reason="random",
    )
    bare = QueueItem("i2", "m", {}, priority=0.25, enqueued_at=T0 + 1)
    _push_all(queue, [item, bare])
    assert queue.get("m", "i1") == item
    assert queue.get("m", "i2") == bare
    back = queue.get("m", "i1")
    assert back is not None and back.state is QueueState.QUEUED, "state comes back as the enum"
    assert type(back.proba[0][0]) is bool, "labels inside proba keep their type"  # type: ignore[index]
    assert queue.get("m", "nope") is None
    assert queue.get("other", "i1") is None, "items belong to one model"


@_queue_check
def check_queue_push_refuses_bad_items(store: Store) -> None:
    queue = _queue(store)
    claimed = _item("i1", state=QueueState.CLAIMED)
    _raises(ValueError, lambda: queue.push(claimed, max_size=BIG), "push takes queued items")
    for bad in (float("nan"), float("inf")):
        item = _item("i2", priority=bad)
        _raises(ValueError, lambda i=item: queue.push(i, max_size=BIG), f"priority {bad}")
    assert queue.stats("m") == QueueStats(), "a refused push changes nothing"


@_queue_check
def check_queue_order_is_priority_then_oldest_then_id(store: Store) -> None:
    queue = _queue(store)
    _push_all(
        queue,
        [
            _item("low", 0.1, T0),
            _item("b-tie", 0.5, T0 + 5),
            _item("a-tie", 0.5, T0 + 5),
            _item("old", 0.5, T0 + 1),
            _item("top", 0.9, T0 + 9),
            _item("neg", -1.0, T0),
        ],
    )
    expected = ["top", "old", "a-tie", "b-tie", "low", "neg"]
    assert _ids(queue.peek("m", 10)) == expected, "priority desc, then oldest, then item_id"
    assert _ids(queue.peek("m", 2)) == expected[:2]
    assert queue.peek("m", 0) == [] and queue.peek("other", 5) == []
    assert _ids(queue.peek("m", 10)) == expected, "peek claims nothing"
    first = queue.claim("m", limit=3, lease_s=60, labeller="ann", now=T0 + 10)
    assert _ids(first) == expected[:3], "claim takes the head of the order"
    assert _ids(queue.peek("m", 10)) == expected[3:], "peek skips claimed items"
    rest = queue.claim("m", limit=10, lease_s=60, labeller="ann", now=T0 + 10)
    assert _ids(rest) == expected[3:]
    assert queue.claim("m", limit=10, lease_s=60, labeller="ann", now=T0 + 10) == []


@_queue_check
def check_queue_claim_leases(store: Store) -> None:
    queue = _queue(store)
    _push_all(queue, [_item(f"i{n}", 0.1 * n) for n in range(5)])
    now = T0 + 100
    claimed = queue.claim("m", limit=2, lease_s=30.0, labeller="ann", now=now)
    assert _ids(claimed) == ["i4", "i3"]
    for item in claimed:
        assert item.state is QueueState.CLAIMED
        assert (item.attempts, item.labeller, item.lease_expires_at) == (1, "ann", now + 30.0)
        assert item.claim_id and int(item.claim_id, 16) >= 0, "claim ids are hex"
        assert queue.get("m", item.item_id) == item, "the claim is stored as returned"
    assert claimed[0].claim_id != claimed[1].claim_id, "each claimed item gets its own claim id"
    anon = queue.claim("m", limit=1, lease_s=5.0, labeller=None, now=now)
    assert anon[0].labeller is None and anon[0].lease_expires_at == now + 5.0
    assert queue.claim("m", limit=0, lease_s=5.0, labeller="ann", now=now) == []
    stats = queue.stats("m")
    assert (stats.depth, stats.claimed) == (2, 3)


@_queue_check
def check_queue_claims_chosen_items_in_the_given_order(store: Store) -> None:
    queue = _queue(store)
    _push_all(queue, [_item(f"i{n}", 0.1 * n) for n in range(5)])
    now = T0 + 100
    taken = queue.claim("m", limit=5, lease_s=30.0, labeller=None, now=now, item_ids=["i2"])
    assert _ids(taken) == ["i2"], "item_ids restricts the claim to those items"
    # Unknown or already claimed ids are passed over; the order given is kept; limit holds.
    chosen = ["nope", "i2", "i0", "i3", "i1"]
    claimed = queue.claim("m", limit=2, lease_s=30.0, labeller="ann", now=now, item_ids=chosen)
    assert _ids(claimed) == ["i0", "i3"]
    assert all(i.state is QueueState.CLAIMED and i.claim_id for i in claimed)
    assert _ids(queue.peek("m", 10)) == ["i4", "i1"], "unchosen items stay queued"


@_queue_check
def check_queue_dedupe(store: Store) -> None:
    queue = _queue(store)
    assert queue.push(_item("a", dedupe_key="k"), max_size=BIG) == PushOutcome("queued", "a")
    again = queue.push(_item("b", 0.9, dedupe_key="k"), max_size=BIG)
    assert again == PushOutcome("duplicate", "a"), "a known dedupe key names the existing item"
    assert queue.get("m", "b") is None
    assert queue.push(_item("a", 0.9), max_size=BIG) == PushOutcome("duplicate", "a"), (
        "pushing an item id again is a duplicate"
    )
    assert queue.get("m", "a") == _item("a", dedupe_key="k"), "the first item is kept"
    _push_all(queue, [_item("n1"), _item("n2")])  # no key: never deduped
    assert queue.push(_item("o", dedupe_key="k", model="other"), max_size=BIG).status == "queued"
    # A key stays taken while its item waits (queued or claimed) ...
    (claimed,) = queue.claim("m", limit=1, lease_s=60, labeller=None, now=T0)
    assert claimed.item_id == "a"
    assert queue.push(_item("c", dedupe_key="k"), max_size=BIG).status == "duplicate"
    # ... and is free once it is done: the same input can be asked again.
    queue.complete("m", "a", claimed.claim_id, {"seq": 1}, now=T0 + 1)
    assert queue.push(_item("d", dedupe_key="k"), max_size=BIG) == PushOutcome("queued", "d")
    assert queue.push(_item("e", dedupe_key="k"), max_size=BIG) == PushOutcome("duplicate", "d")
    assert queue.push(_item("a", dedupe_key="k"), max_size=BIG).status == "duplicate", (
        "a done item's id is still known: a retried push stays harmless"
    )
    # Skipped out frees it too; skipped and queued again does not.
    _push_all(queue, [_item("s", dedupe_key="ks")])
    assert queue.skip("m", "s", None, now=T0 + 2, max_skips=2).item.state is QueueState.QUEUED  # type: ignore[union-attr]
    assert queue.push(_item("t", dedupe_key="ks"), max_size=BIG).status == "duplicate"
    assert queue.skip("m", "s", None, now=T0 + 2, max_skips=2).item.state is QueueState.SKIPPED  # type: ignore[union-attr]
    assert queue.push(_item("t", dedupe_key="ks"), max_size=BIG).status == "queued"
    # Purging the finished item leaves the waiting one's key alone.
    assert queue.purge_finished("m", before=T0 + 100) == 2
    assert queue.push(_item("u", dedupe_key="k"), max_size=BIG) == PushOutcome("duplicate", "d")
    stats = queue.stats("m")
    assert (stats.duplicates, stats.pushed) == (7, 6), stats
    assert queue.stats("other").pushed == 1


@_queue_check
def check_queue_bound_evicts_the_lowest(store: Store) -> None:
    queue = _queue(store)
    _push_all(queue, [_item("a", 0.5), _item("b", 0.2), _item("c", 0.8)], max_size=3)
    better = queue.push(_item("d", 0.6, T0 + 10), max_size=3)
    assert better == PushOutcome("queued", "d", evicted="b"), f"got {better}"
    evicted = queue.get("m", "b")
    assert evicted is not None and evicted.state is QueueState.EVICTED
    assert evicted.finished_at == T0 + 10, "evicted when the item that pushed it out came"
    assert _ids(queue.peek("m", 10)) == ["c", "d", "a"]
    worse = queue.push(_item("e", 0.1, T0 + 11), max_size=3)
    assert worse == PushOutcome("rejected"), "an item below every queued one is rejected"
    assert queue.get("m", "e") is None
    # Equal priority ranks by age: a newer item ranks below an older one, so it is rejected.
    tie = queue.push(_item("f", 0.5, T0 + 12), max_size=3)
    assert tie.status == "rejected", "a newer item of equal priority does not evict"
    stats = queue.stats("m")
    assert (stats.depth, stats.pushed, stats.evicted, stats.rejected) == (3, 4, 1, 2)


@_queue_check
def check_queue_bound_evicts_the_newest_of_equal_priority(store: Store) -> None:
    queue = _queue(store)
    _push_all(
        queue,
        [_item("old", 0.3, T0), _item("new", 0.3, T0 + 2), _item("mid", 0.3, T0 + 1)],
        max_size=3,
    )
    outcome = queue.push(_item("hi", 0.4, T0 + 3), max_size=3)
    assert outcome.evicted == "new", f"ties: the newest goes first, got {outcome}"
    outcome = queue.push(_item("hi2", 0.4, T0 + 4), max_size=3)
    assert outcome.evicted == "mid", f"ties: the newest goes first, got {outcome}"
    assert _ids(queue.peek("m", 10)) == ["hi", "hi2", "old"]


@_queue_check
def check_queue_bound_counts_queued_items_only(store: Store) -> None:
    queue = _queue(store)
    _push_all(queue, [_item("a", 0.9), _item("b", 0.8)], max_size=2)
    queue.claim("m", limit=2, lease_s=60, labeller=None, now=T0)
    _push_all(queue, [_item("c", 0.1), _item("d", 0.2)], max_size=2)
    assert queue.push(_item("e", 0.05), max_size=2).status == "rejected"
    assert queue.stats("m").depth == 2 and queue.stats("m").claimed == 2
    assert queue.push(_item("z", 0.9, model="n"), max_size=0) == PushOutcome("rejected"), (
        "no room at all"
    )
    # An evicted item frees its dedupe key.
    _push_all(queue, [_item("k1", 0.3, dedupe_key="k")], max_size=3)
    assert queue.push(_item("hi", 0.7), max_size=3).evicted == "c"
    assert queue.push(_item("hi2", 0.7), max_size=3).evicted == "d"
    assert queue.push(_item("hi3", 0.7), max_size=3).evicted == "k1"
    assert queue.push(_item("k2", 0.9, dedupe_key="k"), max_size=4).status == "queued"


@_queue_check
def check_queue_push_evicts_at_most_one(store: Store) -> None:
    queue = _queue(store)
    # Leases that run out bring items back above the bound (claimed items did not count).
    _push_all(queue, [_item("a", 0.9), _item("b", 0.8)], max_size=2)
    queue.claim("m", limit=2, lease_s=10, labeller=None, now=T0)
    _push_all(queue, [_item("c", 0.1), _item("d", 0.2)], max_size=2)
    assert queue.release_expired("m", now=T0 + 10) == 2
    assert queue.stats("m").depth == 4
    # A push then never grows the queue: it takes the place of the lowest item, or is rejected.
    assert queue.push(_item("e", 0.5), max_size=2) == PushOutcome("queued", "e", evicted="c")
    assert queue.push(_item("f", 0.15), max_size=2) == PushOutcome("rejected")
    assert _ids(queue.peek("m", 10)) == ["a", "b", "e", "d"]


@_queue_check
def check_queue_reprioritize(store: Store) -> None:
    queue = _queue(store)
    _push_all(queue, [_item("a", 0.1), _item("b", 0.2), _item("c", 0.3), _item("d", 0.4)])
    (claimed,) = queue.claim("m", limit=1, lease_s=60, labeller=None, now=T0)
    assert claimed.item_id == "d"
    queue.reprioritize("m", {"a": 0.9, "d": 0.0, "nope": 1.0})
    assert _ids(queue.peek("m", 10)) == ["a", "c", "b"]
    assert queue.get("m", "a").priority == 0.9  # type: ignore[union-attr]
    assert queue.get("m", "d").priority == 0.4, "claimed items are left alone"  # type: ignore[union-attr]
    queue.reprioritize("other", {"a": 0.0})
    queue.reprioritize("m", {})
    assert queue.get("m", "a").priority == 0.9, "priorities are per model"  # type: ignore[union-attr]
    _raises(ValueError, lambda: queue.reprioritize("m", {"a": float("nan")}), "NaN priority")
    # The new priority also decides evictions.
    assert queue.push(_item("e", 0.25), max_size=3).evicted == "b"


# --- label queue: concurrency and leases -----------------------------------------------------


@_queue_check
def check_queue_concurrent_claims_never_overlap(store: Store) -> None:
    queue = _queue(store)
    total, threads_n = 60, 6
    _push_all(queue, [_item(f"i{n:02d}", (n % 7) / 7) for n in range(total)])
    got: list[list[str]] = [[] for _ in range(threads_n)]
    errors: list[BaseException] = []
    start = threading.Barrier(threads_n)

    def labeller(t: int) -> None:
        try:
            start.wait()
            while batch := queue.claim("m", limit=1 + t % 3, lease_s=600, labeller=f"t{t}", now=T0):
                got[t].extend(_ids(batch))
        except BaseException as exc:  # surfaced in the calling thread below
            errors.append(exc)

    threads = [threading.Thread(target=labeller, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, f"concurrent claims failed: {errors[0]!r}"
    claimed = [i for ids in got for i in ids]
    assert len(claimed) == len(set(claimed)), "an item was claimed twice"
    assert set(claimed) == {f"i{n:02d}" for n in range(total)}, "every item was claimed"
    for t, ids in enumerate(got):
        assert all(queue.get("m", i).labeller == f"t{t}" for i in ids)  # type: ignore[union-attr]
    assert queue.stats("m").claimed == total


@_queue_check
def check_queue_expired_leases_come_back(store: Store) -> None:
    queue = _queue(store)
    _push_all(queue, [_item("a", 0.9), _item("b", 0.1)])
    (first,) = queue.claim("m", limit=1, lease_s=10, labeller="ann", now=T0)
    assert first.item_id == "a"
    assert queue.release_expired("m", now=T0 + 9.5) == 0, "the lease still holds"
    (held,) = queue.claim("m", limit=1, lease_s=10, labeller="bob", now=T0 + 9.5)
    assert held.item_id == "b", "a leased item is not offered again before its lease ends"
    # The lease of "a" ends at T0 + 10: claim releases it first, and counts it.
    (again,) = queue.claim("m", limit=1, lease_s=10, labeller="bob", now=T0 + 10)
    assert again.item_id == "a" and again.attempts == 2 and again.labeller == "bob"
    assert again.claim_id != first.claim_id and again.lease_expires_at == T0 + 20
    assert queue.stats("m").expired == 1
    assert queue.release_expired("m", now=T0 + 30) == 2, "both leases ran out"
    released = queue.get("m", "a")
    assert released is not None and released.state is QueueState.QUEUED
    assert released.lease_expires_at is None, "a released item holds no lease"
    assert released.claim_id == again.claim_id, "the last claim id is kept"
    assert released.attempts == 2
    assert _ids(queue.peek("m", 10)) == ["a", "b"]
    stats = queue.stats("m")
    assert (stats.depth, stats.claimed, stats.expired) == (2, 0, 3)
    assert queue.release_expired("m", now=T0 + 30) == 0
    assert queue.release_expired("other", now=T0 + 30) == 0


# --- label queue: complete and skip ----------------------------------------------------------


@_queue_check
def check_queue_complete_is_idempotent(store: Store) -> None:
    queue = _queue(store)
    _push_all(queue, [_item("a", 0.9), _item("b", 0.1)])
    (claimed,) = queue.claim("m", limit=1, lease_s=60, labeller="ann", now=T0)
    done = queue.complete("m", "a", claimed.claim_id, {"seq": 12, "version": "v1"}, now=T0 + 5)
    assert done.status == "ok" and done.item is not None
    assert done.item.state is QueueState.DONE
    assert (done.item.result, done.item.finished_at) == ({"seq": 12, "version": "v1"}, T0 + 5)
    assert queue.get("m", "a") == done.item, "the item is stored as returned"
    for claim_id in (claimed.claim_id, None, "someone-else"):
        again = queue.complete("m", "a", claim_id, {"seq": 99}, now=T0 + 6)
        assert again == ClaimOutcome("already_done", done.item), (
            f"labelling a done item again ({claim_id!r}) answers the first result"
        )
    skipped = queue.skip("m", "a", claimed.claim_id, now=T0 + 7, max_skips=3)
    assert skipped == ClaimOutcome("already_done", done.item)
    assert _ids(queue.claim("m", limit=10, lease_s=60, labeller=None, now=T0 + 8)) == ["b"]
    assert queue.stats("m").labelled == 1


@_queue_check
def check_queue_close_answered(store: Store) -> None:
    queue = _queue(store)
    _push_all(queue, [_item("a", 0.9), _item("b", 0.8), _item("c", 0.7), _item("d", 0.6)])
    (held,) = queue.claim("m", limit=1, lease_s=60, labeller="ann", now=T0)
    queue.complete("m", "c", None, {"seq": 3}, now=T0 + 1)
    answer = {"seq": 7, "version": "v1", "answered_elsewhere": True, "source": "app"}
    closed = queue.close_answered(
        "m", {"a": answer, "b": answer, "c": answer, "nope": answer}, now=T0 + 2
    )
    assert closed == 2, f"a claimed and a queued item close, a done or unknown one not: {closed}"
    for item_id in ("a", "b"):
        item = queue.get("m", item_id)
        assert item is not None and item.state is QueueState.DONE
        assert (item.result, item.finished_at, item.lease_expires_at) == (answer, T0 + 2, None)
    assert queue.get("m", "c").result == {"seq": 3}, "a done item keeps its own result"  # type: ignore[union-attr]
    assert held.item_id == "a"
    assert queue.complete("m", "a", held.claim_id, {"seq": 9}, now=T0 + 3).status == (
        "already_done"
    ), "the holder of a closed item is told it is done"
    claimed = queue.claim("m", limit=10, lease_s=60, labeller=None, now=T0 + 100)
    assert _ids(claimed) == ["d"], "closed items are never claimed again, even past the lease"
    stats = queue.stats("m")
    assert (stats.answered_elsewhere, stats.labelled, stats.depth, stats.claimed) == (2, 1, 0, 1)
    assert queue.close_answered("m", {"a": answer}, now=T0 + 4) == 0, "closing twice counts once"
    assert queue.close_answered("m", {}, now=T0 + 4) == 0
    assert queue.stats("m").answered_elsewhere == 2


@_queue_check
def check_queue_complete_conflicts_after_another_claim(store: Store) -> None:
    queue = _queue(store)
    _push_all(queue, [_item("a")])
    (ann,) = queue.claim("m", limit=1, lease_s=10, labeller="ann", now=T0)
    (bob,) = queue.claim("m", limit=1, lease_s=10, labeller="bob", now=T0 + 10)
    late = queue.complete("m", "a", ann.claim_id, {"by": "ann"}, now=T0 + 11)
    assert late.status == "conflict", "the lease ran out and another claim holds the item now"
    assert late.item == bob
    assert queue.skip("m", "a", ann.claim_id, now=T0 + 11, max_skips=1).status == "conflict"
    assert queue.get("m", "a") == bob, "a refused call changes nothing"
    ok = queue.complete("m", "a", bob.claim_id, {"by": "bob"}, now=T0 + 12)
    assert ok.status == "ok" and ok.item.result == {"by": "bob"}  # type: ignore[union-attr]
    done = queue.complete("m", "a", ann.claim_id, {"by": "ann"}, now=T0 + 13)
    assert done.status == "already_done" and done.item.result == {"by": "bob"}  # type: ignore[union-attr]
    # Released, then claimed again by someone else: still a conflict for the first claim.
    _push_all(queue, [_item("b")])
    (first,) = queue.claim("m", limit=1, lease_s=10, labeller="ann", now=T0)
    queue.claim("m", limit=1, lease_s=10, labeller="bob", now=T0 + 10)
    queue.release_expired("m", now=T0 + 20)
    assert queue.complete("m", "b", first.claim_id, {}, now=T0 + 21).status == "conflict"


@_queue_check
def check_queue_late_complete_is_accepted_when_not_claimed_since(store: Store) -> None:
    queue = _queue(store)
    _push_all(queue, [_item("a"), _item("b")])
    claimed = queue.claim("m", limit=2, lease_s=10, labeller="ann", now=T0)
    a, b = sorted(claimed, key=lambda i: i.item_id)
    # "a": the lease ran out but nobody released nor claimed it.
    ok = queue.complete("m", "a", a.claim_id, {"late": True}, now=T0 + 50)
    assert ok.status == "ok" and ok.item.state is QueueState.DONE  # type: ignore[union-attr]
    # "b": the lease ran out and the item went back to the queue, unclaimed since.
    assert queue.release_expired("m", now=T0 + 50) == 1
    ok = queue.complete("m", "b", b.claim_id, {"late": True}, now=T0 + 51)
    assert ok.status == "ok" and ok.item.result == {"late": True}  # type: ignore[union-attr]
    stats = queue.stats("m")
    assert (stats.depth, stats.claimed, stats.labelled) == (0, 0, 2)
    assert queue.claim("m", limit=5, lease_s=10, labeller=None, now=T0 + 52) == []


@_queue_check
def check_queue_complete_without_claim_id(store: Store) -> None:
    queue = _queue(store)
    _push_all(queue, [_item("queued", 0.1), _item("held", 0.9)])
    (held,) = queue.claim("m", limit=1, lease_s=60, labeller="ann", now=T0)
    live = queue.complete("m", "held", None, {"direct": True}, now=T0 + 1)
    assert live == ClaimOutcome("conflict", held), (
        "no claim id does not take an item from the labeller whose lease is live"
    )
    assert queue.skip("m", "held", None, now=T0 + 1, max_skips=1).status == "conflict"
    for item_id in ("queued", "held"):  # "held": its lease ran out at T0 + 60
        outcome = queue.complete("m", item_id, None, {"direct": True}, now=T0 + 60)
        assert outcome.status == "ok", f"no claim id labels an item nobody holds: {outcome}"
    _push_all(queue, [_item("never-claimed")])
    wrong = queue.complete("m", "never-claimed", "made-up", {}, now=T0 + 2)
    assert wrong.status == "conflict", "a claim id the item never had is refused"
    assert wrong.item is not None and wrong.item.state is QueueState.QUEUED
    assert queue.complete("m", "nope", None, {}, now=T0) == ClaimOutcome("unknown")
    assert queue.complete("other", "queued", None, {}, now=T0) == ClaimOutcome("unknown")
    assert queue.skip("m", "nope", None, now=T0, max_skips=1) == ClaimOutcome("unknown")
    assert queue.stats("m").labelled == 2


@_queue_check
def check_queue_skip_until_max_skips(store: Store) -> None:
    queue = _queue(store)
    _push_all(queue, [_item("a", 0.9), _item("b", 0.1)])
    (first,) = queue.claim("m", limit=1, lease_s=60, labeller="ann", now=T0)
    once = queue.skip("m", "a", first.claim_id, now=T0 + 1, max_skips=2)
    assert once.status == "ok" and once.item is not None
    assert (once.item.state, once.item.skips, once.item.lease_expires_at) == (
        QueueState.QUEUED,
        1,
        None,
    )
    assert queue.get("m", "a") == once.item
    assert _ids(queue.peek("m", 10)) == ["a", "b"], "a skipped item is offered again"
    (second,) = queue.claim("m", limit=1, lease_s=60, labeller="bob", now=T0 + 2)
    assert second.item_id == "a" and second.attempts == 2
    assert queue.skip("m", "a", first.claim_id, now=T0 + 3, max_skips=2).status == "conflict"
    out = queue.skip("m", "a", second.claim_id, now=T0 + 3, max_skips=2)
    assert out.status == "ok" and out.item is not None
    assert (out.item.state, out.item.skips, out.item.finished_at) == (
        QueueState.SKIPPED,
        2,
        T0 + 3,
    )
    gone = queue.skip("m", "a", second.claim_id, now=T0 + 4, max_skips=2)
    assert gone == ClaimOutcome("gone", out.item), "a skipped-out item is gone"
    assert queue.complete("m", "a", second.claim_id, {}, now=T0 + 4).status == "gone"
    assert _ids(queue.peek("m", 10)) == ["b"]
    queue.skip("m", "b", None, now=T0 + 5, max_skips=5)  # a queued item skipped directly
    stats = queue.stats("m")
    assert (stats.skipped, stats.depth, stats.claimed) == (3, 1, 0), "skip calls are counted"
    # An evicted item is gone too.
    _push_all(queue, [_item("c", 0.2)], max_size=2)
    evicted = queue.push(_item("d", 0.8), max_size=2).evicted
    assert queue.complete("m", evicted, None, {}, now=T0 + 6).status == "gone"  # type: ignore[arg-type]


def _label_event(key: str | None, label: Any, at: float = T0) -> Event:
    return Event(EventKind.LABEL, {"label": label, "source": "human"}, at, key=key)


@_queue_check
def check_queue_label_appends_and_finishes_in_one_step(store: Store) -> None:
    queue, log = _queue(store), store.log
    _push_all(queue, [_item("a", 0.9), _item("b", 0.5), _item("c", 0.1)])
    (a,) = queue.claim("m", limit=1, lease_s=60, labeller="ann", now=T0)
    events = [_label_event("prediction:a", True), _label_event(None, "x")]
    out = queue.label("m", "a", a.claim_id, events, {"version": "v1"}, now=T0 + 1)
    assert out.status == "ok" and out.seqs == [1, 2] and out.seqs.new == [True, True], out
    assert out.item is not None and out.item.state is QueueState.DONE
    assert (out.item.result, out.item.finished_at) == ({"version": "v1", "seq": 2}, T0 + 1)
    assert queue.get("m", "a") == out.item, "the item is stored as returned"
    assert [(e.seq, e.key, e.payload["label"]) for e in log.read("m", 0)] == [
        (1, "prediction:a", True),
        (2, None, "x"),
    ], "the events are in the model's log, numbered as an append numbers them"
    # The log's key dedup: a key already there keeps its event and reports its seq.
    log.append("m", [_label_event("prediction:b", "app")])
    (b,) = queue.claim("m", limit=1, lease_s=60, labeller="ann", now=T0)
    dup = queue.label("m", "b", b.claim_id, [_label_event("prediction:b", "human")], {}, T0 + 2)
    assert dup.status == "ok" and dup.seqs == [3] and dup.seqs.new == [False], dup
    assert dup.item.result == {"seq": 3}  # type: ignore[union-attr]
    assert log.head("m") == 3, "a duplicate key appends nothing"
    # Refused: nothing appended, nothing changed, whoever asks.
    again = queue.label("m", "a", a.claim_id, [_label_event("prediction:a", False)], {}, T0 + 3)
    assert again == LabelOutcome("already_done", out.item)
    (c,) = queue.claim("m", limit=1, lease_s=60, labeller="bob", now=T0 + 3)
    for claim_id, now, why in [
        ("f00d", T0 + 4, "a claim id the item does not hold"),
        (None, T0 + 4, "no claim id over a live lease"),
    ]:
        refused = queue.label("m", "c", claim_id, [_label_event("prediction:c", 1)], {}, now)
        assert refused == LabelOutcome("conflict", c), f"{why}: {refused}"
    assert queue.label("m", "nope", None, [_label_event("k", 1)], {}, T0) == LabelOutcome("unknown")
    _push_all(queue, [_item("s")])
    queue.skip("m", "s", None, now=T0, max_skips=1)
    gone = queue.label("m", "s", None, [_label_event("prediction:s", 1)], {}, T0 + 5)
    assert gone.status == "gone" and gone.seqs is None
    assert log.head("m") == 3 and queue.get("m", "c") == c, "refused labels change nothing"
    _raises(ValueError, lambda: queue.label("m", "c", c.claim_id, [], {}, T0 + 5), "no events")
    # The lease ran out and nobody claimed since: the late label is accepted, without a claim
    # id too.
    late = queue.label("m", "c", None, [_label_event("prediction:c", 0)], {}, T0 + 63)
    assert late.status == "ok" and late.seqs == [4], late
    stats = queue.stats("m")
    assert (stats.labelled, stats.depth, stats.claimed) == (3, 0, 0), stats


@_queue_check
def check_queue_racing_labellers_never_lose_nor_leak_a_label(store: Store) -> None:
    """Three labellers race for each item, many times: ann, whose lease has just run out, labels
    with her claim; bob claims the item and labels with his; cat labels without a claim id.
    Exactly one label is used; it is the one event of the item's key in the log, at the seq the
    item keeps; every refused label left nothing in the log."""
    queue, log = _queue(store), store.log
    tries, lease = 40, 10.0
    start = threading.Barrier(3)
    outcomes: dict[str, list] = {"ann": [], "bob": [], "cat": []}
    errors: list[BaseException] = []
    anns: list[str] = []
    for n in range(tries):
        _push_all(queue, [_item(f"r{n:02d}", at=T0 + n)])
        (ann,) = queue.claim("m", limit=1, lease_s=lease, labeller="ann", now=T0 + n, item_ids=[f"r{n:02d}"])  # fmt: skip
        anns.append(ann.claim_id)  # type: ignore[arg-type]

    def racer(who: str) -> None:
        try:
            for n in range(tries):
                item_id = f"r{n:02d}"
                event = [_label_event(f"prediction:{item_id}", who)]
                now = T0 + n + lease + 1  # ann's lease ran out a second ago
                start.wait()
                if who == "ann":
                    out = queue.label("m", item_id, anns[n], event, {}, now)
                elif who == "cat":
                    out = queue.label("m", item_id, None, event, {}, now)
                else:
                    got = queue.claim("m", limit=1, lease_s=lease, labeller="bob", now=now, item_ids=[item_id])  # fmt: skip
                    out = got and queue.label("m", item_id, got[0].claim_id, event, {}, now)
                outcomes[who].append(out)
        except BaseException as exc:  # surfaced in the calling thread below
            errors.append(exc)
            start.abort()

    threads = [threading.Thread(target=racer, args=(who,)) for who in outcomes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, f"a racer failed: {errors[0]!r}"
    events = {e.key: e for e in log.read("m", 0, limit=10 * tries)}
    assert len(events) == tries == log.head("m"), "one event per item, no refused label leaked"
    for n in range(tries):
        item_id = f"r{n:02d}"
        used = [who for who in outcomes if outcomes[who][n] and outcomes[who][n].status == "ok"]
        assert len(used) == 1, f"try {n}: labels used {used}: {[o[n] for o in outcomes.values()]}"
        event = events[f"prediction:{item_id}"]
        assert event.payload["label"] == used[0], f"try {n}: {used[0]} used, log holds {event}"
        item = queue.get("m", item_id)
        assert item is not None and item.state is QueueState.DONE
        assert item.result == {"seq": event.seq}, f"try {n}: {item.result} for {event}"
        for who in outcomes:
            out = outcomes[who][n]
            if out and out.status != "ok":
                assert out.status in ("conflict", "already_done"), f"try {n}: {who} got {out}"


@_queue_check
def check_queue_a_skipped_item_is_passed_over_for_its_skipper(store: Store) -> None:
    queue = _queue(store)
    _push_all(queue, [_item("a", 0.9), _item("b", 0.5)])
    (mine,) = queue.claim("m", limit=1, lease_s=60, labeller="ann", now=T0)
    skipped = queue.skip("m", "a", mine.claim_id, now=T0 + 1, max_skips=5)
    assert skipped.item is not None and skipped.item.skipped_by == "ann", skipped
    assert _ids(queue.peek("m", 10)) == ["a", "b"], "the item is queued for everyone"
    assert _ids(queue.peek("m", 10, passing_over="ann")) == ["b"]
    assert _ids(queue.peek("m", 1, passing_over="ann")) == ["b"]
    chosen = queue.claim("m", limit=2, lease_s=60, labeller="ann", now=T0 + 2, item_ids=["a"])
    assert chosen == [], "a chosen item is passed over too"
    again = queue.claim("m", limit=2, lease_s=60, labeller="ann", now=T0 + 2)
    assert _ids(again) == ["b"], "ann does not get the item she skipped straight back"
    (bob,) = queue.claim("m", limit=2, lease_s=60, labeller="bob", now=T0 + 2)
    assert bob.item_id == "a", "others still get it"
    # Bob skips it by name without his claim id (his lease is live: refused), then with it.
    assert queue.skip("m", "a", None, now=T0 + 3, max_skips=5, labeller="bob").status == "conflict"
    queue.skip("m", "a", bob.claim_id, now=T0 + 3, max_skips=5, labeller="bob")
    (back,) = queue.claim("m", limit=1, lease_s=60, labeller="ann", now=T0 + 4)
    assert back.item_id == "a" and back.skipped_by == "bob", "bob skipped it last, not ann"
    _push_all(queue, [_item("c", 0.3)])
    queue.skip("m", "c", None, now=T0 + 5, max_skips=5)
    assert queue.get("m", "c").skipped_by is None, "skipped by nobody known"  # type: ignore[union-attr]
    anyone = queue.claim("m", limit=5, lease_s=60, labeller=None, now=T0 + 6)
    assert _ids(anyone) == ["c"], "an unnamed claim passes nothing over"


@_queue_check
def check_queue_release_gives_a_claim_back(store: Store) -> None:
    queue = _queue(store)
    _push_all(queue, [_item("a", 0.9), _item("b", 0.5)])
    (mine,) = queue.claim("m", limit=1, lease_s=60, labeller="ann", now=T0)
    assert queue.release("m", "a", "f00d", now=T0 + 1) == ClaimOutcome("conflict", mine)
    out = queue.release("m", "a", mine.claim_id, now=T0 + 1)  # type: ignore[arg-type]
    assert out.status == "ok" and out.item is not None
    assert (out.item.state, out.item.lease_expires_at, out.item.skips) == (
        QueueState.QUEUED,
        None,
        0,
    ), "queued again, no skip counted"
    assert queue.get("m", "a") == out.item and _ids(queue.peek("m", 10)) == ["a", "b"]
    again = queue.release("m", "a", mine.claim_id, now=T0 + 2)  # type: ignore[arg-type]
    assert again == ClaimOutcome("ok", out.item), "releasing twice changes nothing"
    (back,) = queue.claim("m", limit=1, lease_s=60, labeller="ann", now=T0 + 3)
    assert back.item_id == "a", "a released item is not passed over, even for who released it"
    (bob,) = queue.claim("m", limit=1, lease_s=60, labeller="bob", now=T0 + 3)
    assert queue.release("m", "a", mine.claim_id, now=T0 + 4).status == "conflict"  # type: ignore[arg-type]
    queue.complete("m", "b", bob.claim_id, {}, now=T0 + 5)
    assert queue.release("m", "b", bob.claim_id, now=T0 + 6).status == "already_done"  # type: ignore[arg-type]
    assert queue.release("m", "nope", "f00d", now=T0) == ClaimOutcome("unknown")
    stats = queue.stats("m")
    assert (stats.released, stats.skipped, stats.depth, stats.claimed) == (1, 0, 0, 1), stats


# --- label queue: stats and purge ------------------------------------------------------------


@_queue_check
def check_queue_stats_count_everything(store: Store) -> None:
    queue = _queue(store)
    assert queue.stats("m") == QueueStats(), "an unknown model has empty stats"
    _push_all(queue, [_item(f"i{n}", n / 10, dedupe_key=f"k{n}") for n in range(6)], max_size=6)
    queue.push(_item("dup", dedupe_key="k1"), max_size=6)  # duplicate
    queue.push(_item("low", -1.0), max_size=6)  # rejected
    queue.push(_item("high", 2.0), max_size=6)  # queued, evicts i0
    taken = queue.claim("m", limit=4, lease_s=10, labeller=None, now=T0)  # high, i5, i4, i3
    queue.complete("m", taken[0].item_id, taken[0].claim_id, {}, now=T0 + 1)
    queue.skip("m", taken[1].item_id, taken[1].claim_id, now=T0 + 1, max_skips=1)
    queue.skip("m", taken[2].item_id, taken[2].claim_id, now=T0 + 1, max_skips=3)
    queue.release_expired("m", now=T0 + 10)  # the lease of taken[3] ran out
    expected = QueueStats(
        depth=4,  # i1, i2, i3, i4
        claimed=0,
        labelled=1,
        skipped=2,
        expired=1,
        evicted=1,
        rejected=1,
        duplicates=1,
        pushed=7,
    )
    assert queue.stats("m") == expected, f"{queue.stats('m')} != {expected}"
    assert queue.stats("other") == QueueStats()


@_queue_check
def check_queue_oldest_waiting(store: Store) -> None:
    """The oldest item still waiting, whatever its priority: claimed items still wait, items
    leave by every way out (label, complete, close, skip out, eviction)."""
    queue = _queue(store)
    assert queue.oldest_waiting("m") is None, "an unknown model has no waiting item"
    _push_all(
        queue,
        [
            _item("new", 0.1, T0 + 50),
            _item("old", 0.9, T0 + 10),  # the oldest is not the lowest in rank
            _item("mid", 0.5, T0 + 30),
            _item("o1", at=T0 + 1, model="other"),
        ],
    )
    assert queue.oldest_waiting("m") == T0 + 10
    (old,) = queue.claim("m", limit=1, lease_s=5, labeller="ann", now=T0 + 60)
    assert old.item_id == "old" and queue.oldest_waiting("m") == T0 + 10, "a claimed item waits"
    assert queue.release_expired("m", now=T0 + 70) == 1 and queue.oldest_waiting("m") == T0 + 10
    queue.complete("m", "old", None, {}, now=T0 + 71)
    assert queue.oldest_waiting("m") == T0 + 30, "a labelled item waits no more"
    queue.skip("m", "mid", None, now=T0 + 72, max_skips=2)
    assert queue.oldest_waiting("m") == T0 + 30, "a skipped item back in the queue still waits"
    queue.skip("m", "mid", None, now=T0 + 73, max_skips=2)
    assert queue.oldest_waiting("m") == T0 + 50, "a skipped-out item waits no more"
    assert queue.push(_item("top", 0.95, T0 + 80), max_size=1).evicted == "new"
    assert queue.oldest_waiting("m") == T0 + 80, "an evicted item waits no more"
    assert queue.push(_item("low", 0.0, T0 + 90), max_size=1).status == "rejected"
    assert queue.oldest_waiting("m") == T0 + 80, "a rejected item never waited"
    assert queue.close_answered("m", {"top": {"seq": 1}}, now=T0 + 91) == 1
    assert queue.oldest_waiting("m") is None, "an item answered elsewhere waits no more"
    _push_all(queue, [_item("lab", 0.5, T0 + 95)])
    (lab,) = queue.claim("m", limit=1, lease_s=60, labeller="ann", now=T0 + 96)
    out = queue.label("m", "lab", lab.claim_id, [_label_event("prediction:lab", 1)], {}, T0 + 97)
    assert out.status == "ok" and queue.oldest_waiting("m") is None, "a labelled item is gone"
    assert queue.oldest_waiting("other") == T0 + 1, "each model has its own"


@_queue_check
def check_queue_purge_finished(store: Store) -> None:
    queue = _queue(store)
    _push_all(queue, [_item(f"i{n}", n / 10, dedupe_key=f"k{n}") for n in range(5)], max_size=5)
    queue.push(_item("hi", 0.9, T0 + 1), max_size=5)  # evicts i0, finished at T0 + 1
    taken = queue.claim("m", limit=4, lease_s=10, labeller=None, now=T0)  # hi, i4, i3, i2
    queue.complete("m", "hi", taken[0].claim_id, {"seq": 1}, now=T0 + 2)
    queue.skip("m", "i4", taken[1].claim_id, now=T0 + 3, max_skips=1)
    queue.complete("m", "i3", taken[2].claim_id, {"seq": 2}, now=T0 + 10)
    _push_all(queue, [_item("n1", model="other")])
    queue.complete("other", "n1", None, {}, now=T0)
    before = queue.stats("m")
    assert queue.purge_finished("m", before=T0 + 3) == 2, "evicted i0 and done hi, not i4 (at)"
    assert queue.get("m", "i0") is None and queue.get("m", "hi") is None
    assert queue.get("m", "i4") is not None
    assert queue.purge_finished("m", before=T0 + 100) == 2, "i4 and i3"
    assert queue.purge_finished("m", before=T0 + 100) == 0
    for kept in ("i1", "i2"):  # queued and claimed items are never purged
        assert queue.get("m", kept) is not None
    assert queue.get("other", "n1") is not None, "other models are untouched"
    assert queue.stats("m") == before, "counters survive purging"
    assert queue.push(_item("again", dedupe_key="k3"), max_size=BIG).status == "queued", (
        "a purged item's dedupe key is free again"
    )
    assert queue.purge_finished("unknown", before=T0 + 100) == 0


# --- job queue -------------------------------------------------------------------------------


def _job(job_id: str, created_at: float = T0, **changes: Any) -> Job:
    job = Job(
        job_id=job_id,
        kind="refit",
        model="m",
        params={"window": 1000, "metrics": ["accuracy"], "nested": {"a": [1, 2.5, None]}},
        created_at=created_at,
    )
    return dataclasses.replace(job, **changes)


@_job_check
def check_jobs_round_trip(store: Store) -> None:
    jobs = _jobs(store)
    job = _job("j1", key="refit:m:1", max_attempts=5, run_after=T0 + 1)
    assert jobs.enqueue(job) == job
    assert jobs.get("j1") == job
    back = jobs.get("j1")
    assert back is not None and back.state is JobState.QUEUED, "state comes back as the enum"
    assert jobs.get("nope") is None
    _raises(
        ValueError,
        lambda: jobs.enqueue(_job("j2", state=JobState.RUNNING)),
        "enqueue takes queued jobs",
    )
    assert jobs.get("j2") is None


@_job_check
def check_jobs_idempotency_key(store: Store) -> None:
    jobs = _jobs(store)
    first = jobs.enqueue(_job("j1", key="refit:m:7"))
    again = jobs.enqueue(_job("j2", T0 + 5, key="refit:m:7", params={"other": True}))
    assert again == first, "a known key returns the existing job"
    assert jobs.get("j2") is None
    assert jobs.enqueue(_job("j1", T0 + 9, kind="evaluate")) == first, "so does a known job_id"
    jobs.enqueue(_job("j3"))
    jobs.enqueue(_job("j4"))  # jobs without a key never dedupe
    assert sorted(j.job_id for j in jobs.list()) == ["j1", "j3", "j4"]
    # A key stays taken once its job has finished.
    claimed = jobs.claim("w", lease_s=10, now=T0)
    assert claimed is not None and claimed.job_id == "j1"
    jobs.complete("j1", "w", {}, now=T0 + 1)
    assert jobs.enqueue(_job("j5", key="refit:m:7")).job_id == "j1"


@_job_check
def check_jobs_claim_order(store: Store) -> None:
    jobs = _jobs(store)
    jobs.enqueue(_job("c", T0 + 2))
    jobs.enqueue(_job("later", T0 - 5, run_after=T0 + 100))
    jobs.enqueue(_job("b", T0 + 1))
    jobs.enqueue(_job("snap", T0 - 1, kind="snapshot"))
    jobs.enqueue(_job("a", T0 + 1))
    assert jobs.claim("w", lease_s=10, now=T0, kinds=[]) is None, "no kinds: nothing"
    got = jobs.claim("w1", lease_s=10, now=T0, kinds=["refit"])
    assert got is not None and got.job_id == "a", "oldest first, job_id breaks ties"
    assert got.state is JobState.RUNNING
    assert (got.attempts, got.worker, got.lease_expires_at, got.updated_at) == (
        1,
        "w1",
        T0 + 10,
        T0,
    )
    assert jobs.get("a") == got
    order = [jobs.claim("w", lease_s=10, now=T0) for _ in range(4)]
    assert [j.job_id if j else None for j in order] == ["snap", "b", "c", None], (
        "a job whose run_after is still ahead waits"
    )
    later = jobs.claim("w", lease_s=10, now=T0 + 100)
    assert later is not None and later.job_id == "later"


@_job_check
def check_jobs_dead_worker_lease_is_reclaimed(store: Store) -> None:
    jobs = _jobs(store)
    jobs.enqueue(_job("j"))
    first = jobs.claim("w1", lease_s=10, now=T0)
    assert first is not None and first.attempts == 1
    assert jobs.claim("w2", lease_s=10, now=T0 + 9.9) is None, "the lease still holds"
    second = jobs.claim("w2", lease_s=10, now=T0 + 10)
    assert second is not None and second.job_id == "j", "an expired lease is reclaimed"
    assert (second.worker, second.attempts, second.lease_expires_at) == ("w2", 2, T0 + 20)
    assert not jobs.heartbeat("j", "w1", lease_s=10, now=T0 + 11), "w1 lost the job"
    assert jobs.complete("j", "w1", {"by": "w1"}, now=T0 + 11) is None
    assert jobs.fail("j", "w1", "boom", now=T0 + 11, retry_in=1) is None
    assert jobs.get("j") == second, "a refused call changes nothing"
    done = jobs.complete("j", "w2", {"by": "w2"}, now=T0 + 12)
    assert done is not None and done.state is JobState.DONE and done.result == {"by": "w2"}


@_job_check
def check_jobs_heartbeat_extends_the_lease(store: Store) -> None:
    jobs = _jobs(store)
    jobs.enqueue(_job("j"))
    jobs.claim("w1", lease_s=10, now=T0)
    assert jobs.heartbeat("j", "w1", lease_s=10, now=T0 + 8)
    held = jobs.get("j")
    assert held is not None and held.lease_expires_at == T0 + 18
    assert jobs.claim("w2", lease_s=10, now=T0 + 15) is None
    # A lease that ran out while nobody reclaimed the job can still be extended.
    assert jobs.heartbeat("j", "w1", lease_s=10, now=T0 + 20)
    assert jobs.claim("w2", lease_s=10, now=T0 + 25) is None
    assert not jobs.heartbeat("j", "w2", lease_s=10, now=T0 + 25), "w2 does not hold it"
    assert not jobs.heartbeat("nope", "w1", lease_s=10, now=T0 + 25)
    reclaimed = jobs.claim("w2", lease_s=10, now=T0 + 30)
    assert reclaimed is not None and reclaimed.worker == "w2"
    jobs.complete("j", "w2", {}, now=T0 + 31)
    assert not jobs.heartbeat("j", "w2", lease_s=10, now=T0 + 32), "a done job has no lease"


@_job_check
def check_jobs_complete_twice_is_once(store: Store) -> None:
    jobs = _jobs(store)
    jobs.enqueue(_job("j"))
    jobs.claim("w", lease_s=10, now=T0)
    done = jobs.complete("j", "w", {"version": "v2"}, now=T0 + 1)
    assert done is not None and done.state is JobState.DONE
    assert (done.result, done.updated_at, done.attempts) == ({"version": "v2"}, T0 + 1, 1)
    assert jobs.get("j") == done
    assert jobs.complete("j", "w", {"version": "v3"}, now=T0 + 2) == done, "finishing again"
    assert jobs.complete("j", "other", {}, now=T0 + 2) == done, "a done job answers anyone"
    assert jobs.fail("j", "w", "late", now=T0 + 2, retry_in=1) is None
    assert jobs.claim("w", lease_s=10, now=T0 + 100) is None, "a done job is never claimed"
    assert jobs.get("j") == done
    jobs.enqueue(_job("q"))
    assert jobs.complete("q", "w", {}, now=T0) is None, "a queued job is held by nobody"
    assert jobs.complete("nope", "w", {}, now=T0) is None


@_job_check
def check_jobs_fail_retries_with_back_off(store: Store) -> None:
    jobs = _jobs(store)
    jobs.enqueue(_job("j", max_attempts=2))
    jobs.claim("w", lease_s=10, now=T0)
    retry = jobs.fail("j", "w", "disk full", now=T0 + 1, retry_in=30)
    assert retry is not None and retry.state is JobState.QUEUED
    assert (retry.run_after, retry.error, retry.attempts, retry.lease_expires_at) == (
        T0 + 31,
        "disk full",
        1,
        None,
    )
    assert jobs.get("j") == retry
    assert jobs.fail("j", "w", "again", now=T0 + 2, retry_in=30) is None, "not held any more"
    assert jobs.claim("w", lease_s=10, now=T0 + 30) is None, "back-off: not before run_after"
    second = jobs.claim("w2", lease_s=10, now=T0 + 31)
    assert second is not None and second.attempts == 2
    assert jobs.fail("j", "w", "wrong worker", now=T0 + 32, retry_in=30) is None
    failed = jobs.fail("j", "w2", "still full", now=T0 + 33, retry_in=30)
    assert failed is not None and failed.state is JobState.FAILED, "after max_attempts: FAILED"
    assert (failed.error, failed.attempts, failed.updated_at) == ("still full", 2, T0 + 33)
    assert jobs.claim("w", lease_s=10, now=T0 + 1000) is None, "a failed job is never claimed"
    assert jobs.complete("j", "w2", {}, now=T0 + 34) is None
    assert jobs.get("j") == failed


@_job_check
def check_jobs_that_kill_their_worker_fail(store: Store) -> None:
    jobs = _jobs(store)
    jobs.enqueue(_job("poison", max_attempts=2))
    jobs.enqueue(_job("next", T0 + 1))
    first = jobs.claim("w1", lease_s=10, now=T0)
    second = jobs.claim("w2", lease_s=10, now=T0 + 10)
    assert first is not None and second is not None and second.job_id == "poison"
    assert second.attempts == 2
    # w2 dies as well: the job has had its max_attempts and is not handed out a third time.
    third = jobs.claim("w3", lease_s=10, now=T0 + 20)
    assert third is not None and third.job_id == "next"
    poison = jobs.get("poison")
    assert poison is not None and poison.state is JobState.FAILED and poison.attempts == 2
    assert poison.error, "the error says why"


@_job_check
def check_jobs_list_newest_first(store: Store) -> None:
    jobs = _jobs(store)
    assert jobs.list() == []
    for n, model in enumerate(["a", "b", "a", "b", "a"]):
        jobs.enqueue(_job(f"j{n}", T0 + n, model=model))
    jobs.enqueue(_job("j5", T0 + 4, model="b"))  # same time as j4: job_id breaks the tie
    assert [j.job_id for j in jobs.list()] == ["j5", "j4", "j3", "j2", "j1", "j0"]
    assert [j.job_id for j in jobs.list(model="a")] == ["j4", "j2", "j0"]
    assert [j.job_id for j in jobs.list(model="b", limit=2)] == ["j5", "j3"]
    assert [j.job_id for j in jobs.list(limit=1)] == ["j5"]
    assert jobs.list(model="c") == [] and jobs.list(limit=0) == []
    claimed = jobs.claim("w", lease_s=10, now=T0 + 10)
    assert jobs.list(model="a")[-1] == claimed, "list shows the current state"


@_job_check
def check_jobs_concurrent_claims_never_overlap(store: Store) -> None:
    jobs = _jobs(store)
    total, threads_n = 30, 5
    for n in range(total):
        jobs.enqueue(_job(f"j{n:02d}", T0 + n % 4))
    got: list[list[str]] = [[] for _ in range(threads_n)]
    errors: list[BaseException] = []
    start = threading.Barrier(threads_n)

    def worker(t: int) -> None:
        try:
            start.wait()
            while (job := jobs.claim(f"w{t}", lease_s=600, now=T0 + 10)) is not None:
                got[t].append(job.job_id)
                assert jobs.complete(job.job_id, f"w{t}", {"by": t}, now=T0 + 11) is not None
        except BaseException as exc:  # surfaced in the calling thread below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, f"concurrent claims failed: {errors[0]!r}"
    claimed = [j for ids in got for j in ids]
    assert sorted(claimed) == [f"j{n:02d}" for n in range(total)], "each job claimed once"
    for t, ids in enumerate(got):
        for job_id in ids:
            job = jobs.get(job_id)
            assert job is not None and job.result == {"by": t} and job.attempts == 1


# --- job queue: cancel, commit, release, permanent failure -------------------------------------


def _refused_everything(jobs: JobQueue, job_id: str, worker: str, now: float) -> None:
    """Every call of a worker on a job it no longer holds is refused."""
    assert not jobs.heartbeat(job_id, worker, lease_s=10, now=now), "heartbeat refused"
    assert jobs.commit(job_id, worker, now=now) is None, "commit refused"
    assert jobs.complete(job_id, worker, {"late": True}, now=now) is None, "complete refused"
    assert jobs.fail(job_id, worker, "late", now=now, retry_in=1) is None, "fail refused"
    assert jobs.fail(job_id, worker, "late", now=now, retry_in=None) is None, "fail refused"
    assert jobs.release(job_id, worker, now=now) is None, "release refused"


@_job_check
def check_jobs_cancel_a_queued_job(store: Store) -> None:
    jobs = _jobs(store)
    queued = jobs.enqueue(_job("j", run_after=T0 + 50))
    jobs.enqueue(_job("other", T0 + 1))
    cancelled = jobs.cancel("j", T0 + 1, reason="cancelled by admin")
    assert cancelled == dataclasses.replace(
        queued, state=JobState.CANCELLED, error="cancelled by admin", updated_at=T0 + 1
    ), f"a queued job is cancelled at once, got {cancelled}"
    assert cancelled is not None and cancelled.state is JobState.CANCELLED, "state is the enum"
    assert jobs.get("j") == cancelled
    again = jobs.cancel("j", T0 + 2, reason="again")
    assert again == cancelled, "cancelling a cancelled job returns it unchanged"
    got = jobs.claim("w", lease_s=10, now=T0 + 100)
    assert got is not None and got.job_id == "other", "a cancelled job is never claimed"
    assert jobs.complete("other", "w", {}, now=T0 + 100) is not None
    assert jobs.claim("w", lease_s=10, now=T0 + 1000) is None
    _refused_everything(jobs, "j", "w", T0 + 3)
    assert jobs.get("j") == cancelled, "refused calls change nothing"
    assert jobs.cancel("nope", T0, reason="x") is None, "an unknown job: None"
    assert jobs.get("nope") is None, "and nothing is stored"
    assert [j.job_id for j in jobs.list()] == ["other", "j"], "list shows cancelled jobs"


@_job_check
def check_jobs_cancel_a_running_job(store: Store) -> None:
    jobs = _jobs(store)
    jobs.enqueue(_job("j"))
    running = jobs.claim("w", lease_s=10, now=T0)
    assert running is not None
    cancelled = jobs.cancel("j", T0 + 2, reason="stop")
    assert cancelled == dataclasses.replace(
        running,
        state=JobState.CANCELLED,
        error="stop",
        lease_expires_at=None,
        updated_at=T0 + 2,
    ), f"a running job that committed nothing is cancelled at once, got {cancelled}"
    assert jobs.get("j") == cancelled
    # Its worker learns it at its next call: nothing it asks is granted.
    _refused_everything(jobs, "j", "w", T0 + 3)
    # Its lease would have run out at T0 + 10: a dead worker's job is reclaimed, a cancelled
    # one never.
    assert jobs.claim("w2", lease_s=10, now=T0 + 10) is None
    assert jobs.claim("w2", lease_s=10, now=T0 + 10_000) is None
    assert jobs.cancel("j", T0 + 20, reason="again") == cancelled
    assert jobs.get("j") == cancelled


@_job_check
def check_jobs_cancel_leaves_committed_and_finished_jobs_alone(store: Store) -> None:
    jobs = _jobs(store)
    for job_id in ("committed", "done", "failed"):
        jobs.enqueue(_job(job_id, max_attempts=1))
    claimed = [jobs.claim(f"w-{n}", lease_s=10, now=T0) for n in range(3)]
    assert [j.job_id if j else None for j in claimed] == ["committed", "done", "failed"]
    committed = jobs.commit("committed", "w-0", now=T0 + 1)
    done = jobs.complete("done", "w-1", {"version": "v2"}, now=T0 + 1)
    failed = jobs.fail("failed", "w-2", "boom", now=T0 + 1, retry_in=5)
    assert committed is not None and done is not None and failed is not None
    assert failed.state is JobState.FAILED
    for job in (committed, done, failed):
        got = jobs.cancel(job.job_id, T0 + 2, reason="too late")
        assert got == job, f"{job.job_id}: returned unchanged, got {got}"
        assert jobs.get(job.job_id) == job, f"{job.job_id}: nothing written"
    assert committed.state is JobState.RUNNING and committed.committed, "the caller can tell why"
    # The committed job goes on: its worker still holds it and finishes it.
    assert jobs.heartbeat("committed", "w-0", lease_s=10, now=T0 + 3)
    finished = jobs.complete("committed", "w-0", {"version": "v3"}, now=T0 + 4)
    assert finished is not None and finished.state is JobState.DONE and finished.committed
    assert jobs.cancel("committed", T0 + 5, reason="x") == finished


@_job_check
def check_jobs_commit(store: Store) -> None:
    jobs = _jobs(store)
    jobs.enqueue(_job("j"))
    assert jobs.commit("j", "w", now=T0) is None, "a queued job is held by nobody"
    running = jobs.claim("w", lease_s=10, now=T0)
    assert running is not None and not running.committed, "a claimed job has committed nothing"
    assert jobs.commit("j", "other", now=T0 + 1) is None, "only the worker that holds it"
    assert jobs.get("j") == running
    committed = jobs.commit("j", "w", now=T0 + 1)
    assert committed == dataclasses.replace(running, committed=True, updated_at=T0 + 1)
    assert jobs.get("j") == committed, "committed is stored"
    assert jobs.commit("j", "w", now=T0 + 2) == committed, "committing again changes nothing"
    # Committed stays through a failed attempt and the next claim.
    retry = jobs.fail("j", "w", "disk full", now=T0 + 3, retry_in=1)
    assert retry is not None and retry.state is JobState.QUEUED and retry.committed
    again = jobs.claim("w2", lease_s=10, now=T0 + 4)
    assert again is not None and again.committed and again.worker == "w2"
    done = jobs.complete("j", "w2", {}, now=T0 + 5)
    assert done is not None and done.committed
    assert jobs.commit("j", "w2", now=T0 + 6) is None, "a done job is not held"
    assert jobs.commit("nope", "w", now=T0) is None


@_job_check
def check_jobs_cancel_then_commit_and_commit_then_cancel(store: Store) -> None:
    jobs = _jobs(store)
    jobs.enqueue(_job("a"))
    jobs.enqueue(_job("b", T0 + 1))
    assert jobs.claim("w", lease_s=10, now=T0) is not None
    assert jobs.claim("w", lease_s=10, now=T0) is not None
    cancelled = jobs.cancel("a", T0 + 1, reason="stop")
    assert cancelled is not None and cancelled.state is JobState.CANCELLED
    assert jobs.commit("a", "w", now=T0 + 2) is None, "after a cancel, commit is refused"
    assert jobs.get("a") == cancelled and not cancelled.committed
    committed = jobs.commit("b", "w", now=T0 + 1)
    assert committed is not None and committed.committed
    assert jobs.cancel("b", T0 + 2, reason="stop") == committed, "after a commit, no cancel"
    assert jobs.get("b") == committed


@_job_check
def check_jobs_committed_survives_a_reclaim(store: Store) -> None:
    jobs = _jobs(store)
    jobs.enqueue(_job("j"))
    jobs.claim("w1", lease_s=10, now=T0)
    assert jobs.commit("j", "w1", now=T0 + 1) is not None
    # w1 dies after it started writing; w2 reclaims the job once the lease has run out.
    reclaimed = jobs.claim("w2", lease_s=10, now=T0 + 11)
    assert reclaimed is not None and reclaimed.job_id == "j"
    assert (reclaimed.worker, reclaimed.attempts, reclaimed.committed) == ("w2", 2, True), (
        f"a reclaimed job keeps committed, got {reclaimed}"
    )
    assert jobs.get("j") == reclaimed
    assert jobs.cancel("j", T0 + 12, reason="stop") == reclaimed, "and still cannot be cancelled"
    assert jobs.commit("j", "w1", now=T0 + 12) is None, "the dead worker holds nothing"
    assert jobs.commit("j", "w2", now=T0 + 12) == reclaimed
    done = jobs.complete("j", "w2", {"version": "v2"}, now=T0 + 13)
    assert done is not None and done.state is JobState.DONE and done.committed


@_job_check
def check_jobs_release_gives_the_job_back_without_counting_an_attempt(store: Store) -> None:
    jobs = _jobs(store)
    jobs.enqueue(_job("j", max_attempts=2))
    assert jobs.release("j", "w", now=T0) is None, "a queued job is held by nobody"
    first = jobs.claim("w", lease_s=10, now=T0)
    assert first is not None and first.attempts == 1
    assert jobs.release("j", "other", now=T0 + 1) is None, "only the worker that holds it"
    assert jobs.get("j") == first
    released = jobs.release("j", "w", now=T0 + 5)
    assert released == dataclasses.replace(
        first,
        state=JobState.QUEUED,
        run_after=T0 + 5,
        attempts=0,
        worker=None,
        lease_expires_at=None,
        updated_at=T0 + 5,
    ), f"queued again at once, the attempt not counted, got {released}"
    assert jobs.get("j") == released
    assert not jobs.heartbeat("j", "w", lease_s=10, now=T0 + 5), "w gave it back"
    assert jobs.release("j", "w", now=T0 + 5) is None, "releasing twice: not held any more"
    # Shut down three times with max_attempts=2: never FAILED, attempts never grow.
    for n in range(3):
        now = T0 + 10 + n
        got = jobs.claim(f"w{n}", lease_s=10, now=now)
        assert got is not None and got.job_id == "j" and got.attempts == 1, f"round {n}: {got}"
        if n == 1:
            assert jobs.commit("j", f"w{n}", now=now) is not None
        back = jobs.release("j", f"w{n}", now=now)
        assert back is not None and back.state is JobState.QUEUED and back.attempts == 0
        assert back.committed is (n >= 1), f"round {n}: release keeps committed"
    last = jobs.claim("w", lease_s=10, now=T0 + 20)
    assert last is not None and last.attempts == 1 and last.committed
    assert jobs.cancel("j", T0 + 21, reason="x") == last, "a released committed job stays so"
    assert jobs.release("nope", "w", now=T0) is None


@_job_check
def check_jobs_fail_without_retry_fails_at_once(store: Store) -> None:
    jobs = _jobs(store)
    jobs.enqueue(_job("j", max_attempts=3))
    running = jobs.claim("w", lease_s=10, now=T0)
    assert running is not None and running.attempts == 1
    assert jobs.fail("j", "other", "bad config", now=T0 + 1, retry_in=None) is None
    failed = jobs.fail("j", "w", "ConfigError: no metric 'x'", now=T0 + 1, retry_in=None)
    assert failed == dataclasses.replace(
        running,
        state=JobState.FAILED,
        error="ConfigError: no metric 'x'",
        lease_expires_at=None,
        updated_at=T0 + 1,
    ), f"an error that cannot go away fails the job on attempt 1 of 3, got {failed}"
    assert jobs.get("j") == failed
    assert jobs.claim("w", lease_s=10, now=T0 + 10_000) is None, "and it is never retried"
    assert jobs.cancel("j", T0 + 2, reason="x") == failed


@_job_check
def check_jobs_concurrent_cancel_and_commit_never_both_win(store: Store) -> None:
    jobs = _jobs(store)
    total = 50
    for n in range(total):
        jobs.enqueue(_job(f"j{n:02d}", T0 + n))
    for _ in range(total):
        assert jobs.claim("w", lease_s=600, now=T0 + 100) is not None
    cancels: list[Job | None] = [None] * total
    commits: list[Job | None] = [None] * total
    errors: list[BaseException] = []
    # Both threads wait at the barrier before each job, so the two calls on a job start
    # together and race: the worst case for a backend that reads, then writes. The threads
    # swap roles from one job to the next, so that neither call always goes first (whichever
    # thread the barrier wakes first would otherwise win every race).
    start = threading.Barrier(2)

    def racer(t: int) -> None:
        try:
            for n in range(total):
                start.wait()
                if (n + t) % 2:
                    cancels[n] = jobs.cancel(f"j{n:02d}", T0 + 101, reason="race")
                else:
                    commits[n] = jobs.commit(f"j{n:02d}", "w", now=T0 + 101)
        except BaseException as exc:  # surfaced in the calling thread below
            start.abort()
            errors.append(exc)

    threads = [threading.Thread(target=racer, args=(t,)) for t in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, f"concurrent cancel and commit failed: {errors[0]!r}"
    for n in range(total):
        job_id, cancel, commit = f"j{n:02d}", cancels[n], commits[n]
        stored = jobs.get(job_id)
        assert stored is not None and cancel is not None, job_id
        if commit is None:
            # The cancel won: cancelled, and the worker was told not to write.
            assert cancel.state is JobState.CANCELLED and not cancel.committed, (job_id, cancel)
            assert stored == cancel, (job_id, stored)
        else:
            # The commit won: the cancel saw a committed job and changed nothing.
            assert commit.committed and commit.state is JobState.RUNNING, (job_id, commit)
            assert cancel == commit == stored, f"{job_id}: both won: {cancel} / {commit}"
        assert not (stored.state is JobState.CANCELLED and stored.committed), job_id
