from __future__ import annotations

from fastapi import APIRouter, Request

from serving.responses import JSON
from serving.schemas import DriftResponse

router = APIRouter(tags=["models"])


@router.get("/models", summary="The served models")
async def list_models(request: Request) -> JSON:
    engine = request.app.state.engine
    return JSON(
        {
            "models": [
                {
                    "name": rt.name,
                    "task": rt.config.task.value,
                    "champion": rt.champion.version,
                    "applied_seq": rt.seq,
                    "labelling": rt.config.active is not None,  # has a labelling queue
                }
                for rt in engine.runtimes.values()
            ]
        }
    )


@router.get("/models/{name}", summary="Schema, versions by role, counters")
async def describe_model(name: str, request: Request) -> JSON:
    return JSON(request.app.state.engine.describe(name))


@router.get("/models/{name}/metrics", summary="Prequential metrics per version")
async def model_metrics(name: str, request: Request) -> JSON:
    return JSON(request.app.state.engine.metrics(name))


@router.get(
    "/models/{name}/drift",
    summary="Input drift per feature, prediction drift, concept drift alarms, estimated accuracy",
    responses={200: {"model": DriftResponse}},
)
async def model_drift(name: str, request: Request) -> JSON:
    from starlette.concurrency import run_in_threadpool

    return JSON(await run_in_threadpool(request.app.state.engine.drift, name))
