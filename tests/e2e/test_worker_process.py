"""The worker as its own process: killed in the middle of a refit, its job is reclaimed after
the lease by another worker, and exactly one version is registered."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from river import datasets

from onlearn.background.worker import new_job
from onlearn.config import load_settings
from onlearn.engine import Engine, FeedbackItem
from onlearn.store import open_store
from tests.e2e.helpers import write_config
from tests.servers import ROOT

CONFIG = """
[security]
secret_key = "test"

[engine]
job_lease_s = 3
worker_poll_s = 0.1
snapshot_every_events = 0
snapshot_every_s = 0

[models.phishing]
task = "classification"
classes = [true, false]
pipeline = { name = "logistic_regression" }
# Slow on purpose: a forest over three passes takes seconds, time to kill the worker.
refit = { candidates = [{ name = "adaptive_random_forest", n_models = 10 }], passes = 3 }

[models.phishing.features]
empty_server_form_handler = "number"
popup_window = "number"
https = "number"
request_from_other_domain = "number"
anchor_from_other_domain = "number"
is_popular = "number"
long_url = "number"
age_of_domain = "integer"
ip_in_url = "integer"
"""


def start_worker(config, url, log):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "onlearn.tools.cli",
            "worker",
            "--config",
            str(config),
            "--store",
            url,
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_worker_killed_mid_refit_leaves_the_job_to_another_and_one_version(tmp_path):
    config = write_config(tmp_path, CONFIG)
    url = f"sqlite:///{tmp_path}/onlearn.db"
    settings = load_settings(config, store_url=url)
    with Engine.from_settings(settings) as engine:
        for x, y in datasets.Phishing():
            engine.feedback_one("phishing", FeedbackItem(y, features=x))
    store = open_store(url)
    job = store.jobs.enqueue(
        new_job(
            "refit",
            "phishing",
            {"reason": "test", "options": {"register_anyway": True}},
            at=time.time(),
        )
    )
    log = open(tmp_path / "workers.log", "ab")
    first = start_worker(config, url, log)
    try:
        running = wait_for(
            lambda: (j := store.jobs.get(job.job_id)).state.value == "running" and j, 60, "a claim"
        )
        time.sleep(1.0)  # in the middle of the refit
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        assert store.jobs.get(job.job_id).state.value == "running"  # leased, not finished
        second = start_worker(config, url, log)
        try:
            done = wait_for(
                lambda: (j := store.jobs.get(job.job_id)).state.value in ("done", "failed") and j,
                180,
                "the reclaimed job to finish",
            )
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(30)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        log.close()
    output = (tmp_path / "workers.log").read_text()
    assert done.state.value == "done", (done.error, output[-3000:])
    assert done.attempts == 2 and done.worker != running.worker
    refits = [
        v for v in store.registry.list_versions("phishing") if v.meta.get("source") == "refit"
    ]
    registered = done.result["registered"]
    assert [v.version for v in refits] == [registered]
    assert store.registry.roles("phishing")["challenger"] == registered
    challengers = [r for r in store.registry.role_history("phishing") if r["role"] == "challenger"]
    assert len(challengers) == 1  # one control event, however many attempts
    store.close()
