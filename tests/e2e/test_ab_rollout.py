"""labels_follow_answer over HTTP: a canary answers a sticky share, and the versions' answer
compares it with the champion as an A/B test, with the labels the test still needs; /metrics
and the dashboard give that A/B test, not the paired comparison (biased for such a model)."""

from __future__ import annotations

import random

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.browser import browser_page
from tests.e2e.helpers import READY_TIMEOUT, launch, shutdown, strict_json, wait_until

CONFIG = """
[security]
secret_key = "e2e"

[models.loans]
task = "classification"
classes = [true, false]
labels_follow_answer = true
pipeline = { factory = "tests.core.factories:approver", threshold = 0.5 }
features = { x = { type = "number", min = 0, max = 1 } }
rollout = { policy = "manual", min_labels = 50 }
refit = { candidates = [{ id = "strict", factory = "tests.core.factories:approver", threshold = 0.8 }] }
"""


def serve(api: httpx.Client, n: int, seed: int) -> dict[str, str]:
    """Loan applications with the applicant as the key; a label only for an approved loan.
    Returns who answered each applicant."""
    rng = random.Random(seed)
    answered = {}
    for i in range(n):
        x, key = rng.random(), f"applicant-{seed}-{i}"
        repays = rng.random() < x
        answer = api.post("/models/loans/predict", json={"features": {"x": x}, "key": key}).json()
        answered[key] = answer["version"]
        if answer["label"]:
            ack = api.post(
                "/models/loans/feedback",
                json={"prediction_id": answer["prediction_id"], "label": repays},
            )
            assert ack.status_code == 200, ack.text
    return answered


def test_ab_comparison_of_a_canary_over_http(tmp_path):
    server = launch(tmp_path, CONFIG).wait_ready(READY_TIMEOUT)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as api:
            serve(api, 200, seed=1)
            job_id = api.post("/models/loans/retrain", json={"register_anyway": True}).json()[
                "job_id"
            ]
            job = wait_until(
                lambda: (
                    (j := api.get(f"/jobs/{job_id}").json())["state"] in ("done", "failed") and j
                ),
                timeout=120,
            )
            assert job["state"] == "done", job
            assert job["result"]["refit"]["holdout"]["excluded_not_champion"] == 0
            version = job["result"]["registered"]
            promoted = api.post(
                f"/models/loans/versions/{version}/promote", json={"role": "canary", "share": 0.5}
            )
            assert promoted.status_code == 200, promoted.text
            answered = serve(api, 800, seed=2)
            assert 0.4 < list(answered.values()).count(version) / len(answered) < 0.6
            assert serve(api, 200, seed=2) == dict(list(answered.items())[:200])  # sticky
            versions = strict_json(api.get("/models/loans/versions"))["versions"]
            by_version = {v["version"]: v for v in versions}
            ab = by_version[version]["ab"]
            assert ab["compared"] and ab["against"] == "v1" and ab["test"] == "two_proportion_z"
            assert ab["favoured"] == "b" and ab["p_value"] < 0.05
            assert ab["a_accuracy"] < ab["b_accuracy"]
            assert "more labels needed" in ab["sample_size"]["sentence"]
            assert by_version["v1"]["ab"]["compared"] is False

            # /metrics (no traffic since): the same A/B test, both arms, and no paired one.
            samples = {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for f in text_string_to_metric_families(api.get("/metrics").text)
                for s in f.samples
                if s.labels.get("model") == "loans"
            }
            pair = (("against", "v1"), ("model", "loans"), ("version", version))
            for arm, side in (("version", "b"), ("against", "a")):
                key = tuple(sorted((*pair, ("arm", arm))))
                assert samples["onlearn_ab_labels", key] == ab[f"{side}_n"]
                assert samples["onlearn_ab_accuracy", key] == ab[f"{side}_accuracy"]
                needed = ab["sample_size"][f"{side}_needed"]
                assert samples["onlearn_ab_labels_needed", key] == needed
            test = tuple(sorted((*pair, ("test", "two_proportion_z"))))
            assert samples["onlearn_ab_p_value", test] == ab["p_value"]
            assert not [name for name, _ in samples if name.startswith("onlearn_paired_")]

            with browser_page() as page:
                page.goto(f"{server.url}/ui/#model=loans")
                page.wait_for_function(
                    "document.querySelector('#summary').textContent.includes('A/B')"
                )
                compared = page.locator('[data-key="Versions compared"]').inner_text()
                assert f"A/B {version} vs v1" in compared, compared
                assert "two-proportion z p = " in compared and "labels needed" in compared
                assert page.js_errors == []
    finally:
        shutdown(server)
