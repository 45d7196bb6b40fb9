"""POST /models/{name}/predict and /predict/batch against a running server: answers and refusals."""

from __future__ import annotations

import math

import httpx
import pytest

from tests.e2e.configs import CAT, MAX_BATCH_ROWS, MAX_BODY_BYTES
from tests.e2e.helpers import field_error, learn, message, strict_json, xy_rows

JSON = {"content-type": "application/json"}


def predict(api: httpx.Client, features, model: str = "shapes") -> httpx.Response:
    return api.post(f"/models/{model}/predict", json={"features": features})


def raw(api: httpx.Client, body: bytes, path: str = "/models/shapes/predict") -> httpx.Response:
    return api.post(path, content=body, headers=JSON)


# Answers


def test_predict_answers_the_documented_shape(api):
    response = predict(api, CAT)
    assert response.status_code == 200, response.text
    body = strict_json(response)
    assert set(body) == {
        "prediction_id",
        "model",
        "version",
        "label",
        "proba",
        "uncertainty",
        "queued",
    }
    assert isinstance(body["prediction_id"], str) and len(body["prediction_id"]) >= 16
    assert body["model"] == "shapes"
    assert body["version"] == "v1"
    assert isinstance(body["proba"], dict)
    assert isinstance(body["uncertainty"], float) and 0.0 <= body["uncertainty"] <= 1.0
    assert body["queued"] is False
    assert predict(api, CAT).json()["prediction_id"] != body["prediction_id"]


def test_a_trained_model_answers_probabilities_that_sum_to_one(api):
    answers = [a for a, _, _ in learn(api, "learns", xy_rows(40, seed=1))]
    assert answers[0]["label"] is None and answers[0]["proba"] == {}  # nothing learnt yet
    body = strict_json(predict(api, {"x": 0.8, "y": 0.6}, "learns"))
    assert body["label"] == "pos"
    assert set(body["proba"]) == {"pos", "neg"}
    assert math.isclose(sum(body["proba"].values()), 1.0, rel_tol=1e-9)
    assert body["proba"]["pos"] == max(body["proba"].values())
    assert math.isclose(body["uncertainty"], 1.0 - body["proba"]["pos"], rel_tol=1e-9)
    assert strict_json(predict(api, {"x": -0.8, "y": -0.6}, "learns"))["label"] == "neg"


def test_a_regression_model_answers_a_number_without_proba(api):
    body = strict_json(predict(api, {"x": 1.5}, "reg"))
    assert isinstance(body["label"], float)
    assert body["proba"] is None and body["uncertainty"] is None
    assert body["model"] == "reg" and body["version"] == "v1"


def test_predict_batch_answers_one_prediction_per_row_in_order(api):
    rows = [{"features": {**CAT, "weight": float(w)}} for w in range(5)]
    response = api.post("/models/shapes/predict/batch", json={"rows": rows})
    assert response.status_code == 200, response.text
    predictions = strict_json(response)["predictions"]
    assert len(predictions) == 5
    assert len({p["prediction_id"] for p in predictions}) == 5
    assert all(p["model"] == "shapes" and p["version"] == "v1" for p in predictions)
    assert strict_json(api.post("/models/shapes/predict/batch", json={"rows": []})) == {
        "predictions": []
    }


def test_nullable_features_may_be_null_or_absent(api):
    assert predict(api, {**CAT, "name": None, "age": None}).status_code == 200
    without = {k: v for k, v in CAT.items() if k not in ("name", "age")}
    assert predict(api, without).status_code == 200


def test_an_integral_float_is_an_integer(api):
    assert predict(api, {**CAT, "legs": 2.0}).status_code == 200


# Unknown model


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("POST", "/models/nope/predict", {"features": CAT}),
        ("POST", "/models/nope/predict/batch", {"rows": [{"features": CAT}]}),
        ("POST", "/models/nope/feedback", {"features": CAT, "label": "cat"}),
        ("POST", "/models/nope/feedback/batch", {"items": [{"features": CAT, "label": "cat"}]}),
        ("GET", "/models/nope", None),
        ("GET", "/models/nope/metrics", None),
    ],
)
def test_an_unknown_model_is_404_naming_the_served_ones(api, method, path, body):
    response = api.request(method, path, json=body)
    message(response, 404, "'nope'", "shapes", "learns")


