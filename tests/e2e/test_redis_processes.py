"""The three roles as separate processes on one Redis store: a serving replica that runs neither
the worker nor the monitor, two ``onlearn worker`` processes and an ``onlearn monitor``.

Everything is driven over the replica's HTTP API: the monitor's report reaches
``GET /models/{name}/drift`` through the store, a retrain asked of the replica is run by a worker
and its version is followed by the replica, and a worker killed (``kill -9``) in the middle of a
refit leaves its job to the other worker once the lease runs out, with exactly one version
registered for that job.
"""

from __future__ import annotations

import os
import signal
import time

import httpx

from onlearn.store import open_store
from tests.e2e.helpers import (
    READY_TIMEOUT,
    REPLICA_ENV,
    described,
    learn,
    start_role,
    stop_role,
    strict_json,
    wait_until,
    write_config,
    xy_model,
    xy_rows,
)
from tests.servers import ServerProcess

LEASE_S = 3
CONFIG = f"""
[security]
secret_key = "processes-share-this-key"

[engine]
poll_interval_ms = 20
job_lease_s = {LEASE_S}
worker_poll_s = 0.1

{xy_model("m")}
[models.m.refit]
candidates = [{{ name = "logistic_regression", lr = 0.5 }}]

[models.m.monitor]
window = 100
reference_size = 150
report_every = 50
"""
LABELS = 400
# A refit slow enough to be killed in its middle: a forest of 30 trees trained on the 320
# training rows 20 times is 6,400 learn_one calls of 30 trees, several seconds.
SLOW_REFIT = {
    "candidates": [{"name": "adaptive_random_forest", "n_models": 30}],
    "passes": 20,
    "register_anyway": True,
    "reason": "slow on purpose",
}


def job(api: httpx.Client, job_id: str) -> dict:
    response = api.get(f"/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return strict_json(response)


def finished(api: httpx.Client, job_id: str, timeout: float) -> dict:
    return wait_until(
        lambda: (j := job(api, job_id))["state"] in ("done", "failed") and j,
        timeout=timeout,
        every=0.2,
    )


def pid_of(worker_name: str) -> int:
    """A worker names itself ``host:pid:random``."""
    return int(worker_name.split(":")[1])


def test_worker_and_monitor_processes_on_redis_and_a_job_reclaimed_after_its_lease(
    tmp_path, redis_url
):
    config = write_config(tmp_path, CONFIG)
    logs = {name: tmp_path / f"{name}.log" for name in ("worker-a", "worker-b", "monitor")}
    processes = {"monitor": start_role("monitor", config, redis_url, logs["monitor"])}
    store = open_store(redis_url)
    replica = None

    def output(name: str) -> str:
        return logs[name].read_text(errors="replace")[-3000:]

    try:
        # The monitor opens the store before anything registered the first version, as in a
        # deployment whose processes start together: it must still find the champion.
        wait_until(lambda: "monitor: running" in output("monitor"), timeout=60, every=0.1)
        assert store.registry.roles("m") == {}
        replica = ServerProcess(config, redis_url, env=REPLICA_ENV).launch()
        for name in ("worker-a", "worker-b"):
            processes[name] = start_role("worker", config, redis_url, logs[name])
        replica.wait_ready(READY_TIMEOUT)
        api = httpx.Client(base_url=replica.url, timeout=30)
        # The replica runs no monitor: until the monitor process reports, there is no report.
        assert strict_json(api.get("/models/m/drift"))["updated_at"] is None
        acks = [ack["seq"] for _, _, ack in learn(api, "m", xy_rows(LABELS, seed=21))]
        assert acks == list(range(1, LABELS + 1))

        # The monitor process read the records and the log and wrote its report to the store.
        report = wait_until(
            lambda: (
                (r := strict_json(api.get("/models/m/drift")))["updated_at"]
                and r["reference"]["ready"]
                and r["validation"]["rows"] >= LABELS - 50
                and (r["input_drift"] or {}).get("n") == 100  # a full window
                and r
            ),
            timeout=90,
            every=0.5,
        )
        assert {f["name"] for f in report["input_drift"]["features"]} == {"x", "y"}
        assert report["accuracy"]["v1"] is not None

        # A retrain asked of the replica is run by a worker process; the replica follows the
        # role change the worker appended to the log.
        response = api.post("/models/m/retrain", json={"register_anyway": True})
        assert response.status_code == 202, response.text
        quick = finished(api, response.json()["job_id"], timeout=120)
        assert quick["state"] == "done", (quick, output("worker-a"), output("worker-b"))
        assert quick["worker"] is not None and quick["attempts"] == 1
        v2 = quick["result"]["registered"]
        assert v2 == "v2", quick["result"]
        wait_until(lambda: described(api, "m")["roles"].get("challenger") == v2, timeout=30)

        # A slow refit; kill -9 the worker that holds it once it is under way.
        response = api.post("/models/m/retrain", json=SLOW_REFIT)
        assert response.status_code == 202, response.text
        slow_id = response.json()["job_id"]
        running = wait_until(
            lambda: (j := job(api, slow_id))["state"] == "running" and j, timeout=60, every=0.1
        )
        holder = next(name for name, p in processes.items() if p.pid == pid_of(running["worker"]))
        other = "worker-b" if holder == "worker-a" else "worker-a"
        wait_until(
            lambda: f"refit {slow_id[:8]} of 'm': 10%" in logs[holder].read_text(errors="replace"),
            timeout=60,
            every=0.05,
        )
        os.killpg(processes[holder].pid, signal.SIGKILL)
        processes[holder].wait()
        killed_at = time.monotonic()
        # Leased, not lost and not finished: no version from it yet.
        leased = job(api, slow_id)
        assert leased["state"] == "running" and leased["worker"] == running["worker"], leased
        assert not [v for v in store.registry.list_versions("m") if _job_of(v) == slow_id]

        # The surviving worker takes it again once the lease ran out, and runs it to the end.
        reclaimed = wait_until(
            lambda: (j := job(api, slow_id))["attempts"] == 2 and j, timeout=60, every=0.1
        )
        assert time.monotonic() - killed_at > LEASE_S / 2, "reclaimed before the lease ran out"
        assert pid_of(reclaimed["worker"]) == processes[other].pid, reclaimed
        done = finished(api, slow_id, timeout=240)
        assert done["state"] == "done", (done, output(other))
        assert done["attempts"] == 2
        v3 = done["result"]["registered"]
        assert v3 == "v3", done["result"]

        # One version for the job however many attempts, one challenger change for it, and
        # the replica serves the roles the worker set.
        from_slow = [v.version for v in store.registry.list_versions("m") if _job_of(v) == slow_id]
        assert from_slow == [v3]
        refits = [v.version for v in store.registry.list_versions("m") if _job_of(v)]
        assert refits == [v2, v3]
        challengers = [r for r in store.registry.role_history("m") if r["role"] == "challenger"]
        assert [r["version"] for r in challengers] == [v2, v3], challengers
        wait_until(lambda: described(api, "m")["roles"].get("challenger") == v3, timeout=30)
        assert described(api, "m")["roles"]["champion"] == "v1"
        api.close()
    finally:
        store.close()
        codes = {name: stop_role(p) for name, p in processes.items()}
        if replica is not None:
            replica.stop()
    survivors = {name: code for name, code in codes.items() if name in ("monitor", other)}
    # The processes still running stop cleanly on SIGTERM.
    assert survivors == {"monitor": 0, other: 0}, (survivors, output("monitor"), output(other))


def _job_of(version) -> str | None:
    return version.meta.get("job_id")
