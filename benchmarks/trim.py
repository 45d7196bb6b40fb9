"""SQLite trim: how long the write lock is held, the WAL's peak and the file's size, chunked
against the old single DELETE, in one run.

    .venv/bin/python -m benchmarks.trim [--events 900000] [--write]

A log of ``--events`` label events (the shape of the example model's: a payload of 114 B in the
compact encoding, 460 B of JSON before it) is trimmed down to its last 1000 events while another thread appends one event at a time
on its own connections (as the group commit of feedback would): the longest of those appends is
the longest time the trim kept a writer out. Three runs on copies of one seeded file:

- ``one DELETE (before)``: onlearn before chunks: the head kept, then one DELETE of every old
  event, on a connection with ``synchronous=FULL`` (the log's); auto_vacuum NONE.
- ``chunks, auto_vacuum NONE``: ``SqliteEventLog.trim`` on a file of an earlier onlearn that
  was not migrated (its free pages stay in the file).
- ``chunks + incremental vacuum``: ``SqliteEventLog.trim`` on a file created by this onlearn.

The WAL is sampled every 2 ms. "file after" is the database file once the trim returned.
``--write`` rewrites the ``sqlite-trim`` section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import re
import shutil
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

from onlearn.records import Event, EventKind
from onlearn.store import open_store
from onlearn.store.sqlite import connection

RESULTS = Path(__file__).with_name("RESULTS.md")
KEEP = 1000


_FEATURES = [
    "empty_server_form_handler",
    "popup_window",
    "https",
    "request_from_other_domain",
    "anchor_from_other_domain",
    "is_popular",
    "long_url",
    "age_of_domain",
    "ip_in_url",
]


def _event(i: int) -> Event:
    # The example model's (examples/phishing.toml) label event, as feedback by prediction id
    # writes it: the features, the label, the answer given and its version.
    features = {name: ((i * 7 + j) % 1000) / 997 for j, name in enumerate(_FEATURES)}
    features["age_of_domain"] = features["ip_in_url"] = i % 2
    payload = {
        "features": features,
        "label": i % 2 == 0,
        "source": "app",
        "prediction_id": f"{i:032x}",
        "predicted": {"v1": {"label": True, "proba": [[True, 0.61], [False, 0.39]]}},
    }
    return Event(EventKind.LABEL, payload, at=1.7e9 + i, key=f"prediction:{i:032x}")


def _seed(url: str, n: int) -> None:
    with open_store(url) as store:
        for start in range(0, n, 20_000):
            store.log.append("m", [_event(i) for i in range(start, min(n, start + 20_000))])
        store.log._db.durable().execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[attr-defined]


def _old_trim(path: str, upto: int) -> int:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = FULL")
    try:
        conn.execute("BEGIN IMMEDIATE")
        (head,) = conn.execute("SELECT seq FROM heads WHERE model = 'm'").fetchone()
        conn.execute("UPDATE heads SET seq = ? WHERE model = 'm'", (head,))
        deleted = conn.execute("DELETE FROM events WHERE model = 'm' AND seq <= ?", (upto,))
        conn.execute("COMMIT")
        return deleted.rowcount
    finally:
        conn.close()


@contextlib.contextmanager
def _timed_transactions(holds: list[tuple[float, float]]):
    """Record the wall and CPU time of each write transaction the calling thread runs through
    onlearn's store (BEGIN IMMEDIATE to the end of COMMIT: an upper bound of the lock's hold)."""
    me = threading.current_thread()
    original = connection._Database.transaction

    @contextlib.contextmanager
    def timed(db, conn):
        if threading.current_thread() is not me:
            with original(db, conn) as c:
                yield c
            return
        wall, cpu = time.perf_counter(), time.thread_time()
        with original(db, conn) as c:
            yield c
        holds.append((time.perf_counter() - wall, time.thread_time() - cpu))

    connection._Database.transaction = timed
    try:
        yield
    finally:
        connection._Database.transaction = original


def _measure(url: str, path: str, trim) -> dict:
    stop = threading.Event()
    waits: list[float] = []
    wal_peak = [0]

    def append() -> None:
        with open_store(url) as other:
            while not stop.is_set():
                started = time.perf_counter()
                other.log.append("other", [_event(0)])
                waits.append(time.perf_counter() - started)
                time.sleep(0.001)

    def sample() -> None:
        while not stop.is_set():
            with_wal = Path(path + "-wal")
            if with_wal.exists():
                wal_peak[0] = max(wal_peak[0], with_wal.stat().st_size)
            time.sleep(0.002)

    threads = [threading.Thread(target=append), threading.Thread(target=sample)]
    size_before = os.path.getsize(path)
    for t in threads:
        t.start()
    while len(waits) < 20:
        time.sleep(0.01)
    quiet = sorted(waits)
    started = time.perf_counter()
    during_from = len(waits)
    holds: list[tuple[float, float]] = []
    with _timed_transactions(holds):
        trimmed = trim()
    elapsed = time.perf_counter() - started
    during = sorted(waits[during_from:]) or [0.0]
    stop.set()
    for t in threads:
        t.join()
    return {
        "trimmed": trimmed,
        "seconds": elapsed,
        "max_wait_ms": max(waits[during_from:] or [0.0]) * 1000,
        # None for a trim that runs outside onlearn's store (the one DELETE of before).
        "max_hold_ms": max(h[0] for h in holds) * 1000 if holds else None,
        "max_hold_cpu_ms": max(h[1] for h in holds) * 1000 if holds else None,
        "transactions": len(holds),
        "p99_wait_ms": during[int(len(during) * 0.99)] * 1000,
        "appends": len(during),
        "quiet_p50_ms": quiet[len(quiet) // 2] * 1000,
        "wal_peak_mb": wal_peak[0] / 2**20,
        "file_before_mb": size_before / 2**20,
        "file_after_mb": os.path.getsize(path) / 2**20,
    }


def run(events: int) -> list[tuple[str, dict]]:
    work = Path(tempfile.mkdtemp(prefix="onlearn-trim-"))
    try:
        # A file of an earlier onlearn: a table made before the store's schema, so auto_vacuum
        # stays NONE; VACUUM_AT_OPEN_MAX_BYTES = 0 keeps the store from switching it at open.
        connection.VACUUM_AT_OPEN_MAX_BYTES = 0
        old = str(work / "old.db")
        with sqlite3.connect(old) as conn:
            conn.execute("CREATE TABLE made_before (x)")
        _seed(f"sqlite:///{old}", events)
        new = str(work / "new.db")
        _seed(f"sqlite:///{new}", events)
        upto = events - KEEP
        results = []
        for name, src, chunked in [
            ("one DELETE (before)", old, False),
            ("chunks, auto_vacuum NONE", old, True),
            ("chunks + incremental vacuum", new, True),
        ]:
            path = str(work / "run.db")
            shutil.copy(src, path)
            url = f"sqlite:///{path}"
            with open_store(url) as store:
                if chunked:
                    result = _measure(url, path, lambda s=store: s.log.trim("m", upto))
                else:
                    result = _measure(url, path, lambda p=path: _old_trim(p, upto))
                assert result["trimmed"] == upto, result
            results.append((name, result))
            for suffix in ("", "-wal", "-shm"):
                Path(path + suffix).unlink(missing_ok=True)
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _hold(r: dict) -> str:
    if r["max_hold_ms"] is None:
        return "-"
    return f"{r['max_hold_ms']:.1f} ({r['max_hold_cpu_ms']:.1f})"


def render(events: int, results: list[tuple[str, dict]], command: str) -> str:
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [
        "<!-- sqlite-trim:start -->",
        "## SQLite trim: write-lock hold, WAL and file size",
        "",
        f"Command: `{command}` (benchmarks/trim.py; its docstring says what each run does).",
        f"A log of {events:,} label events (about the example model's) is trimmed to its last "
        f"{KEEP:,} while another thread appends one event at a time (sleeping 1 ms between); "
        "the longest append is the longest the trim kept a writer out. BEGIN..COMMIT is the "
        "trim's longest transaction in wall time and in CPU time of its thread; it includes the "
        "automatic checkpoint SQLite runs inside COMMIT once the lock is released (with "
        "wal_autocheckpoint off, transactions stayed under 15 ms). "
        "Goal (issue 12): no write-lock hold above 100 ms. Chunks: "
        f"{connection.CHUNK_ROWS:,} rows per write transaction, the lock left free at least 30 ms "
        "after each; incremental vacuum steps of "
        f"{connection.VACUUM_STEP_PAGES:,} pages; journal_size_limit "
        f"{connection.JOURNAL_SIZE_LIMIT_BYTES // 2**20} MiB.",
        "",
        f"### Run of {when} ({platform.machine()}, {os.cpu_count()} CPUs, SQLite "
        f"{sqlite3.sqlite_version}, load average {os.getloadavg()[0]:.1f} at the end)",
        "",
        "| trim | time s | longest append ms | longest BEGIN..COMMIT ms (its CPU) | p99 append ms "
        "| appends | WAL peak MiB | file before MiB | file after MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results:
        lines.append(
            f"| {name} | {r['seconds']:.2f} | {r['max_wait_ms']:.1f} | {_hold(r)} "
            f"| {r['p99_wait_ms']:.1f} "
            f"| {r['appends']:,} | {r['wal_peak_mb']:.1f} | {r['file_before_mb']:.1f} "
            f"| {r['file_after_mb']:.1f} |"
        )
    quiet = results[-1][1]["quiet_p50_ms"]
    lines += ["", f"A single append with no trim under way: p50 {quiet:.2f} ms.", ""]
    lines.append("<!-- sqlite-trim:end -->")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=900_000, help="label events in the log")
    parser.add_argument(
        "--write", action="store_true", help="rewrite the sqlite-trim section of RESULTS.md"
    )
    args = parser.parse_args()
    results = run(args.events)
    command = ".venv/bin/python -m benchmarks.trim" + (
        f" --events {args.events}" if args.events != 900_000 else ""
    )
    section = render(args.events, results, command + " --write")
    print(section)
    if args.write:
        text = RESULTS.read_text()
        pattern = re.compile(r"<!-- sqlite-trim:start -->.*?<!-- sqlite-trim:end -->\n", re.S)
        text = pattern.sub(lambda _: section, text) if pattern.search(text) else text + section
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
