"""The JobQueue on Redis: a hash per job and sorted sets of job ids, driven by Lua scripts
(``lua/jobs_*.lua``, with ``lua/lib/quote.lua``); the comment below says why not a stream."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from onlearn.records import Job
from onlearn.store.codec import dumps, job_from_dict, job_to_dict, loads
from onlearn.store.leases import check_job, reclaim_error
from onlearn.store.redis.connection import Connection, guarded
from onlearn.store.redis.fields import decode, float_text, hash_reply, optional
from onlearn.store.redis.scripts import register

__all__ = ["RedisJobQueue"]

# Sorted sets and hashes with Lua scripts, not a stream with a consumer group. The contract
# decides: claim takes the oldest runnable job by (created_at, job_id) - a stream delivers in
# arrival order and cannot hold back a failed job until its run_after; leases run on the
# caller's clock (``now``, as in the other backends and the contract checks), while a consumer
# group's pending entries are reclaimed by Redis's idle time; ``kinds`` would need a stream per
# kind; and get, list, the idempotency key and "who holds the job" need a hash per job anyway.
#
# Layout (keys.py): one hash per job (``body``: the JSON of the fields that never change;
# the others one field each), ``active``: the queued and running job ids by created_at, which
# claim scans in order (ties: equal scores sort by member bytewise, which is job_id order), and
# ``all`` / ``model:<m>`` by created_at for list. A worker's queue is short (jobs are refits and
# snapshots), so scanning the active jobs is cheap, as in the other backends.

_JOB_BODY = ("job_id", "kind", "model", "params", "created_at", "key", "max_attempts")


def _job_hash(job: Job) -> dict[str, str]:
    data = job_to_dict(job)
    fields = {
        "body": dumps({name: data[name] for name in _JOB_BODY}),
        "kind": job.kind,
        "max_attempts": str(int(job.max_attempts)),
        "state": job.state.value,
        "attempts": str(int(job.attempts)),
        "run_after": float_text(job.run_after),
        # '1' or '0'; absent in a job stored by an earlier onlearn, which reads as '0'.
        "committed": "1" if job.committed else "0",
    }
    for name in ("worker", "error"):
        if data[name] is not None:
            fields[name] = data[name]
    for name in ("lease_expires_at", "updated_at"):
        if data[name] is not None:
            fields[name] = float_text(data[name])
    if job.result is not None:
        fields["result"] = dumps(job.result)
    return fields


def _job_from_hash(reply: Any) -> Job | None:
    fields = hash_reply(reply)
    if "body" not in fields:
        return None
    data = loads(fields["body"])
    result = fields.get("result")
    data.update(
        state=optional(fields, "state"),
        attempts=int(fields["attempts"]),
        run_after=float(fields["run_after"]),
        worker=optional(fields, "worker"),
        lease_expires_at=optional(fields, "lease_expires_at"),
        updated_at=optional(fields, "updated_at"),
        result=None if result is None else loads(result),
        error=optional(fields, "error"),
        committed=fields.get("committed") == b"1",
    )
    return job_from_dict(data)


class RedisJobQueue:
    """Jobs of every model; see the comment above for why not a stream."""

    def __init__(self, conn: Connection):
        self._conn = conn
        self._enqueue_script = register(conn.client, "jobs_enqueue", "quote")
        self._claim_script = register(conn.client, "jobs_claim", "quote")
        self._fail_poisoned_script = register(conn.client, "jobs_fail_poisoned")
        self._heartbeat_script = register(conn.client, "jobs_heartbeat")
        self._complete_script = register(conn.client, "jobs_complete")
        self._fail_script = register(conn.client, "jobs_fail")
        self._cancel_script = register(conn.client, "jobs_cancel")
        self._commit_script = register(conn.client, "jobs_commit")
        self._release_script = register(conn.client, "jobs_release")

    @guarded("enqueue job", idempotent=True)
    def enqueue(self, job: Job) -> Job:
        check_job(job)
        k = self._conn.keys
        fields = _job_hash(job)
        args: list[Any] = [
            k.job_prefix(),
            job.job_id,
            "0" if job.key is None else "1",
            job.key or "",
            float_text(job.created_at),
        ]
        for pair in fields.items():
            args += pair
        found = self._enqueue_script(
            keys=[
                k.job(job.job_id),
                k.job_keys(),
                k.jobs_active(),
                k.jobs_all(),
                k.jobs_of_model(job.model),
            ],
            args=args,
        )
        existing = None if found is None else _job_from_hash(found)
        return job if existing is None else existing

    @guarded("claim job")
    def claim(
        self, worker: str, *, lease_s: float, now: float, kinds: Sequence[str] | None = None
    ) -> Job | None:
        if kinds is not None and not kinds:
            return None
        k = self._conn.keys
        kind_args = ["0"] if kinds is None else ["1", *kinds]
        found, poisoned = self._claim_script(
            keys=[k.jobs_active()],
            args=[k.job_prefix(), worker, float_text(now), float_text(now + lease_s), *kind_args],
        )
        for reply in poisoned:
            # Its worker died on the last allowed attempt: a job that kills its worker must not
            # be handed out forever.
            fields = hash_reply(reply)
            dead = _job_from_hash(reply)
            assert dead is not None
            self._fail_poisoned_script(
                keys=[k.job(dead.job_id), k.jobs_active()],
                args=[
                    dead.job_id,
                    fields["attempts"],
                    fields["lease_expires_at"],
                    reclaim_error(dead),
                    float_text(now),
                ],
            )
        return _job_from_hash(found) if found else None

    @guarded("heartbeat job", idempotent=True)
    def heartbeat(self, job_id: str, worker: str, *, lease_s: float, now: float) -> bool:
        held = self._heartbeat_script(
            keys=[self._conn.keys.job(job_id)],
            args=[worker, float_text(now + lease_s), float_text(now)],
        )
        return bool(held)

    @guarded("complete job")
    def complete(self, job_id: str, worker: str, result: dict, now: float) -> Job | None:
        k = self._conn.keys
        found = self._complete_script(
            keys=[k.job(job_id), k.jobs_active()],
            args=[job_id, worker, dumps(result), float_text(now)],
        )
        return None if found is None else _job_from_hash(found)

    @guarded("fail job")
    def fail(
        self, job_id: str, worker: str, error: str, now: float, *, retry_in: float | None
    ) -> Job | None:
        k = self._conn.keys
        run_after = "" if retry_in is None else float_text(now + retry_in)
        found = self._fail_script(
            keys=[k.job(job_id), k.jobs_active()],
            args=[job_id, worker, error, float_text(now), run_after],
        )
        return None if found is None else _job_from_hash(found)

    # Cancelling or committing twice has the effect of once, so both are retried after a
    # dropped connection; a release is not (its reply says whether this call gave the job back).

    @guarded("cancel job", idempotent=True)
    def cancel(self, job_id: str, now: float, *, reason: str) -> Job | None:
        k = self._conn.keys
        found = self._cancel_script(
            keys=[k.job(job_id), k.jobs_active()], args=[job_id, reason, float_text(now)]
        )
        return None if found is None else _job_from_hash(found)

    @guarded("commit job", idempotent=True)
    def commit(self, job_id: str, worker: str, now: float) -> Job | None:
        found = self._commit_script(
            keys=[self._conn.keys.job(job_id)], args=[worker, float_text(now)]
        )
        return None if found is None else _job_from_hash(found)

    @guarded("release job")
    def release(self, job_id: str, worker: str, now: float) -> Job | None:
        found = self._release_script(
            keys=[self._conn.keys.job(job_id)], args=[worker, float_text(now)]
        )
        return None if found is None else _job_from_hash(found)

    @guarded("get job", idempotent=True)
    def get(self, job_id: str) -> Job | None:
        return _job_from_hash(self._conn.client.hgetall(self._conn.keys.job(job_id)))

    @guarded("list jobs", idempotent=True)
    def list(self, model: str | None = None, limit: int = 100) -> list[Job]:
        if limit <= 0:
            return []
        k = self._conn.keys
        index = k.jobs_all() if model is None else k.jobs_of_model(model)
        ids = self._conn.client.zrevrange(index, 0, limit - 1)
        pipe = self._conn.client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(k.job(decode(job_id)))
        jobs = (_job_from_hash(reply) for reply in pipe.execute())
        return [job for job in jobs if job is not None]