# Schema violations: 422 naming the field and the rule


@pytest.mark.parametrize(
    "change, field, rule, words",
    [
        ({"weight": ...}, "weight", "missing", ["weight", "required"]),
        ({"weight": "heavy"}, "weight", "type", ["weight", "a number", "'heavy'"]),
        ({"weight": True}, "weight", "type", ["weight", "a number"]),
        ({"weight": 100.5}, "weight", "max", ["weight", "<= 100"]),
        ({"weight": -1}, "weight", "min", ["weight", ">= 0"]),
        ({"legs": 2.5}, "legs", "type", ["legs", "an integer", "2.5"]),
        ({"legs": "4"}, "legs", "type", ["legs", "an integer"]),
        ({"legs": 5}, "legs", "max", ["legs", "<= 4"]),
        ({"legs": -1}, "legs", "min", ["legs", ">= 0"]),
        ({"color": "green"}, "color", "allowed", ["color", "black", "white", "ginger", "green"]),
        ({"color": 3}, "color", "allowed", ["color", "3"]),
        ({"color": ["black"]}, "color", "type", ["color"]),
        ({"indoor": "yes"}, "indoor", "type", ["indoor", "true or false", "'yes'"]),
        ({"indoor": 1}, "indoor", "type", ["indoor", "true or false"]),
        ({"indoor": None}, "indoor", "null", ["indoor", "must not be null"]),
        ({"weight": None}, "weight", "null", ["weight", "must not be null"]),
        ({"name": 7}, "name", "type", ["name", "a string"]),
        ({"tail": "long"}, "tail", "unknown", ["tail", "not in the schema", "weight"]),
        ({"colour": "black"}, "colour", "unknown", ["colour", "did you mean color"]),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_a_schema_violation_is_422_naming_the_field_and_the_rule(api, change, field, rule, words):
    features = {**CAT, **change}
    features = {k: v for k, v in features.items() if v is not ...}
    error = field_error(predict(api, features), ["body", "features", field], rule, *words)
    assert error["msg"].startswith(field)


def test_every_broken_rule_is_listed(api):
    response = predict(api, {**CAT, "weight": -3, "legs": 2.5, "color": "blue", "tail": 1})
    detail = strict_json(response)["detail"]
    assert response.status_code == 422
    assert sorted((e["loc"][-1], e["type"]) for e in detail) == [
        ("color", "allowed"),
        ("legs", "type"),
        ("tail", "unknown"),
        ("weight", "min"),
    ]


def test_unknown_fields_are_dropped_under_the_drop_policy(api):
    response = predict(api, {**CAT, "tail": "long", "whiskers": 24}, "loose")
    assert response.status_code == 200, response.text
    assert strict_json(response)["model"] == "loose"
    # Dropping does not mean skipping the declared fields' rules.
    field_error(
        predict(api, {**CAT, "legs": 9, "tail": 1}, "loose"), ["body", "features", "legs"], "max"
    )


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_and_infinity_are_422_naming_the_field(api, literal):
    features = b'"legs": 4, "color": "black", "indoor": true, "weight": ' + literal.encode()
    body = b'{"features": {' + features + b"}}"
    field_error(raw(api, body), ["body", "features", "weight"], "finite", "weight", "finite")


def test_nan_for_an_integer_feature_is_422(api):
    body = b'{"features": {"weight": 1, "legs": NaN, "color": "black", "indoor": true}}'
    field_error(raw(api, body), ["body", "features", "legs"], "finite", "legs", "finite")


def test_an_integer_too_large_for_a_float_is_422(server):
    # JSON integers have no bound but models compute in floats: an integer feature without
    # min/max must still refuse what no float holds, or a trained model fails on it (a 500).
    body = b'{"features": {"k": 1' + b"0" * 400 + b"}}"
    # A connection of its own: after a 500 the server drops the connection.
    response = httpx.post(f"{server.url}/models/huge/predict", content=body, headers=JSON)
    field_error(response, ["body", "features", "k"], "finite", "k")


@pytest.mark.parametrize(
    "features, kind",
    [([1, 2], "dict_type"), ("weight=4", "dict_type"), (None, "dict_type"), (3, "dict_type")],
)
def test_features_that_are_not_an_object_are_422(api, features, kind):
    response = api.post("/models/shapes/predict", json={"features": features})
    field_error(response, ["body", "features"], kind)


def test_a_body_without_features_or_with_extra_keys_is_422(api):
    field_error(api.post("/models/shapes/predict", json={}), ["body", "features"], "missing")
    response = api.post("/models/shapes/predict", json={"features": CAT, "feature": 1})
    field_error(response, ["body", "feature"], "extra_forbidden")


@pytest.mark.parametrize(
    "body", [b'{"features": ', b"{'features': {}}", b"not json", b'{"features": {"weight": 1,}}']
)
def test_malformed_json_is_422(api, body):
    response = raw(api, body)
    assert response.status_code == 422, response.text
    (error,) = strict_json(response)["detail"]
    assert error["type"] == "json_invalid" and error["loc"][0] == "body"


# Batches


def test_a_bad_row_of_a_batch_is_named_by_its_index(api):
    rows = [{"features": CAT}, {"features": CAT}, {"features": {**CAT, "legs": 2.5}}]
    response = api.post("/models/shapes/predict/batch", json={"rows": rows})
    field_error(response, ["body", "rows", 2, "features", "legs"], "type", "legs", "an integer")


def test_every_bad_row_of_a_batch_is_listed(api):
    rows = [
        {"features": {**CAT, "weight": 101}},
        {"features": CAT},
        {"features": {**CAT, "color": "blue", "indoor": "no"}},
    ]
    response = api.post("/models/shapes/predict/batch", json={"rows": rows})
    assert response.status_code == 422
    assert sorted(tuple(e["loc"]) + (e["type"],) for e in strict_json(response)["detail"]) == [
        ("body", "rows", 0, "features", "weight", "max"),
        ("body", "rows", 2, "features", "color", "allowed"),
        ("body", "rows", 2, "features", "indoor", "type"),
    ]


def test_a_row_that_is_not_an_object_is_named_by_its_index(api):
    response = api.post("/models/shapes/predict/batch", json={"rows": [{"features": CAT}, [1]]})
    assert response.status_code == 422
    assert [e["loc"][:3] for e in strict_json(response)["detail"]] == [["body", "rows", 1]]


def test_a_batch_with_too_many_rows_is_422(api):
    rows = [{"features": CAT}] * (MAX_BATCH_ROWS + 1)
    response = api.post("/models/shapes/predict/batch", json={"rows": rows})
    field_error(
        response, ["body", "rows"], "max_items", f"at most {MAX_BATCH_ROWS}", str(len(rows))
    )
    rows = [{"features": CAT}] * MAX_BATCH_ROWS
    assert api.post("/models/shapes/predict/batch", json={"rows": rows}).status_code == 200


# Body size


def big_body(size: int) -> bytes:
    """A valid predict body of exactly ``size`` bytes (padding in a string feature)."""
    head = b'{"features": {"weight": 1, "legs": 4, "color": "black", "indoor": true, "name": "'
    tail = b'"}}'
    return head + b"a" * (size - len(head) - len(tail)) + tail


def test_a_body_over_the_limit_is_413_when_its_length_is_declared(api):
    response = raw(api, big_body(MAX_BODY_BYTES + 1))
    message(response, 413, "larger than the limit", str(MAX_BODY_BYTES))
    assert raw(api, big_body(MAX_BODY_BYTES)).status_code == 200


def test_a_chunked_body_under_the_limit_is_read(api):
    body = big_body(MAX_BODY_BYTES - 100)
    chunks = (body[i : i + 500] for i in range(0, len(body), 500))
    response = api.post("/models/shapes/predict", content=chunks, headers=JSON)
    assert response.status_code == 200, response.text


def test_a_chunked_body_over_the_limit_is_413(api):
    body = big_body(3 * MAX_BODY_BYTES)
    chunks = (body[i : i + 1000] for i in range(0, len(body), 1000))  # no Content-Length
    response = api.post("/models/shapes/predict", content=chunks, headers=JSON)
    message(response, 413, "larger than the limit", str(MAX_BODY_BYTES))
