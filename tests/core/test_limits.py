"""Limits in the config and bounded buffers in the engine. The HTTP answers to each limit are
tested end to end in tests/e2e/test_limits.py; here is what a server cannot show
deterministically: parsing, refusals, and the group commit's bound at the moment it is full."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from onlearn.config import EngineSettings, Limits, load_settings, settings_from_mapping
from onlearn.errors import ConfigError, Overloaded, StoreUnavailable
from onlearn.group_commit import GroupCommitter
from onlearn.records import Event, EventKind
from onlearn.store import open_store


def label(i: int) -> Event:
    return Event(EventKind.LABEL, {"features": {"x": i}, "label": True}, at=time.time())


def test_limits_come_from_the_limits_table_then_the_environment(tmp_path):
    config = tmp_path / "onlearn.toml"
    config.write_text(
        "[limits]\nmax_body_bytes = 1000\nmax_batch_rows = 5\nrequest_timeout_s = 2.5\n"
        "[engine]\nmax_pending_labels = 7\nmax_pending_predictions = 9\n"
    )
    settings = load_settings(config, environ={})
    assert settings.limits == Limits(max_body_bytes=1000, max_batch_rows=5, request_timeout_s=2.5)
    assert (settings.engine.max_pending_labels, settings.engine.max_pending_predictions) == (7, 9)
    settings = load_settings(
        config, environ={"ONLEARN_MAX_BATCH_ROWS": "50", "ONLEARN_REQUEST_TIMEOUT_S": "0"}
    )
    assert settings.limits == Limits(max_body_bytes=1000, max_batch_rows=50, request_timeout_s=0)
    defaults = load_settings(None, environ={})
    assert defaults.limits == Limits(4 * 1024 * 1024, 10_000, 30.0)
    assert defaults.engine.max_pending_labels == EngineSettings().max_pending_labels == 100_000


def test_connection_limits_come_from_the_limits_table_then_the_environment(tmp_path):
    defaults = Limits()
    assert (defaults.keep_alive_timeout_s, defaults.max_connections) == (5.0, 1000)
    assert defaults.graceful_shutdown_s == 10.0
    config = tmp_path / "onlearn.toml"
    config.write_text(
        "[limits]\nkeep_alive_timeout_s = 2\nmax_connections = 50\ngraceful_shutdown_s = 3\n"
    )
    limits = load_settings(config, environ={}).limits
    assert (limits.keep_alive_timeout_s, limits.max_connections, limits.graceful_shutdown_s) == (
        2.0,
        50,
        3.0,
    )
    environ = {
        "ONLEARN_KEEP_ALIVE_TIMEOUT_S": "0.5",
        "ONLEARN_MAX_CONNECTIONS": "7",
        "ONLEARN_GRACEFUL_SHUTDOWN_S": "1.5",
    }
    limits = load_settings(config, environ=environ).limits
    assert (limits.keep_alive_timeout_s, limits.max_connections, limits.graceful_shutdown_s) == (
        0.5,
        7,
        1.5,
    )


def test_the_server_hands_the_connection_limits_to_uvicorn():
    from onlearn.config import Settings
    from serving.server import connection_options

    limits = Limits(keep_alive_timeout_s=2.0, max_connections=30, graceful_shutdown_s=4.0)
    options = connection_options(Settings(limits=limits))
    assert options == {
        "http": "serving.connections:Connection",
        "timeout_keep_alive": 2.0,
        "limit_concurrency": 30,
        "timeout_graceful_shutdown": 4.0,
    }


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ({"keep_alive_timeout_s": 0}, ["keep_alive_timeout_s", "above 0"]),
        ({"graceful_shutdown_s": 0}, ["graceful_shutdown_s", "above 0"]),
        ({"max_connections": 0}, ["max_connections", "at least 1"]),
        ({"max_connections": True}, ["max_connections", "non-negative"]),
        ({"max_batch_rows": 0}, ["max_batch_rows", "at least 1"]),
        ({"max_body_bytes": 0}, ["max_body_bytes", "at least 1"]),
        ({"request_timeout_s": -1}, ["request_timeout_s", "non-negative"]),
        ({"request_timeout_s": "fast"}, ["request_timeout_s", "non-negative"]),
        ({"max_rows": 3}, ["unknown entry max_rows", "max_batch_rows"]),
    ],
)
def test_a_bad_limit_is_refused_naming_it(table, words):
    with pytest.raises(ConfigError) as refused:
        settings_from_mapping({"limits": table})
    for word in words:
        assert word in str(refused.value)


@pytest.mark.parametrize(
    ("environ", "words"),
    [
        ({"ONLEARN_MAX_BODY_BYTES": "lots"}, ["ONLEARN_MAX_BODY_BYTES", "int"]),
        ({"ONLEARN_MAX_BATCH_ROWS": "0"}, ["max_batch_rows", "ONLEARN_MAX_BATCH_ROWS"]),
        ({"ONLEARN_REQUEST_TIMEOUT_S": "inf"}, ["request_timeout_s", "0 turns it off"]),
        ({"ONLEARN_MAX_CONNECTIONS": "many"}, ["ONLEARN_MAX_CONNECTIONS", "int"]),
        ({"ONLEARN_MAX_CONNECTIONS": "0"}, ["max_connections", "ONLEARN_MAX_CONNECTIONS"]),
        ({"ONLEARN_KEEP_ALIVE_TIMEOUT_S": "0"}, ["keep_alive_timeout_s", "above 0"]),
        ({"ONLEARN_GRACEFUL_SHUTDOWN_S": "-1"}, ["graceful_shutdown_s", "above 0"]),
    ],
)
def test_a_bad_limit_in_the_environment_is_refused_naming_the_variable(environ, words):
    with pytest.raises(ConfigError) as refused:
        load_settings(None, environ=environ)
    for word in words:
        assert word in str(refused.value)


def test_group_commit_refuses_past_its_bound_while_the_store_stalls_then_recovers(tmp_path):
    """Events waiting for a stalled store are bounded: past ``max_pending`` a submission fails at
    once (503 over HTTP) instead of queueing in memory; the waiting ones commit when it is back."""
    with open_store(f"sqlite:///{tmp_path}/t.db?busy_timeout_ms=5000") as store:
        committer = GroupCommitter(store.log, max_pending=3)
        holder = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            first = committer.submit("m", [label(0), label(1)])
            second = committer.submit("m", [label(2)])  # 2 waiting < 3: admitted
            assert committer.pending == 3
            started = time.monotonic()
            with pytest.raises(Overloaded) as refused:
                committer.submit("m", [label(3)])
            assert time.monotonic() - started < 0.1, "refused at once, not after the stall"
            assert isinstance(refused.value, StoreUnavailable)  # hence 503 with Retry-After
            assert "max_pending_labels = 3" in str(refused.value)
            assert committer.refused == 1 and not first.done()
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert first.result(10) == [1, 2] and second.result(10) == [3]
        assert committer.pending == 0
        assert committer.submit("m", [label(3)]).result(10) == [4]
        committer.close()


def test_a_batch_larger_than_the_bound_goes_through_an_idle_committer(tmp_path):
    with open_store("memory://") as store:
        committer = GroupCommitter(store.log, max_pending=2)
        assert committer.submit("m", [label(i) for i in range(5)]).result(10) == [1, 2, 3, 4, 5]
        assert committer.pending == 0 and committer.refused == 0
        committer.close()


def test_a_failed_append_frees_its_place_in_the_bound(tmp_path):
    with open_store(f"sqlite:///{tmp_path}/t.db?busy_timeout_ms=50") as store:
        committer = GroupCommitter(store.log, max_pending=1)
        holder = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(StoreUnavailable):
                committer.submit("m", [label(0)]).result(10)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert committer.pending == 0
        assert committer.submit("m", [label(1)]).result(10) == [1]
        committer.close()


def test_a_sync_commit_on_an_idle_committer_runs_in_the_callers_thread_and_counts(tmp_path):
    with open_store("memory://") as store:
        threads = []
        committer = GroupCommitter(
            store.log, on_commit=lambda *_: threads.append(threading.current_thread())
        )
        assert committer.commit("m", [label(0), label(1)]) == [1, 2]
        assert threads == [threading.current_thread()]  # no hop to the commit thread
        assert (committer.batches, committer.events, committer.pending) == (1, 2, 0)
        committer.close()


def test_a_closed_committer_refuses_at_once_rather_than_leave_the_caller_waiting():
    with open_store("memory://") as store:
        committer = GroupCommitter(store.log)
        committer.close()
        with pytest.raises(StoreUnavailable, match="closed"):
            committer.commit("m", [label(0)])
        with pytest.raises(StoreUnavailable, match="closed"):
            committer.submit("m", [label(0)])
