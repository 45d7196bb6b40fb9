"""A regression model through a real ``onlearn serve`` (embedded store, its worker and monitor
processes): every answer about its quality is in regression terms (MAE, RMSE, Wilcoxon), and
none shows a classifier's accuracy (seen on main: 0% accuracy on the dashboard and in
``onlearn_recent_accuracy`` for a regression model)."""

from __future__ import annotations

import random
import re
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.browser import browser_page
from tests.e2e.helpers import READY_TIMEOUT, launch, shutdown, strict_json, write_config
from tests.servers import ServerProcess

M = "growth"
MODEL = f"""
[engine]
worker_poll_s = 0.1

[models.{M}]
task = "regression"
pipeline = {{ PIPELINE }}
[models.{M}.monitor]
window = 100
reference_size = 200
report_every = 50
[models.{M}.features]
a = {{ type = "number" }}
b = {{ type = "number" }}
"""
FIRST = MODEL.replace("{ PIPELINE }", '{ name = "linear_regression" }')
# The config's pipeline changes: v2 is registered from it, champion, and v1 stays as previous.
SECOND = MODEL.replace("{ PIPELINE }", '{ name = "linear_regression", lr = 0.003 }')
BATCH = 40


def rows(rng: random.Random, n: int) -> list[tuple[dict, float]]:
    out = []
    for _ in range(n):
        a, b = round(rng.gauss(0, 1), 4), round(rng.gauss(0, 1), 4)
        out.append(({"a": a, "b": b}, 3 * a - 2 * b + 10 + rng.gauss(0, 0.5)))
    return out


def send(api: httpx.Client, batches: int, rng: random.Random) -> None:
    """Predict a batch, then give each prediction's label by its id; paced, so that the
    monitor's reports (every 50 predictions) spread over time."""
    for _ in range(batches):
        batch = rows(rng, BATCH)
        answer = api.post(
            f"/models/{M}/predict/batch", json={"rows": [{"features": f} for f, _ in batch]}
        )
        assert answer.status_code == 200, answer.text
        items = [
            {"prediction_id": p["prediction_id"], "label": y}
            for p, (_, y) in zip(answer.json()["predictions"], batch, strict=True)
        ]
        ack = api.post(f"/models/{M}/feedback/batch", json={"items": items})
        assert ack.status_code == 200, ack.text
        assert not any(r.get("error") for r in ack.json()["results"]), ack.text
        time.sleep(0.1)


def report_when(
    api: httpx.Client, ready, what: str, *, rng: random.Random | None = None, timeout: float = 90.0
) -> tuple[dict, int]:
    """The monitor's report once ``ready(report)`` holds (it reads 2 s behind the present), and
    the labels sent meanwhile: with ``rng``, a batch more at each look (a monitor started after
    the first labels reads back only ``reference_size`` of them)."""
    deadline = time.monotonic() + timeout
    sent = 0
    while True:
        report = strict_json(api.get(f"/models/{M}/drift"))
        if ready(report):
            return report, sent
        if time.monotonic() > deadline:
            keys = ("updated_at", "detail", "mae", "roles", "concept_drift")
            brief = {k: report.get(k) for k in keys}
            raise AssertionError(f"no report with {what} after {timeout} s: {brief}")
        if rng is not None:
            send(api, 1, rng)
            sent += BATCH
        else:
            time.sleep(0.2)


def prometheus(api: httpx.Client) -> dict[tuple[str, tuple], float]:
    response = api.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def of_model(samples: dict, name: str) -> dict[tuple, float]:
    """The samples of metric ``name`` for the regression model, by their labels."""
    return {
        labels: value
        for (metric, labels), value in samples.items()
        if metric == name and ("model", M) in labels
    }


