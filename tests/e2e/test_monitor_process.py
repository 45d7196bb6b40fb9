"""The monitor as its own process beside a server that runs none: the server's drift endpoint
shows what the monitor process found, and an alarm a killed monitor had not delivered is
delivered by the next one."""

from __future__ import annotations

import os
import signal

import httpx

from tests.core.test_monitor import Webhook
from tests.e2e.helpers import (
    learn,
    start_role,
    stop_role,
    wait_until,
    write_config,
    xy_model,
    xy_rows,
)
from tests.servers import ServerProcess

CONFIG = f"""
[security]
secret_key = "test"

{xy_model("mon")}
[models.mon.monitor]
window = 100
reference_size = 150
report_every = 50
"""


def serve_beside_a_monitor(tmp_path, text: str):
    """A server that runs no monitor, and ``onlearn monitor`` as a process of its own: the
    config, the store URL, the server, the monitor process and its log."""
    config = write_config(tmp_path, text)
    url = f"sqlite:///{tmp_path}/onlearn.db"
    server = ServerProcess(config, url, env={"ONLEARN_RUN_MONITOR": "false"}).start(180)
    log = tmp_path / "monitor.log"
    return config, url, server, start_role("monitor", config, url, log), log


def test_a_separate_monitor_process_reports_through_the_store(tmp_path):
    _, _, server, monitor, log = serve_beside_a_monitor(tmp_path, CONFIG)
    try:
        # A monitor that starts late reads back only reference_size labels but the last minute
        # of predictions: wait for it, so that it sees the whole stream from its first label.
        wait_until(lambda: "monitor: running" in log.read_text(), timeout=60)
        with httpx.Client(base_url=server.url, timeout=30) as api:
            assert api.get("/models/mon/drift").json()["updated_at"] is None
            list(learn(api, "mon", xy_rows(400, seed=9)))
            report = wait_until(
                lambda: (
                    (r := api.get("/models/mon/drift").json())["updated_at"]
                    and r["reference"]["ready"]
                    and r["validation"]["rows"] >= 350
                    and r
                ),
                timeout=60,
                every=0.5,
            )
            assert report["input_drift"]["n"] == 100
            assert {f["name"] for f in report["input_drift"]["features"]} == {"x", "y"}
            assert report["accuracy"]["v1"] is not None
    finally:
        assert stop_role(monitor) == 0, log.read_text()[-3000:]  # a clean stop on SIGTERM
        server.stop()


def test_a_monitor_process_killed_with_an_alarm_undelivered_leaves_it_to_the_next(tmp_path):
    """The webhook answers 503 when the monitor process raises a drift alarm; the process is
    killed -9 while the alarm waits for its retry. The next monitor process delivers it, with
    the delivery id of the failed attempts."""
    hook = Webhook(503)
    text = CONFIG + f'webhook = "{hook.url}"\n'
    config, url, server, monitor, log = serve_beside_a_monitor(tmp_path, text)
    try:
        wait_until(lambda: "monitor: running" in log.read_text(), timeout=60)
        with httpx.Client(base_url=server.url, timeout=30) as api:
            list(learn(api, "mon", xy_rows(300, seed=9)))
            shifted = [({"x": x["x"] + 4, "y": x["y"]}, y) for x, y in xy_rows(300, seed=10)]
            list(learn(api, "mon", shifted))

            # The report in the store lists the alarms still to deliver, each tried once (the
            # try may land a moment after the report is written).
            def reported_and_tried():
                report = api.get("/models/mon/drift").json()
                outbox = (report.get("webhook") or {}).get("outbox")
                tried = {h["X-Onlearn-Delivery"] for h, _ in hook.deliveries}
                return outbox if outbox and {e["id"] for e in outbox} <= tried else None

            outbox = wait_until(reported_and_tried, timeout=60, every=0.5)
        os.killpg(monitor.pid, signal.SIGKILL)
        monitor.wait()
        hook.status = 204
        failed_tries = len(hook.deliveries)
        monitor = start_role("monitor", config, url, log)
        wait_until(lambda: len(hook.deliveries) >= failed_tries + len(outbox), timeout=60)
        resent = hook.deliveries[failed_tries:]
        assert [h["X-Onlearn-Delivery"] for h, _ in resent[: len(outbox)]] == [
            entry["id"] for entry in outbox
        ]
        assert [body["kind"] for _, body in resent[: len(outbox)]] == [
            entry["alarm"]["kind"] for entry in outbox
        ]
    finally:
        assert stop_role(monitor) == 0, log.read_text()[-3000:]
        server.stop()
        hook.close()
