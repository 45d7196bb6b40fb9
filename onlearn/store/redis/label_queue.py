"""The LabelQueue on Redis: per model, sorted sets for the queued, claimed and finished items,
a dedupe hash, counters and a hash per item; every change is a Lua script
(``lua/label_queue_*.lua``, with ``lua/lib/quote.lua`` and ``lua/lib/label_queue.lua``)."""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

from onlearn.records import Event, QueueItem
from onlearn.store.base import (
    QUEUE_COUNTERS,
    AppendResult,
    ClaimOutcome,
    LabelOutcome,
    PushOutcome,
    QueueStats,
)
from onlearn.store.codec import dumps, loads, queue_item_from_dict, queue_item_to_dict
from onlearn.store.compact import Shapes
from onlearn.store.leases import check_label_events, check_priority, check_pushable, new_claim_id
from onlearn.store.redis.connection import Connection, guarded
from onlearn.store.redis.fields import decode, float_text, hash_reply, optional
from onlearn.store.redis.log import _encode_entry
from onlearn.store.redis.scripts import register
from onlearn.store.redis.shapes import SharesShapes

__all__ = ["RedisLabelQueue"]

# Per model: a sorted set of the queued items in claim order, a sorted set of the claimed ones by
# lease expiry, a sorted set of the finished ones by finished_at, a dedupe hash, a counters hash
# and one hash per item (see keys.py). Every call that changes more than one key, or changes
# what it has just read, is one script: Redis runs a script alone, so a claim's pick and lease,
# a push's dedupe check, eviction and insert, and a complete's verdict and write are each one
# step that no other replica's call can interleave with.
#
# The order. leases.rank is (-priority, enqueued_at, item_id), smallest first. The sorted set's
# score is -priority (a double, written by Python's repr so Redis parses the very same double);
# ties in score sort by member, bytewise, and the member is 16 hex digits of enqueued_at, encoded
# so that bytewise order is numeric order (the IEEE-754 bits, sign bit flipped for positives,
# every bit flipped for negatives), followed by the item id (UTF-8 bytewise order is Python's
# code point order). So ZRANGE 0 n-1 is the head of leases.rank and ZRANGE -1 -1 its tail.
# Scripts never compare members themselves (Lua's string comparison follows the server's
# locale): a full queue adds the new item and lets the sorted set say which one is last.
#
# Floats are never re-encoded by Lua (cjson writes 14 significant digits): an item's fields
# that never change are one JSON ``body`` written by Python, and every number a script stores
# (lease expiry, finished_at, scores) is a string Python computed.

# Items claimed per script call: bounds the claim ids sent and the time Redis spends in one
# script; a larger limit is served by several calls, each atomic.
_CLAIM_CHUNK = 1000
_QUEUE_PURGE_CHUNK = 1000
# The fields of an item that never change, kept as one JSON text; the others are hash fields.
_ITEM_BODY = (
    "item_id",
    "model",
    "features",
    "prediction_id",
    "dedupe_key",
    "proba",
    "uncertainty",
    "reason",
    "enqueued_at",
)


def _sortable(value: float) -> str:
    """16 hex digits whose bytewise order is the numeric order of the doubles.

    >>> values = [2.5, -1.5, 1e300, 0.0, -1e-300, 1e-300, -0.0]
    >>> sorted(values, key=_sortable) == sorted(values), _sortable(-0.0) == _sortable(0.0)
    (True, True)
    """
    (bits,) = struct.unpack(">Q", struct.pack(">d", float(value) + 0.0))  # + 0.0: no -0.0
    bits = bits ^ 0xFFFF_FFFF_FFFF_FFFF if bits >> 63 else bits | 1 << 63
    return f"{bits:016x}"


def _unsortable(member: str | bytes) -> float:
    """The enqueued_at a queue member starts with (the inverse of :func:`_sortable`).

    >>> [_unsortable(_sortable(v) + "id") for v in (1.5e9, -2.0, 0.0)]
    [1500000000.0, -2.0, 0.0]
    """
    bits = int(decode(member)[:16], 16)
    bits = bits ^ 1 << 63 if bits >> 63 else bits ^ 0xFFFF_FFFF_FFFF_FFFF
    (value,) = struct.unpack(">d", struct.pack(">Q", bits))
    return value


