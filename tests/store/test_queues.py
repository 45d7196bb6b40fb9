"""Every LabelQueue and JobQueue check against every backend, the backends against each other
on random sequences of calls, and the shared backends (SQLite, Redis) across processes.

A new backend is one more entry in BACKENDS.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from onlearn.errors import StoreUnavailable
from onlearn.records import Event, EventKind, Job, JobState, QueueItem, QueueState
from onlearn.store import open_store
from onlearn.store.base import JobQueue, LabelOutcome, LabelQueue, Store
from onlearn.store.checks.queues import (
    T0,
    all_job_checks,
    all_queue_checks,
    check_jobs_cancel_a_running_job,
    check_jobs_cancel_leaves_committed_and_finished_jobs_alone,
    check_jobs_committed_survives_a_reclaim,
    check_jobs_concurrent_cancel_and_commit_never_both_win,
    check_jobs_fail_without_retry_fails_at_once,
    check_jobs_release_gives_the_job_back_without_counting_an_attempt,
    check_queue_order_is_priority_then_oldest_then_id,
    check_queue_racing_labellers_never_lose_nor_leak_a_label,
    check_queues,
)
from onlearn.store.codec import decode_job, decode_queue_item, encode_job, encode_queue_item
from onlearn.store.leases import cancellable
from onlearn.store.memory import MemoryJobQueue, MemoryLabelQueue
from onlearn.store.sqlite import open_sqlite_store

REPO = Path(__file__).resolve().parents[2]

# Backend name -> the URL of a fresh, empty store, given the requesting test (for its fixtures).
BACKENDS: dict[str, Callable[[pytest.FixtureRequest], str]] = {
    "memory": lambda request: "memory://",
    "sqlite": lambda request: f"sqlite:///{request.getfixturevalue('tmp_path')}/queues.db",
    "redis": lambda request: request.getfixturevalue("redis_url"),
}


@pytest.fixture(params=sorted(BACKENDS))
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    with open_store(BACKENDS[request.param](request)) as opened:
        yield opened


@pytest.mark.parametrize("check", list(all_queue_checks()), ids=lambda check: check.__name__)
def test_label_queue_contract(store: Store, check: Callable[[Store], None]) -> None:
    check(store)


@pytest.mark.parametrize("check", list(all_job_checks()), ids=lambda check: check.__name__)
def test_job_queue_contract(store: Store, check: Callable[[Store], None]) -> None:
    check(store)


def test_store_has_both_queues(store: Store) -> None:
    assert isinstance(store.queue, LabelQueue)
    assert isinstance(store.jobs, JobQueue)


def test_check_queues_runs_every_check_on_a_fresh_store() -> None:
    opened: list[Store] = []

    def open_fresh() -> Store:
        opened.append(open_store("memory://"))
        return opened[-1]

    check_queues(open_fresh)
    assert len(opened) == len(list(all_queue_checks())) + len(list(all_job_checks())) > 20
    assert len({id(s) for s in opened}) == len(opened)


class _FifoQueue(MemoryLabelQueue):
    """A queue that ignores priorities: a backend bug the checks must see."""

    def push(self, item, *, max_size):  # type: ignore[no-untyped-def]
        return super().push(dataclasses.replace(item, priority=0.0), max_size=max_size)


def test_a_broken_queue_fails_the_checks() -> None:
    store = open_store("memory://")
    store.queue = _FifoQueue()
    with pytest.raises(AssertionError):
        check_queue_order_is_priority_then_oldest_then_id(store)


class _FeedbackThenComplete(MemoryLabelQueue):
    """Labels as main did: append the label (feedback), then complete the item, two steps."""

    def label(self, model, item_id, claim_id, events, result, now):  # type: ignore[no-untyped-def]
        seqs = self._log.append(model, events)
        time.sleep(0.001)  # the window a real backend has between the two calls
        outcome = self.complete(model, item_id, claim_id, {**result, "seq": max(seqs)}, now)
        return LabelOutcome(outcome.status, outcome.item, seqs if outcome.status == "ok" else None)


def test_a_label_that_is_not_one_step_fails_the_race_check() -> None:
    store = open_store("memory://")
    store.queue = _FeedbackThenComplete(store.log)  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="one event per item|used"):
        check_queue_racing_labellers_never_lose_nor_leak_a_label(store)


def test_a_store_without_queues_fails_clearly() -> None:
    store = open_store("memory://")
    store.queue = None
    with pytest.raises(AssertionError, match="no label queue"):
        check_queue_order_is_priority_then_oldest_then_id(store)


def test_codec_round_trips_queue_items_and_jobs() -> None:
    item = QueueItem(
        "i",
        "m",
        {"x": 1, "s": "é"},
        priority=0.25,
        enqueued_at=1.5,
        prediction_id="p",
        dedupe_key="k",
        proba=[[True, 0.75], [False, 0.25]],
        uncertainty=0.25,
        reason="random",
        state=QueueState.DONE,
        attempts=2,
        skips=1,
        labeller="ann",
        claim_id="ab12",
        lease_expires_at=None,
        finished_at=9.0,
        result={"seq": 3, "version": "v1"},
    )
    back = decode_queue_item(encode_queue_item(item))
    assert back == item and back.state is QueueState.DONE
    assert type(back.proba[0][0]) is bool  # type: ignore[index]
    job = Job(
        "j", "refit", "m", {"a": [1, None]}, 2.0, key="k", state=JobState.FAILED, attempts=3,
        run_after=5.0, worker="w", lease_expires_at=None, updated_at=6.0, result=None, error="x",
    )  # fmt: skip
    assert decode_job(encode_job(job)) == job
    for state in JobState:
        for committed in (False, True):
            job = dataclasses.replace(job, state=state, committed=committed)
            back = decode_job(encode_job(job))
            assert back == job and back.state is state and back.committed is committed


def test_a_job_encoded_by_an_earlier_onlearn_has_committed_nothing() -> None:
    job = Job("j", "refit", "m", {}, 2.0, state=JobState.RUNNING, attempts=1, worker="w")
    old = json.loads(encode_job(job))
    del old["committed"]
    back = decode_job(json.dumps(old))
    assert back == job and back.committed is False


# --- broken job queues fail the checks ---------------------------------------------------------


class _TwoStepCancel(MemoryJobQueue):
    """Reads the job, then writes it cancelled under the lock: a commit in between is lost."""

    def cancel(self, job_id, now, *, reason):  # type: ignore[no-untyped-def]
        job = self.get(job_id)
        time.sleep(0.002)  # the window a real backend has between two round trips
        if job is None or not cancellable(job):
            return job
        with self._lock:
            job = self._jobs[job_id] = dataclasses.replace(
                job, state=JobState.CANCELLED, error=reason, lease_expires_at=None, updated_at=now
            )
        return job


class _CancelsCommitted(MemoryJobQueue):
    """Cancels any running job, committed or not."""

    def cancel(self, job_id, now, *, reason):  # type: ignore[no-untyped-def]
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None and job.state is JobState.RUNNING:
                self._jobs[job_id] = dataclasses.replace(job, committed=False)
        return super().cancel(job_id, now, reason=reason)


class _CancelKeepsTheLease(MemoryJobQueue):
    """Marks a running job cancelled but leaves its lease, so a dead worker's reclaim could
    find it."""

    def cancel(self, job_id, now, *, reason):  # type: ignore[no-untyped-def]
        with self._lock:
            before = self._jobs.get(job_id)
        job = super().cancel(job_id, now, reason=reason)
        if job is not None and before is not None and before.lease_expires_at is not None:
            with self._lock:
                job = self._jobs[job_id] = dataclasses.replace(
                    job, lease_expires_at=before.lease_expires_at
                )
        return job


class _ReclaimForgetsCommitted(MemoryJobQueue):
    def claim(self, worker, *, lease_s, now, kinds=None):  # type: ignore[no-untyped-def]
        job = super().claim(worker, lease_s=lease_s, now=now, kinds=kinds)
        if job is not None and job.committed:
            with self._lock:
                job = self._jobs[job.job_id] = dataclasses.replace(job, committed=False)
        return job


class _ReleaseCountsTheAttempt(MemoryJobQueue):
    def release(self, job_id, worker, now):  # type: ignore[no-untyped-def]
        job = super().release(job_id, worker, now)
        if job is not None:
            with self._lock:
                job = self._jobs[job_id] = dataclasses.replace(job, attempts=job.attempts + 1)
        return job


class _FailAlwaysRetries(MemoryJobQueue):
    def fail(self, job_id, worker, error, now, *, retry_in):  # type: ignore[no-untyped-def]
        return super().fail(job_id, worker, error, now, retry_in=retry_in or 0.0)


@pytest.mark.parametrize(
    ("broken", "check"),
    [
        (_TwoStepCancel, check_jobs_concurrent_cancel_and_commit_never_both_win),
        (_CancelsCommitted, check_jobs_cancel_leaves_committed_and_finished_jobs_alone),
        (_CancelsCommitted, check_jobs_committed_survives_a_reclaim),
        (_CancelKeepsTheLease, check_jobs_cancel_a_running_job),
        (_ReclaimForgetsCommitted, check_jobs_committed_survives_a_reclaim),
        (
            _ReleaseCountsTheAttempt,
            check_jobs_release_gives_the_job_back_without_counting_an_attempt,
        ),
        (_FailAlwaysRetries, check_jobs_fail_without_retry_fails_at_once),
    ],
    ids=lambda x: getattr(x, "__name__", None),
)
def test_a_broken_job_queue_fails_the_checks(
    broken: type[MemoryJobQueue], check: Callable[[Store], None]
) -> None:
    store = open_store("memory://")
    store.jobs = broken()
    with pytest.raises(AssertionError):
        check(store)


# --- every backend against the others ---------------------------------------------------------

# Ids that stress the Redis layout: bytewise order of UTF-8 (é, 日本 after z), prefixes ("a",
# "ab"), characters that redis.keys percent-encodes (space, ":", "{", "*", "%", "/").
_IDS = ["a", "ab", "b", "a b", "é", "z", "日本", "x:y{z}*", "%41", "~", "-", "10", "9", "p/q"]


def _same(items: list[QueueItem | None]) -> QueueItem | None:
    """The item every backend returned, claim ids aside (they are random): all must agree."""
    normal = [None if i is None else dataclasses.replace(i, claim_id=i.claim_id is not None) for i in items]  # fmt: skip
    assert all(n == normal[0] for n in normal), f"backends disagree: {normal}"
    return items[0]


@pytest.fixture
def all_stores(request: pytest.FixtureRequest) -> Iterator[list[Store]]:
    opened = [open_store(BACKENDS[name](request)) for name in sorted(BACKENDS)]
    try:
        yield opened
    finally:
        for store in opened:
            store.close()


@pytest.mark.parametrize("seed", range(3))
def test_label_queues_of_every_backend_agree_on_random_calls(
    all_stores: list[Store], seed: int
) -> None:
    rng = random.Random(seed)
    queues = [store.queue for store in all_stores]
    assert all(q is not None for q in queues)
    claims: list[dict[str, str]] = [{} for _ in queues]  # item_id -> the last claim id, per store
    now, known = T0, []
    for step in range(300):
        now += rng.choice([0.0, 0.5, 1.0, 2.0])
        op = rng.choices(
            ["push", "claim", "chosen", "complete", "skip", "release", "reprio", "purge"]
            + ["label", "give_back"],
            weights=[8, 4, 2, 3, 3, 1, 1, 1] + [3, 1],
        )[0]
        if op == "push":
            item = QueueItem(
                item_id=f"{rng.choice(_IDS)}{rng.randrange(4)}",
                model="m",
                features={"x": rng.random(), "s": rng.choice(_IDS)},
                priority=rng.choice([0.1, 0.5, 0.5, 0.9, 0.0, -0.0, -2.5, 1 / 3]),
                enqueued_at=rng.choice([now, now, T0, -5.0, 0.0, now + 0.25]),
                dedupe_key=rng.choice([None, None, "k1", "k2", "é"]),
                proba=[[True, 0.5], [False, 0.5]],
            )
            max_size = rng.choice([3, 5, 8, 100])
            outcomes = [q.push(item, max_size=max_size) for q in queues]  # type: ignore[union-attr]
            assert all(o == outcomes[0] for o in outcomes), f"step {step}: {outcomes}"
            known.append(item.item_id)
        elif op in ("claim", "chosen"):
            limit = rng.randrange(0, 4)
            chosen = rng.sample(known, min(len(known), 4)) if op == "chosen" and known else None
            labeller = rng.choice([None, "ann", "bob"])
            lease = rng.choice([1.0, 3.0])
            got = [
                q.claim(
                    "m", limit=limit, lease_s=lease, labeller=labeller, now=now, item_ids=chosen
                )  # type: ignore[union-attr]
                for q in queues
            ]
            assert len({len(g) for g in got}) == 1, f"step {step}: {got}"
            for items in zip(*got, strict=True):
                _same(list(items))
            for n, g in enumerate(got):
                claims[n].update((i.item_id, i.claim_id) for i in g)  # type: ignore[misc]
        elif op in ("complete", "skip", "label", "give_back") and known:
            item_id = rng.choice(known + ["nope"])
            how = rng.choice(["own", "own", "none", "bogus"])
            skipper = rng.choice([None, "ann", "bob"])
            # Keys repeat, so that the log's dedup answers some labels with an earlier seq.
            events = [
                Event(EventKind.LABEL, {"label": step}, now, key=rng.choice([None, "k1", "k2"]))
            ]
            outcomes = []
            for n, q in enumerate(queues):
                claim_id = {"own": claims[n].get(item_id), "none": None, "bogus": "f00d"}[how]
                if op == "complete":
                    outcome = q.complete("m", item_id, claim_id, {"step": step}, now=now)  # type: ignore[union-attr]
                elif op == "label":
                    outcome = q.label("m", item_id, claim_id, events, {"step": step}, now=now)  # type: ignore[union-attr]
                elif op == "give_back":
                    outcome = q.release("m", item_id, claim_id or "f00d", now=now)  # type: ignore[union-attr]
                else:
                    outcome = q.skip("m", item_id, claim_id, now=now, max_skips=2, labeller=skipper)  # type: ignore[union-attr]
                outcomes.append(outcome)
            assert len({o.status for o in outcomes}) == 1, f"step {step}: {outcomes}"
            _same([o.item for o in outcomes])
            if op == "label":
                seqs = [(o.seqs, o.seqs and o.seqs.new) for o in outcomes]  # type: ignore[union-attr]
                assert all(x == seqs[0] for x in seqs), f"step {step}: {seqs}"
        elif op == "release":
            released = [q.release_expired("m", now) for q in queues]  # type: ignore[union-attr]
            assert len(set(released)) == 1, f"step {step}: {released}"
        elif op == "reprio" and known:
            new = {i: rng.choice([0.2, 0.7, 0.5]) for i in rng.sample(known, min(3, len(known)))}
            for q in queues:
                q.reprioritize("m", new)  # type: ignore[union-attr]
        elif op == "purge":
            purged = [q.purge_finished("m", before=now - 3) for q in queues]  # type: ignore[union-attr]
            assert len(set(purged)) == 1, f"step {step}: {purged}"
        peeks = [q.peek("m", 100) for q in queues]  # type: ignore[union-attr]
        assert [[i.item_id for i in p] for p in peeks] == [[i.item_id for i in peeks[0]]] * len(
            queues
        ), f"step {step}: the order differs"
        stats = [q.stats("m") for q in queues]  # type: ignore[union-attr]
        assert all(s == stats[0] for s in stats), f"step {step}: {stats}"
        oldest = [q.oldest_waiting("m") for q in queues]  # type: ignore[union-attr]
        waiting = [
            item.enqueued_at
            for item in (queues[0].get("m", i) for i in set(known))  # type: ignore[union-attr]
            if item is not None and item.state in (QueueState.QUEUED, QueueState.CLAIMED)
        ]
        assert oldest == [min(waiting, default=None)] * len(queues), f"step {step}: {oldest}"
    for item_id in set(known):
        _same([q.get("m", item_id) for q in queues])  # type: ignore[union-attr]


@pytest.mark.parametrize("seed", range(3))
def test_job_queues_of_every_backend_agree_on_random_calls(
    all_stores: list[Store], seed: int
) -> None:
    rng = random.Random(seed)
    queues = [store.jobs for store in all_stores]
    now = T0
    ids: list[str] = []
    workers = ["w1", "w2", "w3"]
    for step in range(250):
        now += rng.choice([0.0, 1.0, 3.0])
        op = rng.choices(
            ["enqueue", "claim", "complete", "fail", "heartbeat", "list"]
            + ["cancel", "commit", "release", "fail_now"],
            weights=[4, 4, 2, 2, 1, 1] + [2, 2, 1, 1],
        )[0]
        if op == "enqueue":
            job = Job(
                job_id=f"{rng.choice(_IDS)}{rng.randrange(5)}",
                kind=rng.choice(["refit", "snapshot"]),
                model=rng.choice(["m", "n"]),
                params={"x": rng.random()},
                created_at=rng.choice([T0, T0 + 1, now, -1.0]),
                key=rng.choice([None, None, "k1", "k2"]),
                max_attempts=rng.choice([1, 2, 3]),
            )
            got = [q.enqueue(job) for q in queues]  # type: ignore[union-attr]
            ids.append(job.job_id)
        elif op == "claim":
            kinds = rng.choice([None, ["refit"], ["snapshot", "refit"], ["other"]])
            worker, lease = rng.choice(workers), rng.choice([2.0, 5.0])
            got = [q.claim(worker, lease_s=lease, now=now, kinds=kinds) for q in queues]  # type: ignore[union-attr]
        elif op == "cancel" and ids:
            job_id = rng.choice(ids + ["nope"])
            got = [q.cancel(job_id, now, reason=f"step {step}") for q in queues]  # type: ignore[union-attr]
        elif op in ("complete", "fail", "heartbeat", "commit", "release", "fail_now") and ids:
            job_id, worker = rng.choice(ids), rng.choice(workers)
            # Mostly a running job and the worker that holds it, or few calls would be granted.
            held = [j for j in queues[0].list(limit=1000) if j.state is JobState.RUNNING]  # type: ignore[union-attr]
            if held and rng.random() < 0.7:
                job = rng.choice(held)
                job_id, worker = job.job_id, job.worker  # type: ignore[assignment]
            if op == "complete":
                got = [q.complete(job_id, worker, {"s": step}, now=now) for q in queues]  # type: ignore[union-attr]
            elif op == "fail":
                got = [q.fail(job_id, worker, "boom", now=now, retry_in=2.0) for q in queues]  # type: ignore[union-attr]
            elif op == "fail_now":
                got = [q.fail(job_id, worker, "bad", now=now, retry_in=None) for q in queues]  # type: ignore[union-attr]
            elif op == "commit":
                got = [q.commit(job_id, worker, now=now) for q in queues]  # type: ignore[union-attr]
            elif op == "release":
                got = [q.release(job_id, worker, now=now) for q in queues]  # type: ignore[union-attr]
            else:
                got = [q.heartbeat(job_id, worker, lease_s=4.0, now=now) for q in queues]  # type: ignore[union-attr]
        else:
            model, limit = rng.choice([None, "m", "n"]), rng.choice([3, 50])
            got = [q.list(model=model, limit=limit) for q in queues]  # type: ignore[union-attr]
        assert all(g == got[0] for g in got), f"step {step} ({op}): {got}"
    for job_id in set(ids):
        got = [q.get(job_id) for q in queues]  # type: ignore[union-attr]
        assert all(g == got[0] for g in got), f"{job_id}: {got}"


# --- SQLite ----------------------------------------------------------------------------------


def _url(tmp_path: Path, query: str = "") -> str:
    return f"sqlite:///{tmp_path / 'onlearn.db'}{query}"


def _run_python(code: str, *args: str) -> subprocess.Popen:
    """Start ``python -c code args...`` on this checkout, with pipes for stdin and stdout."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
    )


