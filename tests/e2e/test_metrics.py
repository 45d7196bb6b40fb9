"""GET /models/{name}/metrics and GET /metrics, checked against what the API itself answered."""

from __future__ import annotations

import math
import time
from collections import Counter

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.configs import MODELS
from tests.e2e.helpers import learn, strict_json, xy_rows

EPSILON = 1e-15  # the log loss clips probabilities as scikit-learn does


def get(api: httpx.Client, path: str) -> dict:
    response = api.get(path)
    assert response.status_code == 200, response.text
    return strict_json(response)


def test_prequential_metrics_equal_an_oracle_of_the_served_answers(api):
    """Score what the API answered for the same requests, by hand, and compare."""
    sources = ("app", "human", "weak")
    scored = []  # (answer the client got, true label)
    by_source: Counter[str] = Counter()
    longest = 0.0
    for i, (features, label) in enumerate(xy_rows(45, seed=11)):
        started = time.monotonic()
        answer = strict_json(api.post("/models/scored/predict", json={"features": features}))
        if i % 5 == 0:
            time.sleep(0.05)  # a label that comes late
        body = {"prediction_id": answer["prediction_id"], "label": label, "source": sources[i % 3]}
        assert api.post("/models/scored/feedback", json=body).status_code == 200
        longest = max(longest, time.monotonic() - started)
        scored.append((answer, label))
        by_source[sources[i % 3]] += 1
    # Inline labels have no stored prediction: the model is scored on what it says just before
    # it learns, which is what a predict says now (nothing else teaches this model).
    for features, label in xy_rows(5, seed=12):
        answer = strict_json(api.post("/models/scored/predict", json={"features": features}))
        body = {"features": features, "label": label}
        assert api.post("/models/scored/feedback", json=body).status_code == 200
        scored.append((answer, label))
        by_source["app"] += 1

    n = len(scored)
    correct = sum(answer["label"] == label for answer, label in scored)
    log_loss = -sum(
        math.log(min(max(answer["proba"].get(label, 0.0), EPSILON), 1.0))
        for answer, label in scored
    )
    assert 0 < correct < n  # the check below is not trivially 0 or 1

    metrics = get(api, "/models/scored/metrics")
    assert metrics["model"] == "scored" and metrics["task"] == "classification"
    assert metrics["applied_seq"] == n
    assert set(metrics["versions"]) == {"v1"}
    v1 = metrics["versions"]["v1"]
    assert v1["roles"] == ["champion"]
    assert v1["n"] == n
    assert v1["accuracy"] == correct / n
    assert math.isclose(v1["log_loss"], log_loss / n, rel_tol=1e-12)
    assert 0.0 <= v1["macro_f1"] <= 1.0
    assert v1["labels_by_source"] == dict(by_source)
    assert v1["scored_on_stored_prediction"] == 45
    assert v1["scored_on_replay"] == 5
    assert v1["learn_errors"] == 0
    delay = v1["label_delay_s"]
    assert delay["n"] == 45  # inline labels have no prediction time
    assert 0.05 <= delay["max"] <= longest
    assert 0.0 < delay["mean"] < delay["max"]


def prometheus(api: httpx.Client) -> dict[tuple[str, tuple], float]:
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_prometheus_metrics_agree_with_the_api(api):
    answers = list(learn(api, "observed", xy_rows(12, seed=13)))
    expected_accuracy = sum(a["label"] == y for a, y, _ in answers) / 12
    samples = prometheus(api)
    model = (("model", "observed"),)
    version = (("model", "observed"), ("version", "v1"))
    assert samples["onlearn_predictions_total", model] == 12
    assert samples["onlearn_labels_applied_total", model] == 12
    assert samples["onlearn_applied_seq", model] == 12
    assert samples["onlearn_version_labels", version] == 12
    assert samples["onlearn_version_accuracy", version] == expected_accuracy
    assert ("onlearn_version_log_loss", version) in samples
    assert ("onlearn_snapshot_seq", model) in samples
    # One series per served model.
    assert {dict(labels)["model"] for name, labels in samples if name == "onlearn_applied_seq"} == (
        MODELS
    )
    for name in (
        "onlearn_prediction_records_pending",
        "onlearn_prediction_records_written_total",
        "onlearn_prediction_records_dropped_total",
        "onlearn_prediction_records_unwritable_total",
        "onlearn_prediction_records_refused_total",
        "onlearn_log_commit_batches_total",
        "onlearn_log_committed_events_total",
        "process_resident_memory_bytes",
    ):
        assert (name, ()) in samples, name
    assert samples["onlearn_log_committed_events_total", ()] >= 12


def test_prometheus_counters_match_each_model_description(api):
    samples = prometheus(api)
    for name in MODELS:
        described = get(api, f"/models/{name}")
        model = (("model", name),)
        assert samples["onlearn_predictions_total", model] == described["counters"]["predictions"]
        assert (
            samples["onlearn_labels_applied_total", model]
            == described["counters"]["labels_applied"]
        )
        assert samples["onlearn_applied_seq", model] == described["applied_seq"]
