"""Jobs for the training worker, as the API and the triggers make them: enqueue a refit (its
options checked first), cancel one, describe one. The worker (:mod:`onlearn.background.worker`) runs them;
this module is what the serving process needs, without the worker's machinery.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from onlearn.errors import JobConflict, UnknownJob
from onlearn.records import Job, JobState
from onlearn.refit_options import resolve_options

if TYPE_CHECKING:
    from onlearn.engine import Engine

REFIT, EVALUATE, SNAPSHOT = "refit", "evaluate", "snapshot"
JOB_KINDS = (REFIT, EVALUATE, SNAPSHOT)


def new_job(
    kind: str, model: str, params: Mapping[str, Any], *, at: float, key: str | None = None
) -> Job:
    return Job(
        job_id=uuid.uuid4().hex,
        kind=kind,
        model=model,
        params=dict(params),
        created_at=at,
        key=key,
    )


def describe_job(job: Job) -> dict[str, Any]:
    """A job as the API shows it (``GET /jobs``)."""
    return {
        "job_id": job.job_id,
        "kind": job.kind,
        "model": job.model,
        "params": dict(job.params),
        "state": job.state.value,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "worker": job.worker,
        "committed": job.committed,
        "result": dict(job.result) if job.result is not None else None,
        "error": job.error,
    }


def enqueue_refit(
    engine: Engine,
    model: str,
    *,
    reason: str,
    actor: str,
    options: Mapping | None = None,
    key: str | None = None,
) -> Job:
    """A refit job for ``model``, asked by a person or a trigger; the same ``key`` gives the same
    job. The options are checked first (:func:`onlearn.refit_options.resolve_options`): a bad one
    raises :class:`~onlearn.errors.SchemaViolation` and no job exists."""
    rt = engine.runtime(model)
    options = dict(options or {})
    resolve_options(options, rt.config)
    job = new_job(
        REFIT,
        model,
        {"reason": reason, "actor": actor, "options": options},
        at=engine.clock(),
        key=key,
    )
    return engine.store.jobs.enqueue(job)


def cancel_job(store, job_id: str, *, actor: str, now: float) -> Job:
    """Cancel a job: a queued one never runs, a running one stops at its next check and writes
    nothing. Raises :class:`~onlearn.errors.UnknownJob`, or
    :class:`~onlearn.errors.JobConflict` (409) when it already wrote (or is writing) its result
    or has ended; cancelling a cancelled job is fine."""
    job = store.jobs.cancel(job_id, now, reason=f"cancelled by {actor}")
    if job is None:
        raise UnknownJob(f"no job {job_id}; GET /jobs lists them")
    if job.state is JobState.CANCELLED:
        return job
    registered = (job.result or {}).get("registered")
    if registered:
        raise JobConflict(
            f"job {job_id} already registered its version {registered} of {job.model!r}; "
            f"cancelling it cannot undo that: take the role away instead (`onlearn models "
            f"promote {job.model} VERSION` of another version, or `onlearn models rollback "
            f"{job.model}`)"
        )
    if job.committed:
        raise JobConflict(
            f"job {job_id} is registering its version of {job.model!r}: it can no longer be "
            "cancelled; once it is done, take the role away from the version it registered"
        )
    raise JobConflict(f"job {job_id} has ended ({job.state.value}); there is nothing to cancel")