def _start_together(procs: list[subprocess.Popen]) -> None:
    """Wait until every process has opened its store, then let them all go at once."""
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()


def test_queue_and_jobs_survive_close_and_reopen(tmp_path: Path) -> None:
    url = _url(tmp_path)
    with open_sqlite_store(url) as store:
        assert store.queue is not None and store.jobs is not None
        for n in range(3):
            store.queue.push(QueueItem(f"i{n}", "m", {"x": n}, n / 10, 1.0), max_size=2)
        (claimed,) = store.queue.claim("m", limit=1, lease_s=10, labeller="ann", now=2.0)
        store.queue.complete("m", claimed.item_id, claimed.claim_id, {"seq": 1}, now=3.0)
        stats = store.queue.stats("m")
        store.jobs.enqueue(Job("j", "refit", "m", {}, 1.0, key="k"))
        job = store.jobs.claim("w", lease_s=10, now=2.0)
    with open_sqlite_store(url) as store:
        assert store.queue is not None and store.jobs is not None
        assert store.queue.stats("m") == stats and stats.evicted == 1 and stats.labelled == 1
        assert store.queue.get("m", claimed.item_id).result == {"seq": 1}  # type: ignore[union-attr]
        assert store.jobs.get("j") == job
        assert store.jobs.enqueue(Job("j2", "refit", "m", {}, 5.0, key="k")) == job


