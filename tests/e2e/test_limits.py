"""Every limit, reached against a real server: each answer names the limit that was hit.

The server (configs.LIMITS_CONFIG) has small limits so that each can be reached. The store stalls
when the test holds the SQLite write lock: the server's writers then wait (up to the store's busy
timeout, 5 s) as they would for a slow disk or a long transaction of another process.
"""

from __future__ import annotations

import re
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from onlearn.store import open_store
from tests.e2e.configs import (
    LIMITS,
    LIMITS_MAX_CLAIM,
    LIMITS_MAX_PENDING_PREDICTIONS,
    LIMITS_QUEUE_MAX_SIZE,
)
from tests.e2e.helpers import field_error, message, wait_until, xy_rows
from tests.servers import ServerProcess

TIMEOUT_S = LIMITS["request_timeout_s"]
ROW = {"x": 0.5, "y": -0.2}


@pytest.fixture(scope="module")
def api(limits_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=limits_server.url, timeout=30) as client:
        yield client


@contextmanager
def store_stalled(server: ServerProcess) -> Iterator[None]:
    """Hold the store's write lock: the server's appends and record writes wait meanwhile."""
    path = server.store_url.removeprefix("sqlite:///")
    holder = sqlite3.connect(path, isolation_level=None, timeout=10)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def metric(api: httpx.Client, name: str) -> float:
    text = api.get("/metrics").text
    found = re.search(rf"^{name}(?:_total)? ([0-9.e+]+)$", text, re.M)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


def predict(api: httpx.Client, model: str, features=ROW) -> str:
    response = api.post(f"/models/{model}/predict", json={"features": features})
    assert response.status_code == 200, response.text
    return response.json()["prediction_id"]


# max_body_bytes


def test_a_body_over_max_body_bytes_is_413_naming_the_limit_on_every_route(api):
    big = {"features": {"x": 0.1, "y": 0.2, "pad": "a" * LIMITS["max_body_bytes"]}}
    for path in ("/models/lim/predict", "/models/lim/feedback", "/models/q/queue/claim"):
        message(api.post(path, json=big), 413, "max_body_bytes", str(LIMITS["max_body_bytes"]))


