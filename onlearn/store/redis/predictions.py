"""The PredictionStore on Redis: one string key per record with an expiry, an expiry index, and
an index of ids per model for ``scan`` (the class docstring says why by id); the purge and the
clean-up of ``scan`` are Lua scripts (``lua/predictions_*.lua``).

A record's value is its model (a msgpack string), then the record in the compact encoding
(:func:`onlearn.store.compact.pack_record`); a record of an earlier onlearn is JSON. Both are
read."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

from onlearn.records import PredictionRecord
from onlearn.store.compact import Shapes, pack_record, record_model, unpack_record
from onlearn.store.redis.connection import Connection, guarded
from onlearn.store.redis.fields import decode
from onlearn.store.redis.scripts import register
from onlearn.store.redis.shapes import SharesShapes

__all__ = ["RedisPredictionStore"]

# Prediction ids per purge script call: bounded work per script (Redis serves nobody else while
# a script runs).
_PURGE_CHUNK = 1000
# Ids read per round by scan (the records of a round are fetched in one pipeline), and the
# fewest read by a round after one whose ids had partly expired.
_SCAN_CHUNK = 1000
_SCAN_MIN_STEP = 100


class RedisPredictionStore(SharesShapes):
    """One string key per record, expiring at its ``expires_at`` (Redis deletes it by itself),
    and one sorted set of ids by ``expires_at`` so that ``purge_expired`` can count and delete
    what expired; the writer's periodic purge keeps that index small.

    For ``scan``, each model has a sorted set of the ids of its records, all of score 0: members
    of equal score sort bytewise, which for ids is their order as Python strings (UTF-8 keeps
    code point order), so ``ZRANGEBYLEX (<after> +`` is exactly "ids greater than the cursor,
    in id order", whatever the ids look like. (A score by time would need the time parsed out
    of each id, would not order ids of one millisecond, and a cursor inside one score cannot
    be expressed as one range.) Records expire by TTL while their ids stay in these indexes:
    ``purge_expired`` removes them, finding an id's model in a hash (the record itself may be
    gone), and ``scan`` skips the ids whose record has gone and removes them as it passes.
    """

    def __init__(self, conn: Connection, shapes: Shapes | None = None):
        self._conn = conn
        self._given_shapes = shapes
        self._purge_script = register(conn.client, "predictions_purge")
        self._scan_forget_script = register(conn.client, "predictions_scan_forget")

    @guarded("put predictions", idempotent=True)
    def put_many(self, records: Sequence[PredictionRecord]) -> None:
        if not records:
            return
        k = self._conn.keys
        shapes = self._shapes
        now = time.time()
        expiry: dict[str, float] = {}
        models: dict[str, str] = {}
        by_model: dict[str, dict[str, int]] = {}
        generation = self._conn.generation
        generation.refuse()
        # No MULTI: each SET stands alone (a record is one key) and the writer retries a failed
        # batch whole, which is harmless because putting a record again replaces it. The
        # indexes come after the records, so that scan never meets an id before its record.
        pipe = self._conn.client.pipeline(transaction=False)
        # The generation first (onlearn.store.generation): records are encoded with this
        # process's cached shape ids, which mean nothing (or another shape) in an emptied Redis
        # that other processes filled again. Such records are taken out again below.
        pipe.get(k.generation)
        for record in records:
            key = k.prediction(record.id)
            expires_at = record.expires_at
            if not expires_at > now:  # already expired (or NaN): what it replaces goes too
                pipe.delete(key)
                expires_at = expires_at if expires_at == expires_at else 0.0
            else:
                value = pack_record(shapes, record, columns=False)
                if math.isinf(expires_at):
                    pipe.set(key, value)
                else:
                    # Rounded up to the millisecond: never deleted before its expires_at.
                    pipe.set(key, value, pxat=math.ceil(expires_at * 1000))
                models[record.id] = record.model
                ids = by_model.get(record.model)
                if ids is None:
                    ids = by_model[record.model] = {}
                ids[record.id] = 0
            expiry[record.id] = expires_at
        pipe.zadd(k.predictions_expiry(), expiry)
        if models:
            pipe.hset(k.predictions_models(), mapping=models)
            for model, ids in by_model.items():
                pipe.zadd(k.predictions_of_model(model), ids)
        found = pipe.execute()[0]
        if found is None or found.decode() != generation.id:
            self._conn.client.delete(*(k.prediction(r.id) for r in records))
            raise generation.mismatch(None if found is None else found.decode())

    @guarded("get prediction", idempotent=True)
    def get(self, prediction_id: str) -> PredictionRecord | None:
        text = self._conn.client.get(self._conn.keys.prediction(prediction_id))
        if text is None:
            return None
        record = unpack_record(self._shapes, text, id=prediction_id)
        # Redis expires by its own clock; this process's clock decides too, as in other backends.
        return record if record.expires_at > time.time() else None

    @guarded("purge predictions", idempotent=True)
    def purge_expired(self, now: float) -> int:
        k = self._conn.keys
        index, models_key = k.predictions_expiry(), k.predictions_models()
        client = self._conn.client
        total = 0
        while True:
            ids = client.zrangebyscore(index, "-inf", now, start=0, num=_PURGE_CHUNK)
            if not ids:
                return total
            models = client.hmget(models_key, ids)
            keys = [index, models_key]
            keys += [k.prediction(decode(i)) for i in ids]
            keys += [index if m is None else k.predictions_of_model(decode(m)) for m in models]
            read = [b"" if m is None else b"=" + m for m in models]
            total += self._purge_script(keys=keys, args=[repr(float(now)), *ids, *read])
            if len(ids) < _PURGE_CHUNK:
                return total

    @guarded("models with new predictions", idempotent=True)
    def models_after(self, cursors: Mapping[str, str | None], upto: str) -> set[str]:
        # One pipelined ZRANGEBYLEX ... LIMIT 0 1 per model: one round trip for all of them.
        # (An id whose record expired still counts: the scan that follows skips it.)
        if not cursors:
            return set()
        models = list(cursors)
        pipe = self._conn.client.pipeline(transaction=False)
        for model in models:
            after = cursors[model]
            start = "-" if after is None else "(" + after
            pipe.zrangebylex(self._conn.keys.predictions_of_model(model), start, "[" + upto, 0, 1)
        return {model for model, ids in zip(models, pipe.execute(), strict=True) if ids}

    @guarded("scan predictions", idempotent=True)
    def scan(
        self, model: str, after: str | None, limit: int = 1000, upto: str | None = None
    ) -> list[PredictionRecord]:
        found: list[PredictionRecord] = []
        if limit <= 0:
            return found
        k = self._conn.keys
        client = self._conn.client
        index = k.predictions_of_model(model)
        start: str | bytes = "-" if after is None else "(" + after
        stop = "+" if upto is None else "[" + upto
        count = min(limit, _SCAN_CHUNK)
        while True:
            ids = client.zrangebylex(index, start, stop, start=0, num=count)
            if not ids:
                return found
            pipe = client.pipeline(transaction=False)
            for rid in ids:
                pipe.get(k.prediction(decode(rid)))
            texts = pipe.execute()
            now = time.time()
            gone = []
            shapes = self._shapes
            for rid, text in zip(ids, texts, strict=True):
                if text is None:  # expired by Redis, or deleted by a put of an expired record
                    gone.append(rid)
                    continue
                if record_model(text) != model:  # put again under another model
                    gone.append(rid)
                    continue
                record = unpack_record(shapes, text, id=decode(rid))
                if record.expires_at > now:  # else expired by this clock, not yet by Redis's
                    found.append(record)
                    if len(found) == limit:
                        break
            if gone:
                self._scan_forget_script(
                    keys=[index, k.predictions_models(), *(k.prediction(decode(i)) for i in gone)],
                    args=[model, *gone],
                )
            if len(found) == limit or len(ids) < count:
                return found
            # Some ids were skipped: read on, in larger steps should many have expired.
            start = b"(" + ids[-1]
            count = min(max(limit - len(found), _SCAN_MIN_STEP), _SCAN_CHUNK)