def test_locked_database_makes_queue_calls_unavailable(tmp_path: Path) -> None:
    url = _url(tmp_path, "?busy_timeout_ms=50")
    with open_sqlite_store(url) as store:
        assert store.queue is not None and store.jobs is not None
        store.queue.push(QueueItem("a", "m", {}, 0.5, 1.0), max_size=10)
        locker = sqlite3.connect(tmp_path / "onlearn.db", isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreUnavailable, match="claim from queue"):
                store.queue.claim("m", limit=1, lease_s=10, labeller=None, now=2.0)
            with pytest.raises(StoreUnavailable, match="enqueue job"):
                store.jobs.enqueue(Job("j", "refit", "m", {}, 1.0))
            assert store.queue.stats("m").depth == 1, "readers do not wait for the writer"
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert len(store.queue.claim("m", limit=1, lease_s=10, labeller=None, now=2.0)) == 1


_LABELLER = """
    import json, sys
    from onlearn.store import open_store

    name = sys.argv[1]
    with open_store({url!r}) as store:
        print("ready", flush=True)
        sys.stdin.readline()  # wait for "go", so that every labeller claims at the same time
        got = []
        while batch := store.queue.claim("m", limit=2, lease_s=3600, labeller=name, now=10.0):
            got.extend((item.item_id, item.claim_id) for item in batch)
        print(json.dumps(got), flush=True)
"""


