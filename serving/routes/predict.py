from __future__ import annotations

from fastapi import APIRouter, Request

from onlearn.errors import FieldError, SchemaViolation
from serving.errors import at
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
async def predict(name: str, body: PredictRequest, request: Request) -> JSON:
    # async on purpose: a sync route pays a thread hop per request (half the throughput).
    try:
        prediction = request.app.state.engine.predict_one(name, body.features)
    except SchemaViolation as e:
        raise at(e, "features") from None
    return JSON(prediction.to_dict())


@router.post(
    "/models/{name}/predict/batch",
    summary="Predict many rows in one call",
    response_model=None,
    responses={200: {"model": PredictBatchResponse}},
)
async def predict_batch(name: str, body: PredictBatchRequest, request: Request) -> JSON:
    engine = request.app.state.engine
    check_batch_size(request, "rows", len(body.rows))
    try:
        predictions = engine.predict_many(name, [row.features for row in body.rows])
    except SchemaViolation as e:
        raise SchemaViolation(
            [
                FieldError(("body", "rows", f.loc[0], "features", *f.loc[1:]), f.rule, f.msg)
                for f in e.errors
            ]
        ) from None
    return JSON({"predictions": [p.to_dict() for p in predictions]})


def check_batch_size(request: Request, field: str, n: int) -> None:
    limit = request.app.state.settings.limits.max_batch_rows
    if n > limit:
        raise SchemaViolation(
            [
                FieldError(
                    ("body", field),
                    "max_items",
                    f"{field} must hold at most {limit} items, got {n}",
                )
            ]
        )
