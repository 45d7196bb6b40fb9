"""The OpenAPI document, fuzzed against a running server: no generated request gets a 5xx, and
every answer is one the document declares (status code, content type, body schema).

The document is the server's own /openapi.json, aimed at what the server serves before it is
fuzzed: the ``name`` path parameter takes the served models' names (random names only reach the
404 of an unknown model), queue item ids are real ones, and ``features`` and labels follow the
models' feature schema (a model's schema is configuration, not part of the API's document).
Schemathesis then generates valid and invalid requests from it for every operation.

The run is bounded and reproducible: a fixed number of examples per operation, derandomized.
"""

from __future__ import annotations

import copy
import os
from collections import Counter
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation import GenerationMode

from tests.e2e.configs import FUZZ_MODELS
from tests.servers import ServerProcess

EXAMPLES_PER_OPERATION = int(os.environ.get("ONLEARN_FUZZ_EXAMPLES", "40"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def feature_schema(features: dict[str, dict]) -> dict[str, Any]:
    """The JSON Schema of a row, from a model's feature schema (``GET /models/{name}``)."""
    properties, required = {}, []
    for name, rule in features.items():
        if rule["type"] == "category":
            schema: dict[str, Any] = {"enum": list(rule["values"])}
        elif rule["type"] in ("number", "integer"):
            schema = {"type": rule["type"]}
            if "min" in rule:
                schema["minimum"] = rule["min"]
            if "max" in rule:
                schema["maximum"] = rule["max"]
        else:
            schema = {"type": rule["type"]}
        if rule.get("nullable"):
            schema = {"anyOf": [schema, {"type": "null"}]}
        else:
            required.append(name)
        properties[name] = schema
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def aimed(document: dict, *, row: dict, labels: list, item_ids: list[str]) -> dict:
    """The document with its free-form parts narrowed to what the served models take."""
    doc = copy.deepcopy(document)
    label = {"anyOf": [{"enum": labels}, {"type": "number"}]}
    for operations in doc["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] == "name":
                    parameter["schema"] = {"type": "string", "enum": list(FUZZ_MODELS)}
                if parameter["in"] == "path" and parameter["name"] == "item_id":
                    parameter["schema"] = {"type": "string", "enum": item_ids}
                if parameter["in"] == "path" and parameter["name"] == "version":
                    parameter["schema"] = {"type": "string", "enum": ["v1", "v2"]}
    schemas = doc["components"]["schemas"]
    schemas["PredictRequest"]["properties"]["features"] = row
    schemas["FeedbackRequest"]["properties"]["features"] = {"anyOf": [row, {"type": "null"}]}
    schemas["FeedbackRequest"]["properties"]["label"] = label
    schemas["LabelRequest"]["properties"]["label"] = label
    return doc


@pytest.fixture(scope="session")
def fuzz_schema(fuzz_server: ServerProcess):
    with httpx.Client(base_url=fuzz_server.url, timeout=30) as api:
        document = api.get("/openapi.json").json()
        model = api.get(f"/models/{FUZZ_MODELS[0]}").json()
        row = feature_schema(model["schema"]["features"])
        # Some predictions, each queued (budget 1): real item ids for the queue routes.
        rows = [
            {"weight": w, "legs": 4, "color": "black", "indoor": w > 5, "name": None, "age": None}
            for w in (1.0, 2.0, 3.0, 7.0, 9.0)
        ]
        answer = api.post(
            f"/models/{FUZZ_MODELS[0]}/predict/batch",
            json={"rows": [{"features": r} for r in rows]},
        )
        assert answer.status_code == 200, answer.text
        item_ids = [p["prediction_id"] for p in answer.json()["predictions"]]
    doc = aimed(document, row=row, labels=model["classes"], item_ids=item_ids + ["unknown"])
    schema = schemathesis.openapi.from_dict(doc)
    schema.config.update(base_url=fuzz_server.url)
    return schema


# Schemathesis's own pytest integration (``from_fixture`` + ``parametrize``) reads a private
# attribute that pytest 9 no longer has; its Hypothesis strategies are driven directly instead,
# operation by operation, and every operation runs even when an earlier one failed.
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,  # the same examples every run
    database=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],  # no shrinking: report the first failure as is
)


def fuzz(operation, mode: GenerationMode, sent: Counter) -> str | None:
    """Run the generated cases of one operation; the first failure, or None."""

    @FUZZ_SETTINGS
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        sent[operation.label] += 1
        case.call_and_validate(checks=CHECKS, timeout=30)

    try:
        run()
    except Unsatisfiable:  # nothing invalid to send: an operation without parameters or body
        return None
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: BLE001 - this operation's failures (an exception group)
        return f"{operation.label} ({mode.value}): {summary(e)}"
    return None


def summary(error: BaseException, limit: int = 1500) -> str:
    """The failure's own message and those of its sub-exceptions, cut to a readable size."""
    parts = [str(error)]
    for sub in getattr(error, "exceptions", ()):
        parts.append(f"{type(sub).__name__}: {sub}")
    text = "\n".join(parts)
    return text if len(text) <= limit else text[:limit] + " ..."


def test_no_generated_request_gets_a_5xx_and_every_answer_is_documented(fuzz_schema):
    failures, sent = [], Counter()
    for result in fuzz_schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failure = fuzz(operation, mode, sent)
            if failure is not None:
                failures.append(failure)
    assert not failures, "\n\n".join(failures)
    assert len(sent) >= 20, f"every operation of the document was fuzzed: {sorted(sent)}"
    # Operations with parameters or a body get their full share of examples.
    assert sent["POST /models/{name}/predict"] >= EXAMPLES_PER_OPERATION, sent
    print(f"{sum(sent.values())} requests over {len(sent)} operations")


# What the fuzzing found, each a 500 before it was fixed. Python's JSON parser accepts more than
# JSON (NaN, Infinity, lone surrogates) and recurses per nesting level.

ROW = {"weight": 1.0, "legs": 4, "color": "black", "indoor": True}
NOT_JSON = {
    "nested": b"[" * 100_000 + b"]" * 100_000,
    "nan": b'{"label": NaN, "limit": NaN, "role": "canary", "share": NaN, "reason": NaN}',
    "infinity": b'{"label": Infinity, "limit": 1e400, "role": "canary", "share": -Infinity}',
    "surrogate": b'{"label": "\\ud800", "labeller": "\\udfff", "role": "\\ud800", "reason": "\\ud800"}',
}


@pytest.fixture(scope="module")
def fuzz_api(fuzz_server: ServerProcess):
    with httpx.Client(base_url=fuzz_server.url, timeout=30) as client:
        yield client


@pytest.mark.parametrize("kind", sorted(NOT_JSON))
def test_bodies_that_are_not_json_get_a_4xx_on_every_post_route(fuzz_api, kind):
    pid = fuzz_api.post("/models/fuzz/predict", json={"features": ROW}).json()["prediction_id"]
    document = fuzz_api.get("/openapi.json").json()
    posts = [p for p, ops in document["paths"].items() if "post" in ops]
    for path in posts:
        url = path.format(name="fuzz", item_id=pid, version="v1", job_id="no-such-job")
        response = fuzz_api.post(
            url, content=NOT_JSON[kind], headers={"content-type": "application/json"}
        )
        assert 400 <= response.status_code < 500, (url, response.status_code, response.text)
        response.json()  # and the answer itself is JSON


def test_a_lone_surrogate_is_refused_before_it_reaches_the_store(fuzz_api):
    body = b'{"features": {"weight": 1, "legs": 4, "color": "black", "indoor": true, "name": "\\ud800"}}'
    response = fuzz_api.post(
        "/models/fuzz/predict", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["type"] == "string_unicode"
    # A surrogate pair is Unicode (here an emoji) and passes.
    ok = body.replace(b"\\ud800", b"\\ud83d\\ude00")
    response = fuzz_api.post(
        "/models/fuzz/predict", content=ok, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text


def test_a_retrain_with_nan_options_is_422_and_the_job_list_stays_readable(fuzz_api):
    body = b'{"candidates": [{"name": "logistic_regression", "lr": NaN}], "key": "nan-lr"}'
    response = fuzz_api.post(
        "/models/fuzz/retrain", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert "NaN" in response.text
    assert fuzz_api.get("/jobs?limit=500").status_code == 200


def test_a_queue_label_answers_as_feedback_does(fuzz_api):
    fuzz_api.post("/models/fuzz/predict", json={"features": {**ROW, "weight": 42.0}})
    items = wait_for_items(fuzz_api)
    item = items[0]
    response = fuzz_api.post(
        f"/models/fuzz/queue/{item['item_id']}/label",
        json={"label": "cat", "claim_id": item["claim_id"]},
    )
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"seq", "version", "durable", "applied"}, response.json()
    again = fuzz_api.post(
        f"/models/fuzz/queue/{item['item_id']}/label",
        json={"label": "cat", "claim_id": item["claim_id"]},
    )
    assert again.json() == {**response.json(), "applied": True}


def wait_for_items(api: httpx.Client) -> list[dict]:
    from tests.e2e.helpers import wait_until

    def claimed():
        response = api.post("/models/fuzz/queue/claim", json={"limit": 1})
        assert response.status_code == 200, response.text
        return response.json()["items"]

    return wait_until(claimed, timeout=10)