@pytest.fixture(params=["sqlite", "redis"])
def shared_url(request: pytest.FixtureRequest) -> str:
    """The URL of a fresh store that several processes can share."""
    return BACKENDS[request.param](request)


def test_processes_claiming_from_one_queue_get_disjoint_items(shared_url: str) -> None:
    url = shared_url
    total = 150
    with open_store(url) as store:
        assert store.queue is not None
        for n in range(total):
            item = QueueItem(f"i{n:03d}", "m", {"n": n}, priority=(n % 10) / 10, enqueued_at=1.0)
            assert store.queue.push(item, max_size=total).status == "queued"
    procs = [_run_python(_LABELLER.format(url=url), f"l{p}") for p in range(3)]
    _start_together(procs)
    claims: dict[str, list[list[str]]] = {}
    for p, proc in enumerate(procs):
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        claims[f"l{p}"] = json.loads(out)
    claimed = [item_id for got in claims.values() for item_id, _ in got]
    assert len(claimed) == len(set(claimed)), "two processes claimed the same item"
    assert sorted(claimed) == [f"i{n:03d}" for n in range(total)], "every item was claimed"
    with open_store(url) as store:
        assert store.queue is not None
        for name, got in claims.items():
            for item_id, claim_id in got:
                item = store.queue.get("m", item_id)
                assert item is not None and item.state is QueueState.CLAIMED
                assert (item.labeller, item.claim_id, item.attempts) == (name, claim_id, 1)
        assert store.queue.stats("m").claimed == total


