"""The scheme table: a store URL's scheme selects an entry, the entry names the backend's opener
and declares what the backend can do (:class:`~onlearn.store.capabilities.Capabilities`).

The table is written here, in the source: a name that comes from a URL only selects an entry.
Openers are ``"module:function"`` strings imported at first use, so that opening a memory store
never imports the SQLite or Redis code. (A module of its own, which imports no port: the ports
ask it what a store can do, and ``onlearn.store`` opens stores with it.)

>>> capabilities_of("sqlite:///.data/onlearn.db").local_file
True
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from onlearn.errors import ConfigError
from onlearn.store.capabilities import Capabilities

__all__ = ["BACKENDS", "Backend", "backend_of", "capabilities_of", "load"]


@dataclass(frozen=True)
class Backend:
    """One entry of the scheme table."""

    opener: str  # "module:function": url -> Store
    capabilities: Capabilities
    # "module:function": (url, *, serving) -> context manager held by `onlearn serve` for its
    # life, so that a second one on the same store refuses to start. None: the backend has none.
    serve_lock: str | None = None
    # "module:function": (url, say) -> None, `onlearn store migrate`: upgrades of the stored
    # format too long to run when a store is opened. None: the backend needs none.
    migrate: str | None = None


# Declared here for the Redis backend (onlearn/store/redis/) as for the others: many serve
# replicas, workers and monitors on many machines share one Redis over the network.
_REDIS = Backend(
    "onlearn.store.redis:open_redis_store",
    Capabilities(shared=True, networked=True, local_file=False),
)

BACKENDS: dict[str, Backend] = {
    "memory": Backend(
        "onlearn.store.memory:open_memory_store",
        Capabilities(shared=False, networked=False, local_file=False),
    ),
    "sqlite": Backend(
        "onlearn.store.sqlite:open_sqlite_store",
        Capabilities(shared=True, networked=False, local_file=True),
        serve_lock="onlearn.store.sqlite.lock:hold_serve_lock",
        migrate="onlearn.store.sqlite:migrate_sqlite_store",
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


def load(target: str) -> Callable[..., Any]:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def capabilities_of(url: str) -> Capabilities:
    """What the backend of ``url`` can do, without opening it.

    >>> capabilities_of("redis://127.0.0.1:6379/0").networked
    True
    """
    return backend_of(url).capabilities
