"""The shapes of the compact encoding (:mod:`onlearn.store.compact`) in the ``shapes`` table:
one row per model and shape, ``keys`` a JSON array; never changed nor deleted."""

from __future__ import annotations

from typing import TYPE_CHECKING

from onlearn.store.compact import MAX_SHAPES, Shapes, keys_from_text, keys_text

if TYPE_CHECKING:
    from onlearn.store.sqlite.connection import _Database

__all__ = ["sqlite_shapes"]


def sqlite_shapes(db: _Database) -> Shapes:
    """The shapes of the file of ``db``, cached in memory."""

    def load(model: str) -> dict[int, tuple[str, ...]]:
        rows = db.durable().execute("SELECT id, keys FROM shapes WHERE model = ?", (model,))
        return {sid: keys_from_text(text) for sid, text in rows}

    def register(model: str, keys: tuple[str, ...]) -> int | None:
        text = keys_text(keys)
        conn = db.durable()
        # Its own short write transaction, committed before the row that uses the shape is
        # written: encoding happens before a port takes the write lock for its rows.
        if conn.in_transaction:
            raise RuntimeError("a shape must be registered before the transaction that uses it")
        with db.transaction(conn):
            row = conn.execute(
                "SELECT id FROM shapes WHERE model = ? AND keys = ?", (model, text)
            ).fetchone()
            if row is not None:
                return row[0]
            count, top = conn.execute(
                "SELECT count(*), coalesce(max(id), 0) FROM shapes WHERE model = ?", (model,)
            ).fetchone()
            if count >= MAX_SHAPES:
                return None
            conn.execute(
                "INSERT INTO shapes (model, id, keys) VALUES (?, ?, ?)", (model, top + 1, text)
            )
            return top + 1

    return Shapes(load, register)