def test_a_regression_model_reports_mae_and_rmse_everywhere(tmp_path):
    rng = random.Random(11)
    server = launch(tmp_path, FIRST).wait_ready(READY_TIMEOUT)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as api:
            send(api, 10, rng)  # 400 labels: past the monitor's 200 reference labels
            report, sent = report_when(
                api,
                lambda r: (
                    (r.get("mae") or {}).get("v1") is not None
                    and (r.get("concept_drift") or {}).get("v1", {}).get("updates", 0) > 0
                    and len(r.get("timeline", [])) >= 3
                ),
                "the MAE of v1 and a concept drift detector on its errors",
                rng=rng,
            )
            assert report["task"] == "regression"
            assert "accuracy" not in report
            assert 0 < report["mae"]["v1"] <= report["rmse"]["v1"] < 5
            assert all("accuracy" not in point for point in report["timeline"])
            assert report["concept_drift"]["v1"]["detector"] == "adwin"

            metrics = strict_json(api.get(f"/models/{M}/metrics"))
            assert metrics["task"] == "regression"
            v1 = metrics["versions"]["v1"]
            assert v1["n"] == 400 + sent and 0 < v1["recent_mae"] <= v1["mae"]
            assert v1["rmse"] > 0
            assert not {"accuracy", "recent_accuracy", "log_loss", "macro_f1"} & set(v1)

            samples = prometheus(api)
            version = (("model", M), ("version", "v1"))
            assert samples["onlearn_version_mae", version] == v1["mae"]
            assert samples["onlearn_version_rmse", version] == v1["rmse"]
            assert samples["onlearn_version_recent_mae", version] == v1["recent_mae"]
            assert samples["onlearn_recent_mae", version] > 0
            assert samples["onlearn_recent_rmse", version] >= samples["onlearn_recent_mae", version]
            for classification_only in (
                "onlearn_recent_accuracy",
                "onlearn_version_accuracy",
                "onlearn_version_recent_accuracy",
                "onlearn_version_log_loss",
            ):
                assert of_model(samples, classification_only) == {}, classification_only

            with browser_page() as page:
                page.set_viewport_size({"width": 1400, "height": 900})
                page.goto(f"{server.url}/ui/#model={M}")
                page.wait_for_selector("#plot-accuracy path.series")
                heading = page.locator("#plot-accuracy h2").inner_text()
                assert heading.startswith("Error over time"), heading
                lines = page.eval_on_selector_all(
                    "#plot-accuracy path.series", "els => els.map(e => e.dataset.series)"
                )
                assert sorted(lines) == ["v1", "v1 rmse"]
                legend = page.locator("#plot-accuracy .legend").inner_text()
                assert "v1 (champion) MAE" in legend and "v1 (champion) RMSE" in legend
                axis = page.locator("#plot-accuracy svg").text_content()
                assert "error" in axis and "%" not in axis
                summary = page.locator("#summary").inner_text()
                assert "MAE NOW" in summary.upper() and "ACCURACY" not in summary.upper()
                mae_now = page.locator('[data-key="MAE now"]').inner_text()
                assert re.search(r"v1 \d+(\.\d+)? \(RMSE \d", mae_now), mae_now
                assert "%" not in mae_now
                assert page.js_errors == []
    finally:
        shutdown(server)

    # The config's pipeline changed: v2 champion, v1 previous, compared on the same labels.
    config = write_config(tmp_path / "second", SECOND)
    server = ServerProcess(config, server.store_url).start(READY_TIMEOUT)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as api:
            send(api, 8, rng)
            versions = {
                v["version"]: v for v in strict_json(api.get(f"/models/{M}/versions"))["versions"]
            }
            assert versions["v2"]["roles"] == ["champion"] and versions["v1"]["roles"] == [
                "previous"
            ]
            paired = versions["v2"]["paired"]["v1"]
            assert paired["test"] == "wilcoxon" and paired["n"] == 8 * BATCH
            assert paired["a_mae"] > 0 and paired["b_mae"] > 0 and 0 <= paired["p_value"] <= 1
            assert not {"a_only", "b_only", "both", "neither"} & set(paired)

            samples = prometheus(api)
            pair = (("against", "v1"), ("model", M), ("version", "v2"))
            assert samples["onlearn_paired_labels", pair] == 8 * BATCH
            assert samples["onlearn_paired_mae", pair] > 0
            assert of_model(samples, "onlearn_paired_p_value") != {}
            assert all(
                ("test", "wilcoxon") in labels
                for labels in of_model(samples, "onlearn_paired_p_value")
            )
            assert of_model(samples, "onlearn_paired_accuracy") == {}

            report_when(
                api,
                lambda r: set(r.get("mae") or {}) == {"v1", "v2"},
                "the MAE of both versions",
            )
            with browser_page() as page:
                page.goto(f"{server.url}/ui/#model={M}")
                page.wait_for_function(
                    "document.querySelector('#summary').textContent.includes('v1 vs v2')"
                )
                compared = page.locator('[data-key="Versions compared"]').inner_text()
                assert "MAE" in compared and "Wilcoxon p = " in compared, compared
                lines = page.eval_on_selector_all(
                    "#plot-accuracy path.series", "els => els.map(e => e.dataset.series)"
                )
                assert {"v1", "v2"} <= set(lines)
                assert page.js_errors == []
    finally:
        shutdown(server)
