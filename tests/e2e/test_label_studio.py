"""onlearn as Label Studio's ML backend, against a real server process: the protocol with the
bodies Label Studio 1.23 sends (label_studio/ml/api_connector.py and webhooks/ of its source,
and label-studio-ml-backend's api.py), HTTP Basic and roles on these routes, annotations
learned once, updated as corrections, deleted as retractions.

`make e2e-label-studio` runs the same loop against a real Label Studio (scripts/).
"""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.e2e.configs import LS_KEYS
from tests.e2e.helpers import xy_rows
from tests.servers import ServerProcess

KEYS = {name: key for name, (_, key) in LS_KEYS.items()}
CONFIG = """<View>
  <Header value="Which side of the diagonal?"/>
  <Text name="point" value="($x, $y)"/>
  <Choices name="side" toName="point" choice="single" showInLine="true">
    <Choice value="pos"/>
    <Choice value="neg"/>
  </Choices>
</View>"""
CREATED_AT = "2026-12-07T20:15:42.123456Z"
PROJECT_UID = "7.1796674542"  # "<id>.<int(created_at.timestamp())>", as Label Studio makes it


def basic(key: str, user: str = "label-studio") -> dict[str, str]:
    token = base64.b64encode(f"{user}:{key}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


LS = basic(KEYS["label-studio"])


@pytest.fixture(scope="module")
def api(label_studio_server: ServerProcess):
    with httpx.Client(base_url=label_studio_server.url, timeout=30) as client:
        yield client


# The bodies, field for field as Label Studio 1.23 sends them.


def setup_body(config: str = CONFIG) -> dict:
    return {
        "project": PROJECT_UID,
        "schema": config,
        "hostname": "http://localhost:8080",
        "access_token": "b5b1e1b0a5c3f0d9a7b8c6d5e4f3a2b1c0d9e8f7",
        "extra_params": None,
    }


def task(task_id: int, data: dict) -> dict:
    """TaskSimpleSerializer's fields (predict) and TaskWebhookSerializer's (webhook)."""
    return {
        "id": task_id,
        "data": data,
        "meta": {},
        "created_at": "2026-12-07T20:16:01.000000Z",
        "updated_at": "2026-12-07T20:16:01.000000Z",
        "is_labeled": False,
        "overlap": 1,
        "inner_id": task_id,
        "total_annotations": 0,
        "cancelled_annotations": 0,
        "total_predictions": 0,
        "comment_count": 0,
        "unresolved_comment_count": 0,
        "last_comment_updated_at": None,
        "project": 7,
        "updated_by": None,
        "file_upload": 3,
        "comment_authors": [],
    }


def predict_body(tasks: list[dict], config: str = CONFIG) -> dict:
    return {
        "tasks": tasks,
        "project": PROJECT_UID,
        "label_config": config,
        "params": {"login": None, "password": None, "context": None},
    }


def project(config: str = CONFIG) -> dict:
    """ProjectWebhookSerializer: every field of the project, the counters among them."""
    return {
        "id": 7,
        "title": "Diagonal",
        "description": "",
        "label_config": config,
        "expert_instruction": "",
        "show_instruction": False,
        "show_skip_button": True,
        "enable_empty_annotation": True,
        "show_annotation_history": False,
        "organization": 1,
        "color": "#FFFFFF",
        "maximum_annotations": 1,
        "is_published": False,
        "model_version": "v1-0",
        "is_draft": False,
        "created_by": 1,
        "created_at": CREATED_AT,
        "min_annotations_to_start_training": 0,
        "start_training_on_annotation_update": False,
        "show_collab_predictions": True,
        "sampling": "Sequential sampling",
        "show_ground_truth_first": False,
        "show_overlap_first": False,
        "overlap_cohort_percentage": 100,
        "task_data_login": None,
        "task_data_password": None,
        "control_weights": {"side": {"type": "Choices", "labels": {"pos": 1.0, "neg": 1.0}}},
        "parsed_label_config": {"side": {"type": "Choices", "to_name": ["point"]}},
        "evaluate_predictions_automatically": False,
        "task_number": 3,
        "finished_task_number": 1,
        "total_predictions_number": 3,
        "total_annotations_number": 1,
        "num_tasks_with_annotations": 1,
        "useful_annotation_number": 1,
        "ground_truth_number": 0,
        "skipped_annotations_number": 0,
    }


def annotation(annotation_id: int, task_id: int, choice: str | None, **more) -> dict:
    """AnnotationWebhookSerializer: the annotation's fields; completed_by is the user's id."""
    result = []
    if choice is not None:
        result = [
            {
                "value": {"choices": [choice]},
                "id": "aB3dE5fG7h",
                "from_name": "side",
                "to_name": "point",
                "type": "choices",
                "origin": "manual",
            }
        ]
    return {
        "id": annotation_id,
        "result": result,
        "was_cancelled": False,
        "ground_truth": False,
        "created_at": "2026-12-07T20:17:03.000000Z",
        "updated_at": "2026-12-07T20:17:03.000000Z",
        "draft_created_at": None,
        "lead_time": 4.2,
        "import_id": None,
        "last_action": None,
        "bulk_created": False,
        "task": task_id,
        "project": 7,
        "updated_by": 2,
        "parent_prediction": None,
        "parent_annotation": None,
        "last_created_by": None,
        "completed_by": 2,
        "unique_id": "3f1c2d4e-0000-4000-8000-000000000000",
        "result_count": len(result),
        **more,
    }


def webhook(action: str, ann: dict, tsk: dict) -> dict:
    return {"action": action, "annotation": ann, "task": tsk, "project": project()}


def deleted(*ids: int) -> dict:
    return {
        "action": "ANNOTATIONS_DELETED",
        "annotations": [{"id": i} for i in ids],
        "project": project(),
    }


def post(api: httpx.Client, model: str, route: str, body: dict, headers=LS) -> httpx.Response:
    return api.post(f"/label-studio/{model}/{route}", json=body, headers=headers)


def metrics(api: httpx.Client, model: str) -> dict:
    answer = api.get(f"/models/{model}/metrics", headers={"X-API-Key": KEYS["label-studio"]})
    assert answer.status_code == 200, answer.text
    return answer.json()["versions"]["v1"]


def strings(features: dict) -> dict:
    """Task data as a CSV import gives it to Label Studio: every value a string."""
    return {k: str(v) for k, v in features.items()}


# The protocol


def test_label_studio_connects_predicts_and_learns(api):
    health = api.get("/label-studio/ls/health", headers=LS)
    assert health.status_code == 200 and health.json()["status"] == "UP", health.text
    setup = post(api, "ls", "setup", setup_body())
    assert setup.status_code == 200, setup.text
    first_version = setup.json()["model_version"]
    assert first_version == "v1-0"

    rows = xy_rows(40, seed=11)
    tasks = [
        task(100 + i, strings(f) | {"note": "shown, not a feature"})
        for i, (f, _) in enumerate(rows)
    ]
    for i, (_, label) in enumerate(rows):
        ack = post(
            api,
            "ls",
            "webhook",
            webhook("ANNOTATION_CREATED", annotation(1000 + i, 100 + i, label), tasks[i]),
        )
        assert ack.status_code == 200, ack.text
        (result,) = ack.json()["results"]
        assert result["durable"] and result["applied"] and result["label"] == label

    learned = metrics(api, "ls")
    assert learned["labels_by_source"] == {"human": 40}
    assert learned["labels_by_labeller"] == {"label-studio:user:2": 40}

    answer = post(api, "ls", "predict", predict_body(tasks[:5]))
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert len(results) == 5
    version = post(api, "ls", "setup", setup_body()).json()["model_version"]
    assert version != first_version and version.startswith("v1-")  # it learned: a new epoch
    for result, (features, _) in zip(results, rows[:5], strict=True):
        (region,) = result["result"]
        assert region["from_name"] == "side" and region["to_name"] == "point"
        assert region["type"] == "choices" and region["value"]["choices"][0] in ("pos", "neg")
        assert result["model_version"] == version
        # The score is the model's confidence: the probability of the choice it made.
        direct = api.post(
            "/models/ls/predict", json={"features": features}, headers={"X-API-Key": KEYS["app"]}
        ).json()
        assert region["value"]["choices"] == [direct["label"]]
        assert result["score"] == pytest.approx(max(direct["proba"].values()))
        assert 0.5 <= result["score"] <= 1.0


def test_csv_strings_are_read_by_the_schema(api):
    assert post(api, "lscsv", "setup", setup_body()).status_code == 200
    body = predict_body([task(1, {"x": " 0.75", "y": "-1e-1"}), task(2, {"x": 0.75, "y": -0.1})])
    answer = post(api, "lscsv", "predict", body)
    assert answer.status_code == 200, answer.text
    one, two = answer.json()["results"]
    assert one["score"] == two["score"] and one["result"] == two["result"]

    flags = """<View><Text name="t" value="$color"/><Choices name="flag" toName="t">
      <Choice value="True"/><Choice value="False"/></Choices></View>"""
    data = {"n": "", "ok": "yes", "color": "red"}
    answer = post(api, "lsflags", "predict", predict_body([task(3, data)], flags))
    assert answer.status_code == 200, answer.text
    ack = post(
        api,
        "lsflags",
        "webhook",
        {
            "action": "ANNOTATION_CREATED",
            "annotation": annotation(3, 3, None, result=[_choice("flag", "t", "True")]),
            "task": task(3, data),
            "project": project(flags),
        },
    )
    assert ack.status_code == 200, ack.text
    assert ack.json()["results"][0]["label"] is True  # the boolean class, not "True"

    # What does not read as the type is refused naming the field: one task alone is a 422...
    bad = post(api, "lscsv", "predict", predict_body([task(4, {"x": "abc", "y": "0"})]))
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "tasks", 0, "data", "x"]
    # ...among others, an empty result with the error, so the others get their scores.
    mixed = post(
        api,
        "lscsv",
        "predict",
        predict_body([task(5, {"x": "1", "y": "1"}), task(4, {"x": "abc", "y": "0"})]),
    )
    assert mixed.status_code == 200, mixed.text
    good, broken = mixed.json()["results"]
    assert (
        good["score"] is not None
        and broken["result"] == []
        and "x must be a number" in broken["error"]
    )


