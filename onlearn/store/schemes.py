"""The scheme table: a store URL's scheme selects an entry, the entry names the backend's opener
and declares what the backend can do (:class:`~onlearn.store.capabilities.Capabilities`).

The table is written here, in the source: a name that comes from a URL only selects an entry.
Each backend's functions import it when first called (plain imports, no name looked up at run
time), so that opening a memory store never imports the SQLite or Redis code. (A module of its own, which imports no port: the ports
ask it what a store can do, and ``onlearn.store`` opens stores with it.)

>>> capabilities_of("sqlite:///.data/onlearn.db").local_file
True
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from onlearn.errors import ConfigError
from onlearn.store.capabilities import Capabilities

if TYPE_CHECKING:
    from onlearn.store.base import Store

__all__ = ["BACKENDS", "Backend", "backend_of", "capabilities_of"]


@dataclass(frozen=True)
class Backend:
    """One entry of the scheme table."""

    opener: Callable[[str], Store]
    capabilities: Capabilities
    # (url, *, serving) -> context manager held by `onlearn serve` for its life, so that a
    # second one on the same store refuses to start. None: the backend has none.
    serve_lock: Callable[..., contextlib.AbstractContextManager] | None = None
    # (url, say) -> None, `onlearn store migrate`: upgrades of the stored format too long to
    # run when a store is opened. None: the backend needs none.
    migrate: Callable[[str, Callable[[str], None]], None] | None = None


def _open_memory(url: str) -> Store:
    from onlearn.store.memory import open_memory_store

    return open_memory_store(url)


def _open_sqlite(url: str) -> Store:
    from onlearn.store.sqlite import open_sqlite_store

    return open_sqlite_store(url)


def _sqlite_serve_lock(url: str, *, serving: str | None = None):
    from onlearn.store.sqlite.lock import hold_serve_lock

    return hold_serve_lock(url, serving=serving)


def _migrate_sqlite(url: str, say: Callable[[str], None]) -> None:
    from onlearn.store.sqlite import migrate_sqlite_store

    migrate_sqlite_store(url, say)


def _open_redis(url: str) -> Store:
    from onlearn.store.redis import open_redis_store

    return open_redis_store(url)


# Declared here for the Redis backend (onlearn/store/redis/) as for the others: many serve
# replicas, workers and monitors on many machines share one Redis over the network.
_REDIS = Backend(_open_redis, Capabilities(shared=True, networked=True, local_file=False))

BACKENDS: dict[str, Backend] = {
    "memory": Backend(_open_memory, Capabilities(shared=False, networked=False, local_file=False)),
    "sqlite": Backend(
        _open_sqlite,
        Capabilities(shared=True, networked=False, local_file=True),
        serve_lock=_sqlite_serve_lock,
        migrate=_migrate_sqlite,
    ),
    "redis": _REDIS,
    "rediss": _REDIS,  # Redis over TLS
    "unix": _REDIS,  # Redis on a Unix socket
}


def backend_of(url: str) -> Backend:
    backend = BACKENDS.get(url.partition(":")[0])
    if backend is None:
        raise ConfigError(
            f"store URL {url!r} is not supported: its scheme must be one of "
            f"{', '.join(sorted(BACKENDS))} (e.g. memory://, sqlite:///path/to/onlearn.db, "
            "redis://host:6379/0)"
        )
    return backend


def capabilities_of(url: str) -> Capabilities:
    """What the backend of ``url`` can do, without opening it.

    >>> capabilities_of("redis://127.0.0.1:6379/0").networked
    True
    """
    return backend_of(url).capabilities
