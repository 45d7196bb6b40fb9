"""Retrain, promote and roll back over HTTP, with the worker the server runs in the background."""

from __future__ import annotations

import subprocess
import sys

import httpx

from tests.e2e.helpers import learn, message, probe, wait_until, xy_rows


def test_retrain_promote_rollback(rollout_server):
    with httpx.Client(base_url=rollout_server.url, timeout=30) as api:
        list(learn(api, "ro", xy_rows(300, seed=5)))
        before = probe(api, "ro")
        started = api.post(
            "/models/ro/retrain",
            json={
                "candidates": [{"name": "hoeffding_tree"}],
                "register_anyway": True,
                "reason": "test",
            },
        )
        assert started.status_code == 202, started.text
        job_id = started.json()["job_id"]
        job = wait_until(
            lambda: (j := api.get(f"/jobs/{job_id}").json())["state"] in ("done", "failed") and j,
            timeout=120,
        )
        assert job["state"] == "done", job
        version = job["result"]["registered"]
        versions = {v["version"]: v for v in api.get("/models/ro/versions").json()["versions"]}
        assert versions[version]["roles"] == ["challenger"]
        assert versions[version]["lineage"]["source"] == "refit"
        assert versions[version]["lineage"]["parent"] == "v1"
        assert versions["v1"]["roles"] == ["champion"]

        promoted = api.post(f"/models/ro/versions/{version}/promote", json={"role": "champion"})
        assert promoted.json()["roles"] == {"champion": version, "previous": "v1"}
        answer = api.post("/models/ro/predict", json={"features": {"x": 0.1, "y": 0.2}}).json()
        assert answer["version"] == version

        rolled = api.post("/models/ro/rollback", json={"reason": "checking"})
        assert rolled.json()["roles"] == {"champion": "v1"}
        assert probe(api, "ro") == before  # exactly the predictions of before
        history = api.get("/models/ro/history").json()["history"]
        assert [h["reason"] for h in history[-2:]] == ["checking", "checking"]

        # Bad requests
        message(api.post("/models/ro/rollback"), 409, "no previous champion")
        message(api.post("/models/ro/versions/v9/promote", json={"role": "shadow"}), 404, "v9")
        message(
            api.post(f"/models/ro/versions/{version}/promote", json={"role": "king"}), 409, "king"
        )
        message(
            api.post("/models/ro/versions/v1/promote", json={"role": "champion"}), 409, "already"
        )
        message(api.get("/jobs/nope"), 404, "nope")
        assert api.post("/models/ro/retrain", json={"holdout": 2}).status_code == 422

        cli = subprocess.run(
            [
                sys.executable,
                "-m",
                "onlearn.tools.cli",
                "models",
                "--url",
                rollout_server.url,
                "list",
                "ro",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cli.returncode == 0, cli.stderr
        assert "v1  champion" in cli.stdout and f"{version}" in cli.stdout
        cli = subprocess.run(
            [
                sys.executable,
                "-m",
                "onlearn.tools.cli",
                "models",
                "--url",
                rollout_server.url,
                "rollback",
                "ro",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cli.returncode == 1 and "no previous champion" in cli.stderr
        assert "Traceback" not in cli.stderr


def test_the_retrain_command_follows_the_job(rollout_server):
    cli = subprocess.run(
        [
            sys.executable, "-m", "onlearn.tools.cli", "retrain", "--model", "ro",
            "--url", rollout_server.url, "--register-anyway", "--reason", "from the CLI",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert "queued" in cli.stdout and "as challenger" in cli.stdout
