"""SQLite trim and retention: chunked deletes equal one DELETE, writers are not held back, the WAL
stays bounded, the file gives space back, and a file of an earlier onlearn is migrated."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from onlearn.records import Event, EventKind, PredictionRecord
from onlearn.store import open_store
from onlearn.store.sqlite import SCHEMA_VERSION, connection, open_sqlite_store

REPO = Path(__file__).resolve().parents[2]


def _event(i: int, key: str | None = None) -> Event:
    payload = {"features": {"x": i, "text": "some words " * 3}, "label": i % 3 == 0}
    return Event(EventKind.LABEL, payload, at=float(i), key=key)


def _seed(store, model: str, n: int, batch: int = 10_000) -> None:
    for start in range(0, n, batch):
        stop = min(n, start + batch)
        keys = [f"{model}-{i}" if i % 4 == 0 else None for i in range(start, stop)]
        store.log.append(
            model, [_event(i, k) for i, k in zip(range(start, stop), keys, strict=True)]
        )


def _rows(path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


def _old_trim(path: Path, model: str, upto: int) -> int:
    """Trim as onlearn did before chunks: the head kept, then one DELETE."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        (head,) = conn.execute(
            "SELECT max(coalesce((SELECT seq FROM heads WHERE model = ?1), 0),"
            " coalesce((SELECT max(seq) FROM events WHERE model = ?1), 0))",
            (model,),
        ).fetchone()
        if head:
            conn.execute(
                "INSERT INTO heads (model, seq) VALUES (?, ?)"
                " ON CONFLICT (model) DO UPDATE SET seq = excluded.seq",
                (model, head),
            )
        deleted = conn.execute(
            "DELETE FROM events WHERE model = ? AND seq <= ?", (model, upto)
        ).rowcount
        conn.execute("COMMIT")
        return deleted
    finally:
        conn.close()


def _copy(src: Path, dst: Path) -> None:
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)


_EVENTS = "SELECT model, seq, kind, payload, at, key FROM events ORDER BY model, seq"
_HEADS = "SELECT model, seq FROM heads ORDER BY model"


