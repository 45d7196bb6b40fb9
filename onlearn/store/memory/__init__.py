"""The ``memory://`` backend: every port in plain Python structures, behind one lock per port.

Shipped for tests and throw-away runs; nothing survives the process and no other process sees
it. It is on the in-process hot path (predict + learn), so records are kept as given, without
copying or serialising: records are frozen and their mappings must not be mutated after they are
handed over.

>>> from onlearn.records import Event, EventKind
>>> store = open_memory_store("memory://")
>>> store.log.append("m", [Event(EventKind.LABEL, {"label": 1}, at=0.0)])
[1]
>>> store.log.read("m", after=0)[0].seq
1
"""

from __future__ import annotations

from onlearn.errors import ConfigError
from onlearn.store.base import Store
from onlearn.store.generation import Generation
from onlearn.store.memory.jobs import MemoryJobQueue
from onlearn.store.memory.label_queue import MemoryLabelQueue
from onlearn.store.memory.log import MemoryEventLog
from onlearn.store.memory.predictions import MemoryPredictionStore
from onlearn.store.memory.registry import MemoryRegistry

__all__ = [
    "MemoryEventLog",
    "MemoryJobQueue",
    "MemoryLabelQueue",
    "MemoryPredictionStore",
    "MemoryRegistry",
    "open_memory_store",
]


def open_memory_store(url: str = "memory://") -> Store:
    """Open a fresh, empty in-process store. Each call gives a new, independent store."""
    if url not in ("memory://", "memory:"):
        raise ConfigError(f"store URL {url!r}: the memory backend takes no path; use memory://")
    generation = Generation.fixed()
    log = MemoryEventLog(generation)
    return Store(
        url=url,
        generation=generation,
        log=log,
        predictions=MemoryPredictionStore(),
        registry=MemoryRegistry(log),
        queue=MemoryLabelQueue(log),
        jobs=MemoryJobQueue(),
    )