def refusal(response: httpx.Response) -> str:
    assert response.status_code == 422, response.text
    return response.json()["detail"][0]["msg"]


def _choice(from_name: str, to_name: str, choice: str) -> dict:
    return {
        "value": {"choices": [choice]},
        "id": "zZ9yY8xX7w",
        "from_name": from_name,
        "to_name": to_name,
        "type": "choices",
        "origin": "manual",
    }


def test_a_label_config_that_does_not_fit_is_refused_at_setup(api):
    wrong = CONFIG.replace('value="neg"', 'value="Negative"')
    answer = post(api, "ls", "setup", setup_body(wrong))
    assert answer.status_code == 422, answer.text
    (error,) = answer.json()["detail"]
    assert error["loc"] == ["body", "schema"]
    assert "'Negative'" in error["msg"] and "classes with no choice: 'neg'" in error["msg"]

    several = CONFIG.replace('choice="single"', 'choice="multiple"')
    assert 'choice="multiple"' in refusal(post(api, "ls", "setup", setup_body(several)))
    assert "no <Choices>" in refusal(post(api, "ls", "setup", setup_body("<View/>")))
    assert "not valid XML" in refusal(post(api, "ls", "setup", setup_body("<View>")))
    bomb = '<!DOCTYPE v [<!ENTITY a "aaaa">]><View>&a;</View>'
    assert post(api, "ls", "setup", setup_body(bomb)).status_code == 422
    # The same check guards predict and webhook: nothing is learned against another config.
    assert (
        post(api, "ls", "predict", predict_body([task(1, {"x": 1, "y": 1})], wrong)).status_code
        == 422
    )

    regression = post(api, "lsreg", "setup", setup_body())
    assert regression.status_code == 422
    assert "classification models only" in regression.json()["detail"][0]["msg"]
    assert post(api, "nosuchmodel", "setup", setup_body()).status_code == 404


