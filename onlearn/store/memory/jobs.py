"""``MemoryJobQueue``: the training worker's jobs, with leases, retries and cancellation."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence

from onlearn.records import (
    Job,
    JobState,
)
from onlearn.store.leases import (
    cancellable,
    check_job,
    job_order,
    reclaim_error,
)


class MemoryJobQueue:
    """Jobs in a dict; claim scans them in created_at order (a worker's queue is short)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._keys: dict[str, str] = {}

    def enqueue(self, job: Job) -> Job:
        check_job(job)
        with self._lock:
            existing = self._jobs.get(job.job_id)
            if existing is None and job.key is not None and job.key in self._keys:
                existing = self._jobs[self._keys[job.key]]
            if existing is not None:
                return existing
            self._jobs[job.job_id] = job
            if job.key is not None:
                self._keys[job.key] = job.job_id
            return job

    def claim(
        self, worker: str, *, lease_s: float, now: float, kinds: Sequence[str] | None = None
    ) -> Job | None:
        with self._lock:
            runnable = [
                job
                for job in self._jobs.values()
                if (kinds is None or job.kind in kinds)
                and (
                    (job.state is JobState.QUEUED and job.run_after <= now)
                    or (
                        job.state is JobState.RUNNING
                        and job.lease_expires_at is not None
                        and job.lease_expires_at <= now
                    )
                )
            ]
            for job in sorted(runnable, key=job_order):
                if job.state is JobState.RUNNING and job.attempts >= job.max_attempts:
                    # Its worker died on the last allowed attempt: a job that kills its worker
                    # must not be handed out forever.
                    self._jobs[job.job_id] = dataclasses.replace(
                        job,
                        state=JobState.FAILED,
                        error=reclaim_error(job),
                        lease_expires_at=None,
                        updated_at=now,
                    )
                    continue
                job = self._jobs[job.job_id] = dataclasses.replace(
                    job,
                    state=JobState.RUNNING,
                    attempts=job.attempts + 1,
                    worker=worker,
                    lease_expires_at=now + lease_s,
                    updated_at=now,
                )
                return job
            return None

    def _held(self, job_id: str, worker: str) -> Job | None:
        job = self._jobs.get(job_id)
        if job is None or job.state is not JobState.RUNNING or job.worker != worker:
            return None
        return job

    def heartbeat(self, job_id: str, worker: str, *, lease_s: float, now: float) -> bool:
        with self._lock:
            job = self._held(job_id, worker)
            if job is None:
                return False
            self._jobs[job_id] = dataclasses.replace(
                job, lease_expires_at=now + lease_s, updated_at=now
            )
            return True

    def complete(self, job_id: str, worker: str, result: dict, now: float) -> Job | None:
        with self._lock:
            done = self._jobs.get(job_id)
            if done is not None and done.state is JobState.DONE:
                return done
            job = self._held(job_id, worker)
            if job is None:
                return None
            job = self._jobs[job_id] = dataclasses.replace(
                job, state=JobState.DONE, result=dict(result), lease_expires_at=None, updated_at=now
            )
            return job

    def fail(
        self, job_id: str, worker: str, error: str, now: float, *, retry_in: float | None
    ) -> Job | None:
        with self._lock:
            job = self._held(job_id, worker)
            if job is None:
                return None
            if retry_in is None or job.attempts >= job.max_attempts:
                job = dataclasses.replace(job, state=JobState.FAILED)
            else:
                job = dataclasses.replace(job, state=JobState.QUEUED, run_after=now + retry_in)
            job = self._jobs[job_id] = dataclasses.replace(
                job, error=error, lease_expires_at=None, updated_at=now
            )
            return job

    def cancel(self, job_id: str, now: float, *, reason: str) -> Job | None:
        # Under the queue's lock, like commit: a commit cannot land between reading
        # ``committed`` here and writing CANCELLED, so no job ends both cancelled and committed.
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or not cancellable(job):
                return job
            job = self._jobs[job_id] = dataclasses.replace(
                job, state=JobState.CANCELLED, error=reason, lease_expires_at=None, updated_at=now
            )
            return job

    def commit(self, job_id: str, worker: str, now: float) -> Job | None:
        with self._lock:
            job = self._held(job_id, worker)
            if job is None or job.committed:
                return job
            job = self._jobs[job_id] = dataclasses.replace(job, committed=True, updated_at=now)
            return job

    def release(self, job_id: str, worker: str, now: float) -> Job | None:
        with self._lock:
            job = self._held(job_id, worker)
            if job is None:
                return None
            job = self._jobs[job_id] = dataclasses.replace(
                job,
                state=JobState.QUEUED,
                run_after=now,
                attempts=max(job.attempts - 1, 0),
                worker=None,
                lease_expires_at=None,
                updated_at=now,
            )
            return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def list(self, model: str | None = None, limit: int = 100) -> list[Job]:
        if limit <= 0:
            return []
        with self._lock:
            jobs = [j for j in self._jobs.values() if model is None or j.model == model]
        jobs.sort(key=job_order, reverse=True)
        return jobs[:limit]
