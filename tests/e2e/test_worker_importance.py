"""The training worker as its own process computes feature importances with its snapshots; an
importance alarm a killed worker had not delivered is delivered by the next one, and the next
one goes on comparing with the reference the first had."""

from __future__ import annotations

import os
import random
import signal

import httpx

from tests.core.test_monitor import Webhook
from tests.e2e.helpers import REPLICA_ENV, learn, start_role, stop_role, wait_until, write_config
from tests.servers import ServerProcess


def config_text(webhook: str) -> str:
    features = "\n".join(f'{f} = {{ type = "number" }}' for f in "abcd")
    return f"""
[security]
secret_key = "test"

[engine]
snapshot_every_events = 200

[models.imp]
task = "classification"
classes = ["pos", "neg"]
pipeline = {{ name = "logistic_regression", lr = 0.5 }}
[models.imp.features]
{features}
[models.imp.monitor]
webhook = "{webhook}"
[models.imp.monitor.importance]
patience = 1
"""


def rows(n: int, seed: int, lead: str, second: str):
    """The label is the sign of ``lead`` plus half of ``second``; the other two are noise."""
    rng = random.Random(seed)
    for _ in range(n):
        x = {f: round(rng.gauss(0, 1), 6) for f in "abcd"}
        yield x, "pos" if x[lead] + 0.5 * x[second] > 0 else "neg"


def test_a_worker_process_killed_with_an_importance_alarm_undelivered_leaves_it_to_the_next(
    tmp_path,
):
    hook = Webhook(503)
    config = write_config(tmp_path, config_text(hook.url))
    url = f"sqlite:///{tmp_path}/onlearn.db"
    server = ServerProcess(config, url, env=REPLICA_ENV).start(180)
    log = tmp_path / "worker.log"
    worker = start_role("worker", config, url, log)
    try:
        wait_until(lambda: ": running" in log.read_text(), timeout=60)
        with httpx.Client(base_url=server.url, timeout=30) as api:

            def importance():
                return api.get("/models/imp/drift").json()["importance"]

            list(learn(api, "imp", rows(400, 0, "a", "b")))
            reference = wait_until(
                lambda: (d := importance()) and d["versions"]["v1"]["drift"]["reference"],
                timeout=60,
                every=0.3,
            )
            assert reference[0] == "a"
            for seed in range(1, 20):  # the label now follows c and d
                list(learn(api, "imp", rows(200, seed, "c", "d")))
                document = wait_until(
                    lambda at=400 + 200 * seed: (d := importance())["seq"] >= at and d,
                    timeout=60,
                    every=0.3,
                )
                if document["alarms"]:
                    break
            (alarm,) = document["alarms"]
            assert alarm["kind"] == "importance_drift" and alarm["model"] == "imp"
            moved = document["versions"]["v1"]["drift"]["reference"]
            assert moved[0] in ("c", "d")
            outbox = document["webhook"]["outbox"]
            assert [entry["alarm"] for entry in outbox] == [alarm]
            wait_until(lambda: hook.deliveries, timeout=30)
            assert hook.deliveries[0][0]["X-Onlearn-Delivery"] == outbox[0]["id"]
        os.killpg(worker.pid, signal.SIGKILL)  # the alarm waits for its retry: lost with it
        worker.wait()
        hook.status = 204
        tried = len(hook.deliveries)
        worker = start_role("worker", config, url, log)
        wait_until(lambda: len(hook.deliveries) > tried, timeout=60)
        headers, body = hook.deliveries[tried]
        assert headers["X-Onlearn-Delivery"] == outbox[0]["id"] and body == alarm
        with httpx.Client(base_url=server.url, timeout=30) as api:
            # The next snapshot's computation compares with the moved reference: no new alarm.
            seq = api.get("/models/imp/drift").json()["importance"]["seq"]
            list(learn(api, "imp", rows(200, 99, "c", "d")))
            document = wait_until(
                lambda: (d := api.get("/models/imp/drift").json()["importance"])["seq"] > seq and d,
                timeout=60,
                every=0.3,
            )
            assert document["alarms"] == [alarm]
            # An overlap: compared with the saved reference (a fresh one would report none).
            drift = document["versions"]["v1"]["drift"]
            assert drift["reference"] == moved and drift["overlap"] is not None
            assert document["webhook"]["outbox"] == []
    finally:
        assert stop_role(worker) == 0, log.read_text()[-3000:]
        server.stop()
        hook.close()
