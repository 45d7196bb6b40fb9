"""Storage ports: the small Protocols the core talks to. Backends live next to this module.

Every backend passes the same contract checks (``onlearn.checks.stores``). Only modules in
``onlearn/store/`` open SQLite or Redis.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from onlearn.errors import StoreUnavailable
from onlearn.records import Event, PredictionRecord, Snapshot, VersionInfo

__all__ = ["EventLog", "PredictionStore", "Registry", "Store", "StoreUnavailable", "open_store"]


@runtime_checkable
class EventLog(Protocol):
    """The append-only, ordered log of each model. Seqs start at 1 and have no gaps."""

    def append(self, model: str, events: Sequence[Event]) -> list[int]:
        """Append durably and return one seq per event, in order.

        An event whose ``key`` is already in the model's log (or earlier in the same call) is not
        appended again: its seq is the existing one. Returns only once the events are durable.
        """
        ...

    def read(self, model: str, after: int, limit: int = 1000) -> list[Event]:
        """Events with ``seq > after``, in seq order, at most ``limit``."""
        ...

    def head(self, model: str) -> int:
        """The highest seq of the model's log, 0 when empty."""
        ...

    def trim(self, model: str, upto: int) -> int:
        """Forget events with ``seq <= upto`` (covered by a snapshot); return how many."""
        ...


@runtime_checkable
class PredictionStore(Protocol):
    """Prediction records, kept until their ``expires_at`` so that late labels can be joined."""

    def put_many(self, records: Sequence[PredictionRecord]) -> None: ...

    def get(self, prediction_id: str) -> PredictionRecord | None:
        """The record, or None when unknown or expired."""
        ...

    def purge_expired(self, now: float) -> int:
        """Delete records whose ``expires_at <= now``; return how many."""
        ...


@runtime_checkable
class Registry(Protocol):
    """Versions of each model, the roles they play, and snapshots of their learned state."""

    def create_version(self, model: str, spec: dict, meta: dict, at: float) -> VersionInfo:
        """Register the next version (``v1``, ``v2``, ...) of ``model``."""
        ...

    def get_version(self, model: str, version: str) -> VersionInfo | None: ...

    def list_versions(self, model: str) -> list[VersionInfo]:
        """All versions of ``model``, oldest first."""
        ...

    def roles(self, model: str) -> dict[str, str]:
        """Role name -> version, e.g. ``{"champion": "v2"}``."""
        ...

    def set_role(
        self, model: str, role: str, version: str | None, *, actor: str, reason: str, at: float
    ) -> None:
        """Give ``role`` to ``version`` (None removes the role) and record it in the audit history."""
        ...

    def role_history(self, model: str) -> list[dict]:
        """Audit history of role changes, oldest first: role, version, previous, actor, reason, at."""
        ...

    def put_snapshot(self, snapshot: Snapshot) -> None: ...

    def latest_snapshot(
        self, model: str, version: str, max_seq: int | None = None
    ) -> Snapshot | None:
        """The snapshot of ``version`` with the highest seq (not above ``max_seq`` when given)."""
        ...


@dataclass
class Store:
    """The ports of one backend, opened together from a URL."""

    url: str
    log: EventLog
    predictions: PredictionStore
    registry: Registry
    closers: list = field(default_factory=list, repr=False)

    @property
    def shared(self) -> bool:
        """Whether other processes can see this store (False for ``memory://``)."""
        return not self.url.startswith("memory:")

    def ping(self) -> None:
        """Raise StoreUnavailable when the backend cannot be reached."""
        self.log.head("__ping__")

    def close(self) -> None:
        for close in reversed(self.closers):
            close()
        self.closers.clear()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_store(url: str) -> Store:
    """Open the backend named by ``url``: ``memory://`` or ``sqlite:///path/to/file.db``.

    >>> with open_store("memory://") as store:
    ...     store.log.head("m")
    0
    """
    if url.startswith("memory:"):
        from onlearn.store.memory import open_memory_store

        return open_memory_store(url)
    if url.startswith("sqlite:"):
        from onlearn.store.sqlite import open_sqlite_store

        return open_sqlite_store(url)
    raise ValueError(
        f"store URL {url!r} is not supported: use memory:// or sqlite:///path/to/onlearn.db"
    )
