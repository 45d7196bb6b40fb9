"""POST /models/{name}/feedback and /feedback/batch against a running server."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.e2e.configs import CAT, MAX_BATCH_ROWS
from tests.e2e.helpers import (
    field_error,
    message,
    strict_json,
    wait_until,
    well_formed_unknown_id,
    xy_rows,
)

JSON = {"content-type": "application/json"}
ROW = {"x": 0.5, "y": 0.25}


def predict(api: httpx.Client, model: str, features=ROW) -> dict:
    response = api.post(f"/models/{model}/predict", json={"features": features})
    assert response.status_code == 200, response.text
    return strict_json(response)


def feedback(api: httpx.Client, model: str, **body) -> httpx.Response:
    params = {"wait": body.pop("wait")} if "wait" in body else None
    return api.post(f"/models/{model}/feedback", json=body, params=params)


def ack(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return strict_json(response)


def model(api: httpx.Client, name: str) -> dict:
    response = api.get(f"/models/{name}")
    assert response.status_code == 200, response.text
    return strict_json(response)


def version_metrics(api: httpx.Client, name: str) -> dict:
    response = api.get(f"/models/{name}/metrics")
    assert response.status_code == 200, response.text
    return strict_json(response)["versions"]["v1"]


# Feedback by prediction id, and learning from it


def test_feedback_by_prediction_id_is_logged_applied_and_learnt(api):
    start = model(api, "fb")
    before = start["applied_seq"]
    answers = []
    for features, label in xy_rows(6, seed=7):
        p = predict(api, "fb", features)
        answer = ack(feedback(api, "fb", prediction_id=p["prediction_id"], label=label))
        assert set(answer) == {"seq", "version", "durable", "applied"}
        assert answer["version"] == "v1" and answer["durable"] is answer["applied"] is True
        answers.append(answer)
        # read-your-writes: the answer of the next predict already includes this label
        assert model(api, "fb")["applied_seq"] >= answer["seq"]
    assert [a["seq"] for a in answers] == list(range(before + 1, before + 7))
    described = model(api, "fb")
    assert described["applied_seq"] == answers[-1]["seq"]
    assert described["counters"]["labels_applied"] == start["counters"]["labels_applied"] + 6


def test_predictions_change_after_feedback(api):
    probe = {"x": 0.3, "y": 0.3}
    seen = [predict(api, "fb", probe)["proba"]]
    for features, label in xy_rows(5, seed=8):
        p = predict(api, "fb", features)
        ack(feedback(api, "fb", prediction_id=p["prediction_id"], label=label))
        seen.append(predict(api, "fb", probe)["proba"])
    # Each label moved the model: no two consecutive answers for the probe are equal.
    assert all(a != b for a, b in zip(seen, seen[1:], strict=False)), seen


def test_inline_feedback_is_learnt_without_a_prediction(api):
    start = model(api, "inline")
    scored = version_metrics(api, "inline")
    first = ack(feedback(api, "inline", features={"x": 0.9, "y": 0.1}, label="pos"))
    second = ack(feedback(api, "inline", features={"x": -0.9, "y": -0.1}, label="neg"))
    assert second["seq"] == first["seq"] + 1
    assert first["applied"] is True and first["version"] == "v1"
    after = model(api, "inline")
    assert after["counters"]["labels_applied"] == start["counters"]["labels_applied"] + 2
    versions = version_metrics(api, "inline")
    assert versions["n"] == scored["n"] + 2
    assert versions["scored_on_replay"] == scored["scored_on_replay"] + 2
    assert versions["scored_on_stored_prediction"] == scored["scored_on_stored_prediction"]


def test_inline_features_are_validated_like_predict(api):
    response = feedback(api, "inline", features={"x": 11, "y": "a", "z": 1}, label="pos")
    field_error(response, ["body", "features", "x"], "max", "x", "<= 10")
    field_error(response, ["body", "features", "y"], "type", "y", "a number")
    field_error(response, ["body", "features", "z"], "unknown", "z")
    body = b'{"features": {"x": NaN, "y": 0}, "label": "pos"}'
    response = api.post("/models/inline/feedback", content=body, headers=JSON)
    field_error(response, ["body", "features", "x"], "finite", "x", "finite")


# Idempotency


def applied(api: httpx.Client, name: str) -> tuple[int, int, int]:
    """What a model applied: (log position, labels learnt by this process, labels scored)."""
    described = model(api, name)
    n = version_metrics(api, name)["n"]
    return described["applied_seq"], described["counters"]["labels_applied"], n


def test_duplicate_feedback_gives_the_same_seq_and_is_applied_once(api):
    _, labels, n = applied(api, "dup")
    p = predict(api, "dup")
    first = ack(feedback(api, "dup", prediction_id=p["prediction_id"], label="pos"))
    again = ack(feedback(api, "dup", prediction_id=p["prediction_id"], label="pos"))
    also = ack(feedback(api, "dup", prediction_id=p["prediction_id"], label="pos", wait=False))
    assert again["seq"] == first["seq"] == also["seq"]
    assert again["applied"] is True
    assert applied(api, "dup") == (first["seq"], labels + 1, n + 1)


def test_concurrent_duplicates_share_one_seq(server, api):
    _, labels, n = applied(api, "dup")
    p = predict(api, "dup", {"x": -0.5, "y": 0.1})
    body = {"prediction_id": p["prediction_id"], "label": "neg"}

    def send(_):
        with httpx.Client(base_url=server.url, timeout=30) as client:
            return ack(client.post("/models/dup/feedback", json=body))["seq"]

    with ThreadPoolExecutor(8) as pool:
        seqs = set(pool.map(send, range(16)))
    assert len(seqs) == 1, seqs
    assert applied(api, "dup") == (seqs.pop(), labels + 1, n + 1)


def test_duplicates_inside_a_batch_share_one_seq(api):
    _, labels, n = applied(api, "dup")
    p = predict(api, "dup", {"x": 0.1, "y": 0.1})
    item = {"prediction_id": p["prediction_id"], "label": "pos"}
    response = api.post("/models/dup/feedback/batch", json={"items": [item, item, item]})
    results = ack(response)["results"]
    assert len({r["seq"] for r in results}) == 1, results
    assert applied(api, "dup") == (results[0]["seq"], labels + 1, n + 1)


def test_inline_feedback_with_an_event_id_is_idempotent(api):
    _, labels, n = applied(api, "dup")
    body = {"features": {"x": 0.2, "y": 0.3}, "label": "pos", "event_id": "order-17"}
    first = ack(feedback(api, "dup", **body))
    again = ack(feedback(api, "dup", **body))
    assert again["seq"] == first["seq"]
    assert applied(api, "dup") == (first["seq"], labels + 1, n + 1)


# Unknown and expired predictions


@pytest.mark.parametrize("shape", ["well-formed", "malformed"])
def test_an_unknown_prediction_id_is_404_saying_what_to_do(api, shape):
    prediction_id = well_formed_unknown_id() if shape == "well-formed" else "not-an-id"
    response = feedback(api, "fb", prediction_id=prediction_id, label="pos")
    message(response, 404, prediction_id, "'fb'", "prediction_id", "inline features")


def test_a_prediction_of_another_model_is_unknown_here(api):
    p = predict(api, "shapes", CAT)
    response = feedback(api, "fb", prediction_id=p["prediction_id"], label="pos")
    message(response, 404, p["prediction_id"], "'fb'")


def test_an_expired_prediction_is_410_saying_to_send_inline_features(api):
    # `short` keeps prediction records 1 s.
    single, in_batch, with_features = (predict(api, "short") for _ in range(3))
    time.sleep(1.5)
    response = feedback(api, "short", prediction_id=single["prediction_id"], label="pos")
    message(response, 410, single["prediction_id"], "expired", "inline features")

    response = api.post(
        "/models/short/feedback/batch",
        json={"items": [{"prediction_id": in_batch["prediction_id"], "label": "pos"}]},
    )
    (result,) = ack(response)["results"]
    assert result["error"]["status"] == 410, result
    assert "inline features" in result["error"]["detail"]

    # The advice works: with the features inline, the label is taken.
    answer = ack(
        feedback(
            api, "short", prediction_id=with_features["prediction_id"], features=ROW, label="pos"
        )
    )
    assert answer["applied"] is True
    assert model(api, "short")["counters"]["labels_applied"] == 1


# Bad feedback: 422 naming the field and the rule


@pytest.mark.parametrize("label", [["cat"], None, 1.5, {"cat": 1}], ids=repr)
def test_a_label_of_the_wrong_type_is_422(api, label):
    response = feedback(api, "shapes", features=CAT, label=label)
    field_error(response, ["body", "label"], "type", "label", "class label")


@pytest.mark.parametrize("label", ["cow", "Cat", True, 1], ids=repr)
def test_a_label_that_is_not_a_declared_class_is_422(api, label):
    response = feedback(api, "shapes", features=CAT, label=label)
    field_error(response, ["body", "label"], "allowed", "label", "'cat'", "'dog'")


def test_a_missing_label_is_422(api):
    response = api.post("/models/shapes/feedback", json={"features": CAT})
    field_error(response, ["body", "label"], "missing")


@pytest.mark.parametrize("label", ["abc", "1.5", True, None, [1.0]], ids=repr)
def test_a_regression_label_must_be_a_number(api, label):
    response = feedback(api, "reg", features={"x": 1.0}, label=label)
    field_error(response, ["body", "label"], "finite", "label", "finite number")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_a_regression_label_must_be_finite(api, literal):
    body = b'{"features": {"x": 1.0}, "label": ' + literal.encode() + b"}"
    response = api.post("/models/reg/feedback", content=body, headers=JSON)
    field_error(response, ["body", "label"], "finite", "label", "finite number")


def test_a_regression_model_takes_numeric_labels(api):
    first = ack(feedback(api, "reg", features={"x": 1.0}, label=2))
    second = ack(feedback(api, "reg", features={"x": 2.0}, label=4.5))
    assert second["seq"] == first["seq"] + 1
    metrics = version_metrics(api, "reg")
    assert metrics["n"] == 2 and metrics["mae"] is not None and metrics["rmse"] is not None


def test_a_regression_label_too_large_for_a_float_is_422_not_500(server):
    body = b'{"features": {"k": 1}, "label": 1' + b"0" * 400 + b"}"
    # A connection of its own: after a 500 the server drops the connection.
    response = httpx.post(f"{server.url}/models/huge/feedback", content=body, headers=JSON)
    field_error(response, ["body", "label"], "finite", "label")


def test_extreme_labels_keep_the_metrics_valid_json(api):
    # Finite labels whose errors overflow a float: the metrics must still be JSON (no Infinity).
    for label in (1e308, -1e308, 1e308):
        ack(feedback(api, "huge", features={"k": 1}, label=label))
    response = api.get("/models/huge/metrics")
    assert response.status_code == 200
    metrics = strict_json(response)["versions"]["v1"]
    assert metrics["n"] == 3
    prediction = api.post("/models/huge/predict", json={"features": {"k": 1}})
    assert prediction.status_code == 200
    strict_json(prediction)


def test_a_bad_source_is_422(api):
    response = feedback(api, "fb", features=ROW, label="pos", source="robot")
    field_error(response, ["body", "source"], "enum", "source", "app", "human", "weak")


def test_a_too_long_labeller_is_422(api):
    response = feedback(api, "fb", features=ROW, label="pos", labeller="x" * 201)
    field_error(response, ["body", "labeller"], "type", "labeller", "200")


def test_feedback_needs_a_prediction_id_or_features(api):
    response = feedback(api, "fb", label="pos")
    field_error(response, ["body"], "missing", "prediction_id", "inline features")


def test_feedback_body_types_are_checked(api):
    response = feedback(api, "fb", prediction_id=5, label="pos")
    field_error(response, ["body", "prediction_id"], "string_type")
    response = feedback(api, "fb", features=ROW, label="pos", comment="hi")
    field_error(response, ["body", "comment"], "extra_forbidden")
    response = feedback(api, "fb", features=[1, 2], label="pos")
    field_error(response, ["body", "features"], "dict_type")


def test_refused_feedback_is_not_logged(api):
    before = model(api, "fb")["applied_seq"]
    assert feedback(api, "fb", features=ROW, label="maybe").status_code == 422
    assert feedback(api, "fb", features=ROW, label="pos", source="robot").status_code == 422
    assert (
        feedback(api, "fb", prediction_id=well_formed_unknown_id(), label="pos").status_code == 404
    )
    assert ack(feedback(api, "fb", features=ROW, label="pos"))["seq"] == before + 1


# Batches


def test_feedback_batch_answers_per_item_with_per_item_errors(api):
    a, b = predict(api, "fbatch"), predict(api, "fbatch", {"x": -0.5, "y": -0.5})
    unknown = well_formed_unknown_id()
    items = [
        {"prediction_id": a["prediction_id"], "label": "pos"},
        {"prediction_id": unknown, "label": "pos"},
        {"features": {"x": 0.7, "y": 0.0}, "label": "pos", "source": "human"},
        {"prediction_id": b["prediction_id"], "label": "neg", "source": "weak"},
    ]
    results = ack(api.post("/models/fbatch/feedback/batch", json={"items": items}))["results"]
    assert len(results) == 4
    first = results[0]["seq"]
    assert results[0] == {"seq": first, "version": "v1", "durable": True, "applied": True}
    assert results[1] == {"error": {"status": 404, "detail": results[1]["error"]["detail"]}}
    assert unknown in results[1]["error"]["detail"]
    assert "inline features" in results[1]["error"]["detail"]
    assert results[2] == {"seq": first + 1, "version": "v1", "durable": True, "applied": True}
    assert results[3] == {"seq": first + 2, "version": "v1", "durable": True, "applied": True}
    described = model(api, "fbatch")
    assert described["applied_seq"] == first + 2
    assert described["counters"]["labels_applied"] == 3
    assert version_metrics(api, "fbatch")["labels_by_source"] == {"app": 1, "human": 1, "weak": 1}


def test_a_schema_error_in_a_batch_refuses_the_whole_batch_naming_the_item(api):
    before = model(api, "fbatch")["applied_seq"]
    items = [
        {"features": ROW, "label": "pos"},
        {"features": ROW, "label": "maybe"},
        {"features": {"x": 99, "y": 0}, "label": "neg", "source": "robot"},
    ]
    response = api.post("/models/fbatch/feedback/batch", json={"items": items})
    field_error(response, ["body", "items", 1, "label"], "allowed", "maybe")
    field_error(response, ["body", "items", 2, "features", "x"], "max", "x")
    field_error(response, ["body", "items", 2, "source"], "enum")
    assert model(api, "fbatch")["applied_seq"] == before  # nothing was logged


def test_a_feedback_batch_with_too_many_items_is_422(api):
    items = [{"features": ROW, "label": "pos"}] * (MAX_BATCH_ROWS + 1)
    response = api.post("/models/fbatch/feedback/batch", json={"items": items})
    field_error(response, ["body", "items"], "max_items", f"at most {MAX_BATCH_ROWS}")


def test_a_feedback_batch_may_skip_waiting(api):
    items = [{"features": f, "label": y} for f, y in xy_rows(MAX_BATCH_ROWS, seed=3)]
    response = api.post("/models/fbatch/feedback/batch", json={"items": items, "wait": False})
    results = ack(response)["results"]
    seqs = [r["seq"] for r in results]
    assert seqs == list(range(seqs[0], seqs[0] + MAX_BATCH_ROWS))
    assert all(isinstance(r["applied"], bool) for r in results)
    wait_until(lambda: model(api, "fbatch")["applied_seq"] == seqs[-1])


def test_a_feedback_batch_reads_wait_from_the_query_as_the_single_call_does(api):
    items = [{"features": f, "label": y} for f, y in xy_rows(2, seed=4)]
    bad = api.post("/models/fbatch/feedback/batch", params={"wait": "maybe"}, json={"items": items})
    field_error(bad, ["query", "wait"], "bool_parsing", "valid boolean")
    response = api.post(
        "/models/fbatch/feedback/batch", params={"wait": "false"}, json={"items": items}
    )
    seqs = [r["seq"] for r in ack(response)["results"]]
    wait_until(lambda: model(api, "fbatch")["applied_seq"] >= seqs[-1])


# ?wait=false


def test_feedback_without_waiting_is_durable_and_applied_soon(server, api):
    rows = xy_rows(24, seed=5)

    def send(row):
        features, label = row
        with httpx.Client(base_url=server.url, timeout=30) as client:
            response = client.post(
                "/models/nowait/feedback",
                json={"features": features, "label": label},
                params={"wait": "false"},
            )
            return ack(response)

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(send, rows))
    assert all(isinstance(a["applied"], bool) and a["version"] == "v1" for a in answers)
    assert all(a["durable"] is True for a in answers)  # in the log, learned or not yet
    seqs = sorted(a["seq"] for a in answers)
    assert seqs == list(range(1, 25))  # concurrent appends: distinct seqs, no gap
    wait_until(lambda: model(api, "nowait")["applied_seq"] == 24)
    assert model(api, "nowait")["counters"]["labels_applied"] == 24
    assert version_metrics(api, "nowait")["n"] == 24