def test_chunked_trim_removes_exactly_what_one_delete_did(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Chunks of 7 rows: many chunks, a last one partly full, bounds on and off a chunk's end.
    monkeypatch.setattr(connection, "CHUNK_ROWS", 7)
    new, old = tmp_path / "new.db", tmp_path / "old.db"
    with open_sqlite_store(f"sqlite:///{new}") as store:
        _seed(store, "a", 100)
        _seed(store, "b", 30)
        store.log.trim("b", upto=30)  # b: every event gone, its head kept
        store.log.append("c", [_event(0)])
    _copy(new, old)
    steps = [("a", 0), ("a", 14), ("a", 14), ("a", 50), ("b", 40), ("c", 1), ("a", 1000)]
    with open_sqlite_store(f"sqlite:///{new}") as store:
        for model, upto in steps:
            assert store.log.trim(model, upto) == _old_trim(old, model, upto), (model, upto)
            assert _rows(new, _EVENTS) == _rows(old, _EVENTS), (model, upto)
            assert _rows(new, _HEADS) == _rows(old, _HEADS), (model, upto)
        assert store.log.trim("unknown", 10) == 0
        assert store.log.head("a") == 100 and store.log.append("a", [_event(1)]) == [101]
        assert store.log.head("b") == 30 and store.log.read("c", 0) == []


def _record(i: int, expires_at: float, model: str = "m") -> PredictionRecord:
    return PredictionRecord(
        f"{i:032x}", model, 1.0, {"x": i}, "v1", {"v1": {"label": True}}, expires_at=expires_at
    )


def test_chunked_purge_of_predictions_removes_exactly_the_expired(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection, "CHUNK_ROWS", 7)
    path = tmp_path / "p.db"
    with open_sqlite_store(f"sqlite:///{path}") as store:
        now = time.time()
        store.predictions.put_many(
            [_record(i, now - 10 if i % 3 else now + 600) for i in range(100)]
        )
        expected = _rows(path, f"SELECT id FROM predictions WHERE expires_at > {now!r} ORDER BY id")
        assert store.predictions.purge_expired(now) == 66
        assert _rows(path, "SELECT id FROM predictions ORDER BY id") == expected
        assert store.predictions.purge_expired(now) == 0


def _max_append_wait(url: str, path: Path, trim) -> tuple[float, int, int, object]:
    """Run ``trim()`` while another thread appends one event at a time on its own connections:
    the longest append, the number of appends, the WAL's peak size, and trim's result."""
    stop = threading.Event()
    waits: list[float] = []
    wal_peak = [0]
    wal = Path(f"{path}-wal")

    def append() -> None:
        with open_store(url) as other:
            while not stop.is_set():
                started = time.perf_counter()
                other.log.append("other", [_event(0)])
                waits.append(time.perf_counter() - started)
                wal_peak[0] = max(wal_peak[0], wal.stat().st_size if wal.exists() else 0)
                time.sleep(0.001)

    thread = threading.Thread(target=append)
    thread.start()
    try:
        while len(waits) < 5:  # the appender is under way before the trim starts
            time.sleep(0.01)
        result = trim()
    finally:
        stop.set()
        thread.join()
    return max(waits), len(waits), wal_peak[0], result


def test_appends_wait_little_during_a_long_trim_and_the_wal_stays_bounded(tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    url = f"sqlite:///{path}"
    with open_store(url) as store:
        _seed(store, "m", 200_000)
        before = os.path.getsize(path)
        longest, appends, wal_peak, trimmed = _max_append_wait(
            url, path, lambda: store.log.trim("m", upto=199_000)
        )
        assert trimmed == 199_000
        assert store.log.read("m", 0, limit=5)[0].seq == 199_001
        assert os.path.getsize(f"{path}-wal") <= connection.JOURNAL_SIZE_LIMIT_BYTES
    # Generous for a loaded 2-core machine: benchmarks/trim.py reports the real figure (44-79 ms
    # for 900k events there; one DELETE of 200k events held the lock about 530 ms).
    assert longest < 0.5, f"an append waited {longest * 1000:.0f} ms during the trim"
    assert appends > 5
    # One DELETE wrote about the whole file into the WAL; chunks let checkpoints keep up.
    assert wal_peak <= connection.JOURNAL_SIZE_LIMIT_BYTES, (wal_peak, before)


def test_every_connection_bounds_its_wal(tmp_path: Path) -> None:
    with open_sqlite_store(f"sqlite:///{tmp_path / 'w.db'}") as store:
        db = store.log._db  # type: ignore[attr-defined]
        for conn in (db.durable(), db.fast()):
            limit = conn.execute("PRAGMA journal_size_limit").fetchone()[0]
            assert limit == connection.JOURNAL_SIZE_LIMIT_BYTES


def test_a_new_file_shrinks_after_trim_and_retention(tmp_path: Path) -> None:
    path = tmp_path / "shrink.db"
    with open_sqlite_store(f"sqlite:///{path}") as store:
        assert _rows(path, "PRAGMA auto_vacuum") == [(2,)], "created INCREMENTAL"
        _seed(store, "m", 50_000)
        now = time.time()
        store.predictions.put_many([_record(i, now - 1) for i in range(20_000)])
        full = os.path.getsize(path)
        assert store.log.trim("m", upto=50_000) == 50_000
        assert store.predictions.purge_expired(now) == 20_000
        # The pages go back to the file system once checkpointed (reclaim's passive
        # checkpoint; nothing else reads here).
        assert os.path.getsize(path) < full / 5, (os.path.getsize(path), full)
        assert _rows(path, "PRAGMA freelist_count") == [(0,)]
        assert store.log.head("m") == 50_000


def _make_old_file(path: Path, events: int) -> None:
    """A file as onlearn with schema version 4 left it: auto_vacuum NONE, with data."""
    with open_sqlite_store(f"sqlite:///{path}") as store:
        _seed(store, "m", events)
        store.predictions.put_many([_record(i, time.time() + 600) for i in range(100)])
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA auto_vacuum = NONE")
    conn.execute("VACUUM")
    conn.execute("PRAGMA user_version = 4")
    conn.close()
    assert _rows(path, "PRAGMA auto_vacuum") == [(0,)]


def _dump(path: Path) -> list:
    return [
        _rows(path, _EVENTS),
        _rows(path, _HEADS),
        _rows(path, "SELECT id, model, at, expires_at, body FROM predictions ORDER BY id"),
    ]


def test_a_big_old_file_is_left_alone_at_open_and_named_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "old.db"
    _make_old_file(path, 1000)
    monkeypatch.setattr(connection, "VACUUM_AT_OPEN_MAX_BYTES", 0)  # every file is "big"
    with caplog.at_level(logging.WARNING), open_sqlite_store(f"sqlite:///{path}") as store:
        assert store.log.head("m") == 1000
    assert "onlearn store migrate --store sqlite:///" in caplog.text
    assert _rows(path, "PRAGMA auto_vacuum") == [(0,)]
    # The schema version is reached without the VACUUM: auto_vacuum says what is left to do.
    assert _rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


def test_a_small_old_file_switches_at_open_and_keeps_every_row(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "old.db"
    _make_old_file(path, 1000)
    before = _dump(path)
    with caplog.at_level(logging.INFO), open_sqlite_store(f"sqlite:///{path}") as store:
        assert store.log.head("m") == 1000
    assert "switching to incremental vacuum" in caplog.text
    assert _rows(path, "PRAGMA auto_vacuum") == [(2,)]
    assert _rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert _dump(path) == before


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "onlearn.tools.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_onlearn_store_migrate_switches_an_old_file_and_keeps_every_row(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _make_old_file(path, 20_000)
    before = _dump(path)
    url = f"sqlite:///{path}"
    result = _cli("store", "migrate", "--store", url)
    assert result.returncode == 0, result.stderr
    assert "VACUUM rewrites the file" in result.stdout and "done in" in result.stdout
    assert _rows(path, "PRAGMA auto_vacuum") == [(2,)]
    assert _rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert _dump(path) == before
    again = _cli("store", "migrate", "--store", url)
    assert again.returncode == 0 and "nothing to do" in again.stdout, again
    with open_sqlite_store(url) as store:  # and the migrated file gives space back
        full = os.path.getsize(path)
        store.log.trim("m", upto=20_000)
        assert os.path.getsize(path) < full / 2


def test_onlearn_store_migrate_refuses_a_missing_file_and_a_served_one(tmp_path: Path) -> None:
    from onlearn.store import serve_lock

    missing = _cli("store", "migrate", "--store", f"sqlite:///{tmp_path / 'none.db'}")
    assert missing.returncode != 0 and "no database file" in missing.stderr, missing
    assert not (tmp_path / "none.db").exists()
    path = tmp_path / "served.db"
    _make_old_file(path, 10)
    url = f"sqlite:///{path}"
    with serve_lock(url, serving="http://127.0.0.1:1"):
        served = _cli("store", "migrate", "--store", url)
    assert served.returncode != 0 and "error:" in served.stderr, served
    assert "Traceback" not in served.stderr
    assert _rows(path, "PRAGMA auto_vacuum") == [(0,)]
