"""``MemoryPredictionStore``: prediction records in a dict, kept as given."""

from __future__ import annotations

import bisect
import itertools
import threading
import time
from collections.abc import Mapping, Sequence

from onlearn.records import (
    PredictionRecord,
)


class MemoryPredictionStore:
    """Records by id, and per model the ids of its records in sorted order (for ``scan``).

    Ids usually arrive in increasing order (they start with their creation time), so indexing a
    record is an append; one out of order is inserted with bisect.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, PredictionRecord] = {}
        self._ids: dict[str, list[str]] = {}  # model -> sorted ids of its records

    def put_many(self, records: Sequence[PredictionRecord]) -> None:
        with self._lock:
            stored, index = self._records, self._ids
            for record in records:
                rid, model = record.id, record.model
                old = stored.get(rid)
                stored[rid] = record
                if old is not None:
                    if old.model == model:
                        continue  # indexed already
                    moved = index[old.model]  # put again under another model
                    del moved[bisect.bisect_left(moved, rid)]
                ids = index.get(model)
                if ids is None:
                    index[model] = [rid]
                elif ids[-1] < rid:
                    ids.append(rid)
                else:
                    bisect.insort(ids, rid)

    def get(self, prediction_id: str) -> PredictionRecord | None:
        record = self._records.get(prediction_id)  # a single dict read is atomic in CPython
        if record is None or record.expires_at <= time.time():
            return None
        return record

    def purge_expired(self, now: float) -> int:
        with self._lock:
            expired = [r for r in self._records.values() if r.expires_at <= now]
            if not expired:
                return 0
            for record in expired:
                del self._records[record.id]
            gone = {r.id for r in expired}
            for model in {r.model for r in expired}:
                ids = [rid for rid in self._ids[model] if rid not in gone]
                if ids:
                    self._ids[model] = ids
                else:
                    del self._ids[model]
            return len(expired)

    def models_after(self, cursors: Mapping[str, str | None], upto: str) -> set[str]:
        with self._lock:
            found = set()
            for model, after in cursors.items():
                ids = self._ids.get(model)
                start = 0 if after is None else bisect.bisect_right(ids or [], after)
                if ids and bisect.bisect_right(ids, upto) > start:
                    found.add(model)
            return found

    def scan(
        self, model: str, after: str | None, limit: int = 1000, upto: str | None = None
    ) -> list[PredictionRecord]:
        now = time.time()
        found: list[PredictionRecord] = []
        with self._lock:
            ids = self._ids.get(model)
            if not ids or limit <= 0:
                return found
            start = 0 if after is None else bisect.bisect_right(ids, after)
            stop = None if upto is None else bisect.bisect_right(ids, upto)
            for rid in itertools.islice(ids, start, stop):
                record = self._records[rid]
                if record.expires_at > now:  # expired but not purged yet: invisible
                    found.append(record)
                    if len(found) == limit:
                        break
        return found
