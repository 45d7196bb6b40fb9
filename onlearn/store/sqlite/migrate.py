"""``onlearn store migrate`` for rows: rewrite the rows an earlier onlearn wrote (JSON payloads
and records, text keys ``prediction:<id>``) in the compact encoding of schema version 6.

Opening such a file reads those rows as they are; converting them only saves space (a label
event of the example model: about 650 B -> 190 B) and the second key lookup that appends make
while old keys may be left. Rows are read in primary-key order in chunks and each chunk is
rewritten in its own short write transaction, like trims: the WAL stays small and the write
lock is never held long (migrate runs with the serve lock held anyway).
"""

from __future__ import annotations

from collections.abc import Callable

from onlearn.store.codec import decode_prediction
from onlearn.store.compact import pack_payload, pack_record
from onlearn.store.sqlite.connection import CHUNK_ROWS, _Database
from onlearn.store.sqlite.log import _encode_key, _event_from_row

__all__ = ["migrate_rows"]


def migrate_rows(db: _Database, say: Callable[[str], None] = print) -> tuple[int, int]:
    """Rewrite every event and prediction record in the JSON format; clear ``legacy_rows``.
    Returns how many events and records were rewritten."""
    events = _migrate_events(db)
    say(f"{db.path}: {events:,} events rewritten in the compact encoding")
    records = _migrate_predictions(db)
    say(f"{db.path}: {records:,} prediction records rewritten in the compact encoding")
    conn = db.durable()
    with db.transaction(conn):
        conn.execute("DELETE FROM meta WHERE name = 'legacy_rows'")
    db.legacy_rows = False
    db.reclaim(conn)
    return events, records


def _migrate_events(db: _Database) -> int:
    conn = db.durable()
    shapes = db.shapes
    after: tuple[str, int] = ("", 0)
    total = 0
    while True:
        rows = conn.execute(
            "SELECT model, seq, kind, payload, at, key FROM events"
            " WHERE (model, seq) > (?, ?) ORDER BY model, seq LIMIT ?",
            (*after, CHUNK_ROWS),
        ).fetchall()
        if not rows:
            return total
        after = rows[-1][0], rows[-1][1]
        updates = []
        for model, seq, kind, payload, at, key in rows:
            if isinstance(payload, str) or (isinstance(key, str) and _encode_key(key) is not key):
                event = _event_from_row(shapes, model, seq, kind, payload, at, key)
                # Encoded before the write transaction: it may register a shape.
                data = pack_payload(shapes, model, event.payload, event.key)
                updates.append((data, _encode_key(event.key), model, seq))
        if updates:
            with db.transaction(conn):
                conn.executemany(
                    "UPDATE events SET payload = ?, key = ? WHERE model = ? AND seq = ?", updates
                )
            total += len(updates)


def _migrate_predictions(db: _Database) -> int:
    conn = db.durable()
    shapes = db.shapes
    after = 0
    total = 0
    while True:
        rows = conn.execute(
            "SELECT rowid, body FROM predictions WHERE rowid > ? AND typeof(body) = 'text'"
            " ORDER BY rowid LIMIT ?",
            (after, CHUNK_ROWS),
        ).fetchall()
        if not rows:
            return total
        after = rows[-1][0]
        updates = [
            (pack_record(shapes, decode_prediction(body), columns=True), rowid)
            for rowid, body in rows
        ]
        with db.transaction(conn):
            conn.executemany("UPDATE predictions SET body = ? WHERE rowid = ?", updates)
        total += len(updates)
