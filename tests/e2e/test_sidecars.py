"""``onlearn serve`` on the embedded SQLite store runs the worker and the monitor as processes
of their own beside it (a refit in a thread of the server held the interpreter lock and stalled
every request): they run at a lower priority, and they go when the server goes, even after a
``kill -9`` of the server alone."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import httpx

from tests.e2e.helpers import READY_TIMEOUT, launch, wait_until, xy_model, xy_rows


def children(pid: int) -> dict[int, str]:
    """The child processes of ``pid``: their command lines."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
            found[int(child)] = cmdline.decode()
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited; its parent (gone) would have reaped it


def test_the_worker_and_the_monitor_are_sidecar_processes_that_die_with_the_server(tmp_path):
    server = launch(tmp_path, xy_model("m")).wait_ready(READY_TIMEOUT)
    try:
        pid = server.proc.pid
        sidecars = wait_until(lambda: len(c := children(pid)) == 2 and c, timeout=30)
        roles = sorted(cmd.split(" onlearn.tools.cli ")[1].split()[0] for cmd in sidecars.values())
        assert roles == ["monitor", "worker"], sidecars
        assert all(f"--sidecar-of {pid}" in cmd for cmd in sidecars.values())
        for child in sidecars:
            wait_until(lambda child=child: os.getpriority(os.PRIO_PROCESS, child) == 10)
        # kill -9 of the server process alone (not its group): the kernel tells the sidecars.
        os.kill(pid, signal.SIGKILL)
        server.proc.wait()
        deadline = time.monotonic() + 30
        while any(alive(child) for child in sidecars) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(child) for child in sidecars), "a sidecar outlived its server"
    finally:
        server.kill()


def test_serve_with_no_worker_and_no_monitor_starts_no_sidecar(tmp_path):
    from tests.servers import ServerProcess

    config = tmp_path / "onlearn.toml"
    config.write_text(xy_model("m"))
    server = ServerProcess(
        config, f"sqlite:///{tmp_path}/o.db", args=("--no-worker", "--no-monitor")
    ).start(READY_TIMEOUT)
    try:
        time.sleep(1.0)  # sidecars start right after the server forks: give them the time
        assert children(server.proc.pid) == {}
    finally:
        server.stop()


def test_a_worker_stops_on_a_burst_of_sigterm(tmp_path):
    """The kernel's parent-death signal and an operator's stop may both arrive: each SIGTERM
    must stop the worker, never deadlock its stop event (it did when the handler set it)."""
    from tests.e2e.helpers import start_role, write_config

    config = write_config(tmp_path, xy_model("m"))
    log = tmp_path / "worker.log"
    worker = start_role("worker", config, f"sqlite:///{tmp_path}/o.db", log)
    try:
        wait_until(lambda: "running" in log.read_text(), timeout=60)
        for _ in range(50):
            worker.send_signal(signal.SIGTERM)
        assert worker.wait(20) == 0, log.read_text()[-2000:]
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)


def test_the_server_reports_the_snapshots_its_worker_process_writes(tmp_path):
    # The worker process writes the snapshots; the server's onlearn_snapshot_seq used to stay
    # at 0, its own count, for good.
    config = (
        "[engine]\nsnapshot_every_events = 20\nsnapshot_check_s = 0.2\nworker_poll_s = 0.1\n\n"
        + xy_model("m")
    )
    server = launch(tmp_path, config).wait_ready(READY_TIMEOUT)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as api:
            items = [{"features": x, "label": y} for x, y in xy_rows(50, seed=5)]
            answer = api.post("/models/m/feedback/batch", json={"items": items})
            assert answer.status_code == 200, answer.text
            last = max(r["seq"] for r in answer.json()["results"])

            def snapshot_seq() -> float:
                found = re.search(
                    r'^onlearn_snapshot_seq\{model="m"\} ([0-9.e+]+)$',
                    api.get("/metrics").text,
                    re.M,
                )
                assert found, "onlearn_snapshot_seq is not in /metrics"
                return float(found.group(1))

            seq = wait_until(lambda: (s := snapshot_seq()) >= 20 and s, timeout=60)
            assert seq <= last
    finally:
        server.stop()
