"""``SqlitePredictionStore``: prediction records, on the fast connection.

``body`` is the compact encoding of a record (:func:`onlearn.store.compact.pack_record`, a
BLOB) without what the row's columns hold (id, model, at, expires_at), or, in rows of an
earlier onlearn, the record's JSON (TEXT); both are read.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from onlearn.records import (
    PredictionRecord,
)
from onlearn.store.compact import pack_record, unpack_record
from onlearn.store.sqlite.connection import _Database, _guarded

_COLUMNS = "id, model, at, expires_at, body"


class SqlitePredictionStore:
    def __init__(self, db: _Database):
        self._db = db

    @_guarded("put predictions")
    def put_many(self, records: Sequence[PredictionRecord]) -> None:
        if not records:
            return
        # Encode before taking the write lock: the lock is held for the inserts alone.
        shapes = self._db.shapes
        rows = [
            (r.id, r.model, r.at, r.expires_at, pack_record(shapes, r, columns=True))
            for r in records
        ]
        conn = self._db.fast()
        with self._db.transaction(conn):
            conn.executemany(
                "INSERT OR REPLACE INTO predictions (id, model, at, expires_at, body)"
                " VALUES (?,?,?,?,?)",
                rows,
            )

    @_guarded("get prediction")
    def get(self, prediction_id: str) -> PredictionRecord | None:
        # Expired rows are invisible even before purge_expired removes them.
        row = (
            self._db.fast()
            .execute(
                f"SELECT {_COLUMNS} FROM predictions WHERE id = ? AND expires_at > ?",
                (prediction_id, time.time()),
            )
            .fetchone()
        )
        return None if row is None else self._record(*row)

    def _record(
        self, rid: str, model: str, at: float, expires_at: float, body: str | bytes
    ) -> PredictionRecord:
        return unpack_record(
            self._db.shapes, body, id=rid, model=model, at=at, expires_at=expires_at
        )

    @_guarded("purge predictions")
    def purge_expired(self, now: float) -> int:
        # Chunks of 1000: a record has three index entries besides its row, and a chunk of 5000
        # took up to 19 ms of CPU under the write lock (benchmarks/purge.py).
        return self._db.delete_in_chunks(
            self._db.fast(),
            "DELETE FROM predictions WHERE rowid IN ("
            " SELECT rowid FROM predictions WHERE expires_at <= ? LIMIT ?)",
            (now,),
            share=0.2,
        )

    @_guarded("models with new predictions")
    def models_after(self, cursors: Mapping[str, str | None], upto: str) -> set[str]:
        # One statement per chunk of models: an index probe on (model, id) each.
        conn = self._db.fast()
        found: set[str] = set()
        items = [(model, "" if after is None else after) for model, after in cursors.items()]
        for i in range(0, len(items), _MODELS_CHUNK):
            chunk = items[i : i + _MODELS_CHUNK]
            values = ",".join("(?, ?)" for _ in chunk)
            rows = conn.execute(
                f"WITH c(model, after) AS (VALUES {values}) SELECT c.model FROM c WHERE EXISTS"
                " (SELECT 1 FROM predictions p WHERE p.model = c.model AND p.id > c.after"
                " AND p.id <= ?)",
                [*(v for pair in chunk for v in pair), upto],
            )
            found.update(model for (model,) in rows)
        return found

    @_guarded("scan predictions")
    def scan(
        self, model: str, after: str | None, limit: int = 1000, upto: str | None = None
    ) -> list[PredictionRecord]:
        if limit <= 0:
            return []
        now = time.time()
        # "~" sorts after every id (ids are lowercase hex): no upper bound.
        upto = "~" if upto is None else upto
        if after is None:
            rows = self._db.fast().execute(_SCAN_FIRST_SQL, (model, upto, now, limit)).fetchall()
        else:
            rows = self._db.fast().execute(_SCAN_SQL, (model, after, upto, now, limit)).fetchall()
        return [self._record(*row) for row in rows]


# Models per statement of models_after: two parameters each, well under SQLite's limit.
_MODELS_CHUNK = 400

# Both walk predictions_model_id from the cursor, in its order (no sort). The unary + keeps
# expires_at out of the choice of index: predictions_expires_at would read every live record
# of every model, then sort. Expired rows not purged yet are skipped on the way.
_SCAN_SQL = (
    f"SELECT {_COLUMNS} FROM predictions"
    " WHERE model = ? AND id > ? AND id <= ? AND +expires_at > ?"
    " ORDER BY id LIMIT ?"
)
_SCAN_FIRST_SQL = (
    f"SELECT {_COLUMNS} FROM predictions WHERE model = ? AND id <= ? AND +expires_at > ?"
    " ORDER BY id LIMIT ?"
)