def _member(item: QueueItem) -> str:
    """The item's member in the queue's sorted set: its rank after the score (see above)."""
    return _sortable(item.enqueued_at) + item.item_id


def _optional_arg(value: str | None) -> tuple[str, str]:
    """A value a script may go without: "1" and the value, or "0" and ""."""
    return ("0", "") if value is None else ("1", value)


def _item_hash(item: QueueItem) -> dict[str, str]:
    data = queue_item_to_dict(item)
    fields = {
        "body": dumps({name: data[name] for name in _ITEM_BODY}),
        "state": item.state.value,
        "priority": float_text(item.priority),
        "score": float_text(-float(item.priority)),
        "member": _member(item),
        "attempts": str(int(item.attempts)),
        "skips": str(int(item.skips)),
    }
    if item.dedupe_key is not None:
        fields["dedupe"] = item.dedupe_key
    for name in ("labeller", "claim_id", "skipped_by"):
        if data[name] is not None:
            fields[name] = data[name]
    for name in ("lease_expires_at", "finished_at"):
        if data[name] is not None:
            fields[name] = float_text(data[name])
    if item.result is not None:
        fields["result"] = dumps(item.result)
    return fields


def _item_from_hash(reply: Any) -> QueueItem | None:
    fields = hash_reply(reply)
    if "body" not in fields:
        return None
    data = loads(fields["body"])
    result = fields.get("result")
    data.update(
        state=optional(fields, "state"),
        priority=float(fields["priority"]),
        attempts=int(fields["attempts"]),
        skips=int(fields["skips"]),
        labeller=optional(fields, "labeller"),
        claim_id=optional(fields, "claim_id"),
        lease_expires_at=optional(fields, "lease_expires_at"),
        finished_at=optional(fields, "finished_at"),
        result=None if result is None else loads(result),
        skipped_by=optional(fields, "skipped_by"),
    )
    return queue_item_from_dict(data)


