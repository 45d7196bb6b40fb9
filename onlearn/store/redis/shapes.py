"""The shapes of the compact encoding (:mod:`onlearn.store.compact`) on Redis: a hash per model
(``keys.shapes``) with ``<id> -> keys`` and ``keys -> <id>``; registered by a Lua script
(``lua/shapes_register.lua``), never changed nor deleted."""

from __future__ import annotations

from onlearn.store.compact import MAX_SHAPES, Shapes, keys_from_text, keys_text
from onlearn.store.redis.connection import Connection
from onlearn.store.redis.scripts import register

__all__ = ["RedisShapes", "SharesShapes"]


class RedisShapes(Shapes):
    """The shapes of one Redis store, cached in memory (one per store, shared by its ports)."""

    def __init__(self, conn: Connection):
        script = register(conn.client, "shapes_register")

        def load(model: str) -> dict[int, tuple[str, ...]]:
            fields = conn.client.hgetall(conn.keys.shapes(model))
            return {
                int(name): keys_from_text(text)
                for name, text in fields.items()
                if name[:1].isdigit()
            }

        def register_shape(model: str, keys: tuple[str, ...]) -> int | None:
            sid = script(keys=[conn.keys.shapes(model)], args=[keys_text(keys), MAX_SHAPES])
            return int(sid) or None

        super().__init__(load, register_shape)


class SharesShapes:
    """For a port that encodes compactly: the store's shapes, given by ``open_redis_store``, or
    its own, made at first use (a port built alone talks to nobody until it is used)."""

    _conn: Connection
    _given_shapes: Shapes | None

    @property
    def _shapes(self) -> Shapes:
        if self._given_shapes is None:
            self._given_shapes = RedisShapes(self._conn)
        return self._given_shapes
