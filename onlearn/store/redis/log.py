"""The EventLog on Redis: a stream per model whose entry ids are the seqs (``0-<seq>``), a head
counter beside it, and a hash of idempotency keys; appends and trims are Lua scripts
(``lua/log_*.lua``, with ``lua/lib/append_events.lua``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from onlearn.records import Event
from onlearn.store.base import AppendResult
from onlearn.store.codec import dumps, event_from_dict, event_to_dict, loads
from onlearn.store.redis.connection import Connection, guarded
from onlearn.store.redis.scripts import register

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


class RedisEventLog:
    def __init__(self, conn: Connection):
        self._conn = conn
        self._append_script = register(conn.client, "log_append", "append_events")
        self._trim_script = register(conn.client, "log_trim")

    @guarded("append")
    def append(self, model: str, events: Sequence[Event]) -> AppendResult:
        if not events:
            return AppendResult()
        k = self._conn.keys
        keys = [k.log_head(model), k.log(model), k.log_keys(model)]
        seqs = AppendResult()
        for start in range(0, len(events), _APPEND_CHUNK):
            args: list[str] = []
            for event in events[start : start + _APPEND_CHUNK]:
                data = event_to_dict(event)
                key = data.pop("key")  # kept in its own field, which the trim script reads
                if key is None:
                    args += ("0", "", dumps(data))
                else:
                    args += ("1", key, dumps(data))
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
        return [_decode(entry_id, fields) for entry_id, fields in entries]

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
        return {
            models[key]: [_decode(entry_id, fields) for entry_id, fields in entries]
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


def _decode(entry_id: bytes, fields: dict) -> Event:
    data = loads(fields[b"e"])
    key = fields.get(b"k")
    data["key"] = None if key is None else key.decode("utf-8")
    return event_from_dict(data, seq=int(entry_id[2:]))
