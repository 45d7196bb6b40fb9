"""SQLite retention: how long the write lock is held while expired prediction records and
finished labelling-queue items are purged, the WAL's peak and the file's size, in one run.

    .venv/bin/python -m benchmarks.purge [--records 500000] [--items 200000] [--write]

A file holds ``--records`` expired prediction records of the example model (in the compact
encoding) or ``--items`` finished queue items (rows as ``SqliteLabelQueue`` writes them, put in
directly). The purge runs while another thread appends one label event at a time on its own
connections, as the group commit of feedback would (benchmarks/trim.py's measure): the longest
of those appends is the longest time the purge kept a writer out. Two runs each, on copies of
one seeded file:

- ``chunks back to back (before)``: onlearn before the retention work of issue 12: DELETEs of
  5,000 rows, each its own transaction, one right after the other; auto_vacuum NONE.
- ``chunks + incremental vacuum``: ``purge_expired`` / ``purge_finished`` now: the same chunks
  with the lock left free between them, then the freed pages given back in steps.

``--write`` rewrites the ``sqlite-purge`` section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shutil
import sqlite3
import tempfile
from pathlib import Path

from benchmarks.trim import _FEATURES, _hold, _measure
from onlearn.records import PredictionRecord, QueueItem, QueueState
from onlearn.store import open_store
from onlearn.store.sqlite import connection
from onlearn.store.sqlite.label_queue import _INSERT_ITEM, _item_row

RESULTS = Path(__file__).with_name("RESULTS.md")
MODEL = "phishing"
NOW = 1.8e9  # everything below expired or finished before it
_OLD_CHUNK = 5000


def _features(i: int) -> dict:
    features = {name: ((i * 7 + j) % 3) / 2 for j, name in enumerate(_FEATURES)}
    features["age_of_domain"] = features["ip_in_url"] = i % 2
    return features


def _record(i: int) -> PredictionRecord:
    p = ((i * 37) % 1000) / 997
    return PredictionRecord(
        id=f"{i:032x}",
        model=MODEL,
        at=NOW - 7 * 86400 - i / 1000,
        features=_features(i),
        version="v1",
        outputs={"v1": {"label": p > 0.5, "proba": [[True, p], [False, 1 - p]]}},
        uncertainty=min(p, 1 - p),
        expires_at=NOW - i / 1000,
    )


def _item(i: int) -> QueueItem:
    p = ((i * 37) % 1000) / 997
    return QueueItem(
        item_id=f"item-{i:012d}",
        model=MODEL,
        features=_features(i),
        priority=min(p, 1 - p),
        enqueued_at=NOW - 86400 - i / 100,
        prediction_id=f"{i:032x}",
        proba=[[True, p], [False, 1 - p]],
        uncertainty=min(p, 1 - p),
        state=QueueState.DONE,
        attempts=1,
        labeller="ann",
        finished_at=NOW - 1 - i / 100,
        result={"seq": i, "version": "v1"},
    )


def _seed(path: str, kind: str, n: int) -> None:
    with open_store(f"sqlite:///{path}") as store:
        if kind == "predictions":
            for start in range(0, n, 10_000):
                store.predictions.put_many(
                    [_record(i) for i in range(start, min(n, start + 10_000))]
                )
        else:
            db = store.queue._db  # type: ignore[attr-defined]
            conn = db.fast()
            for start in range(0, n, 10_000):
                with db.transaction(conn):
                    conn.executemany(
                        _INSERT_ITEM,
                        [_item_row(_item(i)) for i in range(start, min(n, start + 10_000))],
                    )
        store.log._db.durable().execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[attr-defined]


_OLD_SQL = {
    "predictions": "DELETE FROM predictions WHERE rowid IN ("
    " SELECT rowid FROM predictions WHERE expires_at <= ? LIMIT ?)",
    "queue": "DELETE FROM queue_items WHERE rowid IN ("
    " SELECT rowid FROM queue_items WHERE model = ? AND finished_at < ?"
    " AND state IN ('done', 'skipped', 'evicted') LIMIT ?)",
}


def _old_purge(path: str, kind: str) -> int:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = NORMAL")  # the fast connection's
    params = (NOW,) if kind == "predictions" else (MODEL, NOW)
    total = 0
    try:
        while True:
            conn.execute("BEGIN IMMEDIATE")
            deleted = conn.execute(_OLD_SQL[kind], (*params, _OLD_CHUNK)).rowcount
            conn.execute("COMMIT")
            total += deleted
            if deleted < _OLD_CHUNK:
                return total
    finally:
        conn.close()


def run(records: int, items: int) -> list[tuple[str, str, dict]]:
    work = Path(tempfile.mkdtemp(prefix="onlearn-purge-"))
    try:
        connection.VACUUM_AT_OPEN_MAX_BYTES = 0  # an "earlier" file stays auto_vacuum NONE
        results = []
        for kind, n in (("predictions", records), ("queue", items)):
            old = str(work / f"{kind}-old.db")
            with sqlite3.connect(old) as conn:
                conn.execute("CREATE TABLE made_before (x)")  # auto_vacuum NONE, as before
            _seed(old, kind, n)
            new = str(work / f"{kind}-new.db")
            _seed(new, kind, n)
            for name, src, current in [
                ("chunks back to back (before)", old, False),
                ("chunks + incremental vacuum", new, True),
            ]:
                path = str(work / "run.db")
                shutil.copy(src, path)
                url = f"sqlite:///{path}"
                with open_store(url) as store:
                    if not current:
                        purge = lambda p=path, k=kind: _old_purge(p, k)  # noqa: E731
                    elif kind == "predictions":
                        purge = lambda s=store: s.predictions.purge_expired(NOW)  # noqa: E731
                    else:
                        purge = lambda s=store: s.queue.purge_finished(MODEL, NOW)  # noqa: E731
                    result = _measure(url, path, purge)
                    assert result["trimmed"] == n, (kind, name, result["trimmed"], n)
                results.append((kind, name, result))
                for suffix in ("", "-wal", "-shm"):
                    Path(path + suffix).unlink(missing_ok=True)
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def render(records: int, items: int, results: list[tuple[str, str, dict]], command: str) -> str:
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [
        "<!-- sqlite-purge:start -->",
        "## SQLite retention: prediction purge and labelling-queue purge",
        "",
        f"Command: `{command}` (benchmarks/purge.py; its docstring says what each run does). "
        f"{records:,} expired prediction records of the example model, then {items:,} finished "
        "labelling-queue items, are purged while another thread appends one label event at a "
        "time (sleeping 1 ms between); the longest append is the longest the purge kept a writer "
        "out. BEGIN..COMMIT is the purge's longest transaction in wall time and in CPU time of its "
        "thread; it includes the automatic checkpoint SQLite runs inside COMMIT once the lock is "
        "released. Goal (issue 12): no write-lock hold above 100 ms. Chunks: "
        f"{connection.CHUNK_ROWS // 5:,} records, {connection.CHUNK_ROWS * 2 // 5:,} queue items, "
        "with the lock left free at least 30 ms after each; incremental vacuum steps of "
        f"{connection.VACUUM_STEP_PAGES:,} pages.",
        "",
        f"### Run of {when} ({platform.machine()}, {os.cpu_count()} CPUs, SQLite "
        f"{sqlite3.sqlite_version}, load average {os.getloadavg()[0]:.1f} at the end)",
        "",
        "| purge | run | rows | time s | longest append ms | longest BEGIN..COMMIT ms (its CPU) "
        "| appends | WAL peak MiB | file before MiB | file after MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, name, r in results:
        lines.append(
            f"| {kind} | {name} | {r['trimmed']:,} | {r['seconds']:.2f} | {r['max_wait_ms']:.1f} "
            f"| {_hold(r)} | {r['appends']:,} | {r['wal_peak_mb']:.1f} | {r['file_before_mb']:.1f} "
            f"| {r['file_after_mb']:.1f} |"
        )
    lines += ["", "<!-- sqlite-purge:end -->"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=500_000, help="expired records")
    parser.add_argument("--items", type=int, default=200_000, help="finished queue items")
    parser.add_argument(
        "--write", action="store_true", help="rewrite the sqlite-purge section of RESULTS.md"
    )
    args = parser.parse_args()
    results = run(args.records, args.items)
    command = ".venv/bin/python -m benchmarks.purge"
    if (args.records, args.items) != (500_000, 200_000):
        command += f" --records {args.records} --items {args.items}"
    section = render(args.records, args.items, results, command + " --write")
    print(section)
    if args.write:
        text = RESULTS.read_text()
        pattern = re.compile(r"<!-- sqlite-purge:start -->.*?<!-- sqlite-purge:end -->\n", re.S)
        text = (
            pattern.sub(lambda _: section, text) if pattern.search(text) else text + "\n" + section
        )
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
