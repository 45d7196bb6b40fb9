"""``SqliteJobQueue``: the training worker's jobs, with leases, retries and cancellation."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Sequence
from typing import Any

from onlearn.records import (
    Job,
    JobState,
)
from onlearn.store.codec import (
    dumps,
    loads,
)
from onlearn.store.leases import (
    cancellable,
    check_job,
    reclaim_error,
)
from onlearn.store.sqlite.connection import _Database, _guarded

_JOB_COLUMNS = (
    "job_id, kind, model, params, created_at, key, state, attempts, max_attempts, run_after,"
    " worker, lease_expires_at, updated_at, result, error, committed"
)


def _job_from_row(row: Sequence[Any]) -> Job:
    (
        job_id,
        kind,
        model,
        params,
        created_at,
        key,
        state,
        attempts,
        max_attempts,
        run_after,
        worker,
        lease_expires_at,
        updated_at,
        result,
        error,
        committed,
    ) = row
    return Job(
        job_id=job_id,
        kind=kind,
        model=model,
        params=loads(params),
        created_at=created_at,
        key=key,
        state=JobState(state),
        attempts=attempts,
        max_attempts=max_attempts,
        run_after=run_after,
        worker=worker,
        lease_expires_at=lease_expires_at,
        updated_at=updated_at,
        result=None if result is None else loads(result),
        error=error,
        committed=bool(committed),
    )


_SELECT_JOB = f"SELECT {_JOB_COLUMNS} FROM jobs WHERE job_id = ?"


class SqliteJobQueue:
    """One row per job, on the durable connection: jobs are few and a lost "done" reruns a refit."""

    def __init__(self, db: _Database):
        self._db = db

    @_guarded("enqueue job")
    def enqueue(self, job: Job) -> Job:
        check_job(job)
        row = (
            job.job_id,
            job.kind,
            job.model,
            dumps(job.params),
            job.created_at,
            job.key,
            job.state.value,
            job.attempts,
            job.max_attempts,
            job.run_after,
            job.worker,
            job.lease_expires_at,
            job.updated_at,
            None if job.result is None else dumps(job.result),
            job.error,
            int(job.committed),
        )
        conn = self._db.durable()
        with self._db.transaction(conn):
            found = conn.execute(_SELECT_JOB, (job.job_id,)).fetchone()
            if found is None and job.key is not None:
                found = conn.execute(
                    f"SELECT {_JOB_COLUMNS} FROM jobs WHERE key = ?", (job.key,)
                ).fetchone()
            if found is not None:
                return _job_from_row(found)
            conn.execute(f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES ({','.join('?' * 16)})", row)
        return job

    @_guarded("claim job")
    def claim(
        self, worker: str, *, lease_s: float, now: float, kinds: Sequence[str] | None = None
    ) -> Job | None:
        if kinds is not None and not kinds:
            return None
        kinds = list(kinds or ())
        kind_filter = f" AND kind IN ({','.join('?' * len(kinds))})" if kinds else ""
        # "state IN (...)" repeats the partial index's condition, which lets SQLite use it.
        sql = (
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state IN ('queued', 'running')"
            " AND ((state = 'queued' AND run_after <= ?)"
            f" OR (state = 'running' AND lease_expires_at <= ?)){kind_filter}"
            " ORDER BY created_at, job_id LIMIT 1"
        )
        conn = self._db.durable()
        # Picking and leasing in one transaction: two workers never lease the same job.
        with self._db.transaction(conn):
            while True:
                row = conn.execute(sql, (now, now, *kinds)).fetchone()
                if row is None:
                    return None
                job = _job_from_row(row)
                if job.state is JobState.RUNNING and job.attempts >= job.max_attempts:
                    # Its worker died on the last allowed attempt: a job that kills its worker
                    # must not be handed out forever.
                    conn.execute(
                        "UPDATE jobs SET state = 'failed', error = ?, lease_expires_at = NULL,"
                        " updated_at = ? WHERE job_id = ?",
                        (reclaim_error(job), now, job.job_id),
                    )
                    continue
                job = dataclasses.replace(
                    job,
                    state=JobState.RUNNING,
                    attempts=job.attempts + 1,
                    worker=worker,
                    lease_expires_at=now + lease_s,
                    updated_at=now,
                )
                conn.execute(
                    "UPDATE jobs SET state = 'running', attempts = ?, worker = ?,"
                    " lease_expires_at = ?, updated_at = ? WHERE job_id = ?",
                    (job.attempts, worker, job.lease_expires_at, now, job.job_id),
                )
                return job

    @staticmethod
    def _held(conn: sqlite3.Connection, job_id: str, worker: str) -> Job | None:
        row = conn.execute(_SELECT_JOB, (job_id,)).fetchone()
        if row is None:
            return None
        job = _job_from_row(row)
        return job if job.state is JobState.RUNNING and job.worker == worker else None

    @_guarded("heartbeat job")
    def heartbeat(self, job_id: str, worker: str, *, lease_s: float, now: float) -> bool:
        conn = self._db.durable()
        with self._db.transaction(conn):
            return bool(
                conn.execute(
                    "UPDATE jobs SET lease_expires_at = ?, updated_at = ?"
                    " WHERE job_id = ? AND state = 'running' AND worker = ?",
                    (now + lease_s, now, job_id, worker),
                ).rowcount
            )

    @_guarded("complete job")
    def complete(self, job_id: str, worker: str, result: dict, now: float) -> Job | None:
        result_text = dumps(result)
        conn = self._db.durable()
        with self._db.transaction(conn):
            row = conn.execute(_SELECT_JOB, (job_id,)).fetchone()
            if row is None:
                return None
            job = _job_from_row(row)
            if job.state is JobState.DONE:
                return job
            if job.state is not JobState.RUNNING or job.worker != worker:
                return None
            conn.execute(
                "UPDATE jobs SET state = 'done', result = ?, lease_expires_at = NULL,"
                " updated_at = ? WHERE job_id = ?",
                (result_text, now, job_id),
            )
        return dataclasses.replace(
            job,
            state=JobState.DONE,
            result=loads(result_text),
            lease_expires_at=None,
            updated_at=now,
        )

    @_guarded("fail job")
    def fail(
        self, job_id: str, worker: str, error: str, now: float, *, retry_in: float | None
    ) -> Job | None:
        conn = self._db.durable()
        with self._db.transaction(conn):
            job = self._held(conn, job_id, worker)
            if job is None:
                return None
            if retry_in is None or job.attempts >= job.max_attempts:
                job = dataclasses.replace(job, state=JobState.FAILED)
            else:
                job = dataclasses.replace(job, state=JobState.QUEUED, run_after=now + retry_in)
            job = dataclasses.replace(job, error=error, lease_expires_at=None, updated_at=now)
            conn.execute(
                "UPDATE jobs SET state = ?, run_after = ?, error = ?, lease_expires_at = NULL,"
                " updated_at = ? WHERE job_id = ?",
                (job.state.value, job.run_after, error, now, job_id),
            )
        return job

    # cancel, commit and release each read and write in one write transaction (BEGIN
    # IMMEDIATE), as claim, complete and fail do. The race this prevents: a worker's commit
    # landing between cancel's read of ``committed`` and its write of 'cancelled' (the job would
    # end cancelled while its worker writes a version), or a claim or release in between
    # putting a job back in play that cancel then overwrites.

    @_guarded("cancel job")
    def cancel(self, job_id: str, now: float, *, reason: str) -> Job | None:
        conn = self._db.durable()
        with self._db.transaction(conn):
            row = conn.execute(_SELECT_JOB, (job_id,)).fetchone()
            if row is None:
                return None
            job = _job_from_row(row)
            if not cancellable(job):
                return job
            conn.execute(
                "UPDATE jobs SET state = 'cancelled', error = ?, lease_expires_at = NULL,"
                " updated_at = ? WHERE job_id = ?",
                (reason, now, job_id),
            )
        return dataclasses.replace(
            job, state=JobState.CANCELLED, error=reason, lease_expires_at=None, updated_at=now
        )

    @_guarded("commit job")
    def commit(self, job_id: str, worker: str, now: float) -> Job | None:
        conn = self._db.durable()
        with self._db.transaction(conn):
            job = self._held(conn, job_id, worker)
            if job is None or job.committed:
                return job
            conn.execute(
                "UPDATE jobs SET committed = 1, updated_at = ? WHERE job_id = ?", (now, job_id)
            )
        return dataclasses.replace(job, committed=True, updated_at=now)

    @_guarded("release job")
    def release(self, job_id: str, worker: str, now: float) -> Job | None:
        conn = self._db.durable()
        with self._db.transaction(conn):
            job = self._held(conn, job_id, worker)
            if job is None:
                return None
            job = dataclasses.replace(
                job,
                state=JobState.QUEUED,
                run_after=now,
                attempts=max(job.attempts - 1, 0),
                worker=None,
                lease_expires_at=None,
                updated_at=now,
            )
            conn.execute(
                "UPDATE jobs SET state = 'queued', run_after = ?, attempts = ?, worker = NULL,"
                " lease_expires_at = NULL, updated_at = ? WHERE job_id = ?",
                (now, job.attempts, now, job_id),
            )
        return job

    @_guarded("get job")
    def get(self, job_id: str) -> Job | None:
        row = self._db.durable().execute(_SELECT_JOB, (job_id,)).fetchone()
        return None if row is None else _job_from_row(row)

    @_guarded("list jobs")
    def list(self, model: str | None = None, limit: int = 100) -> list[Job]:
        if limit <= 0:
            return []
        where, args = ("", ()) if model is None else (" WHERE model = ?", (model,))
        rows = (
            self._db.durable()
            .execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs{where}"
                " ORDER BY created_at DESC, job_id DESC LIMIT ?",
                (*args, limit),
            )
            .fetchall()
        )
        return [_job_from_row(row) for row in rows]