_WORKER = """
    import json, sys, time
    from onlearn.store import open_store

    name, now, mode = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    with open_store({url!r}) as store:
        print("ready", flush=True)
        sys.stdin.readline()
        job = store.jobs.claim(name, lease_s=30, now=now)
        print(json.dumps(None if job is None else [job.job_id, job.attempts]), flush=True)
        if mode == "hang":
            time.sleep(3600)  # killed with SIGKILL while holding the lease
        elif job is not None:
            done = store.jobs.complete(job.job_id, name, {{"by": name}}, now=now + 1)
            print(json.dumps(done is not None), flush=True)
"""


def test_job_of_a_killed_worker_is_reclaimed_and_finished_once(shared_url: str) -> None:
    url = shared_url
    with open_store(url) as store:
        assert store.jobs is not None
        store.jobs.enqueue(Job("refit-1", "refit", "m", {"window": 10}, created_at=100.0))
    doomed = _run_python(_WORKER.format(url=url), "doomed", "100", "hang")
    _start_together([doomed])
    assert json.loads(doomed.stdout.readline()) == ["refit-1", 1]
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.communicate(timeout=10)
    assert doomed.returncode == -signal.SIGKILL

    # Within the lease nobody gets the job; once it has run out, exactly one of two racing
    # workers reclaims it and finishes it.
    with open_store(url) as store:
        assert store.jobs is not None
        assert store.jobs.claim("early", lease_s=30, now=129.9) is None, "the lease still holds"
    racers = [_run_python(_WORKER.format(url=url), f"w{n}", "130", "finish") for n in range(2)]
    _start_together(racers)
    answers = []
    for proc in racers:
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        answers.append([json.loads(line) for line in out.splitlines()])
    winners = [n for n, lines in enumerate(answers) if lines[0] is not None]
    assert len(winners) == 1, f"exactly one worker reclaims the job: {answers}"
    (winner,) = winners
    assert answers[winner] == [["refit-1", 2], True]
    assert answers[1 - winner] == [None]
    with open_store(url) as store:
        assert store.jobs is not None
        job = store.jobs.get("refit-1")
        assert job is not None and job.state is JobState.DONE
        assert (job.attempts, job.worker, job.result) == (2, f"w{winner}", {"by": f"w{winner}"})
        assert store.jobs.complete("refit-1", "doomed", {"by": "doomed"}, now=200.0) == job
