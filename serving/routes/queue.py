from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from onlearn.errors import SchemaViolation
from serving.errors import at
from serving.responses import JSON
from serving.schemas import (
    ClaimRequest,
    ClaimResponse,
    FeedbackResponse,
    LabelRequest,
    ReleaseRequest,
    ReleaseResponse,
    SkipRequest,
    SkipResponse,
)

router = APIRouter(tags=["labelling queue"])


@router.post(
    "/models/{name}/queue/claim",
    summary="Lease the most useful items to label",
    response_model=None,
    responses={200: {"model": ClaimResponse}},
)
async def claim(name: str, request: Request, body: ClaimRequest | None = None) -> JSON:
    body = body or ClaimRequest()
    labelling = request.app.state.engine.labelling
    try:
        items = await run_in_threadpool(
            labelling.claim, name, limit=body.limit, lease_s=body.lease_s, labeller=body.labeller
        )
    except SchemaViolation as e:
        raise at(e) from None
    return JSON({"items": items})


@router.post(
    "/models/{name}/queue/{item_id}/label",
    summary="Label a claimed item (becomes feedback from a person)",
    description="The lease check, the label's append to the model's log and the item's end "
    "are one atomic step: 409 means the label was not used (another labeller holds or labelled "
    "the item; without claim_id, someone's lease is live); 410: the item left the queue.",
    response_model=None,
    responses={200: {"model": FeedbackResponse}},
)
async def label(name: str, item_id: str, body: LabelRequest, request: Request) -> JSON:
    labelling = request.app.state.engine.labelling
    try:
        result = await labelling.label_async(
            name,
            item_id,
            body.label,
            claim_id=body.claim_id,
            labeller=body.labeller,
            correction=body.correction,
        )
    except SchemaViolation as e:
        raise at(e) from None
    return JSON(result)


@router.post(
    "/models/{name}/queue/{item_id}/skip",
    summary="Skip an item: back in the queue for others (the skipper's claims pass it over)",
    description="After max_skips skips the item leaves the queue (state skipped). 409: someone "
    "else holds the item, or it is labelled; 410: it left the queue (skipped out or evicted).",
    response_model=None,
    responses={200: {"model": SkipResponse}},
)
async def skip(name: str, item_id: str, request: Request, body: SkipRequest | None = None) -> JSON:
    body = body or SkipRequest()
    labelling = request.app.state.engine.labelling
    result = await run_in_threadpool(
        labelling.skip, name, item_id, claim_id=body.claim_id, labeller=body.labeller
    )
    return JSON(result)


@router.post(
    "/models/{name}/queue/{item_id}/release",
    summary="Give a claim back without a label: the item is queued again for anyone",
    description="For a labeller who stops (a page closed, `q` in `onlearn label`): the item "
    "need not wait for the lease to run out. No skip is counted. 409: the claim is not the "
    "item's (someone else claimed it since), or the item is labelled; 410: it left the queue.",
    response_model=None,
    responses={200: {"model": ReleaseResponse}},
)
async def release(name: str, item_id: str, body: ReleaseRequest, request: Request) -> JSON:
    labelling = request.app.state.engine.labelling
    result = await run_in_threadpool(labelling.release, name, item_id, claim_id=body.claim_id)
    return JSON(result)


@router.get("/models/{name}/queue/stats", summary="Depth, claims, labels, skips, expiries, budget")
async def stats(name: str, request: Request) -> JSON:
    return JSON(await run_in_threadpool(request.app.state.engine.labelling.stats, name))