class RedisLabelQueue(SharesShapes):
    """The labelling queue of every model; see the comment above for the layout and order.

    ``label`` appends to the model's log in the queue's own script, with the log's Lua function
    (``lua/lib/append_events.lua``) and entries encoded as the log encodes them, in the store's
    ``shapes``."""

    def __init__(self, conn: Connection, shapes: Shapes | None = None):
        self._conn = conn
        self._given_shapes = shapes
        libraries = ("quote", "label_queue")
        self._push_script = register(conn.client, "label_queue_push", *libraries)
        self._peek_script = register(conn.client, "label_queue_peek", *libraries)
        self._reprioritize_script = register(conn.client, "label_queue_reprioritize")
        self._claim_script = register(conn.client, "label_queue_claim", *libraries)
        self._complete_script = register(conn.client, "label_queue_complete", *libraries)
        self._skip_script = register(conn.client, "label_queue_skip", *libraries)
        self._label_script = register(conn.client, "label_queue_label", *libraries, "append_events")
        self._release_claim_script = register(conn.client, "label_queue_release_claim", *libraries)
        self._release_script = register(conn.client, "label_queue_release", *libraries)
        self._purge_script = register(conn.client, "label_queue_purge", "quote")
        self._close_script = register(conn.client, "label_queue_close", *libraries)

    def _item_keys(self, model: str, item_id: str) -> list[str]:
        """The keys of complete, skip, release and label: item, queue, leases, finished,
        counters, dedupe."""
        k = self._conn.keys
        return [
            k.queue_item(model, item_id),
            k.queue(model),
            k.queue_leases(model),
            k.queue_finished(model),
            k.queue_counters(model),
            k.queue_dedupe(model),
        ]

    @guarded("push to queue")
    def push(self, item: QueueItem, *, max_size: int) -> PushOutcome:
        check_pushable(item)
        k, model = self._conn.keys, item.model
        fields = _item_hash(item)
        args: list[Any] = [
            k.queue_item_prefix(model),
            item.item_id,
            "0" if item.dedupe_key is None else "1",
            item.dedupe_key or "",
            int(max_size),
            fields["score"],
            fields["member"],
            float_text(item.enqueued_at),
        ]
        for pair in fields.items():
            args += pair
        status, item_id, evicted = self._push_script(
            keys=[
                k.queue_item(model, item.item_id),
                k.queue(model),
                k.queue_dedupe(model),
                k.queue_counters(model),
                k.queue_finished(model),
                k.queue_waiting(model),
            ],
            args=args,
        )
        status = decode(status)
        if status == "rejected":
            return PushOutcome("rejected")
        return PushOutcome(status, decode(item_id), decode(evicted) or None)

    @guarded("peek queue", idempotent=True)
    def peek(self, model: str, limit: int, *, passing_over: str | None = None) -> list[QueueItem]:
        if limit <= 0:
            return []
        k = self._conn.keys
        args = [k.queue_item_prefix(model), limit, *_optional_arg(passing_over)]
        found = self._peek_script(keys=[k.queue(model)], args=args)
        return [item for item in map(_item_from_hash, found) if item is not None]

    @guarded("reprioritize queue", idempotent=True)
    def reprioritize(self, model: str, priorities: dict[str, float]) -> None:
        for priority in priorities.values():
            check_priority(priority)
        if not priorities:
            return
        k = self._conn.keys
        keys, args = [k.queue(model)], []
        for item_id, priority in priorities.items():
            keys.append(k.queue_item(model, item_id))
            args += [float_text(priority), float_text(-float(priority))]
        self._reprioritize_script(keys=keys, args=args)

    @guarded("claim from queue")
    def claim(
        self,
        model: str,
        *,
        limit: int,
        lease_s: float,
        labeller: str | None,
        now: float,
        item_ids: Sequence[str] | None = None,
    ) -> list[QueueItem]:
        k = self._conn.keys
        keys = [k.queue(model), k.queue_leases(model), k.queue_counters(model)]
        chosen = [] if item_ids is None else list(dict.fromkeys(item_ids))
        base = [
            k.queue_item_prefix(model),
            float_text(now),
            float_text(now + lease_s),
            "0" if labeller is None else "1",
            labeller or "",
        ]
        claimed: list[QueueItem] = []
        while True:
            # At least one call, even for limit 0: a claim releases expired leases first.
            want = max(0, min(limit - len(claimed), _CLAIM_CHUNK))
            if item_ids is not None:
                want = min(want, len(chosen))
            claim_ids = "".join(new_claim_id() for _ in range(want))
            mode = ["0"] if item_ids is None else ["1", *chosen]
            found = self._claim_script(keys=keys, args=[*base, want, claim_ids, *mode])
            claimed += [item for item in map(_item_from_hash, found) if item is not None]
            if len(found) < want or want == 0 or len(claimed) >= limit:
                return claimed

    def _finish(self, script: Any, model: str, item_id: str, args: list[Any]) -> ClaimOutcome:
        # The waiting set last: release's script does not need it, complete's and skip's do.
        keys = [*self._item_keys(model, item_id), self._conn.keys.queue_waiting(model)]
        reply = script(keys=keys, args=[item_id, *args])
        status = decode(reply[0])
        if status == "unknown":
            return ClaimOutcome("unknown")
        return ClaimOutcome(status, _item_from_hash(reply[1]))

    @guarded("complete queue item")
    def complete(
        self, model: str, item_id: str, claim_id: str | None, result: dict, now: float
    ) -> ClaimOutcome:
        args = [*_optional_arg(claim_id), dumps(result), float_text(now)]
        return self._finish(self._complete_script, model, item_id, args)

    @guarded("close answered queue items", idempotent=True)
    def close_answered(self, model: str, results: Mapping[str, dict], now: float) -> int:
        if not results:
            return 0
        k = self._conn.keys
        args: list[Any] = [k.queue_item_prefix(model), float_text(now)]
        for item_id, result in results.items():
            args += [item_id, dumps(result)]
        return self._close_script(
            keys=[
                k.queue(model),
                k.queue_leases(model),
                k.queue_finished(model),
                k.queue_counters(model),
                k.queue_dedupe(model),
                k.queue_waiting(model),
            ],
            args=args,
        )

    @guarded("skip queue item")
    def skip(
        self,
        model: str,
        item_id: str,
        claim_id: str | None,
        now: float,
        *,
        max_skips: int,
        labeller: str | None = None,
    ) -> ClaimOutcome:
        args = [*_optional_arg(claim_id), float_text(now), max_skips, *_optional_arg(labeller)]
        return self._finish(self._skip_script, model, item_id, args)

    @guarded("release queue item")
    def release(self, model: str, item_id: str, claim_id: str, now: float) -> ClaimOutcome:
        args = [*_optional_arg(claim_id), float_text(now)]
        return self._finish(self._release_claim_script, model, item_id, args)

    # Not retried after a dropped connection: the script may have appended (the caller's retry
    # with the same item and claim answers already_done with the seq it gave).
    @guarded("label queue item")
    def label(
        self,
        model: str,
        item_id: str,
        claim_id: str | None,
        events: Sequence[Event],
        result: dict,
        now: float,
    ) -> LabelOutcome:
        check_label_events(events)
        generation = self._conn.generation
        generation.refuse()  # a process that found its store changed appends nothing more
        k = self._conn.keys
        rest = {name: value for name, value in result.items() if name != "seq"}
        args: list[Any] = [item_id, *_optional_arg(claim_id), dumps(rest), float_text(now)]
        args.append(generation.id)  # the script's append_events checks it
        shapes = self._shapes
        for event in events:
            args += _encode_entry(shapes, model, event)
        keys = [
            *self._item_keys(model, item_id),
            k.log_head(model),
            k.log(model),
            k.log_keys(model),
            k.generation,
            k.queue_waiting(model),
        ]
        reply = self._label_script(keys=keys, args=args)
        status = decode(reply[0])
        if status == "unknown":
            return LabelOutcome("unknown")
        item = _item_from_hash(reply[1])
        if status != "ok":
            return LabelOutcome(status, item)
        raw = reply[2]
        return LabelOutcome(status, item, AppendResult([abs(s) for s in raw], [s > 0 for s in raw]))

    @guarded("release expired leases", idempotent=True)
    def release_expired(self, model: str, now: float) -> int:
        k = self._conn.keys
        return self._release_script(
            keys=[k.queue(model), k.queue_leases(model), k.queue_counters(model)],
            args=[k.queue_item_prefix(model), float_text(now)],
        )

    @guarded("get queue item", idempotent=True)
    def get(self, model: str, item_id: str) -> QueueItem | None:
        return _item_from_hash(
            self._conn.client.hgetall(self._conn.keys.queue_item(model, item_id))
        )

    @guarded("queue stats", idempotent=True)
    def stats(self, model: str) -> QueueStats:
        k = self._conn.keys
        # MULTI: the depth, the leases and the counters of one moment.
        pipe = self._conn.client.pipeline(transaction=True)
        pipe.zcard(k.queue(model))
        pipe.zcard(k.queue_leases(model))
        pipe.hmget(k.queue_counters(model), list(QUEUE_COUNTERS))
        depth, claimed, counters = pipe.execute()
        return QueueStats(
            depth=depth,
            claimed=claimed,
            **{name: int(value or 0) for name, value in zip(QUEUE_COUNTERS, counters, strict=True)},
        )

    @guarded("queue oldest item", idempotent=True)
    def oldest_waiting(self, model: str) -> float | None:
        k = self._conn.keys
        pipe = self._conn.client.pipeline(transaction=True)
        pipe.zrange(k.queue_waiting(model), 0, 0, withscores=True)
        pipe.zcard(k.queue_waiting(model))
        pipe.zcard(k.queue(model))
        pipe.zcard(k.queue_leases(model))
        oldest, waiting, queued, claimed = pipe.execute()
        if waiting == queued + claimed:
            return oldest[0][1] if oldest else None
        # Items pushed by an earlier onlearn are not in the waiting set: read the queued ones'
        # enqueued_at from their members, the claimed ones' from their hashes (a scan, until
        # those items are gone).
        return self._oldest_by_scan(model)

    def _oldest_by_scan(self, model: str) -> float | None:
        k = self._conn.keys
        client = self._conn.client
        ages = [_unsortable(m) for m in client.zrange(k.queue(model), 0, -1)]
        for item_id in client.zrange(k.queue_leases(model), 0, -1):
            member = client.hget(k.queue_item(model, decode(item_id)), "member")
            if member is not None:
                ages.append(_unsortable(member))
        return min(ages, default=None)

    @guarded("purge queue", idempotent=True)
    def purge_finished(self, model: str, before: float) -> int:
        k = self._conn.keys
        keys = [k.queue_finished(model), k.queue_dedupe(model)]
        args = [k.queue_item_prefix(model), float_text(before), _QUEUE_PURGE_CHUNK]
        total = 0
        while True:
            purged = self._purge_script(keys=keys, args=args)
            total += purged
            if purged < _QUEUE_PURGE_CHUNK:
                return total
