"""Stores, opened from a URL through one table (:mod:`onlearn.store.schemes`): the URL's scheme
selects an entry, the entry names the backend's opener and declares what the backend can do.

>>> with open_store("memory://") as store:
...     store.log.head("m"), store.capabilities.shared
(0, False)
>>> capabilities_of("sqlite:///.data/onlearn.db").local_file
True
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from onlearn.store.capabilities import Capabilities
from onlearn.store.schemes import BACKENDS, Backend, backend_of, capabilities_of

if TYPE_CHECKING:
    from onlearn.store.base import Store

__all__ = [
    "BACKENDS",
    "Backend",
    "Capabilities",
    "capabilities_of",
    "migrate_store",
    "open_store",
    "serve_lock",
]


def open_store(url: str) -> Store:
    """Open the backend named by ``url``: ``memory://``, ``sqlite:///path/to/file.db`` or
    ``redis://host:6379/0`` (also ``rediss://`` and ``unix://``)."""
    return backend_of(url).opener(url)


def serve_lock(url: str, *, serving: str | None = None) -> contextlib.AbstractContextManager:
    """What ``onlearn serve`` holds for its life so that a second one on the same store refuses
    to start (:class:`~onlearn.store.sqlite.lock.StoreInUse`, naming the holder's pid).

    Only a SQLite file has one: a ``memory://`` store lives in one process, and many servers on
    one Redis are the way to scale out. ``serving`` (its address) goes into the message.
    """
    lock = backend_of(url).serve_lock
    if lock is None:
        return contextlib.nullcontext()
    return lock(url, serving=serving)


def migrate_store(url: str, say: Callable[[str], None] = print) -> None:
    """``onlearn store migrate``: the upgrades of a store's format too long to run at open (on
    SQLite, the VACUUM that turns on incremental vacuum), each announced through ``say``."""
    migrate = backend_of(url).migrate
    if migrate is None:
        say(f"{url.partition(':')[0]} store: nothing to migrate")
        return
    migrate(url, say)