def test_a_chunked_body_is_counted_while_it_is_read(api):
    body = b'{"features": {"pad": "' + b"a" * (3 * LIMITS["max_body_bytes"]) + b'"}}'
    chunks = (body[i : i + 500] for i in range(0, len(body), 500))  # no Content-Length
    response = api.post(
        "/models/lim/predict", content=chunks, headers={"content-type": "application/json"}
    )
    message(response, 413, "max_body_bytes", str(LIMITS["max_body_bytes"]))
    small = b'{"features": {"x": 0.1, "y": 0.2}}'
    response = api.post(
        "/models/lim/predict",
        content=iter([small[:10], small[10:]]),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200, response.text


# max_batch_rows


def test_batches_over_max_batch_rows_are_422_naming_the_field(api):
    n = LIMITS["max_batch_rows"]
    rows = [{"features": ROW}] * (n + 1)
    response = api.post("/models/lim/predict/batch", json={"rows": rows})
    field_error(response, ["body", "rows"], "max_items", f"at most {n}", str(n + 1))
    items = [{"features": ROW, "label": "pos"}] * (n + 1)
    response = api.post("/models/lim/feedback/batch", json={"items": items})
    field_error(response, ["body", "items"], "max_items", f"at most {n}", str(n + 1))
    assert api.post("/models/lim/predict/batch", json={"rows": rows[:n]}).status_code == 200


# max_claim (per model, [models.NAME.active])


def test_a_claim_over_max_claim_is_422_naming_the_limit(api):
    response = api.post("/models/q/queue/claim", json={"limit": LIMITS_MAX_CLAIM + 1})
    field_error(response, ["body", "limit"], "range", f"[1, {LIMITS_MAX_CLAIM}]")
    response = api.post("/models/q/queue/claim", json={"limit": LIMITS_MAX_CLAIM})
    assert response.status_code == 200, response.text


# queue_max_size (per model): the lowest priorities are evicted, the depth never passes it


def test_the_labelling_queue_holds_at_most_queue_max_size_items(api):
    for features, _ in xy_rows(12, seed=7):
        predict(api, "q", features)

    def stats():
        response = api.get("/models/q/queue/stats")
        assert response.status_code == 200, response.text
        s = response.json()
        assert s["depth"] + s["claimed"] <= LIMITS_QUEUE_MAX_SIZE, s
        return s if s["pushed"] + s["rejected"] + s["duplicates"] >= 12 else None

    s = wait_until(stats, timeout=10)  # every prediction was asked for (budget 1)
    assert s["depth"] == LIMITS_QUEUE_MAX_SIZE, s
    # Each push past the bound either evicted a lower priority or was refused (an equal one).
    assert s["evicted"] + s["rejected"] == 12 - LIMITS_QUEUE_MAX_SIZE, s


# request_timeout_s


def test_a_request_that_waits_for_a_stalled_store_answers_504_in_time(api, limits_server):
    prediction_id = predict(api, "slow")
    time.sleep(0.1)  # its record is written (every 20 ms)
    with store_stalled(limits_server):
        started = time.monotonic()
        response = api.post(
            "/models/slow/feedback", json={"prediction_id": prediction_id, "label": "pos"}
        )
        took = time.monotonic() - started
        message(response, 504, "request_timeout_s", f"{TIMEOUT_S:g} s", "Retrying is safe")
        assert response.headers["retry-after"] == "1"
        assert TIMEOUT_S <= took < TIMEOUT_S + 1.5, took
        # A documented FastAPI route (run in a thread) is cut off the same way.
        response = api.post("/models/q/queue/claim", json={"limit": 1})
        message(response, 504, "request_timeout_s")
    # The label was recorded once the store came back: the retry gets its seq, not a second one.
    wait_until(lambda: metric(api, "onlearn_log_pending_events") == 0, timeout=10)
    first = api.post("/models/slow/feedback", json={"prediction_id": prediction_id, "label": "pos"})
    again = api.post("/models/slow/feedback", json={"prediction_id": prediction_id, "label": "pos"})
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert first.json()["seq"] == again.json()["seq"] == 1


def test_a_body_that_does_not_arrive_in_time_is_408(limits_server):
    host, port = "127.0.0.1", limits_server.port
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(
            b"POST /models/lim/predict HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            b'{"features":'  # and then nothing: a client that stalls mid-body
        )
        started = time.monotonic()
        answer = conn.recv(4096)
        took = time.monotonic() - started
        while chunk := conn.recv(4096):  # the body may come in a segment of its own
            answer += chunk
        answer = answer.decode()
    assert answer.startswith("HTTP/1.1 408"), answer
    assert "request_timeout_s" in answer and "did not arrive" in answer, answer
    assert TIMEOUT_S - 0.2 <= took < TIMEOUT_S + 1.5, took


# [engine] max_pending_labels: feedback is refused with 503 while the store cannot keep up


def test_feedback_past_max_pending_labels_is_503_at_once_while_the_store_stalls(api, limits_server):
    first, second = predict(api, "busy"), predict(api, "busy", {"x": -0.5, "y": 0.1})
    time.sleep(0.1)  # the prediction records are written
    refused_before = metric(api, "onlearn_log_refused_submissions")
    answers: list[httpx.Response] = []
    with store_stalled(limits_server):
        waiting = threading.Thread(
            target=lambda: answers.append(
                api.post("/models/busy/feedback", json={"prediction_id": first, "label": "pos"})
            )
        )
        waiting.start()
        wait_until(lambda: metric(api, "onlearn_log_pending_events") == 1, timeout=5)
        started = time.monotonic()
        response = api.post("/models/busy/feedback", json={"prediction_id": second, "label": "neg"})
        assert time.monotonic() - started < TIMEOUT_S  # refused, not queued behind the stall
        message(response, 503, "max_pending_labels", "retry")
        assert response.headers["retry-after"] == "1"
        waiting.join()
    assert answers[0].status_code == 504, answers[0].text  # it waited for the stalled store
    assert metric(api, "onlearn_log_refused_submissions") == refused_before + 1
    # Once the store is back, both go through; the first was recorded during the stall.
    wait_until(lambda: metric(api, "onlearn_log_pending_events") == 0, timeout=10)
    for prediction_id, label in ((first, "pos"), (second, "neg")):
        response = api.post(
            "/models/busy/feedback", json={"prediction_id": prediction_id, "label": label}
        )
        assert response.status_code == 200, response.text
    assert api.get("/models/busy").json()["applied_seq"] == 2


# [engine] max_pending_predictions: a predict that finds the record buffer full is refused with
# 503 (back-pressure); every prediction answered 200 has its record written. Seen on an older
# onlearn: at saturation the writer dropped 51% of 400k records, whose feedback then got 404.


def test_predictions_past_the_record_buffer_are_503_and_every_200_has_its_record(
    api, limits_server
):
    refused_before = metric(api, "onlearn_prediction_records_refused")
    dropped_before = metric(api, "onlearn_prediction_records_dropped")
    rows = [{"features": f} for f, _ in xy_rows(200, seed=11)]
    batch = LIMITS["max_batch_rows"]
    answered, refused_rows = [], 0
    with store_stalled(limits_server):
        for i in range(0, len(rows), batch):
            response = api.post("/models/buf/predict/batch", json={"rows": rows[i : i + batch]})
            if response.status_code == 503:
                message(response, 503, "max_pending_predictions", "retry")
                assert response.headers["retry-after"] == "1"
                refused_rows += batch
                continue
            assert response.status_code == 200, response.text
            answered += [p["prediction_id"] for p in response.json()["predictions"]]
        for _ in range(batch):  # single predicts: admitted while a row fits, then refused
            response = api.post("/models/buf/predict", json={"features": ROW})
            if response.status_code == 200:
                answered.append(response.json()["prediction_id"])
                continue
            message(response, 503, "max_pending_predictions")
            refused_rows += 1
            break
        else:
            pytest.fail("a full buffer took more single predicts")
        pending = metric(api, "onlearn_prediction_records_pending")
        assert pending <= LIMITS_MAX_PENDING_PREDICTIONS
    assert 0 < len(answered) <= LIMITS_MAX_PENDING_PREDICTIONS and refused_rows > 100
    assert metric(api, "onlearn_prediction_records_refused") - refused_before == refused_rows
    # Once the store is back: every answered prediction has its record, none was dropped.
    wait_until(lambda: metric(api, "onlearn_prediction_records_pending") == 0, timeout=10)
    assert metric(api, "onlearn_prediction_records_dropped") == dropped_before
    with open_store(limits_server.store_url) as store:
        missing = [pid for pid in answered if store.predictions.get(pid) is None]
    assert missing == [], f"{len(missing)} predictions answered 200 have no record"
    response = api.post("/models/buf/predict", json={"features": ROW})
    assert response.status_code == 200, response.text
