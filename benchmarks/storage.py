"""Storage size and encoding cost of label events and prediction records: the JSON rows of
onlearn before the compact encoding against the compact encoding, side by side in one run.

    .venv/bin/python -m benchmarks.storage [--events 20000] [--write]

The events and records are real: an ``Engine`` on ``memory://`` with examples/phishing.toml
predicts each row of the Phishing stream and gets its label back by prediction id, so every
label event carries the features, the answer and its probabilities, as in production. Then,
once in each format:

- SQLite: the label events appended in batches of 500 (as the group commit does) and the
  records put in batches of 100 (as the prediction writer does), into a new file; after a
  VACUUM, bytes per row from ``dbstat`` (the table and its indexes: ``events`` and
  ``events_key``; ``predictions``, its primary key, ``predictions_expires_at`` and
  ``predictions_model_id``).
- Redis (a private ``redis-server``): the same writes; ``MEMORY USAGE`` of the stream and the
  idempotency hash per event, and of every record key plus the three indexes per record.
- The time per event of ``append`` and of reading the log back, per record of ``put_many`` and
  of ``get``, on SQLite; and the encoding alone: encode and decode per label event and per
  record (best of 5, interleaved).

"before" writes with onlearn's earlier writers, which :mod:`onlearn.store.codec` still has (its
JSON ``dumps`` and ``encode_prediction``; keys as text), patched into the ports for the run;
the readers of this onlearn read both formats. ``--write`` rewrites the ``storage-size``
section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import os
import platform
import re
import shutil
import sqlite3
import tempfile
import time
import timeit
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.data import CONFIG, MODEL, stream

RESULTS = Path(__file__).with_name("RESULTS.md")
FORMATS = ("before", "after")
EVENT_GOAL, RECORD_GOAL = 200, 300
_EVENT_TABLES = ("events", "events_key")
_RECORD_TABLES = (
    "predictions",
    "sqlite_autoindex_predictions_1",
    "predictions_expires_at",
    "predictions_model_id",
)


def capture(n: int) -> tuple[list, list]:
    """``n`` label events and their prediction records, from the engine."""
    from onlearn.config import load_settings
    from onlearn.engine import Engine, FeedbackItem
    from onlearn.records import EventKind

    settings = load_settings(CONFIG, store_url="memory://")
    with Engine.from_settings(settings) as engine:
        for x, y in stream(n):
            p = engine.predict_one(MODEL, x)
            engine.feedback_one(MODEL, FeedbackItem(label=y, prediction_id=p.prediction_id))
        events = engine.store.log.read(MODEL, 0, limit=n + 100)
        records = engine.store.predictions.scan(MODEL, None, limit=n + 100)
    events = [dataclasses.replace(e, seq=None) for e in events if e.kind is EventKind.LABEL]
    far = time.time() + 30 * 86400
    records = [dataclasses.replace(r, expires_at=far) for r in records]
    return events, records


@contextlib.contextmanager
def legacy_encoding() -> Iterator[None]:
    """The ports write rows as onlearn did before the compact encoding."""
    from onlearn.store.codec import dumps, encode_prediction, event_to_dict
    from onlearn.store.redis import log as redis_log
    from onlearn.store.redis import predictions as redis_predictions
    from onlearn.store.sqlite import log as sqlite_log
    from onlearn.store.sqlite import predictions as sqlite_predictions

    def redis_entry(shapes: Any, model: str, event: Any) -> tuple[str, str, str]:
        data = event_to_dict(event)
        key = data.pop("key")
        return ("0", "", dumps(data)) if key is None else ("1", key, dumps(data))

    def record(shapes: Any, r: Any, *, columns: bool) -> str:
        return encode_prediction(r)

    patches = [
        (sqlite_log, "_encode_payloads", lambda db, model, evs: [dumps(e.payload) for e in evs]),
        (sqlite_log, "_encode_key", lambda key: key),
        (sqlite_predictions, "pack_record", record),
        (redis_log, "_encode_entry", redis_entry),
        (redis_predictions, "pack_record", record),
    ]
    saved = [(module, name, getattr(module, name)) for module, name, _ in patches]
    for module, name, value in patches:
        setattr(module, name, value)
    try:
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


def _write(store: Any, events: list, records: list) -> dict[str, float]:
    started = time.perf_counter()
    for i in range(0, len(events), 500):
        store.log.append(MODEL, events[i : i + 500])
    appended = time.perf_counter()
    for i in range(0, len(records), 100):
        store.predictions.put_many(records[i : i + 100])
    put = time.perf_counter()
    after, read = 0, 0
    while page := store.log.read(MODEL, after, limit=1000):
        after, read = page[-1].seq, read + len(page)
    read_done = time.perf_counter()
    sample = records[:: max(1, len(records) // 2000)]
    for r in sample:
        assert store.predictions.get(r.id) is not None
    got = time.perf_counter()
    assert read == len(events), (read, len(events))
    return {
        "append_us": (appended - started) / len(events) * 1e6,
        "put_us": (put - appended) / len(records) * 1e6,
        "read_us": (read_done - put) / len(events) * 1e6,
        "get_us": (got - read_done) / len(sample) * 1e6,
    }


def _sqlite_measure(path: Path) -> dict[str, float]:
    conn = sqlite3.connect(path)
    conn.execute("VACUUM")
    sizes = dict(conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"))
    n_events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    n_records = conn.execute("SELECT count(*) FROM predictions").fetchone()[0]
    payload, key = conn.execute(
        "SELECT avg(length(payload)), avg(length(key)) FROM events"
    ).fetchone()
    (body,) = conn.execute("SELECT avg(length(body)) FROM predictions").fetchone()
    conn.close()
    return {
        "event_b": sum(sizes.get(t, 0) for t in _EVENT_TABLES) / n_events,
        "event_table_b": sizes["events"] / n_events,
        "event_index_b": sizes["events_key"] / n_events,
        "payload_b": payload,
        "key_b": key,
        "record_b": sum(sizes.get(t, 0) for t in _RECORD_TABLES) / n_records,
        "record_table_b": sizes["predictions"] / n_records,
        "record_index_b": sum(sizes.get(t, 0) for t in _RECORD_TABLES[1:]) / n_records,
        "body_b": body,
        "file_mb": os.path.getsize(path) / 2**20,
    }


def sqlite_sizes(events: list, records: list, work: Path) -> dict[str, dict]:
    from onlearn.store import migrate_store, open_store

    results = {}
    for fmt in FORMATS:
        path = work / f"{fmt}.db"
        with legacy_encoding() if fmt == "before" else contextlib.nullcontext():
            with open_store(f"sqlite:///{path}") as store:
                timing = _write(store, events, records)
        results[fmt] = {**timing, **_sqlite_measure(path)}
    # The "before" file as an upgraded one (marked as holding old rows), then migrated.
    path = work / "before.db"
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO meta (name, value) VALUES ('legacy_rows', '1')")
    started = time.perf_counter()
    migrate_store(f"sqlite:///{path}", lambda line: None)
    took = time.perf_counter() - started
    results["migrated"] = {
        **_sqlite_measure(path),
        "migrate_s": took,
        "migrate_us": took / (len(events) + len(records)) * 1e6,
    }
    return results


def redis_sizes(events: list, records: list, work: Path) -> dict[str, dict] | None:
    if shutil.which("redis-server") is None:
        return None
    from benchmarks import procs
    from benchmarks.replicas import RedisServer
    from onlearn.store import open_store
    from onlearn.store.redis.keys import RedisKeys

    server = RedisServer("redis-server", work / "redis")
    keys = RedisKeys()
    client = server.client
    results: dict[str, dict] = {}
    try:
        for fmt in FORMATS:
            client.flushall()
            with legacy_encoding() if fmt == "before" else contextlib.nullcontext():
                with open_store(server.url) as store:
                    for i in range(0, len(events), 500):
                        store.log.append(MODEL, events[i : i + 500])
                    store.predictions.put_many(records)

            def usage(key: str) -> int:
                return client.memory_usage(key, samples=0) or 0

            record_keys = [keys.prediction(r.id) for r in records]
            results[fmt] = {
                "stream_b": usage(keys.log(MODEL)) / len(events),
                "log_keys_b": usage(keys.log_keys(MODEL)) / len(events),
                "record_b": sum(usage(k) for k in record_keys) / len(records),
                "indexes_b": (
                    usage(keys.predictions_expiry())
                    + usage(keys.predictions_models())
                    + usage(keys.predictions_of_model(MODEL))
                )
                / len(records),
                "value_b": sum(client.strlen(k) for k in record_keys[:2000])
                / min(2000, len(records)),
            }
        results["version"] = {"redis": server.version}
    finally:
        server.close()
        procs.stop_all()
    return results


def _best(fn: Callable[[], Any], count: int, repeat: int = 5) -> float:
    # CPU time of this thread: other processes on the machine do not count.
    return min(timeit.repeat(fn, number=1, repeat=repeat, timer=time.thread_time)) / count * 1e6


def codec_costs(events: list, records: list) -> dict[str, dict]:
    from onlearn.store.codec import decode_prediction, dumps, encode_prediction, loads
    from onlearn.store.compact import (
        Shapes,
        pack_payload,
        pack_record,
        unpack_payload,
        unpack_record,
    )

    events, records = events[:5000], records[:5000]
    shapes = Shapes.in_memory()
    packed = [pack_payload(shapes, MODEL, e.payload, e.key) for e in events]
    texts = [dumps(e.payload) for e in events]
    bodies = [pack_record(shapes, r, columns=True) for r in records]
    jsons = [encode_prediction(r) for r in records]
    ne, nr = len(events), len(records)
    results: dict[str, dict] = {"before": {}, "after": {}}
    for _ in range(2):  # interleaved, the best of both rounds is kept
        for fmt, name, fn, count in [
            ("before", "event_encode_us", lambda: [dumps(e.payload) for e in events], ne),
            (
                "after",
                "event_encode_us",
                lambda: [pack_payload(shapes, MODEL, e.payload, e.key) for e in events],
                ne,
            ),
            ("before", "event_decode_us", lambda: [loads(t) for t in texts], ne),
            (
                "after",
                "event_decode_us",
                lambda: [
                    unpack_payload(shapes, MODEL, d, e.key)
                    for d, e in zip(packed, events, strict=True)
                ],
                ne,
            ),
            ("before", "record_encode_us", lambda: [encode_prediction(r) for r in records], nr),
            (
                "after",
                "record_encode_us",
                lambda: [pack_record(shapes, r, columns=True) for r in records],
                nr,
            ),
            ("before", "record_decode_us", lambda: [decode_prediction(j) for j in jsons], nr),
            (
                "after",
                "record_decode_us",
                lambda: [
                    unpack_record(
                        shapes, b, id=r.id, model=r.model, at=r.at, expires_at=r.expires_at
                    )
                    for b, r in zip(bodies, records, strict=True)
                ],
                nr,
            ),
        ]:
            took = _best(fn, count)
            results[fmt][name] = min(results[fmt].get(name, took), took)
    return results


def run(n: int) -> dict[str, Any]:
    events, records = capture(n)
    work = Path(tempfile.mkdtemp(prefix="onlearn-storage-"))
    try:
        return {
            "events": len(events),
            "records": len(records),
            "sqlite": sqlite_sizes(events, records, work),
            "redis": redis_sizes(events, records, work),
            "codec": codec_costs(events, records),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _verdict(value: float, goal: float) -> str:
    return f"{value:.0f} {'(meets ≤ ' if value <= goal else '(misses ≤ '}{goal})"


def render(r: dict[str, Any], command: str) -> str:
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    s, c = r["sqlite"], r["codec"]
    b, a = s["before"], s["after"]
    lines = [
        "<!-- storage-size:start -->",
        "## Storage: bytes per label event and prediction record, encoding cost",
        "",
        f"Command: `{command}` (benchmarks/storage.py; its docstring says what it does). "
        f"{r['events']:,} label events of the example model (examples/phishing.toml, feedback "
        f"by prediction id) and their {r['records']:,} prediction records, written in the JSON "
        "rows of onlearn before the compact encoding (before) and in the compact encoding "
        f"(after). Goals (issue 12): at most {EVENT_GOAL} B per label event and {RECORD_GOAL} B "
        "per prediction record in SQLite (rows and their indexes, after a VACUUM).",
        "",
        f"### Run of {when} ({platform.machine()}, {os.cpu_count()} CPUs, SQLite "
        f"{sqlite3.sqlite_version}, load average {os.getloadavg()[0]:.1f} at the end)",
        "",
        "SQLite, bytes per row on disk (`dbstat`, after VACUUM):",
        "",
        "| | label event | its row | `events_key` index | payload | key "
        "| prediction record | its row | its 3 indexes | body |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    m = s["migrated"]
    for fmt, x in (("before", b), ("after", a), ("before, then `onlearn store migrate`", m)):
        lines.append(
            f"| {fmt} | {x['event_b']:.0f} | {x['event_table_b']:.0f} | {x['event_index_b']:.0f} "
            f"| {x['payload_b']:.0f} | {x['key_b']:.0f} | {x['record_b']:.0f} "
            f"| {x['record_table_b']:.0f} | {x['record_index_b']:.0f} | {x['body_b']:.0f} |"
        )
    lines += [
        "",
        f"After: label event {_verdict(a['event_b'], EVENT_GOAL)}, prediction record "
        f"{_verdict(a['record_b'], RECORD_GOAL)}; {b['event_b'] / a['event_b']:.1f}x and "
        f"{b['record_b'] / a['record_b']:.1f}x smaller. File after VACUUM: "
        f"{b['file_mb']:.1f} MiB before, {a['file_mb']:.1f} MiB after. `onlearn store migrate` "
        f"rewrote the before file in {m['migrate_s']:.1f} s ({m['migrate_us']:.0f} us per row, "
        "reading the JSON and writing the compact encoding in chunks of 5,000).",
        "",
    ]
    red = r["redis"]
    if red is not None:
        lines += [
            f"Redis {red['version']['redis']}, `MEMORY USAGE` per entry (bytes):",
            "",
            "| | label event: stream | + idempotency hash | prediction record: its key "
            "| (its value) | + 3 indexes |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for fmt in FORMATS:
            x = red[fmt]
            lines.append(
                f"| {fmt} | {x['stream_b']:.0f} | {x['log_keys_b']:.0f} | {x['record_b']:.0f} "
                f"| {x['value_b']:.0f} | {x['indexes_b']:.0f} |"
            )
        lines.append("")
    lines += [
        "Time per label event or record, microseconds: the encoding alone (CPU time, best of 5 "
        "over 5,000, interleaved), and the SQLite port calls (wall time: append in batches of "
        "500, read in pages of 1000, put_many in batches of 100, get by id):",
        "",
        "| | event encode | event decode | record encode | record decode "
        "| append | read | put | get |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for fmt, x in (("before", b), ("after", a)):
        k = c[fmt]
        lines.append(
            f"| {fmt} | {k['event_encode_us']:.1f} | {k['event_decode_us']:.1f} "
            f"| {k['record_encode_us']:.1f} | {k['record_decode_us']:.1f} "
            f"| {x['append_us']:.1f} | {x['read_us']:.1f} | {x['put_us']:.1f} | {x['get_us']:.1f} |"
        )
    lines += ["", "<!-- storage-size:end -->"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="label events to write")
    parser.add_argument(
        "--write", action="store_true", help="rewrite the storage-size section of RESULTS.md"
    )
    args = parser.parse_args()
    result = run(args.events)
    command = ".venv/bin/python -m benchmarks.storage" + (
        f" --events {args.events}" if args.events != 20_000 else ""
    )
    section = render(result, command + " --write")
    print(section)
    if args.write:
        text = RESULTS.read_text()
        pattern = re.compile(r"<!-- storage-size:start -->.*?<!-- storage-size:end -->\n", re.S)
        text = (
            pattern.sub(lambda _: section, text) if pattern.search(text) else text + "\n" + section
        )
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
