"""``SqliteLabelQueue``: items waiting for a human label, leased under the write lock."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from onlearn.records import (
    Event,
    QueueItem,
    QueueState,
)
from onlearn.store.base import (
    QUEUE_COUNTERS,
    ClaimOutcome,
    LabelOutcome,
    PushOutcome,
    QueueStats,
)
from onlearn.store.codec import (
    dumps,
    loads,
)
from onlearn.store.leases import (
    check_label_events,
    check_priority,
    check_pushable,
    claim_verdict,
    new_claim_id,
    passes_over,
    rank,
    skipper,
)
from onlearn.store.sqlite.connection import _Database, _guarded
from onlearn.store.sqlite.log import _append_events, _encode_payloads

_ITEM_COLUMNS = (
    "item_id, model, features, priority, enqueued_at, prediction_id, dedupe_key, proba,"
    " uncertainty, reason, state, attempts, skips, labeller, claim_id, lease_expires_at,"
    " finished_at, result, skipped_by"
)


def _item_from_row(row: Sequence[Any]) -> QueueItem:
    (
        item_id,
        model,
        features,
        priority,
        enqueued_at,
        prediction_id,
        dedupe_key,
        proba,
        uncertainty,
        reason,
        state,
        attempts,
        skips,
        labeller,
        claim_id,
        lease_expires_at,
        finished_at,
        result,
        skipped_by,
    ) = row
    return QueueItem(
        item_id=item_id,
        model=model,
        features=loads(features),
        priority=priority,
        enqueued_at=enqueued_at,
        prediction_id=prediction_id,
        dedupe_key=dedupe_key,
        proba=None if proba is None else loads(proba),
        uncertainty=uncertainty,
        reason=reason,
        state=QueueState(state),
        attempts=attempts,
        skips=skips,
        labeller=labeller,
        claim_id=claim_id,
        lease_expires_at=lease_expires_at,
        finished_at=finished_at,
        result=None if result is None else loads(result),
        skipped_by=skipped_by,
    )


def _item_row(item: QueueItem) -> tuple:
    """The values of ``_ITEM_COLUMNS`` for ``item``."""
    return (
        item.item_id,
        item.model,
        dumps(item.features),
        float(item.priority),
        item.enqueued_at,
        item.prediction_id,
        item.dedupe_key,
        None if item.proba is None else dumps(item.proba),
        item.uncertainty,
        item.reason,
        item.state.value,
        item.attempts,
        item.skips,
        item.labeller,
        item.claim_id,
        item.lease_expires_at,
        item.finished_at,
        None if item.result is None else dumps(item.result),
        item.skipped_by,
    )


# leases.passes_over as SQL, with the labeller as its parameter (NULL: nobody is passed over).
_NOT_SKIPPED_BY = " AND (?2 IS NULL OR skipped_by IS NULL OR skipped_by != ?2)"
_INSERT_ITEM = f"INSERT INTO queue_items ({_ITEM_COLUMNS}) VALUES ({','.join('?' * 19)})"
_SELECT_ITEM = f"SELECT {_ITEM_COLUMNS} FROM queue_items WHERE model = ? AND item_id = ?"
# Items that leave the waiting states free their dedupe key (the unique index covers waiting
# items only); this is the statement that writes such an end, shared by label and complete.
_DONE_SQL = (
    "UPDATE queue_items SET state = 'done', result = ?, finished_at = ?,"
    " lease_expires_at = NULL WHERE model = ? AND item_id = ?"
)
# Both counts read the partial indexes; the counters row may not exist yet. One statement, so
# the numbers are of one moment.
_STATS_SQL = f"""SELECT
    (SELECT count(*) FROM queue_items WHERE model = ?1 AND state = 'queued'),
    (SELECT count(*) FROM queue_items WHERE model = ?1 AND state = 'claimed'),
    {", ".join(f"coalesce(c.{name}, 0)" for name in QUEUE_COUNTERS)}
    FROM (SELECT 1) LEFT JOIN queue_counters AS c ON c.model = ?1"""


def _bump(conn: sqlite3.Connection, model: str, counter: str, by: int = 1) -> None:
    """Add ``by`` to one of the model's queue counters, inside the caller's transaction."""
    assert counter in QUEUE_COUNTERS
    conn.execute(
        f"INSERT INTO queue_counters (model, {counter}) VALUES (?, ?)"
        f" ON CONFLICT (model) DO UPDATE SET {counter} = {counter} + excluded.{counter}",
        (model, by),
    )


def _done(item: QueueItem, result: Any, now: float) -> QueueItem:
    """``item`` as ``_DONE_SQL`` leaves it."""
    return dataclasses.replace(
        item, state=QueueState.DONE, result=result, finished_at=now, lease_expires_at=None
    )


class SqliteLabelQueue:
    """One row per item; counters in their own table. Every change is one ``BEGIN IMMEDIATE``
    transaction, so the read that picks items and the write that leases them cannot interleave
    with another process's: two claims never get the same item."""

    def __init__(self, db: _Database):
        self._db = db

    @_guarded("push to queue")
    def push(self, item: QueueItem, *, max_size: int) -> PushOutcome:
        check_pushable(item)
        row = _item_row(item)  # encode before taking the write lock
        model = item.model
        conn = self._db.fast()
        with self._db.transaction(conn):
            # Pushing an item id again is a duplicate too, so that a retried push is harmless.
            found = conn.execute(
                "SELECT item_id FROM queue_items WHERE model = ? AND item_id = ?",
                (model, item.item_id),
            ).fetchone()
            if found is None and item.dedupe_key is not None:
                # Written as the index's WHERE, so that SQLite reads the partial index.
                found = conn.execute(
                    "SELECT item_id FROM queue_items WHERE model = ? AND dedupe_key = ?"
                    " AND dedupe_key IS NOT NULL AND state IN ('queued', 'claimed')",
                    (model, item.dedupe_key),
                ).fetchone()
            if found is not None:
                _bump(conn, model, "duplicates")
                return PushOutcome("duplicate", found[0])
            evicted = None
            # Count no further than the bound: a full queue is the usual state.
            (depth,) = conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM queue_items"
                " WHERE model = ? AND state = 'queued' LIMIT ?)",
                (model, max(max_size, 0)),
            ).fetchone()
            if depth >= max_size:
                victim = conn.execute(
                    "SELECT item_id, priority, enqueued_at FROM queue_items"
                    " WHERE model = ? AND state = 'queued'"
                    " ORDER BY priority, enqueued_at DESC, item_id DESC LIMIT 1",
                    (model,),
                ).fetchone()
                if victim is None or rank(item) >= (-victim[1], victim[2], victim[0]):
                    _bump(conn, model, "rejected")
                    return PushOutcome("rejected")
                # push has no clock: the new item's enqueued_at is when the victim left.
                conn.execute(
                    "UPDATE queue_items SET state = 'evicted', finished_at = ?"
                    " WHERE model = ? AND item_id = ?",
                    (item.enqueued_at, model, victim[0]),
                )
                _bump(conn, model, "evicted")
                evicted = victim[0]
            conn.execute(_INSERT_ITEM, row)
            _bump(conn, model, "pushed")
        return PushOutcome("queued", item.item_id, evicted)

    @_guarded("peek queue")
    def peek(self, model: str, limit: int, *, passing_over: str | None = None) -> list[QueueItem]:
        if limit <= 0:
            return []
        rows = (
            self._db.fast()
            .execute(
                f"SELECT {_ITEM_COLUMNS} FROM queue_items WHERE model = ? AND state = 'queued'"
                + _NOT_SKIPPED_BY
                + " ORDER BY priority DESC, enqueued_at, item_id LIMIT ?",
                (model, passing_over, limit),
            )
            .fetchall()
        )
        return [_item_from_row(row) for row in rows]

    @_guarded("reprioritize queue")
    def reprioritize(self, model: str, priorities: dict[str, float]) -> None:
        for priority in priorities.values():
            check_priority(priority)
        if not priorities:
            return
        rows = [(float(p), model, item_id) for item_id, p in priorities.items()]
        conn = self._db.fast()
        with self._db.transaction(conn):
            conn.executemany(
                "UPDATE queue_items SET priority = ?"
                " WHERE model = ? AND item_id = ? AND state = 'queued'",
                rows,
            )

    @staticmethod
    def _release_expired(conn: sqlite3.Connection, model: str, now: float) -> int:
        released = conn.execute(
            "UPDATE queue_items SET state = 'queued', lease_expires_at = NULL"
            " WHERE model = ? AND state = 'claimed' AND lease_expires_at <= ?",
            (model, now),
        ).rowcount
        if released:
            _bump(conn, model, "expired", released)
        return released

    @_guarded("claim from queue")
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
        conn = self._db.fast()
        # One transaction from release to lease: the items picked are leased before any other
        # connection can read them as queued.
        with self._db.transaction(conn):
            self._release_expired(conn, model, now)
            if limit <= 0:
                return []
            if item_ids is None:
                rows = conn.execute(
                    f"SELECT {_ITEM_COLUMNS} FROM queue_items WHERE model = ? AND state = 'queued'"
                    + _NOT_SKIPPED_BY
                    + " ORDER BY priority DESC, enqueued_at, item_id LIMIT ?",
                    (model, labeller, limit),
                ).fetchall()
            else:
                rows = []
                for item_id in dict.fromkeys(item_ids):
                    row = conn.execute(
                        f"SELECT {_ITEM_COLUMNS} FROM queue_items"
                        " WHERE model = ? AND item_id = ? AND state = 'queued'",
                        (model, item_id),
                    ).fetchone()
                    if row is not None and not passes_over(_item_from_row(row), labeller):
                        rows.append(row)
                        if len(rows) == limit:
                            break
            claimed = [
                dataclasses.replace(
                    item,
                    state=QueueState.CLAIMED,
                    claim_id=new_claim_id(),
                    attempts=item.attempts + 1,
                    labeller=labeller,
                    lease_expires_at=now + lease_s,
                )
                for item in map(_item_from_row, rows)
            ]
            conn.executemany(
                "UPDATE queue_items SET state = 'claimed', claim_id = ?, attempts = ?,"
                " labeller = ?, lease_expires_at = ? WHERE model = ? AND item_id = ?",
                [
                    (i.claim_id, i.attempts, i.labeller, i.lease_expires_at, model, i.item_id)
                    for i in claimed
                ],
            )
        return claimed

    @_guarded("complete queue item")
    def complete(
        self, model: str, item_id: str, claim_id: str | None, result: dict, now: float
    ) -> ClaimOutcome:
        result_text = dumps(result)
        conn = self._db.fast()
        with self._db.transaction(conn):
            item, refused = self._verdict(conn, model, item_id, claim_id, now)
            if refused is not None:
                return ClaimOutcome(refused, item)
            conn.execute(_DONE_SQL, (result_text, now, model, item_id))
            _bump(conn, model, "labelled")
        return ClaimOutcome("ok", _done(item, loads(result_text), now))  # type: ignore[arg-type]

    @staticmethod
    def _verdict(
        conn: sqlite3.Connection, model: str, item_id: str, claim_id: str | None, now: float
    ) -> tuple[QueueItem | None, str | None]:
        """The item and why ``claim_id`` is refused for it (leases.claim_verdict), inside the
        caller's write transaction; ``unknown`` for no such item."""
        row = conn.execute(_SELECT_ITEM, (model, item_id)).fetchone()
        if row is None:
            return None, "unknown"
        item = _item_from_row(row)
        return item, claim_verdict(item, claim_id, now)

    @_guarded("label queue item")
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
        payloads = _encode_payloads(self._db, model, events)  # before taking the write lock
        # The durable connection, as the log's appends: the label is acknowledged after fsync.
        conn = self._db.durable()
        with self._db.transaction(conn):
            item, refused = self._verdict(conn, model, item_id, claim_id, now)
            if refused is not None:
                return LabelOutcome(refused, item)
            # The log's own append in this transaction: the lease check, the append and the
            # item's end commit together or not at all.
            seqs = _append_events(self._db, conn, model, events, payloads)
            stored = {"seq": max(seqs), **result}
            conn.execute(_DONE_SQL, (dumps(stored), now, model, item_id))
            _bump(conn, model, "labelled")
        return LabelOutcome("ok", _done(item, stored, now), seqs)  # type: ignore[arg-type]

    @_guarded("close answered queue items")
    def close_answered(self, model: str, results: Mapping[str, dict], now: float) -> int:
        if not results:
            return 0
        rows = [(dumps(result), now, model, item_id) for item_id, result in results.items()]
        conn = self._db.fast()
        with self._db.transaction(conn):
            closed = 0
            for row in rows:
                closed += conn.execute(
                    "UPDATE queue_items SET state = 'done', result = ?, finished_at = ?,"
                    " lease_expires_at = NULL"
                    " WHERE model = ? AND item_id = ? AND state IN ('queued', 'claimed')",
                    row,
                ).rowcount
            if closed:
                _bump(conn, model, "answered_elsewhere", closed)
        return closed

    @_guarded("skip queue item")
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
        conn = self._db.fast()
        with self._db.transaction(conn):
            item, refused = self._verdict(conn, model, item_id, claim_id, now)
            if refused is not None:
                return ClaimOutcome(refused, item)
            assert item is not None
            skips = item.skips + 1
            by = skipper(item, claim_id, labeller)
            if skips >= max_skips:
                item = dataclasses.replace(
                    item,
                    state=QueueState.SKIPPED,
                    skips=skips,
                    lease_expires_at=None,
                    finished_at=now,
                    skipped_by=by,
                )
            else:
                item = dataclasses.replace(
                    item, state=QueueState.QUEUED, skips=skips, lease_expires_at=None, skipped_by=by
                )
            conn.execute(
                "UPDATE queue_items SET state = ?, skips = ?, lease_expires_at = NULL,"
                " finished_at = ?, skipped_by = ? WHERE model = ? AND item_id = ?",
                (item.state.value, skips, item.finished_at, by, model, item_id),
            )
            _bump(conn, model, "skipped")
        return ClaimOutcome("ok", item)

    @_guarded("release queue item")
    def release(self, model: str, item_id: str, claim_id: str, now: float) -> ClaimOutcome:
        conn = self._db.fast()
        with self._db.transaction(conn):
            item, refused = self._verdict(conn, model, item_id, claim_id, now)
            if refused is not None:
                return ClaimOutcome(refused, item)
            assert item is not None
            if item.state is QueueState.CLAIMED:
                item = dataclasses.replace(item, state=QueueState.QUEUED, lease_expires_at=None)
                conn.execute(
                    "UPDATE queue_items SET state = 'queued', lease_expires_at = NULL"
                    " WHERE model = ? AND item_id = ?",
                    (model, item_id),
                )
                _bump(conn, model, "released")
        return ClaimOutcome("ok", item)

    @_guarded("release expired leases")
    def release_expired(self, model: str, now: float) -> int:
        conn = self._db.fast()
        with self._db.transaction(conn):
            return self._release_expired(conn, model, now)

    @_guarded("get queue item")
    def get(self, model: str, item_id: str) -> QueueItem | None:
        row = self._db.fast().execute(_SELECT_ITEM, (model, item_id)).fetchone()
        return None if row is None else _item_from_row(row)

    @_guarded("queue stats")
    def stats(self, model: str) -> QueueStats:
        depth, claimed, *counters = self._db.fast().execute(_STATS_SQL, (model,)).fetchone()
        return QueueStats(
            depth=depth, claimed=claimed, **dict(zip(QUEUE_COUNTERS, counters, strict=True))
        )

    @_guarded("queue oldest item")
    def oldest_waiting(self, model: str) -> float | None:
        (at,) = (
            self._db.fast()
            .execute(
                "SELECT MIN(enqueued_at) FROM queue_items"
                " WHERE model = ? AND state IN ('queued', 'claimed')",
                (model,),
            )
            .fetchone()
        )
        return at

    @_guarded("purge queue")
    def purge_finished(self, model: str, before: float) -> int:
        # Chunks of 2000: an item is a wide row with four index entries (5000 took up to 25 ms
        # of CPU under the write lock, benchmarks/purge.py).
        return self._db.delete_in_chunks(
            self._db.fast(),
            "DELETE FROM queue_items WHERE rowid IN ("
            " SELECT rowid FROM queue_items WHERE model = ? AND finished_at < ?"
            " AND state IN ('done', 'skipped', 'evicted') LIMIT ?)",
            (model, before),
            share=0.4,
        )