# Annotations: once, corrected, retracted


def test_a_webhook_delivered_twice_is_learned_once(api):
    (features, label), *_ = xy_rows(1, seed=21)
    body = webhook("ANNOTATION_CREATED", annotation(1, 1, label), task(1, strings(features)))
    first = post(api, "lsdup", "webhook", body).json()["results"][0]
    again = post(api, "lsdup", "webhook", body).json()["results"][0]
    assert first["seq"] == again["seq"]
    assert metrics(api, "lsdup")["labels_by_source"] == {"human": 1}
    # Other actions (Label Studio sends every one to the backend's webhook) change nothing.
    for action in ("PROJECT_UPDATED", "TASKS_CREATED", "START_TRAINING"):
        ignored = post(api, "lsdup", "webhook", {"action": action, "project": project()})
        assert ignored.status_code == 200 and ignored.json()["status"] == "ignored"
    # Start Training (posted to /train by some Label Studio versions): nothing to start.
    started = post(api, "lsdup", "train", {"annotations": [], "project": PROJECT_UID})
    assert started.status_code == 200 and started.json()["job"] is None, started.text
    skipped = annotation(2, 1, None, was_cancelled=True)
    answer = post(
        api, "lsdup", "webhook", webhook("ANNOTATION_CREATED", skipped, task(1, features))
    )
    assert "skipped" in answer.json()["results"][0]["ignored"]
    assert metrics(api, "lsdup")["labels_by_source"] == {"human": 1}


