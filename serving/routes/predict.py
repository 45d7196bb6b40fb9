"""The predict routes, declared once: path, body and answers for the OpenAPI document; each is
served by the ``serving.fast`` handler it names (put in front), whose checks come from the same
body models."""

from __future__ import annotations

from fastapi import APIRouter, Request

from serving import fast
from serving.responses import JSON
from serving.schemas import (
    PredictBatchRequest,
    PredictBatchResponse,
    PredictRequest,
    PredictResponse,
)

router = APIRouter(tags=["predict"])


@router.post(
    "/models/{name}/predict",
    summary="Predict one row",
    response_model=None,
    responses={200: {"model": PredictResponse}},
)
@fast.serves(fast.predict)
async def predict(name: str, body: PredictRequest, request: Request) -> JSON:
    return await fast.predict(request)


@router.post(
    "/models/{name}/predict/batch",
    summary="Predict many rows in one call",
    response_model=None,
    responses={200: {"model": PredictBatchResponse}},
)
@fast.serves(fast.predict_batch)
async def predict_batch(name: str, body: PredictBatchRequest, request: Request) -> JSON:
    return await fast.predict_batch(request)
