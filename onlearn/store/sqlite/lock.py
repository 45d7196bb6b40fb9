"""The serve lock of a SQLite store: one ``onlearn serve`` per database file.

A second ``onlearn serve`` on a file that one already serves would register versions, run its
own worker and monitor and follow the same log beside the first: nearly always a mistake (two
configs left on the default ``.data/onlearn.db``, a server started twice). What may share the
file takes no lock: the ``--workers N`` processes of one serve, its sidecar worker and monitor,
and ``onlearn worker`` / ``onlearn monitor`` started on their own.

The lock is ``flock`` on ``<database>.serve.lock``, taken by the ``onlearn serve`` parent and
held for its life: the kernel drops it when the process ends, however it ends (``kill -9``
too), so a crash leaves nothing to clean up. The file holds the holder's pid and address for
the message of the next one; it is never deleted, since a process could lock the unlinked file
while another locks a new one under the same name.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator

from onlearn.errors import OnlearnError, StoreUnavailable
from onlearn.store.sqlite.connection import parse_sqlite_url

__all__ = ["StoreInUse", "hold_serve_lock", "serve_lock_path"]

LOCK_SUFFIX = ".serve.lock"


class StoreInUse(OnlearnError):
    """Another ``onlearn serve`` holds the store's serve lock; the message says which and what
    to do."""


def serve_lock_path(url: str) -> str:
    """The lock file of the SQLite store at ``url``, beside the database.

    >>> serve_lock_path("sqlite:////var/lib/onlearn.db?busy_timeout_ms=100")
    '/var/lib/onlearn.db.serve.lock'
    """
    path, _ = parse_sqlite_url(url)
    return path + LOCK_SUFFIX


@contextlib.contextmanager
def hold_serve_lock(url: str, *, serving: str | None = None) -> Iterator[None]:
    """Hold the serve lock of the SQLite store at ``url`` until the block ends.

    ``serving`` (e.g. ``http://127.0.0.1:8000``) is written beside the pid, for the message a
    second server gets. Raises :class:`StoreInUse` when another process holds the lock.
    """
    db_path = parse_sqlite_url(url)[0]
    path = db_path + LOCK_SUFFIX
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # Not inherited (O_CLOEXEC): a child that kept the descriptor open would keep the lock
        # after this process died.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StoreUnavailable(
            f"SQLite store {db_path}: cannot open its serve lock {path}: {exc.strerror or exc}"
        ) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreInUse(_refusal(db_path, _holder(fd))) from None
        holder = {"pid": os.getpid(), "serving": serving, "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode() + b"\n", 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> dict:
    """What the holder wrote. It writes right after it locks: a reader that came in between
    sees an empty file for a moment, so it reads again briefly before giving up on the pid."""
    deadline = time.monotonic() + 1.0
    while True:
        try:
            holder = json.loads(os.pread(fd, 4096, 0))
            if isinstance(holder, dict):
                return holder
        except ValueError:
            pass
        if time.monotonic() > deadline:
            return {}
        time.sleep(0.02)


def _refusal(db_path: str, holder: dict) -> str:
    pid = holder.get("pid")
    who = f"pid {pid}" if pid else "pid unknown"
    if holder.get("serving"):
        who += f", at {holder['serving']}"
    stop = f"Stop it (`kill {pid}`)" if pid else "Stop it"
    return (
        f"the SQLite store {db_path} is already served by another `onlearn serve` ({who}). "
        f"{stop}, or give this one a store of its own (--store sqlite:///other.db) and a port "
        "of its own (--port). To share one store: more server processes are one `onlearn serve "
        "--workers N`, `onlearn worker` and `onlearn monitor` may run beside it, and several "
        "servers on one store take Redis (docs/operations.md#scale-out-on-redis)."
    )
