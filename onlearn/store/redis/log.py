"""The EventLog on Redis: a stream per model whose entry ids are the seqs (``0-<seq>``), a head
counter beside it, and a hash of idempotency keys; appends and trims are Lua scripts
(``lua/log_*.lua``, with ``lua/lib/append_events.lua``).

An entry's field ``e`` is the event but its seq and key in the compact encoding
(:func:`onlearn.store.compact.pack_event`), or its JSON in entries of an earlier onlearn;
:func:`_encode_entry` and :func:`_event_from_entry` are the two directions, both forms read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from onlearn.records import Event
from onlearn.store.base import AppendResult
from onlearn.store.compact import Shapes, pack_event, unpack_event
from onlearn.store.redis.connection import Connection, guarded
from onlearn.store.redis.scripts import register
from onlearn.store.redis.shapes import SharesShapes

__all__ = ["RedisEventLog"]

# Events per append script call. A group-committed batch (hundreds of events) is one call, so
# one atomic step; a larger batch is split so that no single script blocks Redis for long.
_APPEND_CHUNK = 5000
# Stream entries removed per trim script call: bounded work per script (Redis serves nobody
# else while a script runs).
_TRIM_CHUNK = 1000
# The longest a ``follow`` blocks in XREAD: well under the connection's socket timeout (2 s).
_MAX_BLOCK_S = 1.0
# The largest seq that fits a stream id's sequence part, with room to add one.
_MAX_SEQ = 2**63 - 1


def _encode_entry(shapes: Shapes, model: str, event: Event) -> tuple[str, str, bytes]:
    """The three values of an event for ``append_events``: "1" and its key, or "0" and "", then
    the field ``e``."""
    key = event.key
    data = pack_event(shapes, model, event)
    return ("0", "", data) if key is None else ("1", key, data)


def _event_from_entry(shapes: Shapes, model: str, entry_id: bytes, fields: dict) -> Event:
    """An event from a stream entry (its id ``0-<seq>`` and fields), in either format."""
    key = fields.get(b"k")
    return unpack_event(
        shapes, model, fields[b"e"], int(entry_id[2:]), None if key is None else key.decode()
    )


class RedisEventLog(SharesShapes):
    def __init__(self, conn: Connection, shapes: Shapes | None = None):
        self._conn = conn
        self._given_shapes = shapes
        self._append_script = register(conn.client, "log_append", "append_events")
        self._trim_script = register(conn.client, "log_trim")

    @guarded("append")
    def append(self, model: str, events: Sequence[Event]) -> AppendResult:
        if not events:
            return AppendResult()
        generation = self._conn.generation
        generation.refuse()  # a process that found its store changed appends nothing more
        k = self._conn.keys
        keys = [k.log_head(model), k.log(model), k.log_keys(model), k.generation]
        seqs = AppendResult()
        shapes = self._shapes
        for start in range(0, len(events), _APPEND_CHUNK):
            args: list[str | bytes] = [generation.id]  # checked by the script
            for event in events[start : start + _APPEND_CHUNK]:
                # The key in its own field, which the trim script reads.
                args += _encode_entry(shapes, model, event)
            for seq in self._append_script(keys=keys, args=args):
                seqs.append(abs(seq))
                seqs.new.append(seq > 0)
        return seqs

    @guarded("read", idempotent=True)
    def read(self, model: str, after: int, limit: int = 1000) -> list[Event]:
        if limit <= 0 or after >= _MAX_SEQ:
            return []
        start = "-" if after < 0 else f"0-{after + 1}"
        entries = self._conn.client.xrange(self._conn.keys.log(model), start, "+", count=limit)
        shapes = self._shapes
        return [_event_from_entry(shapes, model, entry_id, fields) for entry_id, fields in entries]

    @guarded("by_keys", idempotent=True)
    def by_keys(self, model: str, keys: Sequence[str]) -> dict[str, Event]:
        keys = list(dict.fromkeys(keys))
        if not keys:
            return {}
        k = self._conn.keys
        client = self._conn.client
        seqs = client.hmget(k.log_keys(model), keys)
        known = [(key, int(seq)) for key, seq in zip(keys, seqs, strict=True) if seq is not None]
        if not known:
            return {}
        # Then the entries, in one pipelined round trip. A key whose entry a trim removed
        # between the two reads is left out, as if the trim had come first.
        pipe = client.pipeline(transaction=False)
        for _, seq in known:
            pipe.xrange(k.log(model), f"0-{seq}", f"0-{seq}", count=1)
        shapes = self._shapes
        found = {}
        for (key, _), entries in zip(known, pipe.execute(), strict=True):
            if entries:
                entry_id, fields = entries[0]
                found[key] = _event_from_entry(shapes, model, entry_id, fields)
        return found

    @guarded("head", idempotent=True)
    def head(self, model: str) -> int:
        # The counter, or the stream's top entry should the counter have fallen behind (as the
        # append script does); one round trip.
        pipe = self._conn.client.pipeline(transaction=False)
        pipe.get(self._conn.keys.log_head(model))
        pipe.xrevrange(self._conn.keys.log(model), "+", "-", count=1)
        counter, top = pipe.execute()
        return max(int(counter or 0), int(top[0][0][2:]) if top else 0)

    @guarded("heads", idempotent=True)
    def heads(self, models: Sequence[str]) -> dict[str, int]:
        # The head counters in one MGET. (``head`` also looks at the stream's top entry, for a
        # counter behind it; the append script repairs such a counter at the next append.)
        if not models:
            return {}
        counters = self._conn.client.mget([self._conn.keys.log_head(m) for m in models])
        return {m: int(c or 0) for m, c in zip(models, counters, strict=True)}

    # XREAD BLOCK waits on the server for the first entry of any of the streams.
    follow_blocks = True

    @guarded("follow", idempotent=True)
    def follow(
        self, positions: Mapping[str, int], *, block_s: float = 0.0, limit: int = 1000
    ) -> dict[str, list[Event]]:
        if not positions or limit <= 0:
            return {}
        streams, models = {}, {}
        for model, after in positions.items():
            key = self._conn.keys.log(model)
            streams[key] = f"0-{min(max(after, 0), _MAX_SEQ - 1)}"
            models[key.encode() if isinstance(key, str) else key] = model
        # block=None: answer at once (redis-py's block=0 would wait for ever). The wait stays
        # well under the socket timeout, which would otherwise count as Redis not answering.
        block = int(min(block_s, _MAX_BLOCK_S) * 1000) or None
        replies = self._conn.client.xread(streams, count=limit, block=block) or []
        shapes = self._shapes
        return {
            models[key]: [
                _event_from_entry(shapes, models[key], entry_id, fields)
                for entry_id, fields in entries
            ]
            for key, entries in replies
            if entries
        }

    @guarded("trim", idempotent=True)
    def trim(self, model: str, upto: int) -> int:
        if upto <= 0:
            return 0
        upto = min(upto, _MAX_SEQ - 1)
        keys = [self._conn.keys.log(model), self._conn.keys.log_keys(model)]
        total = 0
        while True:
            removed = self._trim_script(keys=keys, args=[upto, _TRIM_CHUNK])
            total += removed
            if removed < _TRIM_CHUNK:
                return total
