"""The SQLite file: its URL, per-thread connections, transactions, error translation and schema.

Every port of the backend runs its statements through one :class:`_Database`; its methods are
wrapped in :func:`_guarded` so that a database that cannot be used now raises
:class:`~onlearn.errors.StoreUnavailable`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote

from onlearn.errors import ConfigError, StoreUnavailable
from onlearn.store.generation import Generation, new_generation_id

log = logging.getLogger(__name__)

DEFAULT_BUSY_TIMEOUT_MS = 5000
# 1: the first schema. 2: versions.key (create_version's idempotency key), role_history.seq,
# roles_state (canary share and seq of the last change_roles). 3: the predictions_model_id
# index (PredictionStore.scan) and the documents table (Registry.put_document). 4:
# jobs.committed (job cancellation; a job may also be 'cancelled', a state an earlier onlearn
# cannot read, which is why it must refuse the file) and versions.spec_signature (signed
# specs). An older file is upgraded in place when opened. 5: auto_vacuum = INCREMENTAL, so
# that the file gives back the pages that trims and purges free; a file made earlier (auto_vacuum
# NONE) needs one VACUUM to switch, which rewrites the whole file under the write lock: done when
# the file is opened if it is small (VACUUM_AT_OPEN_MAX_BYTES), else by `onlearn store migrate`
# (migrate_to_incremental). 6: the compact encoding (onlearn/store/compact.py): the shapes
# table; events.payload and predictions.body hold msgpack BLOBs (JSON TEXT in rows of an earlier
# onlearn, still read), events.key a 16-byte BLOB for a key "prediction:<32 hex digits>"; the
# meta table (legacy_rows: rows of an earlier format may be left, see migrate_rows). Reached at
# open, VACUUM or not: whether the file is incremental is PRAGMA auto_vacuum's to say, and an
# earlier onlearn, which cannot read the new rows, refuses a file of version 6. 7: the labelling
# queue de-duplicates identical inputs only against items still waiting (the unique index
# queue_items_waiting_dedupe replaces queue_items_dedupe, which covered every item not evicted,
# so that an input is asked again once its item is done or skipped out); queue_items.skipped_by
# (a skipped item is not handed straight back to who skipped it) and queue_counters.released.
# The old index is dropped when the file is opened; rows need no change (at most one item per
# key was not evicted, so at most one is waiting).
SCHEMA_VERSION = 7
_GENERATION_SQL = "SELECT value FROM meta WHERE name = 'generation'"
# A file up to this size is switched to incremental vacuum when opened (a VACUUM of 64 MiB takes
# about a second); a bigger one waits for `onlearn store migrate`, named by a warning.
VACUUM_AT_OPEN_MAX_BYTES = 64 * 2**20

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
    # The compact encoding's shapes: per model, the tuple of a dict's keys (a JSON array) and
    # the small id rows refer to it by. Added to, never changed nor deleted.
    """CREATE TABLE IF NOT EXISTS shapes (
        model TEXT NOT NULL,
        id INTEGER NOT NULL,
        keys TEXT NOT NULL,
        PRIMARY KEY (model, id)
    ) WITHOUT ROWID""",
    "CREATE UNIQUE INDEX IF NOT EXISTS shapes_keys ON shapes (model, keys)",
    # Facts about the file's rows: legacy_rows = 1 while rows of the JSON format may be left.
    """CREATE TABLE IF NOT EXISTS meta (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID""",
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
        skipped_by TEXT,
        PRIMARY KEY (model, item_id)
    )""",
    # The queued items of a model in claim order: claim and peek read it forwards, a full queue
    # finds its eviction victim reading it backwards, and depth counts it.
    """CREATE INDEX IF NOT EXISTS queue_items_queued
        ON queue_items (model, priority DESC, enqueued_at, item_id) WHERE state = 'queued'""",
    # Leases by expiry, for releasing the expired ones; also counts the claimed items.
    """CREATE INDEX IF NOT EXISTS queue_items_leases
        ON queue_items (model, lease_expires_at) WHERE state = 'claimed'""",
    # At most one item per dedupe key among the items still waiting (queued or claimed): the
    # push rule, as a constraint. Done, skipped and evicted items leave it, so the same input can
    # be asked again (schema version 7; until then it covered every item but evicted ones).
    """CREATE UNIQUE INDEX IF NOT EXISTS queue_items_waiting_dedupe
        ON queue_items (model, dedupe_key)
        WHERE dedupe_key IS NOT NULL AND state IN ('queued', 'claimed')""",
    # Only finished items (done, skipped, evicted) have finished_at: what purge_finished reads.
    # The oldest item still waiting (LabelQueue.oldest_waiting, read at every scrape): one index
    # step. Created when any file is opened; an earlier onlearn keeps it up to date unknowingly,
    # so the schema version stays.
    """CREATE INDEX IF NOT EXISTS queue_items_waiting_age
        ON queue_items (model, enqueued_at) WHERE state IN ('queued', 'claimed')""",
    """CREATE INDEX IF NOT EXISTS queue_items_finished
        ON queue_items (model, finished_at) WHERE finished_at IS NOT NULL""",
    # Counters of each model's queue, apart from the items so that purging keeps them.
    """CREATE TABLE IF NOT EXISTS queue_counters (
        model TEXT PRIMARY KEY,
        labelled INTEGER NOT NULL DEFAULT 0,
        skipped INTEGER NOT NULL DEFAULT 0,
        released INTEGER NOT NULL DEFAULT 0,
        expired INTEGER NOT NULL DEFAULT 0,
        evicted INTEGER NOT NULL DEFAULT 0,
        rejected INTEGER NOT NULL DEFAULT 0,
        duplicates INTEGER NOT NULL DEFAULT 0,
        pushed INTEGER NOT NULL DEFAULT 0,
        answered_elsewhere INTEGER NOT NULL DEFAULT 0
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
    # Version 7. Nobody skipped an old item for a claim to pass it over; no release was counted,
    # and no item was closed because its prediction got a label by feedback.
    ("queue_items", "skipped_by", "TEXT"),
    ("queue_counters", "released", "INTEGER NOT NULL DEFAULT 0"),
    ("queue_counters", "answered_elsewhere", "INTEGER NOT NULL DEFAULT 0"),
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
        from onlearn.store.sqlite.shapes import sqlite_shapes

        self.shapes = sqlite_shapes(self)
        # Rows written before schema version 6 may be left (JSON payloads, text keys
        # "prediction:<id>"): a key is then looked up in both forms. Read by create_schema.
        self.legacy_rows = False
        # The generation read at open (onlearn.store.generation). Set by create_schema.
        self.generation: Generation = None  # type: ignore[assignment]
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
            # A WAL that grew (a long reader held back checkpoints, a big trim) is cut back to
            # this size when it is next reset, instead of staying that big on disk for good.
            conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT_BYTES}")
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

    def create_schema(self, *, vacuum_small: bool = True) -> None:
        """Create or upgrade the schema; with ``vacuum_small``, also switch a file of an earlier
        onlearn to incremental vacuum when it is small (else warn, naming the command)."""
        conn = self.durable()
        # Before the first table is created, or it is too late (then only a VACUUM switches the
        # file); on an existing file it changes nothing by itself.
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
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
            # Version 7: the dedupe index of every item not evicted gives way to the one of the
            # items still waiting (created below).
            conn.execute("DROP INDEX IF EXISTS queue_items_dedupe")
            for statement in _SCHEMA:
                if statement not in tables:
                    conn.execute(statement)
            if version < 6 and (
                conn.execute("SELECT 1 FROM events LIMIT 1").fetchone()
                or conn.execute("SELECT 1 FROM predictions LIMIT 1").fetchone()
            ):
                conn.execute(
                    "INSERT INTO meta (name, value) VALUES ('legacy_rows', '1')"
                    " ON CONFLICT (name) DO UPDATE SET value = excluded.value"
                )
            if version < SCHEMA_VERSION:
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            # The store's generation id (onlearn.store.generation): written once, when the file
            # is made, or when this onlearn first opens a file of an earlier one (a meta row,
            # no schema change); read by every process at open.
            conn.execute(
                "INSERT INTO meta (name, value) VALUES ('generation', ?) ON CONFLICT DO NOTHING",
                (new_generation_id(),),
            )
            (gid,) = conn.execute(_GENERATION_SQL).fetchone()
            self.generation = Generation(gid, self.read_generation, f"SQLite store {self.path}")
            self.legacy_rows = (
                conn.execute("SELECT value FROM meta WHERE name = 'legacy_rows'").fetchone()
                is not None
            )
            incremental = conn.execute("PRAGMA auto_vacuum").fetchone()[0] == _INCREMENTAL
        if self.legacy_rows and vacuum_small:
            log.info(
                "SQLite store %s holds rows in the JSON format of an earlier onlearn: they are "
                "read as they are; `onlearn store migrate --store sqlite:///%s` rewrites them "
                "in the compact encoding",
                self.path,
                self.path,
            )
        if incremental or not vacuum_small:
            return
        size = self.file_bytes()
        if size <= VACUUM_AT_OPEN_MAX_BYTES:
            log.info(
                "SQLite store %s: switching to incremental vacuum, one VACUUM of %.1f MiB",
                self.path,
                size / 2**20,
            )
            self.migrate_to_incremental()
        else:
            log.warning(
                "SQLite store %s (%.0f MiB) was made by an earlier onlearn and never gives back "
                "the space that trims and purges free; stop every onlearn process on it and run "
                "`onlearn store migrate --store sqlite:///%s` (one VACUUM: needs free disk space "
                "of about the file's size)",
                self.path,
                size / 2**20,
                self.path,
            )

    def read_generation(self) -> str | None:
        """The generation id the file holds now (None: none, or no meta table: a file that is
        not an onlearn store)."""
        try:
            row = self.durable().execute(_GENERATION_SQL).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return None
            error = self.translate(exc, "read the generation")
            if error is exc:
                raise
            raise error from exc
        return row[0] if row else None

    def file_bytes(self) -> int:
        """The size of the database (its pages, the WAL not counted)."""
        conn = self.durable()
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        (page_size,) = conn.execute("PRAGMA page_size").fetchone()
        return pages * page_size

    def incremental(self) -> bool:
        return self.durable().execute("PRAGMA auto_vacuum").fetchone()[0] == _INCREMENTAL

    def migrate_to_incremental(self) -> bool:
        """Switch a file made with auto_vacuum NONE to INCREMENTAL: one VACUUM, which rewrites
        the whole file (through the WAL) under the write lock, so other writers wait for it.
        False when the file already was incremental.
        """
        conn = self.durable()
        if self.incremental():
            return False
        # The pragma only takes effect through the VACUUM that follows.
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("VACUUM")
        # The VACUUM went through the WAL, which is now as big as the file: empty it.
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return True

    def delete_in_chunks(
        self, conn: sqlite3.Connection, statement: str, params: tuple, *, share: float = 1.0
    ) -> int:
        """Run ``statement`` (a DELETE of at most as many rows as its last parameter) in short
        write transactions until it deletes fewer, then give the freed space back. Chunks are
        at most ``CHUNK_ROWS * share`` rows (``share`` < 1 for rows that cost more to delete).

        One DELETE of 900k old events held the write lock for 2.7 s (every feedback waited) and
        grew the WAL to 401 MB. A chunk holds the lock for a few milliseconds; after each one
        the lock stays free at least as long as it was held (and ``_MIN_GAP_S``), because a
        writer waiting for it sleeps in SQLite's busy handler and only gets it if it wakes while
        the lock is free. A chunk that took longer than ``_TARGET_HOLD_S`` (a busy CPU, a slow
        disk) halves the next one; a quick one doubles it again, up to the most.
        """
        total = 0
        most = max(1, int(CHUNK_ROWS * share))
        rows = most
        while True:
            started = time.monotonic()
            with self.transaction(conn):
                deleted = conn.execute(statement, (*params, rows)).rowcount
            held = time.monotonic() - started
            total += deleted
            if deleted < rows:
                break
            rows = _next_size(rows, held, most)
            time.sleep(max(held, _MIN_GAP_S))
        if total:
            self.reclaim(conn)
        return total

    def reclaim(self, conn: sqlite3.Connection) -> None:
        """After a trim or a purge: hand the free pages back to the file system in bounded
        steps (an incremental file only), then checkpoint so that the WAL can start over."""
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] == _INCREMENTAL:
            (free,) = conn.execute("PRAGMA freelist_count").fetchone()
            pages = VACUUM_STEP_PAGES
            while free > 0:
                started = time.monotonic()
                with self.transaction(conn):
                    # Python's sqlite3 steps the pragma once, which gives back one page whatever
                    # its argument: one call per page (about 25 us each), a bounded number.
                    for _ in range(min(free, pages)):
                        conn.execute("PRAGMA incremental_vacuum(1)")
                    (left,) = conn.execute("PRAGMA freelist_count").fetchone()
                if left >= free:  # nothing moved: never loop on it
                    break
                free = left
                held = time.monotonic() - started
                pages = _next_size(pages, held, VACUUM_STEP_PAGES)
                time.sleep(max(held, _MIN_GAP_S))
        # PASSIVE: copies what it can without waiting for anyone, and never blocks writers (a
        # TRUNCATE or RESTART checkpoint would). The file shrinks once the truncated pages are
        # checkpointed; the WAL is cut back to journal_size_limit when a writer next resets it.
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")


def _next_size(size: int, held: float, most: int) -> int:
    """The rows or pages of the next chunk: half after one that held the lock too long, twice
    after a quick one, between 1 and ``most``."""
    if held > _TARGET_HOLD_S:
        return max(1, size // 2)
    if held < _TARGET_HOLD_S / 2:
        return min(most, size * 2)
    return size


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


# Rows deleted per write transaction by trim, purge_expired and purge_finished (delete_in_chunks),
# so that a large one never holds the write lock for long and appends interleave with it.
CHUNK_ROWS = 5000
# Pages (4 KiB) an incremental vacuum step gives back per write transaction: moving a page
# rewrites what points to it, so a step of 1000 pages of a file with indexes took up to 60 ms of
# CPU; 128 take at most about 14 (benchmarks/purge.py).
VACUUM_STEP_PAGES = 128
# The shortest time the write lock stays free between two chunks or steps. A writer waiting for
# the lock sleeps in SQLite's busy handler (sqliteDefaultBusyCallback) for 1, 2, 5, 10, 15, 20,
# then 25 ms at a time until it has waited 128 ms: a gap of at least 25 ms is one it cannot
# sleep through, so it waits for at most the chunk it met plus one sleep. A gap of 2 ms let a
# waiter sleep through gap after gap (appends waited 400-800 ms during a purge on a loaded
# machine, with no chunk holding the lock 130 ms).
_MIN_GAP_S = 0.03
# How long one chunk or vacuum step should hold the write lock at most. Its CPU cost is steady
# (5000 events: about 10 ms), but a busy machine stretches it in wall time: chunks shrink then,
# so that a waiting writer still waits at most about this plus one busy-handler sleep. (The time
# measured includes the checkpoint SQLite may run inside COMMIT after the lock is released, which
# errs on the side of smaller chunks.)
_TARGET_HOLD_S = 0.025
# The WAL file is cut back to this size when it is reset after a checkpoint.
JOURNAL_SIZE_LIMIT_BYTES = 16 * 2**20
_INCREMENTAL = 2  # PRAGMA auto_vacuum's value for INCREMENTAL
