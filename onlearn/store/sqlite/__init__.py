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

import os
import sqlite3
import time
from collections.abc import Callable

from onlearn.errors import ConfigError, StoreUnavailable
from onlearn.store.base import Store
from onlearn.store.sqlite.connection import SCHEMA_VERSION, _Database, parse_sqlite_url
from onlearn.store.sqlite.jobs import SqliteJobQueue
from onlearn.store.sqlite.label_queue import SqliteLabelQueue
from onlearn.store.sqlite.log import SqliteEventLog
from onlearn.store.sqlite.predictions import SqlitePredictionStore
from onlearn.store.sqlite.registry import SqliteRegistry

__all__ = [
    "SCHEMA_VERSION",
    "SqliteEventLog",
    "SqliteJobQueue",
    "SqliteLabelQueue",
    "SqlitePredictionStore",
    "SqliteRegistry",
    "migrate_sqlite_store",
    "open_sqlite_store",
    "parse_sqlite_url",
]


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
        generation=db.generation,
    )


def migrate_sqlite_store(url: str, say: Callable[[str], None] = print) -> None:
    """Bring the file at ``url`` to this onlearn's schema, including what opening it does not do
    by itself: rewriting the rows of an earlier onlearn in the compact encoding (schema version
    6; until then they are read as they are), then for a big file the VACUUM that turns on
    incremental vacuum (a small one is switched when opened).

    Holds the serve lock (refused with ``StoreInUse`` while ``onlearn serve`` runs on the file);
    ``say`` gets a line before each long step and after it.
    """
    from onlearn.store.sqlite.lock import hold_serve_lock

    path, options = parse_sqlite_url(url)
    if not os.path.isfile(path):
        raise ConfigError(f"store URL {url!r}: no database file at {path}")
    with hold_serve_lock(url, serving="onlearn store migrate"):
        db = _Database(path, options["busy_timeout_ms"])
        try:
            db.create_schema(vacuum_small=False)
            if not db.legacy_rows and db.incremental():
                say(
                    f"{path}: schema version {SCHEMA_VERSION}, compact rows, incremental vacuum: "
                    "nothing to do"
                )
                return
            if db.legacy_rows:
                from onlearn.store.sqlite.migrate import migrate_rows

                say(f"{path}: rewriting the rows of an earlier onlearn in the compact encoding...")
                migrate_rows(db, say)
            if db.incremental():
                return
            before = os.path.getsize(path)
            say(
                f"{path}: switching to incremental vacuum: one "
                f"VACUUM rewrites the file ({before / 2**20:.1f} MiB, about a second per 50 MiB; "
                "other writers on it wait meanwhile)..."
            )
            started = time.monotonic()
            db.migrate_to_incremental()
            say(
                f"{path}: done in {time.monotonic() - started:.1f} s, "
                f"{before / 2**20:.1f} MiB -> {os.path.getsize(path) / 2**20:.1f} MiB; trims "
                "and purges now give space back"
            )
        except sqlite3.DatabaseError as exc:
            error = db.translate(exc, "migrate")
            if error is exc:
                raise
            raise error from exc
        finally:
            db.close()
