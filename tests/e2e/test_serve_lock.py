"""One ``onlearn serve`` per SQLite file: a second one refuses to start, naming the first.

What may share the file still does: the ``--workers N`` server processes of one serve, its
sidecar worker and monitor, and ``onlearn worker`` / ``onlearn monitor`` started on their own.
A server killed with ``kill -9`` leaves no lock behind."""

from __future__ import annotations

import httpx

from tests.e2e.helpers import (
    READY_TIMEOUT,
    launch,
    restart,
    shutdown,
    start_role,
    stop_role,
    wait_until,
    xy_model,
)
from tests.servers import ServerProcess


def test_a_second_serve_on_a_served_sqlite_file_refuses_and_a_crashed_one_leaves_no_lock(
    tmp_path,
):
    first = launch(tmp_path / "first", xy_model("m"), workers=2)  # with its worker and monitor
    roles = {
        role: start_role(role, first.config, first.store_url, tmp_path / f"{role}.log")
        for role in ("worker", "monitor")
    }
    second = third = None
    try:
        first.wait_ready(READY_TIMEOUT)
        second = ServerProcess(first.config, first.store_url).launch()
        wait_until(lambda: second.proc.poll() is not None or ready(second), READY_TIMEOUT)
        said = second.output()
        assert second.proc.returncode == 1, f"a second server started on the file:\n{said}"
        assert "Traceback" not in said, said
        assert f"already served by another `onlearn serve` (pid {first.proc.pid}" in said, said
        for words in (first.url, f"kill {first.proc.pid}", "--store", "--port"):
            assert words in said, (words, said)

        # The workers of the first, and the worker and monitor started on their own, share it.
        for role, process in roles.items():
            log = tmp_path / f"{role}.log"
            wait_until(lambda log=log: " running" in log.read_text(), timeout=READY_TIMEOUT)
            assert process.poll() is None, log.read_text()
        with httpx.Client(base_url=first.url, timeout=30) as api:
            for _ in range(4):  # answered by either of its two server processes
                answer = api.post(
                    "/models/m/feedback", json={"features": {"x": 1, "y": 1}, "label": "pos"}
                )
                assert answer.status_code == 200, answer.text

        first.kill()  # kill -9 of every process of the first server: the kernel drops its lock
        third = restart(first)
        with httpx.Client(base_url=third.url, timeout=30) as api:
            assert api.get("/models/m").json()["applied_seq"] == 4
    finally:
        for process in (third, second, first):
            if process is not None:
                shutdown(process)
        for process in roles.values():
            stop_role(process)


def ready(server: ServerProcess) -> bool:
    try:
        return httpx.get(f"{server.url}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
