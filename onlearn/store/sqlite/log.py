"""``SqliteEventLog``: the append-only log of each model, numbered under the write lock.

Rows: ``payload`` is the compact encoding of the payload (:mod:`onlearn.store.compact`, a
BLOB) or, in rows of an earlier onlearn, its JSON (TEXT); ``key`` is a 16-byte BLOB for a key
``prediction:<32 hex digits>`` (the id's bytes: 17 B instead of 43, in the row and again in the
``events_key`` index), the key's TEXT otherwise. :func:`_event_from_row` reads both forms of
both; ``_encode_key`` is how a key is looked up.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence

from onlearn.records import (
    Event,
    EventKind,
)
from onlearn.store.base import (
    AppendResult,
)
from onlearn.store.compact import Shapes, pack_payload, unpack_payload
from onlearn.store.sqlite.connection import _GENERATION_SQL, _Database, _guarded

# The highest seq given to a model: the heads table, or the events themselves for a file whose
# heads row is missing. Both lookups are primary-key reads.
_HEAD_SQL = """SELECT max(
    coalesce((SELECT seq FROM heads WHERE model = ?1), 0),
    coalesce((SELECT max(seq) FROM events WHERE model = ?1), 0))"""

# Keys looked up per statement; well below SQLite's limit on bound parameters.
_KEY_CHUNK = 500


_PREDICTION_KEY = re.compile(r"prediction:([0-9a-f]{32})").fullmatch


def _encode_key(key: str | None) -> str | bytes | None:
    """A key as its column holds it: the id's 16 bytes for ``prediction:<32 hex digits>``."""
    if key is not None and len(key) == 43:
        match = _PREDICTION_KEY(key)
        if match is not None:
            return bytes.fromhex(match[1])
    return key


def _decode_key(value: str | bytes | None) -> str | None:
    if value.__class__ is bytes:
        return "prediction:" + value.hex()
    return value


def _encode_payloads(db: _Database, model: str, events: Sequence[Event]) -> list[bytes]:
    """The events' payloads in the compact encoding. Before the write transaction: it keeps
    the encoding out of the write lock, and may register a shape (a transaction of its own)."""
    shapes = db.shapes
    return [pack_payload(shapes, model, e.payload, e.key) for e in events]


def _event_from_row(
    shapes: Shapes,
    model: str,
    seq: int,
    kind: str,
    payload: str | bytes,
    at: float,
    key: str | bytes | None,
) -> Event:
    """An event from its row (``SELECT seq, kind, payload, at, key``), in either format."""
    key = _decode_key(key)
    return Event(EventKind(kind), unpack_payload(shapes, model, payload, key), at, seq, key)


def _append_events(
    db: _Database,
    conn: sqlite3.Connection,
    model: str,
    events: Sequence[Event],
    payloads: Sequence[bytes],
) -> AppendResult:
    """Append ``events`` (their ``payloads`` from :func:`_encode_payloads`) inside the caller's
    write transaction (``BEGIN IMMEDIATE``): numbering and dedupe by key for ``append`` and for
    ``change_roles``'s control event alike."""
    # The store must be the one this process opened (onlearn.store.generation), checked in the
    # transaction that appends: a file replaced under the process fails here, before a seq is
    # given. A process that found its store changed appends nothing more.
    generation = db.generation
    generation.refuse()
    found = conn.execute(_GENERATION_SQL).fetchone()
    if found is None or found[0] != generation.id:
        raise generation.mismatch(found[0] if found else None)
    seqs = AppendResult()
    new = seqs.new
    (head,) = conn.execute(_HEAD_SQL, (model,)).fetchone()
    known = _seqs_of_keys(db, conn, model, {e.key for e in events if e.key is not None})
    rows = []
    for event, payload in zip(events, payloads, strict=True):
        key = event.key
        if key is not None and key in known:
            seqs.append(known[key])
            new.append(False)
            continue
        head += 1
        rows.append((model, head, event.kind.value, payload, event.at, _encode_key(key)))
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


def _seqs_of_keys(
    db: _Database, conn: sqlite3.Connection, model: str, keys: Iterable[str]
) -> dict[str, int]:
    """The seqs of the events that have these keys, by key."""
    params: list[str | bytes] = []
    for key in keys:
        stored = _encode_key(key)
        params.append(stored)
        if db.legacy_rows and stored is not key:
            params.append(key)  # as an earlier onlearn wrote it
    found: dict[str, int] = {}
    for i in range(0, len(params), _KEY_CHUNK):
        chunk = params[i : i + _KEY_CHUNK]
        marks = ",".join("?" * len(chunk))
        for key, seq in conn.execute(
            f"SELECT key, seq FROM events WHERE model = ? AND key IN ({marks})",
            (model, *chunk),
        ):
            found[_decode_key(key)] = seq
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
        payloads = _encode_payloads(self._db, model, events)
        conn = self._db.durable()
        with self._db.transaction(conn):
            return _append_events(self._db, conn, model, events, payloads)

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
        shapes = self._db.shapes
        return [_event_from_row(shapes, model, *row) for row in rows]

    @_guarded("by_keys")
    def by_keys(self, model: str, keys: Sequence[str]) -> dict[str, Event]:
        params: list[str | bytes] = []
        for key in dict.fromkeys(keys):
            stored = _encode_key(key)
            params.append(stored)
            if self._db.legacy_rows and stored is not key:
                params.append(key)  # as an earlier onlearn wrote it
        conn = self._db.durable()
        shapes = self._db.shapes
        found: dict[str, Event] = {}
        for i in range(0, len(params), _KEY_CHUNK):
            chunk = params[i : i + _KEY_CHUNK]
            marks = ",".join("?" * len(chunk))
            for row in conn.execute(
                f"SELECT seq, kind, payload, at, key FROM events WHERE model = ? AND key IN ({marks})",
                (model, *chunk),
            ):
                event = _event_from_row(shapes, model, *row)
                found[event.key] = event
        return found

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
