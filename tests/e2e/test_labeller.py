"""The terminal labeller against a running server: keys from a pipe, and single key presses
from a real terminal (a pty)."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

from tests.e2e.helpers import strict_json, wait_until, xy_rows

M = "/models/term"


def queue_some(api, n, seed):
    for features, _ in xy_rows(n, seed):
        assert strict_json(api.post(f"{M}/predict", json={"features": features}))["queued"]
    wait_until(lambda: api.get(f"{M}/queue/stats").json()["depth"] >= n)


def labeller(server, *extra):
    cmd = [
        sys.executable,
        "-m",
        "onlearn.tools.cli",
        "label",
        "--model",
        "term",
        "--url",
        server.url,
        *extra,
    ]
    return cmd


def test_label_skip_quit_from_a_pipe(queue_server, queue_api):
    queue_some(queue_api, 4, seed=21)
    before = queue_api.get(f"{M}/queue/stats").json()
    done = subprocess.run(
        labeller(queue_server, "--labeller", "dave"),
        input="1\nx\ns\n2\nq\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "model's guess" in out and '1) "pos"  2) "neg"  s) skip  q) quit' in out
    assert 'labelled "pos"' in out and 'labelled "neg"' in out and "skipped" in out
    assert "press 1-2, s or q" in out  # the unknown key x
    assert "labelled 2, skipped 1" in out
    assert "The item you held is back in the queue" in out  # q released the fourth item
    after = queue_api.get(f"{M}/queue/stats").json()
    assert after["labelled"] - before["labelled"] == 2 and after["skipped"] - before["skipped"] == 1
    assert after["released"] - before["released"] == 1 and after["claimed"] == before["claimed"]
    sources = queue_api.get(f"{M}/metrics").json()["versions"]["v1"]["labels_by_source"]
    assert sources["human"] >= 2


def test_one_key_press_labels_on_a_terminal(queue_server, queue_api):
    queue_some(queue_api, 1, seed=22)
    before = queue_api.get(f"{M}/queue/stats").json()["labelled"]
    main, child = os.openpty()
    proc = subprocess.Popen(labeller(queue_server), stdin=child, stdout=child, stderr=child)
    os.close(child)
    output = b""

    def read_until(text: bytes, timeout: float = 30) -> None:
        nonlocal output
        deadline = time.monotonic() + timeout
        while text not in output:
            left = deadline - time.monotonic()
            assert left > 0, output.decode(errors="replace")
            if select.select([main], [], [], left)[0]:
                output += os.read(main, 4096)

    try:
        read_until(b"q) quit")
        os.write(main, b"1")  # no Enter: one key is enough
        read_until(b'labelled "pos"')
        read_until(b"q) quit")
        os.write(main, b"q")
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        os.close(main)
    assert queue_api.get(f"{M}/queue/stats").json()["labelled"] == before + 1
