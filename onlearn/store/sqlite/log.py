"""``SqliteEventLog``: the append-only log of each model, numbered under the write lock."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping, Sequence

from onlearn.records import (
    Event,
    EventKind,
)
from onlearn.store.base import (
    AppendResult,
)
from onlearn.store.codec import (
    dumps,
    loads,
)
from onlearn.store.sqlite.connection import _Database, _guarded

# The highest seq given to a model: the heads table, or the events themselves for a file whose
# heads row is missing. Both lookups are primary-key reads.
_HEAD_SQL = """SELECT max(
    coalesce((SELECT seq FROM heads WHERE model = ?1), 0),
    coalesce((SELECT max(seq) FROM events WHERE model = ?1), 0))"""

# Keys looked up per statement; well below SQLite's limit on bound parameters.
_KEY_CHUNK = 500


def _append_events(conn: sqlite3.Connection, model: str, events: Sequence[Event]) -> AppendResult:
    """Append ``events`` inside the caller's write transaction (``BEGIN IMMEDIATE``): numbering
    and dedupe by key for ``append`` and for ``change_roles``'s control event alike."""
    seqs = AppendResult()
    new = seqs.new
    (head,) = conn.execute(_HEAD_SQL, (model,)).fetchone()
    known = _seqs_of_keys(conn, model, {e.key for e in events if e.key is not None})
    rows = []
    for event in events:
        key = event.key
        if key is not None and key in known:
            seqs.append(known[key])
            new.append(False)
            continue
        head += 1
        rows.append((model, head, event.kind.value, dumps(event.payload), event.at, key))
        if key is not None:
            known[key] = head
        seqs.append(head)
        new.append(True)
    if rows:
        conn.executemany(
            "INSERT INTO events (model, seq, kind, payload, at, key) VALUES (?,?,?,?,?,?)", rows
        )
        conn.execute(
            "INSERT INTO heads (model, seq) VALUES (?, ?)"
            " ON CONFLICT (model) DO UPDATE SET seq = excluded.seq",
            (model, head),
        )
    return seqs


def _seqs_of_keys(conn: sqlite3.Connection, model: str, keys: set[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    pending = list(keys)
    for i in range(0, len(pending), _KEY_CHUNK):
        chunk = pending[i : i + _KEY_CHUNK]
        marks = ",".join("?" * len(chunk))
        found.update(
            conn.execute(
                f"SELECT key, seq FROM events WHERE model = ? AND key IN ({marks})",
                (model, *chunk),
            ).fetchall()
        )
    return found


class SqliteEventLog:
    def __init__(self, db: _Database):
        self._db = db
        # Per thread, like its connection: what its last ``follow`` saw (data_version and
        # total_changes, the positions asked), and whether a model had more than a page.
        self._followed = threading.local()

    @_guarded("append")
    def append(self, model: str, events: Sequence[Event]) -> AppendResult:
        if not events:
            return AppendResult()
        conn = self._db.durable()
        with self._db.transaction(conn):
            return _append_events(conn, model, events)

    @_guarded("read")
    def read(self, model: str, after: int, limit: int = 1000) -> list[Event]:
        if limit <= 0:
            return []
        rows = (
            self._db.durable()
            .execute(
                "SELECT seq, kind, payload, at, key FROM events"
                " WHERE model = ? AND seq > ? ORDER BY seq LIMIT ?",
                (model, after, limit),
            )
            .fetchall()
        )
        return [
            Event(EventKind(kind), loads(payload), at, seq, key)
            for seq, kind, payload, at, key in rows
        ]

    @_guarded("head")
    def head(self, model: str) -> int:
        return self._db.durable().execute(_HEAD_SQL, (model,)).fetchone()[0]

    @_guarded("heads")
    def heads(self, models: Sequence[str]) -> dict[str, int]:
        # The whole heads table in one read (a row per model, a few tens of kB for a thousand):
        # cheaper than a statement per model. A model without a heads row has no events (every
        # append writes it), except in files of the earliest onlearn, where ``head`` looks.
        conn = self._db.durable()
        known = dict(conn.execute("SELECT model, seq FROM heads").fetchall())
        missing = [m for m in models if m not in known]
        for i in range(0, len(missing), _KEY_CHUNK):
            chunk = missing[i : i + _KEY_CHUNK]
            marks = ",".join("?" * len(chunk))
            known.update(
                conn.execute(
                    f"SELECT model, max(seq) FROM events WHERE model IN ({marks}) GROUP BY model",
                    chunk,
                ).fetchall()
            )
        return {m: known.get(m, 0) for m in models}

    # SQLite cannot block a reader until a row arrives: the follower polls.
    follow_blocks = False

    @_guarded("follow")
    def follow(
        self, positions: Mapping[str, int], *, block_s: float = 0.0, limit: int = 1000
    ) -> dict[str, list[Event]]:
        conn = self._db.durable()
        # Another connection's commit changes data_version, this connection's own writes its
        # total_changes: when neither moved since this thread's last call, nothing was appended
        # and no query is needed (the idle poll of a thousand models costs one pragma).
        version = (conn.execute("PRAGMA data_version").fetchone()[0], conn.total_changes)
        seen = self._followed
        if (
            version == getattr(seen, "version", None)
            and not seen.more
            and positions == seen.positions  # a dict compare, in C
        ):
            return {}
        heads = dict(conn.execute("SELECT model, seq FROM heads").fetchall())
        found = {}
        more = False
        for model, after in positions.items():
            if heads.get(model, 0) > after:
                events = self.read(model, after, limit)
                if events:
                    found[model] = events
                    more = more or len(events) == limit
        seen.version, seen.more, seen.positions = version, more, dict(positions)
        return found

    @_guarded("trim")
    def trim(self, model: str, upto: int) -> int:
        # The fast connection: a trim lost to a power cut only brings old events back, and an
        # fsync per chunk would be held under the write lock.
        conn = self._db.fast()
        with self._db.transaction(conn):
            # Keep the head even if every event goes, so numbering continues after a full trim.
            # Written before the first chunk, so a trim cut short keeps it too.
            (head,) = conn.execute(_HEAD_SQL, (model,)).fetchone()
            if head:
                conn.execute(
                    "INSERT INTO heads (model, seq) VALUES (?, ?)"
                    " ON CONFLICT (model) DO UPDATE SET seq = excluded.seq",
                    (model, head),
                )
        return self._db.delete_in_chunks(conn, _TRIM_CHUNK_SQL, (model, upto))


# The oldest CHUNK_ROWS events up to ?2: up to the seq of the last of them (read along the
# primary key), or up to ?2 itself when fewer are left. WITHOUT ROWID: no rowid to pick rows by.
_TRIM_CHUNK_SQL = """DELETE FROM events WHERE model = ?1 AND seq <= coalesce(
    (SELECT seq FROM events WHERE model = ?1 AND seq <= ?2 ORDER BY seq LIMIT 1 OFFSET ?3 - 1),
    ?2)"""
