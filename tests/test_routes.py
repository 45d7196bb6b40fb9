"""Each route is declared once: the hot routes served by ``serving.fast`` take their path and
methods from their documented FastAPI route, and their checks from its body model."""

from __future__ import annotations

import pytest
from pydantic import BaseModel
from starlette.routing import Route

from onlearn.config import Settings
from serving import fast
from serving.app import create_app
from serving.routes import feedback, predict
from serving.schemas import FeedbackBatchRequest, FeedbackRequest, PredictRequest

HOT = {
    ("/models/{name}/predict", fast.predict),
    ("/models/{name}/predict/batch", fast.predict_batch),
    ("/models/{name}/feedback", fast.feedback),
    ("/models/{name}/feedback/batch", fast.feedback_batch),
}


def test_the_hot_paths_are_served_by_their_fast_handler_taken_from_one_declaration():
    declared = [
        route
        for router in (predict.router, feedback.router)
        for route in router.routes
        if hasattr(route.endpoint, "fast_handler")
    ]
    assert {(r.path, r.endpoint.fast_handler) for r in declared} == HOT
    routes = create_app(Settings(store_url="memory://")).router.routes
    # The fast handlers come first, each with its declaration's path and methods: a request
    # meets the handler before FastAPI's machinery, and no path is written twice.
    served = routes[: len(HOT)]
    assert all(type(r) is Route for r in served)
    assert {(r.path, r.endpoint) for r in served} == HOT
    for route in served:
        twin = next(r for r in declared if r.path == route.path)
        assert route.methods == twin.methods == {"POST"}
    assert not any(getattr(r, "endpoint", None) in dict(HOT).values() for r in routes[len(HOT) :])


def test_the_fast_checks_are_the_body_models_fields():
    assert fast.PREDICT == ({"features": fast.DICT}, {"key": fast.STRING})
    assert fast.PREDICT_BATCH == ({"rows": fast.LIST}, {})
    required, optional = fast.FEEDBACK
    assert required == {"label": fast.ANY}
    assert set(optional) == set(FeedbackRequest.model_fields) - {"label"}
    assert optional["features"] is fast.DICT and optional["source"] is fast.STRING
    assert fast.FEEDBACK_BATCH == ({"items": fast.LIST}, {"wait": fast.BOOL})

    # A field added to a body model is checked by the fast route without a second edit.
    class Grown(PredictRequest):
        tags: list[str] | None = None

    assert fast.checks_of(Grown)[1]["tags"] is fast.LIST
    assert set(fast.checks_of(FeedbackBatchRequest)[0]) == {"items"}


def test_a_body_field_the_fast_path_cannot_check_is_refused_when_the_app_is_built():
    class Odd(BaseModel):
        ratio: float

    with pytest.raises(TypeError, match="no fast check"):
        fast.checks_of(Odd)
