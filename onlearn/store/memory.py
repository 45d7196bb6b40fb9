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

import re
import threading
import time
from collections.abc import Sequence

from onlearn.errors import ConfigError
from onlearn.records import Event, PredictionRecord, Snapshot, VersionInfo
from onlearn.store.base import Store

__all__ = [
    "MemoryEventLog",
    "MemoryPredictionStore",
    "MemoryRegistry",
    "open_memory_store",
]


def _with_seq(event: Event, seq: int) -> Event:
    """``dataclasses.replace(event, seq=seq)``, about four times cheaper.

    A frozen dataclass's ``__init__`` pays one ``object.__setattr__`` per field (about 3 us per
    event here); filling the ``__dict__`` of a bare instance builds the same record, equal and
    still frozen to its users. This is the in-process hot path of every label.
    """
    if _EVENT_HAS_DICT:
        new = object.__new__(Event)
        fields = new.__dict__
        fields.update(event.__dict__)
        fields["seq"] = seq
        return new
    return Event(event.kind, event.payload, event.at, seq, event.key)


# False if Event ever becomes a slotted dataclass; the constructor is then used.
_EVENT_HAS_DICT = not hasattr(Event, "__slots__")


class _ModelLog:
    """One model's log. ``events[i].seq == base + i + 1``; ``base`` counts trimmed events."""

    __slots__ = ("base", "events", "keys")

    def __init__(self) -> None:
        self.base = 0
        self.events: list[Event] = []
        self.keys: dict[str, int] = {}


class MemoryEventLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._logs: dict[str, _ModelLog] = {}

    def append(self, model: str, events: Sequence[Event]) -> list[int]:
        seqs: list[int] = []
        with self._lock:
            log = self._logs.get(model)
            if log is None:
                log = self._logs[model] = _ModelLog()
            stored, keys = log.events, log.keys
            for event in events:
                key = event.key
                if key is not None:
                    seq = keys.get(key)
                    if seq is not None:
                        seqs.append(seq)
                        continue
                seq = log.base + len(stored) + 1
                stored.append(_with_seq(event, seq))
                if key is not None:
                    keys[key] = seq
                seqs.append(seq)
        return seqs

    def read(self, model: str, after: int, limit: int = 1000) -> list[Event]:
        with self._lock:
            log = self._logs.get(model)
            if log is None or limit <= 0:
                return []
            start = max(after - log.base, 0)
            return log.events[start : start + limit]

    def head(self, model: str) -> int:
        with self._lock:
            log = self._logs.get(model)
            return 0 if log is None else log.base + len(log.events)

    def trim(self, model: str, upto: int) -> int:
        with self._lock:
            log = self._logs.get(model)
            if log is None:
                return 0
            count = min(upto - log.base, len(log.events))
            if count <= 0:
                return 0
            # A trimmed event's key is forgotten with it, as in the SQLite backend where the
            # key lives in the event's row.
            for event in log.events[:count]:
                if event.key is not None:
                    log.keys.pop(event.key, None)
            del log.events[:count]
            log.base += count
            return count


class MemoryPredictionStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, PredictionRecord] = {}

    def put_many(self, records: Sequence[PredictionRecord]) -> None:
        with self._lock:
            for record in records:
                self._records[record.id] = record

    def get(self, prediction_id: str) -> PredictionRecord | None:
        record = self._records.get(prediction_id)  # a single dict read is atomic in CPython
        if record is None or record.expires_at <= time.time():
            return None
        return record

    def purge_expired(self, now: float) -> int:
        with self._lock:
            expired = [rid for rid, r in self._records.items() if r.expires_at <= now]
            for rid in expired:
                del self._records[rid]
            return len(expired)


_VERSION_NAME = re.compile(r"v([1-9][0-9]*)")


class MemoryRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._versions: dict[str, list[VersionInfo]] = {}
        self._roles: dict[str, dict[str, str]] = {}
        self._history: dict[str, list[dict]] = {}
        self._snapshots: dict[tuple[str, str], dict[int, Snapshot]] = {}

    def create_version(self, model: str, spec: dict, meta: dict, at: float) -> VersionInfo:
        with self._lock:
            versions = self._versions.setdefault(model, [])
            info = VersionInfo(model, f"v{len(versions) + 1}", at, dict(spec), dict(meta))
            versions.append(info)
            return info

    def get_version(self, model: str, version: str) -> VersionInfo | None:
        match = _VERSION_NAME.fullmatch(version)
        if match is None:
            return None
        with self._lock:
            versions = self._versions.get(model, [])
            number = int(match.group(1))
            return versions[number - 1] if number <= len(versions) else None

    def list_versions(self, model: str) -> list[VersionInfo]:
        with self._lock:
            return list(self._versions.get(model, []))

    def roles(self, model: str) -> dict[str, str]:
        with self._lock:
            return dict(self._roles.get(model, {}))

    def set_role(
        self, model: str, role: str, version: str | None, *, actor: str, reason: str, at: float
    ) -> None:
        if version is not None and self.get_version(model, version) is None:
            raise LookupError(f"model {model!r} has no version {version!r}")
        with self._lock:
            roles = self._roles.setdefault(model, {})
            previous = roles.get(role)
            if version is None:
                roles.pop(role, None)
            else:
                roles[role] = version
            self._history.setdefault(model, []).append(
                {
                    "role": role,
                    "version": version,
                    "previous": previous,
                    "actor": actor,
                    "reason": reason,
                    "at": at,
                }
            )

    def role_history(self, model: str) -> list[dict]:
        with self._lock:
            return [dict(row) for row in self._history.get(model, [])]

    def put_snapshot(self, snapshot: Snapshot) -> None:
        with self._lock:
            key = (snapshot.model, snapshot.version)
            self._snapshots.setdefault(key, {})[snapshot.seq] = snapshot

    def latest_snapshot(
        self, model: str, version: str, max_seq: int | None = None
    ) -> Snapshot | None:
        with self._lock:
            snapshots = self._snapshots.get((model, version), {})
            seqs = [s for s in snapshots if max_seq is None or s <= max_seq]
            return snapshots[max(seqs)] if seqs else None


def open_memory_store(url: str = "memory://") -> Store:
    """Open a fresh, empty in-process store. Each call gives a new, independent store."""
    if url not in ("memory://", "memory:"):
        raise ConfigError(f"store URL {url!r}: the memory backend takes no path; use memory://")
    return Store(
        url=url,
        log=MemoryEventLog(),
        predictions=MemoryPredictionStore(),
        registry=MemoryRegistry(),
    )
