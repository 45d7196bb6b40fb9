from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from serving.responses import JSON

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> JSON:
    return JSON({"status": "ok"})


@router.get("/readyz", summary="Readiness: store reachable and models loaded")
async def readyz(request: Request) -> JSON:
    # The store ping may wait out a socket timeout: never on the event loop, which serves predict.
    ready, reason = await run_in_threadpool(request.app.state.engine.ready)
    return JSON(
        {"status": "ready" if ready else "not ready", "reason": reason}, 200 if ready else 503
    )
