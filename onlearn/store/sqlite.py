"""The ``sqlite:///path`` backend: the embedded default, safe for several processes on one machine.

One database file in WAL mode holds every port. Writers serialise on SQLite's write lock
(``BEGIN IMMEDIATE``), which is what makes per-model seqs gapless across processes; readers never
wait for writers. Each thread gets its own connections (SQLite connections must not be shared by
threads that run statements at the same time), and every connection is registered so that
``Store.close()`` closes them all.

Two connections per thread, because durability differs by what is written:

- *durable* (``synchronous=FULL``): the event log and the registry. A commit returns after the
  WAL is fsynced, so an acknowledged label survives ``kill -9`` and power loss.
- *fast* (``synchronous=NORMAL``): prediction records. A crash may lose the last commits, which
  only loses a join; the client can still send feedback with inline features.

URL: ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``, with the optional query
parameter ``busy_timeout_ms`` (default 5000): how long a writer waits for the lock before the
call fails with :class:`~onlearn.errors.StoreUnavailable`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote

from onlearn.errors import ConfigError, StoreUnavailable
from onlearn.records import Event, EventKind, PredictionRecord, Snapshot, VersionInfo
from onlearn.store.base import Store
from onlearn.store.codec import decode_prediction, dumps, encode_prediction, loads

__all__ = [
    "SqliteEventLog",
    "SqlitePredictionStore",
    "SqliteRegistry",
    "open_sqlite_store",
    "parse_sqlite_url",
]

DEFAULT_BUSY_TIMEOUT_MS = 5000
SCHEMA_VERSION = 1

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
    """CREATE TABLE IF NOT EXISTS versions (
        model TEXT NOT NULL,
        number INTEGER NOT NULL,
        created_at REAL NOT NULL,
        spec TEXT NOT NULL,
        meta TEXT NOT NULL,
        PRIMARY KEY (model, number)
    )""",
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
        at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS role_history_model ON role_history (model, id)",
    """CREATE TABLE IF NOT EXISTS snapshots (
        model TEXT NOT NULL,
        version TEXT NOT NULL,
        seq INTEGER NOT NULL,
        at REAL NOT NULL,
        artifact BLOB NOT NULL,
        PRIMARY KEY (model, version, seq)
    )""",
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
            for statement in _SCHEMA:
                conn.execute(statement)
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version == 0:
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version > SCHEMA_VERSION:
                raise ConfigError(
                    f"SQLite store {self.path} has schema version {version}, newer than this "
                    f"onlearn ({SCHEMA_VERSION}); upgrade onlearn"
                )


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


class SqliteEventLog:
    def __init__(self, db: _Database):
        self._db = db

    @_guarded("append")
    def append(self, model: str, events: Sequence[Event]) -> list[int]:
        if not events:
            return []
        conn = self._db.durable()
        seqs: list[int] = []
        with self._db.transaction(conn):
            (head,) = conn.execute(_HEAD_SQL, (model,)).fetchone()
            known = self._seqs_of_keys(conn, model, {e.key for e in events if e.key is not None})
            rows = []
            for event in events:
                key = event.key
                if key is not None and key in known:
                    seqs.append(known[key])
                    continue
                head += 1
                rows.append((model, head, event.kind.value, dumps(event.payload), event.at, key))
                if key is not None:
                    known[key] = head
                seqs.append(head)
            if rows:
                conn.executemany(
                    "INSERT INTO events (model, seq, kind, payload, at, key) VALUES (?,?,?,?,?,?)",
                    rows,
                )
                conn.execute(
                    "INSERT INTO heads (model, seq) VALUES (?, ?)"
                    " ON CONFLICT (model) DO UPDATE SET seq = excluded.seq",
                    (model, head),
                )
        return seqs

    @staticmethod
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


_VERSION_NAME = re.compile(r"v([1-9][0-9]*)")


class SqliteRegistry:
    def __init__(self, db: _Database):
        self._db = db

    @_guarded("create version")
    def create_version(self, model: str, spec: dict, meta: dict, at: float) -> VersionInfo:
        spec_text, meta_text = dumps(spec), dumps(meta)
        conn = self._db.durable()
        with self._db.transaction(conn):
            (number,) = conn.execute(
                "SELECT coalesce(max(number), 0) + 1 FROM versions WHERE model = ?", (model,)
            ).fetchone()
            conn.execute(
                "INSERT INTO versions (model, number, created_at, spec, meta) VALUES (?,?,?,?,?)",
                (model, number, at, spec_text, meta_text),
            )
        return VersionInfo(model, f"v{number}", at, loads(spec_text), loads(meta_text))

    @_guarded("get version")
    def get_version(self, model: str, version: str) -> VersionInfo | None:
        match = _VERSION_NAME.fullmatch(version)
        if match is None:
            return None
        row = (
            self._db.durable()
            .execute(
                "SELECT created_at, spec, meta FROM versions WHERE model = ? AND number = ?",
                (model, int(match.group(1))),
            )
            .fetchone()
        )
        if row is None:
            return None
        created_at, spec, meta = row
        return VersionInfo(model, version, created_at, loads(spec), loads(meta))

    @_guarded("list versions")
    def list_versions(self, model: str) -> list[VersionInfo]:
        rows = (
            self._db.durable()
            .execute(
                "SELECT number, created_at, spec, meta FROM versions"
                " WHERE model = ? ORDER BY number",
                (model,),
            )
            .fetchall()
        )
        return [
            VersionInfo(model, f"v{number}", created_at, loads(spec), loads(meta))
            for number, created_at, spec, meta in rows
        ]

    @_guarded("roles")
    def roles(self, model: str) -> dict[str, str]:
        rows = (
            self._db.durable()
            .execute("SELECT role, version FROM roles WHERE model = ? ORDER BY role", (model,))
            .fetchall()
        )
        return dict(rows)

    @_guarded("set role")
    def set_role(
        self, model: str, role: str, version: str | None, *, actor: str, reason: str, at: float
    ) -> None:
        conn = self._db.durable()
        # One transaction: the role and its audit row are written together or not at all, and
        # "previous" is read under the write lock, so two concurrent promotions cannot both
        # record the same previous version.
        with self._db.transaction(conn):
            if version is not None:
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
            row = conn.execute(
                "SELECT version FROM roles WHERE model = ? AND role = ?", (model, role)
            ).fetchone()
            previous = None if row is None else row[0]
            if version is None:
                conn.execute("DELETE FROM roles WHERE model = ? AND role = ?", (model, role))
            else:
                conn.execute(
                    "INSERT INTO roles (model, role, version) VALUES (?, ?, ?)"
                    " ON CONFLICT (model, role) DO UPDATE SET version = excluded.version",
                    (model, role, version),
                )
            conn.execute(
                "INSERT INTO role_history (model, role, version, previous, actor, reason, at)"
                " VALUES (?,?,?,?,?,?,?)",
                (model, role, version, previous, actor, reason, at),
            )

    @_guarded("role history")
    def role_history(self, model: str) -> list[dict]:
        rows = (
            self._db.durable()
            .execute(
                "SELECT role, version, previous, actor, reason, at FROM role_history"
                " WHERE model = ? ORDER BY id",
                (model,),
            )
            .fetchall()
        )
        names = ("role", "version", "previous", "actor", "reason", "at")
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
        closers=[db.close],
    )
