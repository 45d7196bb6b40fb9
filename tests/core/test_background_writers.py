"""Group commit of label events and batched prediction records, against real stores."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from onlearn.errors import Overloaded, StoreUnavailable
from onlearn.group_commit import GroupCommitter
from onlearn.prediction_writer import PredictionWriter
from onlearn.records import Event, EventKind, PredictionRecord
from onlearn.store import open_store


def label(i: int, key: str | None = None) -> Event:
    return Event(EventKind.LABEL, {"features": {"x": i}, "label": True}, at=time.time(), key=key)


NOW = time.time()
# Records live an hour from import: a slow run (a loaded machine) must not see them expire.
TTL_S = 3600.0


def record(i: int, now: float = NOW) -> PredictionRecord:
    return PredictionRecord(f"{i:032x}", "m", now, {"x": i}, "v1", {}, expires_at=now + TTL_S)


def test_concurrent_submissions_share_commits_and_get_their_own_seqs(tmp_path):
    with open_store(f"sqlite:///{tmp_path}/t.db") as store:
        committed = []
        committer = GroupCommitter(
            store.log, on_commit=lambda model, events, result: committed.append(model)
        )
        futures, lock = [], threading.Lock()

        def submit(t):
            for i in range(50):
                f = committer.submit("m", [label(t * 1000 + i, key=f"{t}-{i}")])
                with lock:
                    futures.append(f)

        threads = [threading.Thread(target=submit, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seqs = [s for f in futures for s in f.result(timeout=10)]
        committer.close()
        assert sorted(seqs) == list(range(1, 401))
        assert committer.events == 400 and committer.batches < 400
        assert set(committed) == {"m"}
        assert [e.seq for e in store.log.read("m", 0, 1000)] == list(range(1, 401))


def test_a_failed_append_fails_every_waiter_of_the_batch(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/t.db?busy_timeout_ms=50")
    holder = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    committer = GroupCommitter(store.log)
    try:
        future = committer.submit("m", [label(1)])
        with pytest.raises(StoreUnavailable):
            future.result(timeout=10)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert committer.submit("m", [label(2)]).result(timeout=10) == [1]  # recovers by itself
    committer.close()
    store.close()


def test_records_are_readable_before_and_after_they_are_written():
    with open_store("memory://") as store:
        writer = PredictionWriter(store.predictions, flush_interval_s=3600)
        writer.put(record(1))
        assert writer.get(record(1).id) == record(1)
        assert store.predictions.get(record(1).id) is None
        writer.flush()
        assert store.predictions.get(record(1).id) == record(1)
        assert writer.get(record(1).id) is None and writer.written == 1
        writer.close()


def test_the_buffer_is_bounded_by_refusing_and_drains_when_the_store_is_back(tmp_path):
    # Seen on an older onlearn: at saturation the writer dropped 51% of 400k records (feedback by
    # their id then got 404). A full buffer refuses what does not fit (503), drops nothing.
    store = open_store(f"sqlite:///{tmp_path}/t.db?busy_timeout_ms=50")
    writer = PredictionWriter(store.predictions, flush_interval_s=3600, max_pending=10)
    holder = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    admitted = []
    try:
        for i in range(25):
            try:
                writer.admit(1)
            except Overloaded as e:
                assert "max_pending_predictions = 10" in str(e) and "retry" in str(e)
                continue
            writer.put(record(i))
            admitted.append(i)
        writer.flush()  # fails: the database is locked; the batch is kept
        assert writer.failures == 1 and writer.pending == 10 and writer.dropped == 0
        assert admitted == list(range(10)) and writer.refused == 15
        with pytest.raises(Overloaded):
            writer.admit(1)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    writer.flush()  # the thread's next try: the store is back
    writer.admit(1)
    assert writer.pending == 0 and writer.written == 10 and writer.dropped == 0
    assert all(store.predictions.get(record(i).id) == record(i) for i in admitted)
    writer.close()
    store.close()


def test_a_batch_bigger_than_the_bound_is_taken_alone():
    with open_store("memory://") as store:
        writer = PredictionWriter(store.predictions, flush_interval_s=3600, max_pending=4)
        writer.admit(6)  # an empty buffer takes any batch: it can be answered at all
        writer.put_many([record(i) for i in range(6)])
        writer.close()
        assert writer.written == 6 and writer.refused == 0


def test_records_still_waiting_at_shutdown_with_the_store_away_are_counted(tmp_path, caplog):
    store = open_store(f"sqlite:///{tmp_path}/t.db?busy_timeout_ms=50")
    writer = PredictionWriter(store.predictions, flush_interval_s=3600)
    writer.put_many([record(i) for i in range(3)])
    holder = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        writer.close(attempts=2, pause_s=0.01)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert writer.dropped == 3 and "3 prediction records were not written" in caplog.text
    store.close()


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_a_record_the_store_refuses_is_dropped_and_does_not_hold_back_the_others(
    backend, tmp_path, request
):
    # A lone surrogate cannot be encoded as UTF-8: no store can hold this record, ever. The
    # HTTP layer refuses such input; this is the writer's own guard should another way in exist.
    bad = PredictionRecord("f" * 32, "m", NOW, {"x": "\ud800"}, "v1", {}, expires_at=NOW + TTL_S)
    url = (
        request.getfixturevalue("redis_url") if backend == "redis" else f"sqlite:///{tmp_path}/t.db"
    )
    with open_store(url) as store:
        try:
            store.predictions.put_many([bad])
        except StoreUnavailable:
            pytest.fail("a refused record must not look like an unavailable store")
        except Exception:
            pass
        else:
            pytest.fail(f"{url} stored a record with a lone surrogate")
        written = []
        writer = PredictionWriter(
            store.predictions, flush_interval_s=3600, after_write=written.extend
        )
        for i in range(3):
            writer.put(record(i))
        writer.put(bad)
        writer.put(record(3))
        writer.flush()
        assert writer.unwritable == 1 and writer.pending == 0 and writer.failures == 0
        assert writer.written == 4 and [r.id for r in written] == [record(i).id for i in range(4)]
        for i in range(4):
            assert store.predictions.get(record(i).id) == record(i)
        assert store.predictions.get(bad.id) is None
        # Later batches go through as usual.
        writer.put(record(4))
        writer.flush()
        assert writer.written == 5 and store.predictions.get(record(4).id) == record(4)
        writer.close()


def test_a_caller_writes_the_buffer_when_the_thread_falls_behind():
    with open_store("memory://") as store:
        writer = PredictionWriter(
            store.predictions, flush_interval_s=3600, max_pending=1000, help_at=50
        )
        writer.put_many([record(i) for i in range(49)])
        assert writer.pending == 49 and writer.helped == 0
        writer.put(record(49))  # the buffer holds help_at records: this caller writes them
        assert writer.pending == 0 and writer.written == 50 and writer.helped == 1
        assert store.predictions.get(record(49).id) == record(49)
        writer.put_many([record(i) for i in range(50, 120)])
        assert writer.pending == 0 and writer.written == 120 and writer.dropped == 0
        writer.close()


def test_callers_leave_a_store_that_is_down_to_the_thread(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/t.db?busy_timeout_ms=50")
    writer = PredictionWriter(store.predictions, flush_interval_s=3600, max_pending=40, help_at=10)
    holder = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    refused = 0
    try:
        for i in range(60):
            try:
                writer.admit(1)
            except Overloaded:
                refused += 1
                continue
            writer.put(record(i))
        # One caller tried (the database is locked) and failed; no other caller waited on it.
        assert writer.helped == 1 and writer.failures == 1
        assert writer.pending == 40 and writer.dropped == 0 and refused == writer.refused == 20
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    writer.flush()  # the thread's flush reaches the store: callers may help again
    assert writer.pending == 0 and writer.written == 40
    writer.put_many([record(i) for i in range(100, 110)])
    assert writer.helped == 2 and writer.pending == 0
    writer.close()
    store.close()
