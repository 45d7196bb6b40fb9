"""The feedback routes, declared once: path, body and answers for the OpenAPI document; each is
served by the ``serving.fast`` handler it names (put in front), whose checks come from the same
body models."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from serving import fast
from serving.responses import JSON
from serving.schemas import (
    FeedbackBatchRequest,
    FeedbackBatchResponse,
    FeedbackRequest,
    FeedbackResponse,
)

router = APIRouter(tags=["feedback"])


@router.post(
    "/models/{name}/feedback",
    summary="Give the true label of a prediction (or of inline features)",
    response_model=None,
    responses={200: {"model": FeedbackResponse}},
)
@fast.serves(fast.feedback)
async def feedback(
    name: str,
    body: FeedbackRequest,
    request: Request,
    wait: bool = Query(True, description="Answer once this process applied the label."),
) -> JSON:
    return await fast.feedback(request)


@router.post(
    "/models/{name}/feedback/batch",
    summary="Give many labels in one call",
    response_model=None,
    responses={200: {"model": FeedbackBatchResponse}},
)
@fast.serves(fast.feedback_batch)
async def feedback_batch(
    name: str,
    body: FeedbackBatchRequest,
    request: Request,
    wait: bool = Query(
        True, description="Answer once this process applied the labels; `wait` in the body wins."
    ),
) -> JSON:
    return await fast.feedback_batch(request)
