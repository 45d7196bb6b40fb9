"""Retrain over HTTP, as an attacker and as an impatient operator would use it, against real
``onlearn serve`` processes (and an ``onlearn worker`` process on Redis).

Seen on main 8d6a9de: a retrain body naming ``os:system`` ran the command in the worker three
times; ``{"passes": 1000000000}`` held the worker at 100% forever; a job could not be cancelled;
SIGTERM to ``onlearn serve`` in the middle of a refit left the worker running with PPID 1.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.helpers import (
    READY_TIMEOUT,
    REPLICA_ENV,
    field_error,
    learn,
    message,
    shutdown,
    start_role,
    stop_role,
    strict_json,
    wait_until,
    write_config,
    xy_model,
    xy_rows,
)
from tests.servers import ROOT, ServerProcess

CONFIG = f"""
[security]
secret_key = "jobs-share-this-key"

[engine]
job_lease_s = 30
worker_poll_s = 0.1

{xy_model("m")}
[models.m.refit]
candidates = [
  {{ id = "quick", name = "logistic_regression", lr = 0.5 }},
  {{ id = "slow", name = "adaptive_random_forest", n_models = 50 }},
]
"""
# Minutes of work: 50 trees, 20 passes over 400 labels.
SLOW = {"candidates": ["slow"], "passes": 20, "register_anyway": True}


def hostile_bodies(marker: Path) -> list[tuple[dict, list]]:
    """Bodies that name code, each with the location its 422 must name."""
    touch = f"touch {marker}"
    return [
        ({"candidates": [{"factory": "os:system", "command": touch}]}, ["candidates", 0, "factory"]),
        ({"candidates": [{"factory": "subprocess:getoutput", "cmd": touch}]}, ["candidates", 0, "factory"]),
        ({"candidates": [{"factory": "builtins:exec", "source": f"open('{marker}', 'w')"}]}, ["candidates", 0, "factory"]),
        ({"candidates": [{"factory": "importlib:import_module", "name": "os"}]}, ["candidates", 0, "factory"]),
        ({"candidates": [{"sklearn": "os:system", "params": {"command": touch}}]}, ["candidates", 0, "sklearn"]),
        ({"candidates": [{"sklearn": "sklearn.ensemble:RandomForestClassifier"}]}, ["candidates", 0, "sklearn"]),
        ({"candidates": [{"name": "hoeffding_tree", "splitter": {"factory": "os:system"}}]}, ["candidates", 0, "splitter"]),
        ({"candidates": ["os:system"]}, ["candidates", 0]),
        ({"candidates": ["os.system"]}, ["candidates", 0]),
        ({"passes": 1_000_000_000}, ["passes"]),
        ({"max_rows": 10**12}, ["max_rows"]),
        ({"holdout": 0.99}, ["holdout"]),
        ({"candidates": [{"name": "adaptive_random_forest", "n_models": 100000}]}, ["candidates", 0, "n_models"]),
    ]  # fmt: skip


def children_of(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def job(api: httpx.Client, job_id: str) -> dict:
    response = api.get(f"/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return strict_json(response)


def started_refit(api: httpx.Client, body: dict) -> dict:
    """POST a retrain and wait until a worker is well into it."""
    response = api.post("/models/m/retrain", json=body)
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    running = wait_until(
        lambda: (j := job(api, job_id))["state"] == "running" and j, timeout=120, every=0.1
    )
    time.sleep(1.0)  # into the training, past the loading of the labels
    assert job(api, job_id)["state"] == "running"
    return running


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_a_retrain_naming_code_or_unbounded_work_is_a_422_and_no_job(tmp_path, backend, request):
    marker = tmp_path / "pwned"
    config = write_config(tmp_path, CONFIG)
    worker = None
    if backend == "sqlite":
        server = ServerProcess(config, f"sqlite:///{tmp_path}/onlearn.db")
    else:
        url = request.getfixturevalue("redis_url")
        server = ServerProcess(config, url, env=REPLICA_ENV)
        worker = start_role("worker", config, url, tmp_path / "worker.log")
    server.start(READY_TIMEOUT)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as api:
            for body, loc in hostile_bodies(marker):
                response = api.post("/models/m/retrain", json=body)
                field_error(response, ["body", *loc], response.json()["detail"][0]["type"])
            assert strict_json(api.get("/jobs"))["jobs"] == []
            # The CLI says the same, in one line.
            cli = subprocess.run(
                [sys.executable, "-m", "onlearn.tools.cli", "retrain", "--model", "m", "--url",
                 server.url, "--candidates", "os:system"],
                cwd=ROOT, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert cli.returncode == 1 and "candidates.0" in cli.stderr, cli.stderr
            # What a request may pick still works: a declared id and a bounded catalog table.
            list(learn(api, "m", xy_rows(120, seed=3)))
            response = api.post(
                "/models/m/retrain",
                json={"candidates": ["quick", {"name": "hoeffding_tree", "grace_period": 20}]},
            )
            assert response.status_code == 202, response.text
            done = wait_until(
                lambda: (j := job(api, response.json()["job_id"]))["state"] == "done" and j,
                timeout=120,
                every=0.2,
            )
            ids = [c["id"] for c in done["result"]["refit"]["candidates"]]
            assert ids == ["quick", "hoeffding_tree(grace_period=20)"]
    finally:
        shutdown(server)
        if worker is not None:
            stop_role(worker)
    assert not marker.exists()


def test_cancel_a_running_refit_over_http_and_the_cli(tmp_path):
    config = write_config(tmp_path, CONFIG)
    server = ServerProcess(config, f"sqlite:///{tmp_path}/onlearn.db").start(READY_TIMEOUT)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "onlearn.tools.cli", "jobs", "--url", server.url, *args],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    try:
        with httpx.Client(base_url=server.url, timeout=30) as api:
            list(learn(api, "m", xy_rows(400, seed=5)))
            slow = started_refit(api, SLOW)["job_id"]
            # A second job waits behind it; the CLI cancels it before it ever runs.
            waiting = api.post("/models/m/retrain", json={"candidates": ["quick"]}).json()
            assert job(api, waiting["job_id"])["state"] == "queued"
            done = cli("cancel", waiting["job_id"])
            assert done.returncode == 0 and "cancelled" in done.stdout, done.stderr
            # The running one stops at its next check, over HTTP.
            cancelled = api.post(f"/jobs/{slow}/cancel")
            assert cancelled.status_code == 200, cancelled.text
            assert cancelled.json()["state"] == "cancelled"
            # The worker is free for the next job at once, and never runs the cancelled ones.
            response = api.post(
                "/models/m/retrain", json={"candidates": ["quick"], "register_anyway": True}
            )
            quick = wait_until(
                lambda: (j := job(api, response.json()["job_id"]))["state"] == "done" and j,
                timeout=30,
                every=0.1,
            )
            assert quick["result"]["registered"] == "v2"
            assert [job(api, j)["state"] for j in (slow, waiting["job_id"])] == ["cancelled"] * 2
            assert job(api, waiting["job_id"])["attempts"] == 0
            versions = [
                v["version"] for v in strict_json(api.get("/models/m/versions"))["versions"]
            ]
            assert versions == ["v1", "v2"]  # nothing from the cancelled jobs
            # Cancelling what already registered is a 409 naming the version; the CLI says so.
            message(api.post(f"/jobs/{quick['job_id']}/cancel"), 409, "already registered", "v2")
            refused = cli("cancel", quick["job_id"])
            assert refused.returncode == 1
            assert "already registered its version v2" in refused.stderr
            message(api.post("/jobs/nope/cancel"), 404, "no job nope")
            listed = cli("list")
            assert listed.returncode == 0 and listed.stdout.count("  cancelled (attempt") == 2
            assert "registered v2" in listed.stdout
    finally:
        shutdown(server)


def test_sigterm_stops_the_server_and_its_worker_in_the_middle_of_a_refit(tmp_path):
    config = write_config(tmp_path, CONFIG)
    server = ServerProcess(config, f"sqlite:///{tmp_path}/onlearn.db").start(READY_TIMEOUT)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as api:
            list(learn(api, "m", xy_rows(400, seed=7)))
            running = started_refit(api, SLOW)
        sidecars = children_of(server.proc.pid)
        worker_pid = int(running["worker"].split(":")[1])
        assert worker_pid in sidecars and len(sidecars) == 2  # the worker and the monitor
        os.kill(server.proc.pid, signal.SIGTERM)  # the server alone, as a process manager would
        started = time.monotonic()
        wait_until(
            lambda: not any(alive(p) for p in [server.proc.pid, *sidecars]), timeout=10, every=0.05
        )
        assert time.monotonic() - started < 10
        server.proc.wait(5)
    finally:
        server.kill()
    # The refit was handed back, not lost and not counted as a failed attempt.
    from onlearn.store import open_store

    with open_store(server.store_url) as store:
        back = store.jobs.get(running["job_id"])
    assert back.state.value == "queued" and back.attempts == 0, back


def test_sigterm_stops_the_sidecars_at_once_while_a_request_holds_the_server(tmp_path):
    # The server waits up to graceful_shutdown_s for a request in flight; its worker and
    # monitor must not wait with it (they were stopped only after the server had finished).
    config = write_config(tmp_path, CONFIG + "\n[limits]\ngraceful_shutdown_s = 6\n")
    server = ServerProcess(config, f"sqlite:///{tmp_path}/onlearn.db").start(READY_TIMEOUT)
    try:
        sidecars = children_of(server.proc.pid)
        assert len(sidecars) == 2
        slow = socket.create_connection(("127.0.0.1", server.port))
        try:
            # Headers and half of a body: a request under way, held open by its client.
            slow.sendall(
                b"POST /models/m/predict HTTP/1.1\r\nHost: x\r\n"
                b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"feat'
            )
            time.sleep(0.5)  # the server has read the headers and started the request
            os.kill(server.proc.pid, signal.SIGTERM)
            started = time.monotonic()
            wait_until(lambda: not any(alive(p) for p in sidecars), timeout=8, every=0.05)
            sidecars_gone = time.monotonic() - started
            assert alive(server.proc.pid)  # still waiting for the request in flight
            server.proc.wait(10)
            server_gone = time.monotonic() - started
        finally:
            slow.close()
        assert sidecars_gone < 5.5, sidecars_gone  # SIDECAR_STOP_S after the signal
        assert server_gone >= 5.5, server_gone  # it did wait for graceful_shutdown_s
        assert server_gone < 10, server_gone
    finally:
        server.kill()
