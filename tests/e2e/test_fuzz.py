"""The OpenAPI document, fuzzed against a running server with every check schemathesis has: no
generated request gets a 5xx, every answer is one the document declares (status code, content
type, headers, body schema), every request the document allows is accepted (no 422) and every
request it forbids is refused with a 4xx.

The document is the server's own /openapi.json, which types each served model (its features,
its labels, its retrain options: serving/typed_openapi.py) and lists the served models' names.
Only what no document can know is aimed before the run: queue item ids are real ones, versions
are v1 and v2. Schemathesis then generates valid and invalid requests from it for every
operation.

The run is bounded and reproducible: a fixed number of examples per operation, derandomized.
"""

from __future__ import annotations

import copy
import os
from collections import Counter

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.generation import GenerationMode

from tests.e2e.configs import FUZZ_MODELS
from tests.servers import ServerProcess

EXAMPLES_PER_OPERATION = int(os.environ.get("ONLEARN_FUZZ_EXAMPLES", "40"))


def every_check() -> list:
    """All of schemathesis's checks (what ``--checks all`` runs): among them
    negative_data_rejection and positive_data_acceptance."""
    load_all_checks()
    return CHECKS.get_all()


# A label config whose choices are the classes of FUZZ_MODELS[0] (cat, dog).
LABEL_CONFIG = (
    '<View><Text name="text" value="$name"/>'
    '<Choices name="animal" toName="text"><Choice value="cat"/><Choice value="dog"/></Choices>'
    "</View>"
)


def aimed(document: dict, *, item_ids: list[str]) -> dict:
    """The document with the ids only a running server knows narrowed to real ones."""
    doc = copy.deepcopy(document)
    for operations in doc["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] == "item_id":
                    parameter["schema"] = {"type": "string", "enum": item_ids}
                if parameter["in"] == "path" and parameter["name"] == "version":
                    parameter["schema"] = {"type": "string", "enum": ["v1", "v2"]}
    # Label Studio's label config is XML whose choices must be the model's classes: a string to
    # the document, a rule no JSON Schema states. Narrowed to one that fits the classifier
    # (the only model those routes serve here); the negative mode still sends others.
    schemas = doc["components"]["schemas"]
    for body, field in (
        ("LabelStudioSetupRequest", "schema"),
        ("LabelStudioPredictRequest", "label_config"),
    ):
        schemas[body]["properties"][field] = {"type": "string", "enum": [LABEL_CONFIG]}
    return doc


@pytest.fixture(scope="session")
def fuzz_schema(fuzz_server: ServerProcess):
    with httpx.Client(base_url=fuzz_server.url, timeout=30) as api:
        document = api.get("/openapi.json").json()
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
    # The server's own document types every model: nothing of it is patched here.
    for name in FUZZ_MODELS:
        assert f"/models/{name}/predict" in document["paths"], sorted(document["paths"])
    schema = schemathesis.openapi.from_dict(aimed(document, item_ids=item_ids + ["unknown"]))
    schema.config.update(base_url=fuzz_server.url)
    # A valid label for a queue item that left the queue is 410 Gone, a state answer like the
    # 404 and 409 schemathesis already counts as no rejection of the data.
    accepted = schema.config.checks.positive_data_acceptance
    accepted.expected_statuses = [*accepted.expected_statuses, "410"]
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


CHECKS_RUN = every_check()


# Label Studio's predict answers one result per task, a task whose data does not fit the model
# getting an empty result and its error (Label Studio pairs results with tasks by position, and
# one bad row must not cost a batch its scores), and is a 422 only when no task fits. Whether a
# body is accepted thus depends on how many of its tasks fit, which no JSON Schema can state:
# the two data-acceptance checks are left out for it alone (every other check runs, and
# tests/e2e/test_label_studio.py checks the per-task answers).
PER_TASK_ANSWERS = {"POST /label-studio/{name}/predict"}
DATA_ACCEPTANCE = {"negative_data_rejection", "positive_data_acceptance"}


def fuzz(operation, mode: GenerationMode, sent: Counter) -> str | None:
    """Run the generated cases of one operation; the first failure, or None."""
    checks = CHECKS_RUN
    if operation.label in PER_TASK_ANSWERS:
        checks = [check for check in CHECKS_RUN if check.__name__ not in DATA_ACCEPTANCE]
        assert len(checks) == len(CHECKS_RUN) - len(DATA_ACCEPTANCE)

    @FUZZ_SETTINGS
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        sent[operation.label] += 1
        response = case.call_and_validate(checks=checks, timeout=30)
        if response.status_code == 202 and "job_id" in response.json():
            # A valid retrain is a refit (a forest of 50 trees, 20 passes): stopped at once, or
            # refits would hold the server's CPU through the run and the tests after it.
            httpx.post(
                f"{case.operation.schema.config.base_url}/jobs/{response.json()['job_id']}/cancel"
            )

    try:
        run()
    except Unsatisfiable:  # nothing invalid to send: an operation without parameters or body
        return None
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: BLE001 - this operation's failures (an exception group)
        return f"{operation.label} ({mode.value}): {summary(e)}"
    return None


def cancel_jobs(url: str) -> None:
    """Stop the refits the fuzzing started: valid retrain options (forests of 50 trees, 20
    passes) would keep the server's CPU for minutes, and the tests after this one wait for
    labels to be learned."""
    from tests.e2e.helpers import wait_until

    def live(api: httpx.Client) -> list[str]:
        jobs = api.get("/jobs?limit=500").json()["jobs"]
        return [j["job_id"] for j in jobs if j["state"] in ("queued", "running")]

    with httpx.Client(base_url=url, timeout=30) as api:
        for job_id in live(api):
            api.post(f"/jobs/{job_id}/cancel")
        wait_until(lambda: not live(api), timeout=60)


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
    cancel_jobs(fuzz_schema.config.base_url)
    assert not failures, "\n\n".join(failures)
    assert len(sent) >= 20, f"every operation of the document was fuzzed: {sorted(sent)}"
    # Operations with parameters or a body get their full share of examples.
    assert sent["POST /models/fuzz/predict"] >= EXAMPLES_PER_OPERATION, sent
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
    # The sampler asks about the uncertain cases only: after the fuzzing, a row it is sure of
    # is not queued. Predict until one is.
    for weight in range(100):
        answer = fuzz_api.post(
            "/models/fuzz/predict", json={"features": {**ROW, "weight": float(weight)}}
        )
        assert answer.status_code == 200, answer.text
        if answer.json()["queued"]:
            break
    else:
        pytest.fail("100 predictions and none queued at a budget of 1")
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
