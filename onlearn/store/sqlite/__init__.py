"""The ``sqlite:///path`` backend: the embedded default, safe for several processes on one machine.

One database file in WAL mode holds every port. Writers serialise on SQLite's write lock
(``BEGIN IMMEDIATE``), which is what makes per-model seqs gapless across processes; readers never
wait for writers. Each thread gets its own connections (SQLite connections must not be shared by
threads that run statements at the same time), and every connection is registered so that
``Store.close()`` closes them all.

Two connections per thread, because durability differs by what is written:

- *durable* (``synchronous=FULL``): the event log, the registry and the job queue. A commit
  returns after the WAL is fsynced, so an acknowledged label survives ``kill -9`` and power loss.
- *fast* (``synchronous=NORMAL``): prediction records and the labelling queue. Every commit
  survives ``kill -9`` (WAL); a power loss may lose the last ones, which only loses a join or a
  label request (the client can still send feedback with inline features), and pushes to the
  labelling queue happen on the predict path.

URL: ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``, with the optional query
parameter ``busy_timeout_ms`` (default 5000): how long a writer waits for the lock before the
call fails with :class:`~onlearn.errors.StoreUnavailable`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote

from onlearn.errors import ConfigError, StoreUnavailable
from onlearn.records import (
    Event,
    EventKind,
    Job,
    JobState,
    PredictionRecord,
    QueueItem,
    QueueState,
    Snapshot,
    VersionInfo,
)
from onlearn.store.base import (
    AppendResult,
    ClaimOutcome,
    PushOutcome,
    QueueStats,
    RolesState,
    Store,
)
from onlearn.store.codec import (
    decode_document,
    decode_prediction,
    dumps,
    encode_document,
    encode_prediction,
    loads,
)
from onlearn.store.leases import (
    cancellable,
    check_canary_share,
    check_job,
    check_priority,
    check_pushable,
    claim_verdict,
    new_claim_id,
    rank,
    reclaim_error,
)

__all__ = [
    "SqliteEventLog",
    "SqliteJobQueue",
    "SqliteLabelQueue",
    "SqlitePredictionStore",
    "SqliteRegistry",
    "open_sqlite_store",
    "parse_sqlite_url",
]

DEFAULT_BUSY_TIMEOUT_MS = 5000
# 1: the first schema. 2: versions.key (create_version's idempotency key), role_history.seq,
# roles_state (canary share and seq of the last change_roles). 3: the predictions_model_id
# index (PredictionStore.scan) and the documents table (Registry.put_document). 4:
# jobs.committed (job cancellation; a job may also be 'cancelled', a state an earlier onlearn
# cannot read, which is why it must refuse the file) and versions.spec_signature (signed
# specs). An older file is upgraded in place when opened.
SCHEMA_VERSION = 4

# Column types are TEXT, never "JSON": SQLite gives an unknown type name NUMERIC affinity, which
# would turn a payload such as '123' into the integer 123.
_SCHEMA = [
    # WITHOUT ROWID clusters rows by (model, seq), so replaying a log reads pages in order.
    """CREATE TABLE IF NOT EXISTS events (
        model TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        at REAL NOT NULL,
        key TEXT,
        PRIMARY KEY (model, seq)
    ) WITHOUT ROWID""",
    "CREATE UNIQUE INDEX IF NOT EXISTS events_key ON events (model, key) WHERE key IS NOT NULL",
    # The highest seq ever given per model. max(seq) alone would restart numbering once trim
    # has removed every event of a model.
    """CREATE TABLE IF NOT EXISTS heads (
        model TEXT PRIMARY KEY,
        seq INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS predictions (
        id TEXT PRIMARY KEY,
        model TEXT NOT NULL,
        at REAL NOT NULL,
        expires_at REAL NOT NULL,
        body TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS predictions_expires_at ON predictions (expires_at)",
    # scan: a model's records in id order from a cursor, read along this index. One more index
    # entry per record written; expires_at is checked on the row, whose body is read anyway.
    "CREATE INDEX IF NOT EXISTS predictions_model_id ON predictions (model, id)",
    """CREATE TABLE IF NOT EXISTS versions (
        model TEXT NOT NULL,
        number INTEGER NOT NULL,
        created_at REAL NOT NULL,
        spec TEXT NOT NULL,
        meta TEXT NOT NULL,
        key TEXT,
        spec_signature TEXT,
        PRIMARY KEY (model, number)
    )""",
    "CREATE UNIQUE INDEX IF NOT EXISTS versions_key ON versions (model, key) WHERE key IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS roles (
        model TEXT NOT NULL,
        role TEXT NOT NULL,
        version TEXT NOT NULL,
        PRIMARY KEY (model, role)
    )""",
    """CREATE TABLE IF NOT EXISTS role_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        model TEXT NOT NULL,
        role TEXT NOT NULL,
        version TEXT,
        previous TEXT,
        actor TEXT NOT NULL,
        reason TEXT NOT NULL,
        at REAL NOT NULL,
        seq INTEGER
    )""",
    "CREATE INDEX IF NOT EXISTS role_history_model ON role_history (model, id)",
    # What change_roles keeps beside the roles: the canary's share and the seq of the control
    # event of the last change (0: none). Written in the transaction that appends that event.
    """CREATE TABLE IF NOT EXISTS roles_state (
        model TEXT PRIMARY KEY,
        canary_share REAL NOT NULL DEFAULT 0.0,
        seq INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE IF NOT EXISTS snapshots (
        model TEXT NOT NULL,
        version TEXT NOT NULL,
        seq INTEGER NOT NULL,
        at REAL NOT NULL,
        artifact BLOB NOT NULL,
        PRIMARY KEY (model, version, seq)
    )""",
    # Small JSON documents per model and name (reference profiles, the monitor's reports).
    """CREATE TABLE IF NOT EXISTS documents (
        model TEXT NOT NULL,
        name TEXT NOT NULL,
        body TEXT NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (model, name)
    )""",
    # Labelling queue. JSON columns (features, proba, result) are TEXT like every payload.
    """CREATE TABLE IF NOT EXISTS queue_items (
        model TEXT NOT NULL,
        item_id TEXT NOT NULL,
        state TEXT NOT NULL,
        priority REAL NOT NULL,
        enqueued_at REAL NOT NULL,
        prediction_id TEXT,
        dedupe_key TEXT,
        features TEXT NOT NULL,
        proba TEXT,
        uncertainty REAL,
        reason TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        skips INTEGER NOT NULL,
        labeller TEXT,
        claim_id TEXT,
        lease_expires_at REAL,
        finished_at REAL,
        result TEXT,
        PRIMARY KEY (model, item_id)
    )""",
    # The queued items of a model in claim order: claim and peek read it forwards, a full queue
    # finds its eviction victim reading it backwards, and depth counts it.
    """CREATE INDEX IF NOT EXISTS queue_items_queued
        ON queue_items (model, priority DESC, enqueued_at, item_id) WHERE state = 'queued'""",
    # Leases by expiry, for releasing the expired ones; also counts the claimed items.
    """CREATE INDEX IF NOT EXISTS queue_items_leases
        ON queue_items (model, lease_expires_at) WHERE state = 'claimed'""",
    # At most one item per dedupe key among the items not evicted: the push rule, as a constraint.
    """CREATE UNIQUE INDEX IF NOT EXISTS queue_items_dedupe
        ON queue_items (model, dedupe_key) WHERE dedupe_key IS NOT NULL AND state != 'evicted'""",
    # Only finished items (done, skipped, evicted) have finished_at: what purge_finished reads.
    """CREATE INDEX IF NOT EXISTS queue_items_finished
        ON queue_items (model, finished_at) WHERE finished_at IS NOT NULL""",
    # Counters of each model's queue, apart from the items so that purging keeps them.
    """CREATE TABLE IF NOT EXISTS queue_counters (
        model TEXT PRIMARY KEY,
        labelled INTEGER NOT NULL DEFAULT 0,
        skipped INTEGER NOT NULL DEFAULT 0,
        expired INTEGER NOT NULL DEFAULT 0,
        evicted INTEGER NOT NULL DEFAULT 0,
        rejected INTEGER NOT NULL DEFAULT 0,
        duplicates INTEGER NOT NULL DEFAULT 0,
        pushed INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE IF NOT EXISTS jobs (
        job_id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        model TEXT NOT NULL,
        params TEXT NOT NULL,
        created_at REAL NOT NULL,
        key TEXT,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        max_attempts INTEGER NOT NULL,
        run_after REAL NOT NULL,
        worker TEXT,
        lease_expires_at REAL,
        updated_at REAL,
        result TEXT,
        error TEXT,
        committed INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE UNIQUE INDEX IF NOT EXISTS jobs_key ON jobs (key) WHERE key IS NOT NULL",
    # Claim scans the unfinished jobs oldest first; finished ones (done, failed, cancelled) stay
    # out of the way.
    """CREATE INDEX IF NOT EXISTS jobs_active
        ON jobs (created_at, job_id) WHERE state IN ('queued', 'running')""",
    "CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at, job_id)",
    "CREATE INDEX IF NOT EXISTS jobs_model ON jobs (model, created_at, job_id)",
]

# Columns added after schema version 1: (table, column, declaration). A file made by an older
# onlearn gets them when opened; CREATE TABLE above already has them for a new file.
_ADDED_COLUMNS = [
    ("versions", "key", "TEXT"),
    ("role_history", "seq", "INTEGER"),
    # Version 4. Old versions have no signature (NULL) until `onlearn store sign-specs`; old
    # jobs committed nothing the store knows of (0).
    ("versions", "spec_signature", "TEXT"),
    ("jobs", "committed", "INTEGER NOT NULL DEFAULT 0"),
]

# Primary result codes that mean "the database cannot be used", as opposed to a bug in a
# statement: BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN, PROTOCOL, NOTADB.
_UNAVAILABLE_CODES = {5, 6, 8, 10, 13, 14, 15, 26}


def parse_sqlite_url(url: str) -> tuple[str, dict[str, Any]]:
    """Split a ``sqlite:///`` URL into an absolute file path and its options.

    >>> parse_sqlite_url("sqlite:////var/lib/onlearn.db?busy_timeout_ms=100")
    ('/var/lib/onlearn.db', {'busy_timeout_ms': 100})
    """
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ConfigError(
            f"store URL {url!r}: use sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    raw_path, _, query = url[len(prefix) :].partition("?")
    path = unquote(raw_path)
    if not path or path == ":memory:" or path.endswith("/"):
        raise ConfigError(
            f"store URL {url!r}: give a database file path (for a throw-away store use memory://)"
        )
    options: dict[str, Any] = {"busy_timeout_ms": DEFAULT_BUSY_TIMEOUT_MS}
    for name, values in parse_qs(query, keep_blank_values=True).items():
        if name != "busy_timeout_ms":
            raise ConfigError(
                f"store URL {url!r}: unknown option {name!r} (known: busy_timeout_ms)"
            )
        try:
            options[name] = int(values[-1])
        except ValueError:
            options[name] = -1
        if options[name] < 0:
            raise ConfigError(
                f"store URL {url!r}: busy_timeout_ms must be a whole number of milliseconds >= 0"
            )
    return os.path.abspath(path), options


class _Database:
    """The file, its per-thread connections, transactions and error translation."""

    def __init__(self, path: str, busy_timeout_ms: int):
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._closed = False
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._inherited: list[tuple[threading.Thread, sqlite3.Connection]] = []
        ref = weakref.ref(self)  # weak, so that the fork hook does not keep the store alive
        os.register_at_fork(after_in_child=lambda: (db := ref()) is not None and db._forked())

    def _forked(self) -> None:
        # A forked child must not use, nor close, its parent's connections (SQLite forbids
        # carrying a connection across fork); it opens its own on first use and keeps the old
        # objects referenced so that they are never finalised here.
        self._inherited.extend(self._open)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open = []

    def durable(self) -> sqlite3.Connection:
        """This thread's connection for the log and the registry (fsync at each commit)."""
        conn = getattr(self._local, "durable", None)
        if conn is None or self._closed:
            conn = self._connect("durable", synchronous="FULL")
        return conn

    def fast(self) -> sqlite3.Connection:
        """This thread's connection for prediction records (no fsync at commit)."""
        conn = getattr(self._local, "fast", None)
        if conn is None or self._closed:
            conn = self._connect("fast", synchronous="NORMAL")
        return conn

    def _connect(self, purpose: str, synchronous: str) -> sqlite3.Connection:
        if self._closed:
            raise StoreUnavailable(f"SQLite store {self.path} is closed")
        # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves.
        # check_same_thread=False only so that close() may close it from another thread;
        # statements run on the owning thread alone.
        conn = None
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout_ms / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            conn.execute(f"PRAGMA synchronous = {synchronous}")
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            error = self.translate(exc, "open")
            if error is exc:
                raise
            raise error from exc
        me = threading.current_thread()
        with self._lock:
            # Connections of threads that have ended are closed here, so a churn of short-lived
            # threads does not accumulate open files.
            alive = []
            for thread, other in self._open:
                if thread.is_alive():
                    alive.append((thread, other))
                else:
                    other.close()
            alive.append((me, conn))
            self._open = alive
        setattr(self._local, purpose, conn)
        return conn

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for _, conn in self._open:
                conn.close()
            self._open = []

    @contextlib.contextmanager
    def transaction(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the write lock up front, so that reading the head and
        writing after it cannot be interleaved with another writer (no lock upgrade deadlock)."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    @contextlib.contextmanager
    def reading(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        """A read transaction: every statement in it sees the same state of the file (WAL gives
        a deferred transaction one snapshot from its first read), and it takes no write lock."""
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("COMMIT")

    def translate(self, exc: sqlite3.DatabaseError, action: str) -> Exception:
        """StoreUnavailable for a database that cannot be used now; ``exc`` itself otherwise."""
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        if code not in _UNAVAILABLE_CODES:
            return exc
        hint = "; retry later"
        if code in (5, 6):
            hint = (
                f" (another connection held the write lock longer than "
                f"busy_timeout_ms={self.busy_timeout_ms}); retry later"
            )
        elif code == 26:
            hint = " (the file exists but is not an SQLite database)"
        return StoreUnavailable(f"SQLite store {self.path} is unavailable ({action}): {exc}{hint}")

    def create_schema(self) -> None:
        conn = self.durable()
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreUnavailable(
                f"SQLite store {self.path}: cannot switch to WAL mode (got {mode!r}); "
                "put the file on a local file system"
            )
        with self.transaction(conn):
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"SQLite store {self.path} has schema version {version}, newer than this "
                    f"onlearn ({SCHEMA_VERSION}); upgrade onlearn"
                )
            # Tables first, then the columns an older file lacks, then the indexes (some index
            # an added column).
            tables = [sql for sql in _SCHEMA if sql.startswith("CREATE TABLE")]
            for statement in tables:
                conn.execute(statement)
            for table, column, declaration in _ADDED_COLUMNS:
                have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
            for statement in _SCHEMA:
                if statement not in tables:
                    conn.execute(statement)
            if version < SCHEMA_VERSION:
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _guarded(action: str) -> Callable[[_Method], _Method]:
    """Turn SQLite errors that mean "unavailable" into StoreUnavailable; leave others alone."""

    def wrap(method: _Method) -> _Method:
        @functools.wraps(method)
        def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except sqlite3.DatabaseError as exc:
                error = self._db.translate(exc, action)
                if error is exc:
                    raise
                raise error from exc

        return guarded  # type: ignore[return-value]

    return wrap


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

    @_guarded("trim")
    def trim(self, model: str, upto: int) -> int:
        conn = self._db.durable()
        with self._db.transaction(conn):
            # Keep the head even if every event goes, so numbering continues after a full trim.
            (head,) = conn.execute(_HEAD_SQL, (model,)).fetchone()
            if head:
                conn.execute(
                    "INSERT INTO heads (model, seq) VALUES (?, ?)"
                    " ON CONFLICT (model) DO UPDATE SET seq = excluded.seq",
                    (model, head),
                )
            return conn.execute(
                "DELETE FROM events WHERE model = ? AND seq <= ?", (model, upto)
            ).rowcount


# Rows deleted per transaction by purge_expired, so that a large purge never holds the write
# lock for long and appends interleave with it.
_PURGE_CHUNK = 5000


class SqlitePredictionStore:
    def __init__(self, db: _Database):
        self._db = db

    @_guarded("put predictions")
    def put_many(self, records: Sequence[PredictionRecord]) -> None:
        if not records:
            return
        # Encode before taking the write lock: the lock is held for the inserts alone.
        rows = [(r.id, r.model, r.at, r.expires_at, encode_prediction(r)) for r in records]
        conn = self._db.fast()
        with self._db.transaction(conn):
            conn.executemany(
                "INSERT OR REPLACE INTO predictions (id, model, at, expires_at, body)"
                " VALUES (?,?,?,?,?)",
                rows,
            )

    @_guarded("get prediction")
    def get(self, prediction_id: str) -> PredictionRecord | None:
        # Expired rows are invisible even before purge_expired removes them.
        row = (
            self._db.fast()
            .execute(
                "SELECT body FROM predictions WHERE id = ? AND expires_at > ?",
                (prediction_id, time.time()),
            )
            .fetchone()
        )
        return None if row is None else decode_prediction(row[0])

    @_guarded("purge predictions")
    def purge_expired(self, now: float) -> int:
        conn = self._db.fast()
        total = 0
        while True:
            with self._db.transaction(conn):
                deleted = conn.execute(
                    "DELETE FROM predictions WHERE rowid IN ("
                    " SELECT rowid FROM predictions WHERE expires_at <= ? LIMIT ?)",
                    (now, _PURGE_CHUNK),
                ).rowcount
            total += deleted
            if deleted < _PURGE_CHUNK:
                return total

    @_guarded("scan predictions")
    def scan(
        self, model: str, after: str | None, limit: int = 1000, upto: str | None = None
    ) -> list[PredictionRecord]:
        if limit <= 0:
            return []
        now = time.time()
        # "~" sorts after every id (ids are lowercase hex): no upper bound.
        upto = "~" if upto is None else upto
        if after is None:
            rows = self._db.fast().execute(_SCAN_FIRST_SQL, (model, upto, now, limit)).fetchall()
        else:
            rows = self._db.fast().execute(_SCAN_SQL, (model, after, upto, now, limit)).fetchall()
        return [decode_prediction(body) for (body,) in rows]


# Both walk predictions_model_id from the cursor, in its order (no sort). The unary + keeps
# expires_at out of the choice of index: predictions_expires_at would read every live record
# of every model, then sort. Expired rows not purged yet are skipped on the way.
_SCAN_SQL = (
    "SELECT body FROM predictions WHERE model = ? AND id > ? AND id <= ? AND +expires_at > ?"
    " ORDER BY id LIMIT ?"
)
_SCAN_FIRST_SQL = (
    "SELECT body FROM predictions WHERE model = ? AND id <= ? AND +expires_at > ?"
    " ORDER BY id LIMIT ?"
)


_VERSION_NAME = re.compile(r"v([1-9][0-9]*)")
_VERSION_COLUMNS = "number, created_at, spec, meta, spec_signature"
_SELECT_VERSION = f"SELECT {_VERSION_COLUMNS} FROM versions WHERE model = ? AND number = ?"


def _version_from_row(model: str, row: Sequence[Any]) -> VersionInfo:
    number, created_at, spec, meta, spec_signature = row
    return VersionInfo(model, f"v{number}", created_at, loads(spec), loads(meta), spec_signature)


class SqliteRegistry:
    def __init__(self, db: _Database):
        self._db = db

    @_guarded("create version")
    def create_version(
        self,
        model: str,
        spec: dict,
        meta: dict,
        at: float,
        key: str | None = None,
        *,
        spec_signature: str | None = None,
    ) -> VersionInfo:
        spec_text, meta_text = dumps(spec), dumps(meta)
        conn = self._db.durable()
        # One transaction: looking the key up and taking the next number happen under the write
        # lock, so concurrent calls with one key (a job retried by two workers) register once.
        with self._db.transaction(conn):
            if key is not None:
                row = conn.execute(
                    f"SELECT {_VERSION_COLUMNS} FROM versions WHERE model = ? AND key = ?",
                    (model, key),
                ).fetchone()
                if row is not None:
                    return _version_from_row(model, row)
            (number,) = conn.execute(
                "SELECT coalesce(max(number), 0) + 1 FROM versions WHERE model = ?", (model,)
            ).fetchone()
            conn.execute(
                "INSERT INTO versions (model, number, created_at, spec, meta, key, spec_signature)"
                " VALUES (?,?,?,?,?,?,?)",
                (model, number, at, spec_text, meta_text, key, spec_signature),
            )
        return _version_from_row(model, (number, at, spec_text, meta_text, spec_signature))

    @_guarded("set spec signature")
    def set_spec_signature(self, model: str, version: str, signature: str) -> VersionInfo | None:
        match = _VERSION_NAME.fullmatch(version)
        if match is None:
            return None
        number = int(match.group(1))
        conn = self._db.durable()
        # One transaction: the version read back is the one this call signed.
        with self._db.transaction(conn):
            conn.execute(
                "UPDATE versions SET spec_signature = ? WHERE model = ? AND number = ?",
                (signature, model, number),
            )
            row = conn.execute(_SELECT_VERSION, (model, number)).fetchone()
        return None if row is None else _version_from_row(model, row)

    @_guarded("get version")
    def get_version(self, model: str, version: str) -> VersionInfo | None:
        match = _VERSION_NAME.fullmatch(version)
        if match is None:
            return None
        row = self._db.durable().execute(_SELECT_VERSION, (model, int(match.group(1)))).fetchone()
        return None if row is None else _version_from_row(model, row)

    @_guarded("list versions")
    def list_versions(self, model: str) -> list[VersionInfo]:
        rows = (
            self._db.durable()
            .execute(
                f"SELECT {_VERSION_COLUMNS} FROM versions WHERE model = ? ORDER BY number",
                (model,),
            )
            .fetchall()
        )
        return [_version_from_row(model, row) for row in rows]

    @_guarded("roles")
    def roles(self, model: str) -> dict[str, str]:
        rows = (
            self._db.durable()
            .execute("SELECT role, version FROM roles WHERE model = ? ORDER BY role", (model,))
            .fetchall()
        )
        return dict(rows)

    @staticmethod
    def _check_versions(conn: sqlite3.Connection, model: str, versions: Iterable[str]) -> None:
        for version in versions:
            match = _VERSION_NAME.fullmatch(version)
            exists = (
                match is not None
                and conn.execute(
                    "SELECT 1 FROM versions WHERE model = ? AND number = ?",
                    (model, int(match.group(1))),
                ).fetchone()
            )
            if not exists:
                raise LookupError(f"model {model!r} has no version {version!r}")

    @staticmethod
    def _apply(
        conn: sqlite3.Connection,
        model: str,
        changes: Mapping[str, str | None],
        *,
        actor: str,
        reason: str,
        at: float,
        seq: int | None,
        always_audit: bool,
    ) -> None:
        """Change roles and write their audit rows, inside the caller's write transaction (so
        that "previous" is read under the write lock: two concurrent promotions cannot both
        record the same previous version)."""
        for role, version in changes.items():
            row = conn.execute(
                "SELECT version FROM roles WHERE model = ? AND role = ?", (model, role)
            ).fetchone()
            previous = None if row is None else row[0]
            if previous == version and not always_audit:
                continue
            if version is None:
                conn.execute("DELETE FROM roles WHERE model = ? AND role = ?", (model, role))
            else:
                conn.execute(
                    "INSERT INTO roles (model, role, version) VALUES (?, ?, ?)"
                    " ON CONFLICT (model, role) DO UPDATE SET version = excluded.version",
                    (model, role, version),
                )
            conn.execute(
                "INSERT INTO role_history (model, role, version, previous, actor, reason, at, seq)"
                " VALUES (?,?,?,?,?,?,?,?)",
                (model, role, version, previous, actor, reason, at, seq),
            )

    @_guarded("set role")
    def set_role(
        self, model: str, role: str, version: str | None, *, actor: str, reason: str, at: float
    ) -> None:
        conn = self._db.durable()
        # One transaction: the role and its audit row are written together or not at all.
        with self._db.transaction(conn):
            if version is not None:
                self._check_versions(conn, model, [version])
            self._apply(
                conn,
                model,
                {role: version},
                actor=actor,
                reason=reason,
                at=at,
                seq=None,
                always_audit=True,
            )

    @_guarded("change roles")
    def change_roles(
        self,
        model: str,
        changes: Mapping[str, str | None],
        event: Event,
        *,
        actor: str,
        reason: str,
        at: float,
        canary_share: float | None = None,
    ) -> int:
        check_canary_share(canary_share)
        changes = dict(changes)
        conn = self._db.durable()
        # One transaction on the durable connection over events, heads, roles, roles_state and
        # role_history: the control event and the roles it announces are committed together or
        # not at all, and concurrent changes are serialised by the write lock, so the roles
        # always equal the fold of the control events in log order.
        with self._db.transaction(conn):
            if event.key is not None:
                row = conn.execute(
                    "SELECT seq FROM events WHERE model = ? AND key = ?", (model, event.key)
                ).fetchone()
                if row is not None:
                    return row[0]  # a retried change: it happened once already
            # Raising here rolls the transaction back: nothing was written yet anyway.
            self._check_versions(conn, model, (v for v in changes.values() if v is not None))
            (seq,) = _append_events(conn, model, [event])
            self._apply(
                conn,
                model,
                changes,
                actor=actor,
                reason=reason,
                at=at,
                seq=seq,
                always_audit=False,
            )
            if canary_share is None:
                conn.execute(
                    "INSERT INTO roles_state (model, seq) VALUES (?, ?)"
                    " ON CONFLICT (model) DO UPDATE SET seq = excluded.seq",
                    (model, seq),
                )
            else:
                conn.execute(
                    "INSERT INTO roles_state (model, canary_share, seq) VALUES (?, ?, ?)"
                    " ON CONFLICT (model) DO UPDATE"
                    " SET canary_share = excluded.canary_share, seq = excluded.seq",
                    (model, float(canary_share), seq),
                )
        return seq

    @_guarded("roles state")
    def roles_state(self, model: str) -> RolesState:
        conn = self._db.durable()
        with self._db.reading(conn):
            roles = conn.execute(
                "SELECT role, version FROM roles WHERE model = ? ORDER BY role", (model,)
            ).fetchall()
            row = conn.execute(
                "SELECT canary_share, seq FROM roles_state WHERE model = ?", (model,)
            ).fetchone()
        share, seq = (0.0, 0) if row is None else row
        return RolesState(dict(roles), float(share), seq)

    @_guarded("role history")
    def role_history(self, model: str) -> list[dict]:
        rows = (
            self._db.durable()
            .execute(
                "SELECT role, version, previous, actor, reason, at, seq FROM role_history"
                " WHERE model = ? ORDER BY id",
                (model,),
            )
            .fetchall()
        )
        names = ("role", "version", "previous", "actor", "reason", "at", "seq")
        return [dict(zip(names, row, strict=True)) for row in rows]

    @_guarded("put snapshot")
    def put_snapshot(self, snapshot: Snapshot) -> None:
        conn = self._db.durable()
        with self._db.transaction(conn):
            conn.execute(
                "INSERT OR REPLACE INTO snapshots (model, version, seq, at, artifact)"
                " VALUES (?,?,?,?,?)",
                (
                    snapshot.model,
                    snapshot.version,
                    snapshot.seq,
                    snapshot.at,
                    sqlite3.Binary(snapshot.artifact),
                ),
            )

    @_guarded("prune snapshots")
    def prune_snapshots(self, model: str, version: str, keep: int) -> int:
        conn = self._db.durable()
        with self._db.transaction(conn):
            cursor = conn.execute(
                "DELETE FROM snapshots WHERE model = ? AND version = ? AND seq NOT IN"
                " (SELECT seq FROM snapshots WHERE model = ? AND version = ?"
                "  ORDER BY seq DESC LIMIT ?)",
                (model, version, model, version, max(keep, 0)),
            )
            return cursor.rowcount

    @_guarded("put document")
    def put_document(self, model: str, name: str, document: Mapping[str, Any]) -> None:
        body = encode_document(document)
        conn = self._db.durable()
        with self._db.transaction(conn):
            conn.execute(
                "INSERT INTO documents (model, name, body, at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (model, name) DO UPDATE SET body = excluded.body, at = excluded.at",
                (model, name, body, time.time()),
            )

    @_guarded("get document")
    def get_document(self, model: str, name: str) -> dict | None:
        row = (
            self._db.durable()
            .execute("SELECT body FROM documents WHERE model = ? AND name = ?", (model, name))
            .fetchone()
        )
        return None if row is None else decode_document(row[0])

    @_guarded("latest snapshot")
    def latest_snapshot(
        self, model: str, version: str, max_seq: int | None = None
    ) -> Snapshot | None:
        limit = (1 << 63) - 1 if max_seq is None else max_seq
        row = (
            self._db.durable()
            .execute(
                "SELECT seq, at, artifact FROM snapshots"
                " WHERE model = ? AND version = ? AND seq <= ? ORDER BY seq DESC LIMIT 1",
                (model, version, limit),
            )
            .fetchone()
        )
        if row is None:
            return None
        seq, at, artifact = row
        return Snapshot(model, version, seq, at, bytes(artifact))

    @_guarded("latest snapshot seq")
    def latest_snapshot_seq(self, model: str, version: str) -> int:
        (seq,) = (
            self._db.fast()
            .execute(
                "SELECT MAX(seq) FROM snapshots WHERE model = ? AND version = ?", (model, version)
            )
            .fetchone()
        )
        return seq or 0


_ITEM_COLUMNS = (
    "item_id, model, features, priority, enqueued_at, prediction_id, dedupe_key, proba,"
    " uncertainty, reason, state, attempts, skips, labeller, claim_id, lease_expires_at,"
    " finished_at, result"
)


def _item_from_row(row: Sequence[Any]) -> QueueItem:
    (
        item_id,
        model,
        features,
        priority,
        enqueued_at,
        prediction_id,
        dedupe_key,
        proba,
        uncertainty,
        reason,
        state,
        attempts,
        skips,
        labeller,
        claim_id,
        lease_expires_at,
        finished_at,
        result,
    ) = row
    return QueueItem(
        item_id=item_id,
        model=model,
        features=loads(features),
        priority=priority,
        enqueued_at=enqueued_at,
        prediction_id=prediction_id,
        dedupe_key=dedupe_key,
        proba=None if proba is None else loads(proba),
        uncertainty=uncertainty,
        reason=reason,
        state=QueueState(state),
        attempts=attempts,
        skips=skips,
        labeller=labeller,
        claim_id=claim_id,
        lease_expires_at=lease_expires_at,
        finished_at=finished_at,
        result=None if result is None else loads(result),
    )


def _item_row(item: QueueItem) -> tuple:
    """The values of ``_ITEM_COLUMNS`` for ``item``."""
    return (
        item.item_id,
        item.model,
        dumps(item.features),
        float(item.priority),
        item.enqueued_at,
        item.prediction_id,
        item.dedupe_key,
        None if item.proba is None else dumps(item.proba),
        item.uncertainty,
        item.reason,
        item.state.value,
        item.attempts,
        item.skips,
        item.labeller,
        item.claim_id,
        item.lease_expires_at,
        item.finished_at,
        None if item.result is None else dumps(item.result),
    )


_INSERT_ITEM = f"INSERT INTO queue_items ({_ITEM_COLUMNS}) VALUES ({','.join('?' * 18)})"
_SELECT_ITEM = f"SELECT {_ITEM_COLUMNS} FROM queue_items WHERE model = ? AND item_id = ?"
_QUEUE_COUNTERS = ("labelled", "skipped", "expired", "evicted", "rejected", "duplicates", "pushed")
# Both counts read the partial indexes; the counters row may not exist yet. One statement, so
# the numbers are of one moment.
_STATS_SQL = f"""SELECT
    (SELECT count(*) FROM queue_items WHERE model = ?1 AND state = 'queued'),
    (SELECT count(*) FROM queue_items WHERE model = ?1 AND state = 'claimed'),
    {", ".join(f"coalesce(c.{name}, 0)" for name in _QUEUE_COUNTERS)}
    FROM (SELECT 1) LEFT JOIN queue_counters AS c ON c.model = ?1"""


def _bump(conn: sqlite3.Connection, model: str, counter: str, by: int = 1) -> None:
    """Add ``by`` to one of the model's queue counters, inside the caller's transaction."""
    assert counter in _QUEUE_COUNTERS
    conn.execute(
        f"INSERT INTO queue_counters (model, {counter}) VALUES (?, ?)"
        f" ON CONFLICT (model) DO UPDATE SET {counter} = {counter} + excluded.{counter}",
        (model, by),
    )


class SqliteLabelQueue:
    """One row per item; counters in their own table. Every change is one ``BEGIN IMMEDIATE``
    transaction, so the read that picks items and the write that leases them cannot interleave
    with another process's: two claims never get the same item."""

    def __init__(self, db: _Database):
        self._db = db

    @_guarded("push to queue")
    def push(self, item: QueueItem, *, max_size: int) -> PushOutcome:
        check_pushable(item)
        row = _item_row(item)  # encode before taking the write lock
        model = item.model
        conn = self._db.fast()
        with self._db.transaction(conn):
            # Pushing an item id again is a duplicate too, so that a retried push is harmless.
            found = conn.execute(
                "SELECT item_id FROM queue_items WHERE model = ? AND item_id = ?",
                (model, item.item_id),
            ).fetchone()
            if found is None and item.dedupe_key is not None:
                found = conn.execute(
                    "SELECT item_id FROM queue_items"
                    " WHERE model = ? AND dedupe_key = ? AND state != 'evicted'",
                    (model, item.dedupe_key),
                ).fetchone()
            if found is not None:
                _bump(conn, model, "duplicates")
                return PushOutcome("duplicate", found[0])
            evicted = None
            # Count no further than the bound: a full queue is the usual state.
            (depth,) = conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM queue_items"
                " WHERE model = ? AND state = 'queued' LIMIT ?)",
                (model, max(max_size, 0)),
            ).fetchone()
            if depth >= max_size:
                victim = conn.execute(
                    "SELECT item_id, priority, enqueued_at FROM queue_items"
                    " WHERE model = ? AND state = 'queued'"
                    " ORDER BY priority, enqueued_at DESC, item_id DESC LIMIT 1",
                    (model,),
                ).fetchone()
                if victim is None or rank(item) >= (-victim[1], victim[2], victim[0]):
                    _bump(conn, model, "rejected")
                    return PushOutcome("rejected")
                # push has no clock: the new item's enqueued_at is when the victim left.
                conn.execute(
                    "UPDATE queue_items SET state = 'evicted', finished_at = ?"
                    " WHERE model = ? AND item_id = ?",
                    (item.enqueued_at, model, victim[0]),
                )
                _bump(conn, model, "evicted")
                evicted = victim[0]
            conn.execute(_INSERT_ITEM, row)
            _bump(conn, model, "pushed")
        return PushOutcome("queued", item.item_id, evicted)

    @_guarded("peek queue")
    def peek(self, model: str, limit: int) -> list[QueueItem]:
        if limit <= 0:
            return []
        rows = (
            self._db.fast()
            .execute(
                f"SELECT {_ITEM_COLUMNS} FROM queue_items WHERE model = ? AND state = 'queued'"
                " ORDER BY priority DESC, enqueued_at, item_id LIMIT ?",
                (model, limit),
            )
            .fetchall()
        )
        return [_item_from_row(row) for row in rows]

    @_guarded("reprioritize queue")
    def reprioritize(self, model: str, priorities: dict[str, float]) -> None:
        for priority in priorities.values():
            check_priority(priority)
        if not priorities:
            return
        rows = [(float(p), model, item_id) for item_id, p in priorities.items()]
        conn = self._db.fast()
        with self._db.transaction(conn):
            conn.executemany(
                "UPDATE queue_items SET priority = ?"
                " WHERE model = ? AND item_id = ? AND state = 'queued'",
                rows,
            )

    @staticmethod
    def _release_expired(conn: sqlite3.Connection, model: str, now: float) -> int:
        released = conn.execute(
            "UPDATE queue_items SET state = 'queued', lease_expires_at = NULL"
            " WHERE model = ? AND state = 'claimed' AND lease_expires_at <= ?",
            (model, now),
        ).rowcount
        if released:
            _bump(conn, model, "expired", released)
        return released

    @_guarded("claim from queue")
    def claim(
        self,
        model: str,
        *,
        limit: int,
        lease_s: float,
        labeller: str | None,
        now: float,
        item_ids: Sequence[str] | None = None,
    ) -> list[QueueItem]:
        conn = self._db.fast()
        # One transaction from release to lease: the items picked are leased before any other
        # connection can read them as queued.
        with self._db.transaction(conn):
            self._release_expired(conn, model, now)
            if limit <= 0:
                return []
            if item_ids is None:
                rows = conn.execute(
                    f"SELECT {_ITEM_COLUMNS} FROM queue_items WHERE model = ? AND state = 'queued'"
                    " ORDER BY priority DESC, enqueued_at, item_id LIMIT ?",
                    (model, limit),
                ).fetchall()
            else:
                rows = []
                for item_id in dict.fromkeys(item_ids):
                    row = conn.execute(
                        f"SELECT {_ITEM_COLUMNS} FROM queue_items"
                        " WHERE model = ? AND item_id = ? AND state = 'queued'",
                        (model, item_id),
                    ).fetchone()
                    if row is not None:
                        rows.append(row)
                        if len(rows) == limit:
                            break
            claimed = [
                dataclasses.replace(
                    item,
                    state=QueueState.CLAIMED,
                    claim_id=new_claim_id(),
                    attempts=item.attempts + 1,
                    labeller=labeller,
                    lease_expires_at=now + lease_s,
                )
                for item in map(_item_from_row, rows)
            ]
            conn.executemany(
                "UPDATE queue_items SET state = 'claimed', claim_id = ?, attempts = ?,"
                " labeller = ?, lease_expires_at = ? WHERE model = ? AND item_id = ?",
                [
                    (i.claim_id, i.attempts, i.labeller, i.lease_expires_at, model, i.item_id)
                    for i in claimed
                ],
            )
        return claimed

    @_guarded("complete queue item")
    def complete(
        self, model: str, item_id: str, claim_id: str | None, result: dict, now: float
    ) -> ClaimOutcome:
        result_text = dumps(result)
        conn = self._db.fast()
        with self._db.transaction(conn):
            row = conn.execute(_SELECT_ITEM, (model, item_id)).fetchone()
            if row is None:
                return ClaimOutcome("unknown")
            item = _item_from_row(row)
            refused = claim_verdict(item, claim_id)
            if refused is not None:
                return ClaimOutcome(refused, item)
            conn.execute(
                "UPDATE queue_items SET state = 'done', result = ?, finished_at = ?,"
                " lease_expires_at = NULL WHERE model = ? AND item_id = ?",
                (result_text, now, model, item_id),
            )
            _bump(conn, model, "labelled")
        done = dataclasses.replace(
            item,
            state=QueueState.DONE,
            result=loads(result_text),
            finished_at=now,
            lease_expires_at=None,
        )
        return ClaimOutcome("ok", done)

    @_guarded("skip queue item")
    def skip(
        self, model: str, item_id: str, claim_id: str | None, now: float, *, max_skips: int
    ) -> ClaimOutcome:
        conn = self._db.fast()
        with self._db.transaction(conn):
            row = conn.execute(_SELECT_ITEM, (model, item_id)).fetchone()
            if row is None:
                return ClaimOutcome("unknown")
            item = _item_from_row(row)
            refused = claim_verdict(item, claim_id)
            if refused is not None:
                return ClaimOutcome(refused, item)
            skips = item.skips + 1
            if skips >= max_skips:
                item = dataclasses.replace(
                    item,
                    state=QueueState.SKIPPED,
                    skips=skips,
                    lease_expires_at=None,
                    finished_at=now,
                )
            else:
                item = dataclasses.replace(
                    item, state=QueueState.QUEUED, skips=skips, lease_expires_at=None
                )
            conn.execute(
                "UPDATE queue_items SET state = ?, skips = ?, lease_expires_at = NULL,"
                " finished_at = ? WHERE model = ? AND item_id = ?",
                (item.state.value, skips, item.finished_at, model, item_id),
            )
            _bump(conn, model, "skipped")
        return ClaimOutcome("ok", item)

    @_guarded("release expired leases")
    def release_expired(self, model: str, now: float) -> int:
        conn = self._db.fast()
        with self._db.transaction(conn):
            return self._release_expired(conn, model, now)

    @_guarded("get queue item")
    def get(self, model: str, item_id: str) -> QueueItem | None:
        row = self._db.fast().execute(_SELECT_ITEM, (model, item_id)).fetchone()
        return None if row is None else _item_from_row(row)

    @_guarded("queue stats")
    def stats(self, model: str) -> QueueStats:
        depth, claimed, *counters = self._db.fast().execute(_STATS_SQL, (model,)).fetchone()
        return QueueStats(
            depth=depth, claimed=claimed, **dict(zip(_QUEUE_COUNTERS, counters, strict=True))
        )

    @_guarded("purge queue")
    def purge_finished(self, model: str, before: float) -> int:
        conn = self._db.fast()
        total = 0
        while True:
            with self._db.transaction(conn):
                deleted = conn.execute(
                    "DELETE FROM queue_items WHERE rowid IN ("
                    " SELECT rowid FROM queue_items WHERE model = ? AND finished_at < ?"
                    " AND state IN ('done', 'skipped', 'evicted') LIMIT ?)",
                    (model, before, _PURGE_CHUNK),
                ).rowcount
            total += deleted
            if deleted < _PURGE_CHUNK:
                return total


_JOB_COLUMNS = (
    "job_id, kind, model, params, created_at, key, state, attempts, max_attempts, run_after,"
    " worker, lease_expires_at, updated_at, result, error, committed"
)


def _job_from_row(row: Sequence[Any]) -> Job:
    (
        job_id,
        kind,
        model,
        params,
        created_at,
        key,
        state,
        attempts,
        max_attempts,
        run_after,
        worker,
        lease_expires_at,
        updated_at,
        result,
        error,
        committed,
    ) = row
    return Job(
        job_id=job_id,
        kind=kind,
        model=model,
        params=loads(params),
        created_at=created_at,
        key=key,
        state=JobState(state),
        attempts=attempts,
        max_attempts=max_attempts,
        run_after=run_after,
        worker=worker,
        lease_expires_at=lease_expires_at,
        updated_at=updated_at,
        result=None if result is None else loads(result),
        error=error,
        committed=bool(committed),
    )


_SELECT_JOB = f"SELECT {_JOB_COLUMNS} FROM jobs WHERE job_id = ?"


class SqliteJobQueue:
    """One row per job, on the durable connection: jobs are few and a lost "done" reruns a refit."""

    def __init__(self, db: _Database):
        self._db = db

    @_guarded("enqueue job")
    def enqueue(self, job: Job) -> Job:
        check_job(job)
        row = (
            job.job_id,
            job.kind,
            job.model,
            dumps(job.params),
            job.created_at,
            job.key,
            job.state.value,
            job.attempts,
            job.max_attempts,
            job.run_after,
            job.worker,
            job.lease_expires_at,
            job.updated_at,
            None if job.result is None else dumps(job.result),
            job.error,
            int(job.committed),
        )
        conn = self._db.durable()
        with self._db.transaction(conn):
            found = conn.execute(_SELECT_JOB, (job.job_id,)).fetchone()
            if found is None and job.key is not None:
                found = conn.execute(
                    f"SELECT {_JOB_COLUMNS} FROM jobs WHERE key = ?", (job.key,)
                ).fetchone()
            if found is not None:
                return _job_from_row(found)
            conn.execute(f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES ({','.join('?' * 16)})", row)
        return job

    @_guarded("claim job")
    def claim(
        self, worker: str, *, lease_s: float, now: float, kinds: Sequence[str] | None = None
    ) -> Job | None:
        if kinds is not None and not kinds:
            return None
        kinds = list(kinds or ())
        kind_filter = f" AND kind IN ({','.join('?' * len(kinds))})" if kinds else ""
        # "state IN (...)" repeats the partial index's condition, which lets SQLite use it.
        sql = (
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state IN ('queued', 'running')"
            " AND ((state = 'queued' AND run_after <= ?)"
            f" OR (state = 'running' AND lease_expires_at <= ?)){kind_filter}"
            " ORDER BY created_at, job_id LIMIT 1"
        )
        conn = self._db.durable()
        # Picking and leasing in one transaction: two workers never lease the same job.
        with self._db.transaction(conn):
            while True:
                row = conn.execute(sql, (now, now, *kinds)).fetchone()
                if row is None:
                    return None
                job = _job_from_row(row)
                if job.state is JobState.RUNNING and job.attempts >= job.max_attempts:
                    # Its worker died on the last allowed attempt: a job that kills its worker
                    # must not be handed out forever.
                    conn.execute(
                        "UPDATE jobs SET state = 'failed', error = ?, lease_expires_at = NULL,"
                        " updated_at = ? WHERE job_id = ?",
                        (reclaim_error(job), now, job.job_id),
                    )
                    continue
                job = dataclasses.replace(
                    job,
                    state=JobState.RUNNING,
                    attempts=job.attempts + 1,
                    worker=worker,
                    lease_expires_at=now + lease_s,
                    updated_at=now,
                )
                conn.execute(
                    "UPDATE jobs SET state = 'running', attempts = ?, worker = ?,"
                    " lease_expires_at = ?, updated_at = ? WHERE job_id = ?",
                    (job.attempts, worker, job.lease_expires_at, now, job.job_id),
                )
                return job

    @staticmethod
    def _held(conn: sqlite3.Connection, job_id: str, worker: str) -> Job | None:
        row = conn.execute(_SELECT_JOB, (job_id,)).fetchone()
        if row is None:
            return None
        job = _job_from_row(row)
        return job if job.state is JobState.RUNNING and job.worker == worker else None

    @_guarded("heartbeat job")
    def heartbeat(self, job_id: str, worker: str, *, lease_s: float, now: float) -> bool:
        conn = self._db.durable()
        with self._db.transaction(conn):
            return bool(
                conn.execute(
                    "UPDATE jobs SET lease_expires_at = ?, updated_at = ?"
                    " WHERE job_id = ? AND state = 'running' AND worker = ?",
                    (now + lease_s, now, job_id, worker),
                ).rowcount
            )

    @_guarded("complete job")
    def complete(self, job_id: str, worker: str, result: dict, now: float) -> Job | None:
        result_text = dumps(result)
        conn = self._db.durable()
        with self._db.transaction(conn):
            row = conn.execute(_SELECT_JOB, (job_id,)).fetchone()
            if row is None:
                return None
            job = _job_from_row(row)
            if job.state is JobState.DONE:
                return job
            if job.state is not JobState.RUNNING or job.worker != worker:
                return None
            conn.execute(
                "UPDATE jobs SET state = 'done', result = ?, lease_expires_at = NULL,"
                " updated_at = ? WHERE job_id = ?",
                (result_text, now, job_id),
            )
        return dataclasses.replace(
            job,
            state=JobState.DONE,
            result=loads(result_text),
            lease_expires_at=None,
            updated_at=now,
        )

    @_guarded("fail job")
    def fail(
        self, job_id: str, worker: str, error: str, now: float, *, retry_in: float | None
    ) -> Job | None:
        conn = self._db.durable()
        with self._db.transaction(conn):
            job = self._held(conn, job_id, worker)
            if job is None:
                return None
            if retry_in is None or job.attempts >= job.max_attempts:
                job = dataclasses.replace(job, state=JobState.FAILED)
            else:
                job = dataclasses.replace(job, state=JobState.QUEUED, run_after=now + retry_in)
            job = dataclasses.replace(job, error=error, lease_expires_at=None, updated_at=now)
            conn.execute(
                "UPDATE jobs SET state = ?, run_after = ?, error = ?, lease_expires_at = NULL,"
                " updated_at = ? WHERE job_id = ?",
                (job.state.value, job.run_after, error, now, job_id),
            )
        return job

    # cancel, commit and release each read and write in one write transaction (BEGIN
    # IMMEDIATE), as claim, complete and fail do. The race this prevents: a worker's commit
    # landing between cancel's read of ``committed`` and its write of 'cancelled' (the job would
    # end cancelled while its worker writes a version), or a claim or release in between
    # putting a job back in play that cancel then overwrites.

    @_guarded("cancel job")
    def cancel(self, job_id: str, now: float, *, reason: str) -> Job | None:
        conn = self._db.durable()
        with self._db.transaction(conn):
            row = conn.execute(_SELECT_JOB, (job_id,)).fetchone()
            if row is None:
                return None
            job = _job_from_row(row)
            if not cancellable(job):
                return job
            conn.execute(
                "UPDATE jobs SET state = 'cancelled', error = ?, lease_expires_at = NULL,"
                " updated_at = ? WHERE job_id = ?",
                (reason, now, job_id),
            )
        return dataclasses.replace(
            job, state=JobState.CANCELLED, error=reason, lease_expires_at=None, updated_at=now
        )

    @_guarded("commit job")
    def commit(self, job_id: str, worker: str, now: float) -> Job | None:
        conn = self._db.durable()
        with self._db.transaction(conn):
            job = self._held(conn, job_id, worker)
            if job is None or job.committed:
                return job
            conn.execute(
                "UPDATE jobs SET committed = 1, updated_at = ? WHERE job_id = ?", (now, job_id)
            )
        return dataclasses.replace(job, committed=True, updated_at=now)

    @_guarded("release job")
    def release(self, job_id: str, worker: str, now: float) -> Job | None:
        conn = self._db.durable()
        with self._db.transaction(conn):
            job = self._held(conn, job_id, worker)
            if job is None:
                return None
            job = dataclasses.replace(
                job,
                state=JobState.QUEUED,
                run_after=now,
                attempts=max(job.attempts - 1, 0),
                worker=None,
                lease_expires_at=None,
                updated_at=now,
            )
            conn.execute(
                "UPDATE jobs SET state = 'queued', run_after = ?, attempts = ?, worker = NULL,"
                " lease_expires_at = NULL, updated_at = ? WHERE job_id = ?",
                (now, job.attempts, now, job_id),
            )
        return job

    @_guarded("get job")
    def get(self, job_id: str) -> Job | None:
        row = self._db.durable().execute(_SELECT_JOB, (job_id,)).fetchone()
        return None if row is None else _job_from_row(row)

    @_guarded("list jobs")
    def list(self, model: str | None = None, limit: int = 100) -> list[Job]:
        if limit <= 0:
            return []
        where, args = ("", ()) if model is None else (" WHERE model = ?", (model,))
        rows = (
            self._db.durable()
            .execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs{where}"
                " ORDER BY created_at DESC, job_id DESC LIMIT ?",
                (*args, limit),
            )
            .fetchall()
        )
        return [_job_from_row(row) for row in rows]


def open_sqlite_store(url: str) -> Store:
    """Open (creating if needed) the SQLite store at ``url``.

    Raises :class:`~onlearn.errors.StoreUnavailable` when the file cannot be created or opened
    or stays locked, and :class:`~onlearn.errors.ConfigError` when the URL is wrong.
    """
    path, options = parse_sqlite_url(url)
    if os.path.isdir(path):
        raise ConfigError(f"store URL {url!r}: {path} is a directory; give a database file path")
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    except OSError as exc:
        raise StoreUnavailable(
            f"SQLite store {path}: cannot create its directory: {exc.strerror or exc}"
        ) from exc
    db = _Database(path, options["busy_timeout_ms"])
    try:
        db.create_schema()
    except sqlite3.DatabaseError as exc:
        db.close()
        error = db.translate(exc, "open")
        if error is exc:
            raise
        raise error from exc
    except BaseException:
        db.close()
        raise
    return Store(
        url=url,
        log=SqliteEventLog(db),
        predictions=SqlitePredictionStore(db),
        registry=SqliteRegistry(db),
        queue=SqliteLabelQueue(db),
        jobs=SqliteJobQueue(db),
        closers=[db.close],
    )
