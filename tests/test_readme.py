"""The README's first steps, run as written against ``make run``'s config on a fresh store: the
requests it shows are sent, and the answers it shows are the answers that come back."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `pytest` (not `python -m pytest`) does not put the root there
    sys.path.insert(0, str(ROOT))

from tests.servers import ServerProcess, example_server  # noqa: E402

README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end]


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, re.S)


def request(block: str) -> tuple[str, dict]:
    """The path and the JSON body of the curl command in ``block``."""
    path = re.search(r"http://127\.0\.0\.1:8000(/\S+)", block).group(1)
    return path, json.loads(re.search(r"-d '(.*?)'", block, re.S).group(1))


def shown_answer(block: str) -> dict:
    """The answer the README shows, in ``# {...}`` comment lines after the command."""
    lines = re.findall(r"^# ?(.*)$", block, re.M)
    return json.loads("".join(line.strip() for line in lines))


def same(real: Any, shown: Any, where: str = "answer") -> None:
    """The README's answer is the real one: the same keys and values (floats to 1e-9), but for
    ids, which it elides (``01a2...``)."""
    if isinstance(shown, str) and shown.endswith("..."):
        assert isinstance(real, str) and len(real) > len(shown) - 3, (where, real, shown)
    elif isinstance(shown, dict):
        assert isinstance(real, dict) and real.keys() == shown.keys(), (where, real, shown)
        for key in shown:
            same(real[key], shown[key], f"{where}.{key}")
    elif isinstance(shown, float):
        assert real == pytest.approx(shown, rel=1e-9), (where, real, shown)
    else:
        assert real == shown and type(real) is type(shown), (where, real, shown)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory):
    server = example_server(tmp_path_factory.mktemp("readme"))
    try:
        yield server.wait_ready(180)
    finally:
        server.stop()


def test_the_first_predict_and_feedback_answer_what_the_readme_shows(fresh: ServerProcess):
    blocks = shell_blocks(section("Predict, then give the true label"))
    assert len(blocks) == 3, "the README shows a predict, its feedback, and the predict again"
    predict, feedback, again = blocks
    predict_path, features = request(predict)
    feedback_path, label = request(feedback)
    shown_first = shown_answer(predict)
    assert label["prediction_id"] == shown_first["prediction_id"], "the feedback names the predict"
    with httpx.Client(base_url=fresh.url, timeout=30) as api:
        first = api.post(predict_path, json=features)
        assert first.status_code == 200, first.text
        same(first.json(), shown_first, "first predict")

        label["prediction_id"] = first.json()["prediction_id"]
        ack = api.post(feedback_path, json=label)
        assert ack.status_code == 200, ack.text
        same(ack.json(), shown_answer(feedback), "first feedback")

        second = api.post(predict_path, json=features)
        same(second.json(), shown_answer(again), "second predict")
        # "Sending the same feedback twice is harmless: the same seq comes back".
        assert api.post(feedback_path, json=label).json() == ack.json()


def test_the_label_studio_calls_answer_what_the_readme_shows(fresh: ServerProcess):
    setup, predict = shell_blocks(section("Label in Label Studio"))
    with httpx.Client(base_url=fresh.url, timeout=30) as api:
        path, body = request(setup)
        answer = api.post(path, json=body)
        assert answer.status_code == 200, answer.text
        same(answer.json(), shown_answer(setup), "setup")
        # A config whose choices are not the classes is refused at setup.
        wrong = {**body, "schema": body["schema"].replace('"false"', '"legit"')}
        assert api.post(path, json=wrong).status_code == 422
        path, body = request(predict)
        answer = api.post(path, json=body)
        assert answer.status_code == 200, answer.text
        (result,) = answer.json()["results"]
        shown = shown_answer(predict)["results"][0]
        assert result.keys() == shown.keys() and result["model_version"].startswith("v1-")


def test_the_typed_document_the_readme_fetches_types_the_model(fresh: ServerProcess):
    (block,) = shell_blocks(section("Typed clients (OpenAPI)"))
    path = re.search(r"http://127\.0\.0\.1:8000(/\S+)", block).group(1)
    with httpx.Client(base_url=fresh.url, timeout=30) as api:
        document = api.get(path).json()
    assert document["openapi"] == "3.1.0"
    predict = document["paths"]["/models/phishing/predict"]["post"]
    assert predict["operationId"] == "predict_phishing"
    schemas = document["components"]["schemas"]
    assert "age_of_domain" in schemas["PhishingFeatures"]["properties"]
    assert schemas["PhishingLabel"]["type"] == "boolean"  # classes = [true, false]
