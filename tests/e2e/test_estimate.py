"""The accuracy estimated without labels, over HTTP: in ``/models/{name}/drift``, in
``/metrics`` with the same figures, and documented in the OpenAPI document."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.helpers import READY_TIMEOUT, launch, learn, shutdown, wait_until, xy_model, xy_rows

CONFIG = f"""
[security]
secret_key = "test"

{xy_model("est")}
[models.est.monitor]
window = 100
reference_size = 150
report_every = 50
min_report_interval_s = 0
estimate_window_labels = 50
"""


def gauges(text: str, name: str) -> dict[str, float]:
    return {
        s.labels["version"]: s.value
        for family in text_string_to_metric_families(text)
        if family.name == name
        for s in family.samples
        if s.labels.get("model") == "est"
    }


def test_the_estimate_is_in_the_drift_answer_the_metrics_and_the_openapi_document(tmp_path):
    server = launch(tmp_path, CONFIG).wait_ready(READY_TIMEOUT)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as api:
            list(learn(api, "est", xy_rows(300, seed=3)))
            # The monitor sidecar may start after the first labels (it reads back the last
            # reference_size of them, and the last minute of predictions): wait until it has
            # read every prediction, then check against the labels it says it read.
            report = wait_until(
                lambda: (
                    (r := api.get("/models/est/drift").json()).get("performance_estimate")
                    and r["validation"]["rows"] == 300
                    and "v1" in r["performance_estimate"]["versions"]
                    and r
                ),
                timeout=60,
                every=0.5,
            )
            estimate = report["performance_estimate"]
            assert estimate["calibration_source"] == "all_labels"
            v1 = estimate["versions"]["v1"]
            assert 0.5 < v1["estimated_accuracy"] <= 1
            assert report["estimated_accuracy"]["v1"] == v1["estimated_accuracy"]
            labels = report["timeline"][-1]["labels"]
            # Every label the monitor read calibrates, but the first answer (of a model that had
            # learned nothing) when it read that far back: it has no probabilities.
            assert labels - 1 <= v1["calibration_labels"] <= labels
            assert v1["reconciliation"]["windows"] == v1["calibration_labels"] // 50
            assert v1["expected_calibration_error"] is not None

            def exported():
                text = api.get("/metrics").text
                got = gauges(text, "onlearn_estimated_accuracy")
                return got.get("v1") == v1["estimated_accuracy"] and text

            text = wait_until(exported, timeout=10, every=0.5)  # /metrics caches reports 2 s
            assert (
                gauges(text, "onlearn_expected_calibration_error")["v1"]
                == (v1["expected_calibration_error"])
            )
            assert (
                gauges(text, "onlearn_estimate_abs_error")["v1"]
                == (v1["reconciliation"]["mean_abs_error"])
            )

            document = api.get("/openapi.json").json()
            drift = document["paths"]["/models/{name}/drift"]["get"]["responses"]["200"]
            assert drift["content"]["application/json"]["schema"]["$ref"].endswith("/DriftResponse")
            fields = document["components"]["schemas"]["VersionEstimate"]["properties"]
            assert {"estimated_accuracy", "expected_calibration_error", "reconciliation"} <= set(
                fields
            )
    finally:
        shutdown(server)
