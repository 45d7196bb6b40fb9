"""Health, readiness, model descriptions and the API docs of a running server."""

from __future__ import annotations

import re
import tomllib

from fastapi.routing import APIRoute

from tests.e2e.configs import MODELS, SHAPES_FEATURES
from tests.e2e.helpers import strict_json

ROUTES = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/models"),
    ("GET", "/models/{name}"),
    ("GET", "/models/{name}/metrics"),
    ("POST", "/models/{name}/predict"),
    ("POST", "/models/{name}/predict/batch"),
    ("POST", "/models/{name}/feedback"),
    ("POST", "/models/{name}/feedback/batch"),
}


def test_healthz_and_readyz(api):
    response = api.get("/healthz")
    assert response.status_code == 200 and strict_json(response) == {"status": "ok"}
    response = api.get("/readyz")
    assert response.status_code == 200
    assert strict_json(response) == {"status": "ready", "reason": "ok"}


def test_models_lists_every_served_model(api):
    response = api.get("/models")
    assert response.status_code == 200
    listed = {m["name"]: m for m in strict_json(response)["models"]}
    assert set(listed) == MODELS
    for m in listed.values():
        assert m["champion"] == "v1"
        assert isinstance(m["applied_seq"], int) and m["applied_seq"] >= 0
    assert listed["reg"]["task"] == "regression"
    assert listed["shapes"]["task"] == "classification"


def test_a_model_description_shows_its_schema_versions_and_counters(api):
    response = api.get("/models/shapes")
    assert response.status_code == 200
    described = strict_json(response)
    assert described["name"] == "shapes"
    assert described["task"] == "classification"
    assert described["classes"] == ["cat", "dog"]
    assert described["schema"] == {
        "features": tomllib.loads(SHAPES_FEATURES),
        "unknown_fields": "reject",
    }
    assert described["unknown_fields"] == "reject"
    assert described["pipeline"] == {"name": "logistic_regression"}
    assert described["prediction_ttl_s"] == 7 * 24 * 3600
    assert described["roles"] == {"champion": "v1"}
    assert [v["version"] for v in described["versions"]] == ["v1"]
    assert set(described["counters"]) == {"predictions", "labels_applied"}
    assert strict_json(api.get("/models/loose"))["unknown_fields"] == "drop"
    assert strict_json(api.get("/models/short"))["prediction_ttl_s"] == 1
    regression = strict_json(api.get("/models/reg"))
    assert regression["task"] == "regression" and regression["classes"] is None


def test_docs_serve_the_swagger_page(api):
    response = api.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "swagger-ui" in response.text and "/openapi.json" in response.text
    root = api.get("/", follow_redirects=False)
    assert root.is_redirect and root.headers["location"] == "/docs"


def documented(api) -> dict:
    response = api.get("/openapi.json")
    assert response.status_code == 200
    return strict_json(response)


def test_openapi_lists_every_route(api):
    from onlearn.config import Settings
    from serving.app import create_app

    spec = documented(api)
    # Each model's typed operations (serving/typed_openapi.py) are its concrete paths of a
    # route: /models/shapes/predict is the route /models/{name}/predict.
    listed = {
        (method.upper(), re.sub(r"^/models/([^/{]+)(?=/)", _template, path))
        for path, item in spec["paths"].items()
        for method in item
    }
    assert ROUTES <= listed
    served = {
        (method, path)
        for path, route in api_routes(create_app(Settings()).routes)
        if route.include_in_schema
        for method in route.methods
    }
    # No model of this server has a labelling queue: claiming and labelling, typed per model
    # with a queue, are operations of none.
    assert served - listed == {
        ("POST", "/models/{name}/queue/claim"),
        ("POST", "/models/{name}/queue/{item_id}/label"),
    }
    assert listed <= served


def _template(match: re.Match) -> str:
    return "/models/{name}" if match.group(1) in MODELS else match.group(0)


def api_routes(routes, prefix: str = ""):
    """(path, route) of every APIRoute, also inside included routers (FastAPI >= 0.16x keeps
    them as routers rather than copying their routes into the app)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, route
        included = getattr(route, "original_router", None)
        if included is not None:
            context = getattr(route, "include_context", None)
            yield from api_routes(included.routes, prefix + getattr(context, "prefix", ""))


def test_openapi_documents_request_and_response_bodies(api):
    spec = documented(api)
    schemas = spec["components"]["schemas"]
    for name in (
        "ShapesPredictRequest",
        "ShapesPredictResponse",
        "ShapesPredictBatchRequest",
        "ShapesPredictBatchResponse",
        "ShapesFeedbackRequest",
        "FeedbackResponse",
        "ShapesFeedbackBatchRequest",
        "FeedbackBatchResponse",
    ):
        assert name in schemas, name
    predict = spec["paths"]["/models/shapes/predict"]["post"]
    assert "requestBody" in predict and "422" in predict["responses"]
    ok = predict["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/ShapesPredictResponse"}
    feedback = spec["paths"]["/models/shapes/feedback"]["post"]
    assert any(p["name"] == "wait" and p["in"] == "query" for p in feedback["parameters"])
