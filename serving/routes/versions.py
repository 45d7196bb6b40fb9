"""Versions, roles and jobs: promote, roll back, retrain, and read lineage."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from onlearn.errors import SchemaViolation, UnknownJob
from onlearn.jobs import cancel_job, describe_job, enqueue_refit
from onlearn.records import JobState
from serving.responses import JSON
from serving.schemas import PromoteRequest, RetrainRequest, RollbackRequest

router = APIRouter(tags=["versions and rollout"])


def _actor(request: Request) -> str:
    return getattr(request.state, "principal", None) or "api"


@router.get("/models/{name}/versions", summary="Versions with lineage, roles and metrics")
async def versions(name: str, request: Request) -> JSON:
    engine = request.app.state.engine
    return JSON({"model": name, "versions": await run_in_threadpool(engine.versions, name)})


@router.get("/models/{name}/history", summary="Audit history of role changes")
async def history(name: str, request: Request) -> JSON:
    engine = request.app.state.engine
    return JSON({"model": name, "history": await run_in_threadpool(engine.role_history, name)})


@router.post("/models/{name}/versions/{version}/promote", summary="Give a role to a version")
async def promote(name: str, version: str, body: PromoteRequest, request: Request) -> JSON:
    engine = request.app.state.engine
    seq = await run_in_threadpool(
        engine.promote,
        name,
        version,
        body.role,
        actor=_actor(request),
        reason=body.reason or f"{version} promoted to {body.role} through the API",
        share=body.share,
    )
    rt = engine.runtime(name)
    return JSON({"seq": seq, "roles": dict(rt.roles), "canary_share": rt.canary_share})


@router.post("/models/{name}/rollback", summary="The previous champion answers again")
async def rollback(name: str, request: Request, body: RollbackRequest | None = None) -> JSON:
    engine = request.app.state.engine
    reason = (body.reason if body else None) or "rolled back through the API"
    seq = await run_in_threadpool(engine.rollback, name, actor=_actor(request), reason=reason)
    return JSON({"seq": seq, "roles": dict(engine.runtime(name).roles)})


@router.post("/models/{name}/retrain", summary="Start a batch refit job", status_code=202)
async def retrain(name: str, request: Request, body: RetrainRequest | None = None) -> JSON:
    engine = request.app.state.engine
    body = body or RetrainRequest()
    options = body.model_dump(exclude={"reason", "key"}, exclude_none=True)
    if not options.get("register_anyway"):
        options.pop("register_anyway", None)
    try:
        # Checked before a job exists: an option outside its allow-list or bounds is a 422.
        job = await run_in_threadpool(
            enqueue_refit,
            engine,
            name,
            reason=body.reason or "asked through the API",
            actor=_actor(request),
            options=options,
            key=body.key,
        )
    except SchemaViolation as e:
        raise e.at("body") from None
    return JSON({"job_id": job.job_id, "state": job.state.value}, status_code=202)


@router.post("/jobs/{job_id}/cancel", summary="Cancel a job: it stops at its next check")
async def cancel(job_id: str, request: Request) -> JSON:
    engine = request.app.state.engine
    found = await run_in_threadpool(
        cancel_job, engine.store, job_id, actor=_actor(request), now=engine.clock()
    )
    return JSON(describe_job(found))


@router.get("/jobs/{job_id}", summary="A job's state, result or error")
async def job(job_id: str, request: Request) -> JSON:
    engine = request.app.state.engine
    found = await run_in_threadpool(engine.store.jobs.get, job_id)
    if found is None:
        raise UnknownJob(f"no job {job_id}; POST /models/{{name}}/retrain returns job ids")
    if found.state is JobState.DONE and found.model in engine.runtimes:
        # Read your writes: a worker process wrote the job's effects (a new version and its
        # role) to the log; apply them here before saying "done", rather than let the next call
        # see this server's view of up to a poll interval ago.
        await run_in_threadpool(engine.catch_up, engine.runtime(found.model))
    return JSON(describe_job(found))


@router.get("/jobs", summary="Recent jobs, newest first")
async def jobs(request: Request, model: str | None = None, limit: int = 50) -> JSON:
    found = await run_in_threadpool(
        request.app.state.engine.store.jobs.list, model, max(1, min(limit, 500))
    )
    return JSON({"jobs": [describe_job(j) for j in found]})
