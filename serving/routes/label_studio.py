"""Label Studio's ML backend protocol, per model: the URL to type in Label Studio is
``http://HOST:PORT/label-studio/{name}``. The work is :mod:`onlearn.label_studio`'s; these
routes take the bodies Label Studio sends (its fields as it names them, more allowed) and
answer what it reads. HTTP Basic is accepted here (serving/auth.py): the password is an API key.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import ConfigDict, Field

from onlearn.label_studio import LabelStudioBackend
from serving.responses import JSON
from serving.schemas import Strict

router = APIRouter(tags=["label studio"])
PREFIX = "/label-studio/{name}"


class _LabelStudioBody(Strict):
    # Label Studio sends more than onlearn reads (project counters, task metadata).
    model_config = ConfigDict(extra="allow")


class LabelStudioSetupRequest(_LabelStudioBody):
    project: str | None = Field(None, description='Label Studio\'s "<project id>.<created at>".')
    # Required, as Label Studio always sends it: the document says what the route refuses.
    schema_: str = Field(alias="schema", description="The project's label config (XML).")


class LabelStudioPredictRequest(_LabelStudioBody):
    tasks: list[Any] = Field(description='Tasks, each {"id", "data": {feature: value}}.')
    label_config: str = Field(description="The project's label config (XML).")
    project: str | None = None


class LabelStudioWebhookRequest(_LabelStudioBody):
    action: str = Field(
        description="ANNOTATION_CREATED, ANNOTATIONS_CREATED, ANNOTATION_UPDATED and "
        "ANNOTATIONS_DELETED are learned; other actions are answered and ignored."
    )


def _backend(request: Request) -> LabelStudioBackend:
    settings = request.app.state.settings
    return LabelStudioBackend(request.app.state.engine, max_tasks=settings.limits.max_batch_rows)


@router.get(f"{PREFIX}/health", summary="Label Studio: is the backend up (and the model served)")
async def health(name: str, request: Request) -> JSON:
    return JSON(_backend(request).health(name))


@router.post(
    f"{PREFIX}/setup",
    summary="Label Studio: check the label config against the model; answers the model version",
    description="422 names what does not match: choices that are no class of the model, "
    "classes without a choice, a multiple choice, a regression model.",
)
async def setup(name: str, body: LabelStudioSetupRequest, request: Request) -> JSON:
    return JSON(_backend(request).setup(name, body.model_dump(by_alias=True)))


@router.post(
    f"{PREFIX}/predict",
    summary="Label Studio: one prediction per task (score = the model's confidence)",
    description="Each result: the choice of the answering version, `score` its highest "
    "probability (order tasks by score, lowest first, for uncertainty sampling), and "
    "`model_version` (version and learning epoch: it changes as the model learns).",
)
async def predict(name: str, body: LabelStudioPredictRequest, request: Request) -> JSON:
    return JSON(_backend(request).predict(name, body.model_dump()))


@router.post(
    f"{PREFIX}/webhook",
    summary="Label Studio: learn from annotations (created, updated, deleted)",
    description="An annotation is a label from a person (source human, the annotator as "
    "labeller), keyed by the annotation: delivered twice, it is learned once. An update is a "
    "correction; a deletion a retraction (the model keeps what it learned; refits leave the "
    "label out). 409: the annotation's label differs from the one recorded for it.",
)
async def webhook(name: str, body: LabelStudioWebhookRequest, request: Request) -> JSON:
    return JSON(await _backend(request).webhook(name, body.model_dump()))


@router.post(
    f"{PREFIX}/train",
    summary="Label Studio: 'Start Training' (nothing to start: each annotation is learned as it "
    "comes)",
    description="Label Studio posts here (or START_TRAINING to the webhook) when asked to train. "
    "onlearn learns online and refits through its own worker (`POST /models/{name}/retrain`, "
    "admin), so the call is answered and changes nothing.",
)
async def train(name: str, body: _LabelStudioBody, request: Request) -> JSON:
    return JSON(_backend(request).train(name))
