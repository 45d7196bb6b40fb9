"""An error answer is bounded, however many rules a request breaks: a 1.7 MB batch whose rows had
unknown fields once made a 39 MB 422 and held the event loop for seconds. Each answer lists the
first errors (naming field and rule, as always) and counts the others."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from onlearn.errors import MAX_LISTED_ERRORS
from tests.e2e.configs import WIDE_FEATURES
from tests.e2e.helpers import strict_json
from tests.servers import ServerProcess

BOUND = 64 * 1024  # bytes: far above what 20 errors take, far below what thousands would
ROWS = 3000
UNKNOWN = ("colour", "extra_a", "extra_b")  # three unknown fields in every row
ROW = {**{name: 0.5 for name in WIDE_FEATURES}, **dict.fromkeys(UNKNOWN, 1)}


@pytest.fixture(scope="module")
def api(bounds_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=bounds_server.url, timeout=60) as client:
        yield client


def bounded_422(response: httpx.Response, omitted: int) -> list[dict]:
    """The listed errors of a bounded 422 that says ``omitted`` more were left out."""
    assert response.status_code == 422, (response.status_code, response.text[:2000])
    assert len(response.content) < BOUND, len(response.content)
    detail = strict_json(response)["detail"]
    *listed, rest = detail
    assert len(listed) == MAX_LISTED_ERRORS, listed
    assert rest["type"] == "too_many_errors" and rest["omitted"] == omitted, rest
    assert f"and {omitted} more errors" in rest["msg"], rest
    return listed


def test_a_big_batch_of_bad_rows_gets_a_small_422_naming_the_first_errors(api):
    rows = [{"features": ROW} for _ in range(ROWS)]
    response = api.post("/models/wide/predict/batch", json={"rows": rows})
    assert len(response.request.content) > 1_500_000  # the size of the batch that was seen
    listed = bounded_422(response, omitted=ROWS * len(UNKNOWN) - MAX_LISTED_ERRORS)
    first = listed[0]
    assert first["loc"] == ["body", "rows", 0, "features", "colour"], first
    assert first["type"] == "unknown", first
    assert "colour is not in the schema (did you mean color?)" in first["msg"], first
    # Each error lists a few of the known fields, not all 30.
    assert "known fields: color, feature_00" in first["msg"], first
    assert "feature_28" not in first["msg"] and "(30 in all)" in first["msg"], first
    assert [e["loc"][2] for e in listed] == [i // 3 for i in range(MAX_LISTED_ERRORS)]
    # The server is not worn out by it: the good rows of the same size go through.
    good = {name: 0.5 for name in WIDE_FEATURES}
    response = api.post("/models/wide/predict/batch", json={"rows": [{"features": good}] * ROWS})
    assert response.status_code == 200, response.text[:2000]


def test_a_big_feedback_batch_of_bad_items_gets_a_small_422(api):
    items = [{"features": ROW, "label": "pos"} for _ in range(ROWS)]
    response = api.post("/models/wide/feedback/batch", json={"items": items})
    listed = bounded_422(response, omitted=ROWS * len(UNKNOWN) - MAX_LISTED_ERRORS)
    assert listed[0]["loc"] == ["body", "items", 0, "features", "colour"], listed[0]
    assert listed[0]["type"] == "unknown", listed[0]
    # Rows that break the request's shape (not the schema) are bounded the same way.
    items = [{"label": "pos", "features": {}, "extra": i} for i in range(ROWS)]
    response = api.post("/models/wide/feedback/batch", json={"items": items})
    listed = bounded_422(response, omitted=ROWS - MAX_LISTED_ERRORS)
    assert listed[0]["loc"] == ["body", "items", 0, "extra"], listed[0]
    assert listed[0]["type"] == "extra_forbidden", listed[0]


def test_fastapi_validation_errors_are_bounded_too(api):
    """A documented FastAPI route (the queue's claim) validates with pydantic: thousands of
    unknown fields are as many errors, each echoing its input."""
    body = {"limit": 1, **{f"field_{i}": "x" * 100 for i in range(5000)}}
    response = api.post("/models/wide/queue/claim", json=body)
    listed = bounded_422(response, omitted=5000 - MAX_LISTED_ERRORS)
    assert listed[0]["loc"] == ["body", "field_0"], listed[0]
    assert listed[0]["type"] == "extra_forbidden", listed[0]


def test_an_echoed_input_and_a_long_field_name_are_cut(api):
    response = api.post("/models/wide/queue/claim", json={"limit": "9" * 1_000_000})
    assert response.status_code == 422, response.text[:2000]
    assert len(response.content) < 4096, len(response.content)
    (error,) = strict_json(response)["detail"]
    assert error["loc"] == ["body", "limit"], error
    assert "1000002 characters of JSON" in error["input"], error
    name = "n" * 1_000_000
    response = api.post("/models/wide/predict", json={"features": {**ROW, name: 1}})
    assert response.status_code == 422, response.text[:2000]
    assert len(response.content) < 8192, len(response.content)
    errors = {e["loc"][-1][:10]: e for e in strict_json(response)["detail"]}
    assert errors["nnnnnnnnnn"]["type"] == "unknown", errors
    unknown = errors["nnnnnnnnnn"]
    assert unknown["loc"][-1].endswith("... (1000000 characters)"), unknown["loc"]
    assert unknown["msg"].endswith(" characters)") and len(unknown["msg"]) < 1000, unknown
