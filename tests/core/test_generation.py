"""A store that went back in time (emptied, replaced, an older copy) is caught before this process
applies anything new: readiness fails, labels are refused with a 503 naming the problem and what
to do, nothing read from the changed store is learned, and no snapshot is written over it
(onlearn/store/generation.py). Seen on Redis: 5 labels, Redis restarted empty, 12 labels: the
model learned old and new events under reused seqs, answered ``applied: true`` for labels it
skipped, and the graceful stop saved the diverged state as a snapshot."""

from __future__ import annotations

import sqlite3
import time

import pytest
import redis

from onlearn.engine import Engine
from onlearn.errors import StoreReplaced
from onlearn.records import FeedbackItem
from onlearn.store import open_store
from tests.core.conftest import phishing_settings, phishing_stream

STREAM = list(phishing_stream(40))


def _label(engine: Engine, i: int):
    x, y = STREAM[i]
    return engine.feedback_one("phishing", FeedbackItem(y, features=x))


def _copy(src: str, dst: str) -> None:
    """Put the database ``src`` in place of ``dst`` with SQLite's backup API: what restoring a
    backup under a running process does, seen by its open connections."""
    source, target = sqlite3.connect(src), sqlite3.connect(dst)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()


def _refused_for_good(engine: Engine, applied: int, labels: int, says: str) -> None:
    """Every later label is a StoreReplaced naming ``says`` and what to do; readiness fails;
    the model applied nothing more."""
    rt = engine.runtime("phishing")
    for i in range(10, 22):  # the 12 labels of the report
        with pytest.raises(StoreReplaced) as refused:
            _label(engine, i)
        assert says in str(refused.value) and "Restart it against the right store" in str(
            refused.value
        )
    ready, reason = engine.ready()
    assert not ready and says in reason, reason
    assert rt.seq == applied and rt.labels_applied == labels, "nothing new was applied"


def test_sqlite_a_fresh_file_put_at_the_path_is_caught(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    with open_store(f"sqlite:///{tmp_path}/fresh.db"):
        pass
    with Engine.from_settings(phishing_settings(url)) as engine:
        for i in range(5):
            assert _label(engine, i).applied
        applied = engine.runtime("phishing").seq
        _copy(f"{tmp_path}/fresh.db", f"{tmp_path}/s.db")
        _refused_for_good(engine, applied, 5, "holds generation")
    with open_store(url) as store:
        assert store.log.head("phishing") == 0, "no label went into the new store"
        assert store.registry.latest_snapshot("phishing", "v1") is None, "no snapshot over it"


def test_sqlite_an_older_copy_put_at_the_path_is_caught(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    with Engine.from_settings(phishing_settings(url)) as engine:
        for i in range(2):
            _label(engine, i)
        _copy(f"{tmp_path}/s.db", f"{tmp_path}/backup.db")  # the backup: 2 labels
        for i in range(2, 5):
            _label(engine, i)
        applied = engine.runtime("phishing").seq
        _copy(f"{tmp_path}/backup.db", f"{tmp_path}/s.db")  # restored under the process
        # The same generation id: the log's head below what was applied shows it, at the
        # first readiness probe (or maintenance round).
        ready, reason = engine.ready()
        assert not ready and f"up to seq {applied}" in reason and "ends at 2" in reason
        _refused_for_good(engine, applied, 5, f"applied the log up to seq {applied}")
    with open_store(url) as store:
        assert store.log.head("phishing") == 2, "no label went into the older copy"
        assert store.registry.latest_snapshot("phishing", "v1") is None, "no snapshot over it"


def test_sqlite_an_older_copy_is_caught_by_the_append_that_meets_it(tmp_path):
    # No probe nor maintenance round in between: the label's append gets a seq this process
    # applied already, which shows the log went back. That label is in the older copy's log
    # (its seq was given before anything could know); its sender gets the 503.
    url = f"sqlite:///{tmp_path}/s.db"
    settings = phishing_settings(url, engine={"snapshot_check_s": 3600})
    with Engine.from_settings(settings) as engine:
        for i in range(2):
            _label(engine, i)
        _copy(f"{tmp_path}/s.db", f"{tmp_path}/backup.db")
        for i in range(2, 5):
            _label(engine, i)
        applied = engine.runtime("phishing").seq
        _copy(f"{tmp_path}/backup.db", f"{tmp_path}/s.db")
        _refused_for_good(engine, applied, 5, f"applied the log up to seq {applied}")
    with open_store(url) as store:
        assert store.log.head("phishing") == 3, "only the label that showed it"
        assert store.registry.latest_snapshot("phishing", "v1") is None, "no snapshot over it"


def test_redis_emptied_by_flushall_is_caught_and_a_new_process_log_is_not_followed(redis_url):
    settings = phishing_settings(redis_url)
    with Engine.from_settings(settings) as engine:
        for i in range(5):
            _label(engine, i)
        applied = engine.runtime("phishing").seq
        assert engine.ready() == (True, "ok")
        client = redis.Redis.from_url(redis_url)
        try:
            client.flushall()
        finally:
            client.close()
        assert engine.ready()[0] is False, "readiness fails at once, before any label"
        _refused_for_good(engine, applied, 5, "has no generation id any more")
        # Another process starts on the emptied Redis and takes labels under seqs 1, 2, ...:
        # this one's follower does not apply them.
        with Engine.from_settings(settings) as other:
            for i in range(22, 34):
                assert _label(other, i).applied
            time.sleep(0.3)  # the follower's reads (a blocking XREAD of at most 0.5 s)
            rt = engine.runtime("phishing")
            assert rt.seq == applied and rt.labels_applied == 5
            engine.close()  # the graceful stop: no snapshot of the diverged state
            with open_store(redis_url) as store:
                assert store.registry.latest_snapshot("phishing", "v1") is None


def test_redis_restarted_empty_is_caught(redis_server_factory):
    server = redis_server_factory()  # no appendonly: a restart loses everything
    url = f"{server.url}/0"
    with Engine.from_settings(phishing_settings(url)) as engine:
        for i in range(5):
            _label(engine, i)
        applied = engine.runtime("phishing").seq
        server.stop()
        server.start()
        _refused_for_good(engine, applied, 5, "has no generation id any more")
    with open_store(url) as store:
        assert store.log.head("phishing") == 0
        assert store.registry.latest_snapshot("phishing", "v1") is None


def test_a_process_on_an_unchanged_store_snapshots_and_stays_ready(tmp_path):
    # The checks cost nothing to a store that did not change: the graceful stop's snapshot is
    # written, as before.
    url = f"sqlite:///{tmp_path}/s.db"
    with Engine.from_settings(phishing_settings(url)) as engine:
        for i in range(5):
            _label(engine, i)
        applied = engine.runtime("phishing").seq
        assert engine.ready() == (True, "ok")
    with open_store(url) as store:
        assert store.registry.latest_snapshot("phishing", "v1").seq == applied