def test_an_update_is_a_correction_and_a_create_that_differs_is_a_conflict(api):
    features = {"x": 0.5, "y": 0.5}
    tsk = task(1, strings(features))
    post(api, "lsfix", "webhook", webhook("ANNOTATION_CREATED", annotation(5, 1, "neg"), tsk))
    fixed = post(
        api, "lsfix", "webhook", webhook("ANNOTATION_UPDATED", annotation(5, 1, "pos"), tsk)
    )
    assert fixed.status_code == 200, fixed.text
    assert fixed.json()["results"][0]["correction"] is True
    corrections = metrics(api, "lsfix")["corrections"]
    assert corrections["total"] == 1 and corrections["by_source"] == {"human": 1}
    # The same update again: idempotent.
    again = post(
        api, "lsfix", "webhook", webhook("ANNOTATION_UPDATED", annotation(5, 1, "pos"), tsk)
    )
    assert again.json()["results"][0]["seq"] == fixed.json()["results"][0]["seq"]
    # A create (not an update) with another label for the same annotation: 409, not used.
    conflict = post(
        api, "lsfix", "webhook", webhook("ANNOTATION_CREATED", annotation(5, 1, "neg"), tsk)
    )
    assert conflict.status_code == 409, conflict.text
    assert conflict.json()["detail"]["recorded"]["label"] == "pos"
    # What to do is said in Label Studio's terms, not feedback's ("correction": true).
    message = conflict.json()["detail"]["msg"]
    assert "update the annotation in Label Studio" in message and 'correction": true' not in message


def test_a_deletion_is_a_retraction(api):
    rows = xy_rows(3, seed=31)
    for i, (features, label) in enumerate(rows):
        tsk = task(i, strings(features))
        post(
            api,
            "lsdel",
            "webhook",
            webhook("ANNOTATION_CREATED", annotation(50 + i, i, label), tsk),
        )
    answer = post(api, "lsdel", "webhook", deleted(50, 999))
    assert answer.status_code == 200, answer.text
    gone, unknown = answer.json()["results"]
    assert gone["retracted"] and gone["seq"] == 4  # an event of its own, after the three labels
    assert not unknown["retracted"]  # never learned: nothing to retract
    again = post(api, "lsdel", "webhook", deleted(50)).json()["results"][0]
    assert again["seq"] == gone["seq"]  # delivered twice, retracted once
    # The model keeps what it learned (it cannot unlearn): three labels learned, none twice.
    assert metrics(api, "lsdel")["labels_by_source"] == {"human": 3}
    # Refits skip it: tests/core/test_label_studio.py (TrainingLabels, refit).


# Access


def test_basic_and_roles_on_the_label_studio_routes(api):
    body = setup_body()
    none = post(api, "ls", "setup", body, headers={})
    assert none.status_code == 401
    assert "Basic" in none.headers["www-authenticate"] and "HTTP Basic" in none.json()["detail"]
    wrong = post(api, "ls", "setup", body, headers=basic("onl_not-a-key"))
    assert wrong.status_code == 401
    # The password is the key; the user name is free.
    assert (
        post(api, "ls", "setup", body, headers=basic(KEYS["label-studio"], "anyone")).status_code
        == 200
    )
    assert (
        post(
            api, "ls", "setup", body, headers={"Authorization": f"Bearer {KEYS['label-studio']}"}
        ).status_code
        == 200
    )
    # A predict key asks predictions, but annotations are a person's labels: 403.
    app = basic(KEYS["app"])
    assert (
        post(
            api, "ls", "predict", predict_body([task(1, {"x": 1, "y": 1})]), headers=app
        ).status_code
        == 200
    )
    refused = post(api, "ls", "webhook", deleted(1), headers=app)
    assert refused.status_code == 403 and "admin or label" in refused.json()["detail"]
    # Basic is taken on these routes only.
    elsewhere = api.post("/models/ls/predict", json={"features": {"x": 1, "y": 1}}, headers=app)
    assert elsewhere.status_code == 401
    assert "HTTP Basic is taken on /label-studio/... routes only" in elsewhere.json()["detail"]


