from __future__ import annotations

from fastapi import APIRouter, Query, Request

from onlearn.engine import FeedbackItem
from onlearn.errors import SchemaViolation
from serving.errors import at, detail_of, status_of
from serving.responses import JSON
from serving.routes.predict import check_batch_size
from serving.schemas import (
    FeedbackBatchRequest,
    FeedbackBatchResponse,
    FeedbackRequest,
    FeedbackResponse,
)

router = APIRouter(tags=["feedback"])


def _item(body: FeedbackRequest) -> FeedbackItem:
    return FeedbackItem(
        label=body.label,
        prediction_id=body.prediction_id,
        features=body.features,
        source=body.source,
        labeller=body.labeller,
        event_id=body.event_id,
    )


@router.post(
    "/models/{name}/feedback",
    summary="Give the true label of a prediction (or of inline features)",
    response_model=None,
    responses={200: {"model": FeedbackResponse}},
)
async def feedback(
    name: str,
    body: FeedbackRequest,
    request: Request,
    wait: bool = Query(True, description="Answer once this process applied the label."),
) -> JSON:
    try:
        result = await request.app.state.engine.feedback_one_async(name, _item(body), wait=wait)
    except SchemaViolation as e:
        raise at(e) from None
    return JSON({"seq": result.seq, "version": result.version, "applied": result.applied})


@router.post(
    "/models/{name}/feedback/batch",
    summary="Give many labels in one call",
    response_model=None,
    responses={200: {"model": FeedbackBatchResponse}},
)
async def feedback_batch(name: str, body: FeedbackBatchRequest, request: Request) -> JSON:
    check_batch_size(request, "items", len(body.items))
    try:
        results = await request.app.state.engine.feedback_many_async(
            name, [_item(i) for i in body.items], wait=body.wait
        )
    except SchemaViolation as e:
        raise at(e, "items") from None
    return JSON(
        {
            "results": [
                {"seq": r.seq, "version": r.version, "applied": r.applied}
                if r.error is None
                else {"error": {"status": status_of(r.error), "detail": detail_of(r.error)}}
                for r in results
            ]
        }
    )
