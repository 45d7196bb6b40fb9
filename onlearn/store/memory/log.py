"""``MemoryEventLog``: each model's log in a list, numbered under one lock."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from onlearn.records import (
    Event,
)
from onlearn.store.base import (
    AppendResult,
)
from onlearn.store.generation import Generation


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
    def __init__(self, generation: Generation | None = None) -> None:
        # Also the registry's lock (see MemoryRegistry): change_roles appends a control event and
        # changes roles under it, so no reader sees one without the other.
        self._lock = threading.Lock()
        self._logs: dict[str, _ModelLog] = {}
        # A memory store never changes under its process, but a log found gone back (went_back)
        # takes no more appends, as on every backend.
        self.generation = generation or Generation.fixed()

    def append(self, model: str, events: Sequence[Event]) -> AppendResult:
        with self._lock:
            return self._append_locked(model, events)

    def _append_locked(self, model: str, events: Sequence[Event]) -> AppendResult:
        """``append`` for a caller that holds ``self._lock`` (append itself, change_roles)."""
        self.generation.refuse()
        seqs = AppendResult()
        new = seqs.new
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
                    new.append(False)
                    continue
            seq = log.base + len(stored) + 1
            stored.append(_with_seq(event, seq))
            if key is not None:
                keys[key] = seq
            seqs.append(seq)
            new.append(True)
        return seqs

    def _seq_of_key(self, model: str, key: str) -> int | None:
        """The seq of the event with ``key``, for a caller that holds ``self._lock``."""
        log = self._logs.get(model)
        return None if log is None else log.keys.get(key)

    def read(self, model: str, after: int, limit: int = 1000) -> list[Event]:
        with self._lock:
            log = self._logs.get(model)
            if log is None or limit <= 0:
                return []
            start = max(after - log.base, 0)
            return log.events[start : start + limit]

    def by_keys(self, model: str, keys: Sequence[str]) -> dict[str, Event]:
        with self._lock:
            log = self._logs.get(model)
            if log is None:
                return {}
            found = {}
            for key in keys:
                seq = log.keys.get(key)
                if seq is not None:
                    found[key] = log.events[seq - log.base - 1]
            return found

    def head(self, model: str) -> int:
        with self._lock:
            log = self._logs.get(model)
            return 0 if log is None else log.base + len(log.events)

    def heads(self, models: Sequence[str]) -> dict[str, int]:
        with self._lock:
            logs = self._logs
            return {
                m: 0 if (log := logs.get(m)) is None else log.base + len(log.events) for m in models
            }

    # Nothing else appends to this process's memory: a caller never needs to wait here.
    follow_blocks = False

    def follow(
        self, positions: Mapping[str, int], *, block_s: float = 0.0, limit: int = 1000
    ) -> dict[str, list[Event]]:
        found = {}
        with self._lock:
            for model, after in positions.items():
                log = self._logs.get(model)
                if log is None or log.base + len(log.events) <= after or limit <= 0:
                    continue
                start = max(after - log.base, 0)
                found[model] = log.events[start : start + limit]
        return found

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