def test_annotations_created_in_bulk_are_each_learned(api):
    """ANNOTATIONS_CREATED (an import of tasks with annotations): lists of annotations and tasks."""
    rows = xy_rows(3, seed=41)
    tasks = [task(300 + i, strings(f)) for i, (f, _) in enumerate(rows)]
    annotations = [annotation(700 + i, 300 + i, y) for i, (_, y) in enumerate(rows)]
    body = {"action": "ANNOTATIONS_CREATED", "annotation": annotations, "task": tasks[::-1]}
    answer = post(api, "lsbulk", "webhook", body | {"project": project()})
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["annotation"] for r in results] == [700, 701, 702]
    assert [r["label"] for r in results] == [y for _, y in rows]  # each with its own task
    assert metrics(api, "lsbulk")["labels_by_source"] == {"human": 3}


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"action": "ANNOTATION_CREATED", "project": "7"}, ["body", "project"]),
        (
            {"action": "ANNOTATION_CREATED", "project": {"label_config": CONFIG}},
            ["body", "project", "id"],
        ),
        ({"action": "ANNOTATION_CREATED", "annotation": [1], "task": 5}, ["body", "annotation"]),
        (
            {"action": "ANNOTATION_CREATED", "annotation": {"id": 1, "result": "x"}},
            ["body", "annotation", "result"],
        ),
        (
            {
                "action": "ANNOTATION_UPDATED",
                "annotation": annotation(1, 1, "pos")
                | {"result": [_choice("side", "point", "maybe")]},
                "task": task(1, {}),
            },
            ["body", "annotation", "result", 0, "value", "choices"],
        ),
        (
            {
                "action": "ANNOTATION_CREATED",
                "annotation": annotation(1, 1, "pos"),
                "task": {"id": 1},
            },
            ["body", "task", "data"],
        ),
        (
            {
                "action": "ANNOTATION_CREATED",
                "annotation": annotation(1, 1, "pos"),
                "task": task(1, {"x": "far"}),
            },
            ["body", "task", "data", "x"],
        ),
        (
            {"action": "ANNOTATIONS_DELETED", "annotations": {"id": []}},
            ["body", "annotations", 0, "id"],
        ),
        ({"action": "ANNOTATIONS_DELETED", "annotations": 3}, ["body", "annotations"]),
        # More than [limits] max_batch_rows (10,000 here), as a feedback batch.
        (
            {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": i} for i in range(10_001)]},
            ["body", "annotations"],
        ),
        (
            {"action": "ANNOTATIONS_CREATED", "annotation": [{"id": i} for i in range(10_001)]},
            ["body", "annotation"],
        ),
    ],
    ids=[
        "project",
        "project-id",
        "annotation",
        "result",
        "choice",
        "data",
        "feature",
        "deleted-id",
        "deleted",
        "deleted-too-many",
        "created-too-many",
    ],
)
def test_a_malformed_webhook_is_a_422_naming_the_field(api, body, loc):
    body = {"project": project(), **body}
    answer = post(api, "lsdup", "webhook", body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"][: len(loc)] == loc, answer.json()


@pytest.mark.parametrize("route", ["setup", "predict", "webhook", "train"])
def test_a_body_nested_thousands_deep_is_a_422_as_on_the_other_routes(api, route):
    # FastAPI's own body parsing (these routes) answered a bare 400 "error parsing the body".
    body = b'{"schema": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    answer = api.post(
        f"/label-studio/ls/{route}",
        content=body,
        headers={**LS, "content-type": "application/json"},
    )
    assert answer.status_code == 422, answer.text
    (error,) = answer.json()["detail"]
    assert error["loc"] == ["body"] and error["msg"] == "JSON decode error: nested too deeply"
