"""The soak benchmark's load generator (``python -m benchmarks.soak loadgen``), against a real
``onlearn serve``: its verdict "no errors" is only worth something if the generator accounts
for every request it sent. A recorded 10-minute soak once counted 4 predicts as unanswered
whose arrivals had been dispatched after the last interval was declared over (event loop timers
fire a few ms early); these runs end many intervals, short ones, to give that race its chances.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import httpx
import pytest

from benchmarks import data
from tests.servers import ROOT, ServerProcess


@pytest.mark.long  # a load run: `make test-long`
def test_every_request_of_a_short_open_loop_is_answered_and_counted(tmp_path):
    config = tmp_path / "phishing.toml"
    shutil.copy(ROOT / data.CONFIG, config)
    server = ServerProcess(config, f"sqlite:///{tmp_path / 'onlearn.db'}").start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            taught = client.post(
                f"/models/{data.MODEL}/feedback/batch",
                content=data.training_body(),
                headers={"content-type": "application/json"},
            )
            assert taught.status_code == 200, taught.text
        for seed in range(1, 6):
            run = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.soak",
                    "loadgen",
                    "--port",
                    str(server.port),
                    "--rate",
                    "400",
                    "--share",
                    "0.3",
                    "--duration",
                    "1",
                    "--interval",
                    "0.25",
                    "--connections",
                    "4",
                    "--seed",
                    str(seed),
                ],  # fmt: skip
                cwd=ROOT,
                capture_output=True,
                timeout=120,
                check=True,
            )
            lines = [json.loads(line) for line in run.stdout.splitlines()]
            report = lines[-1]
            intervals = lines[:-1]
            assert report["final"] is True
            assert report["errors"] == 0, report
            assert report["unanswered"] == 0, report["unanswered_samples"]
            answered = answered_by_kind(intervals, report)
            # Every predict that arrived was sent and answered, and each was counted once.
            assert report["sent"] == sum(iv["arrivals"] for iv in intervals)
            assert answered["predict"] == report["sent"]
            assert report["sent"] > 100  # the run did run: about 400/s for 1 s
            assert answered["feedback"] > 0
            assert report["statuses"] == {"200": report["answers"]}
            assert [iv["interval"] for iv in intervals] == [1, 2, 3, 4]
    finally:
        server.stop()


def answered_by_kind(intervals: list[dict], report: dict) -> dict[str, int]:
    """Answered requests by kind: the intervals' and those answered after the end."""
    out = {"predict": 0, "feedback": 0}
    for record in [*intervals, report["drain"]]:
        for kind, n in record["ok_by_kind"].items():
            out[kind] += n
    return out
