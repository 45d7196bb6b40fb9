"""A step run in a child process (onlearn/background/stoppable.py) dies with its parent: a
worker killed with SIGKILL runs no cleanup, and its child must not fit on for minutes alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from onlearn.background.stoppable import run_stoppable
from onlearn.errors import Interrupted

PARENT = textwrap.dedent(
    """
    import multiprocessing, time
    from onlearn.background.stoppable import run_stoppable

    told = False

    def should_stop():
        global told
        children = multiprocessing.active_children()
        if children and not told:
            print(children[0].pid, flush=True)
            told = True
        return None

    if __name__ == "__main__":
        run_stoppable(time.sleep, 120, should_stop=should_stop)
    """
)


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped (a container's init may never reap it)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            state = next(line for line in status if line.startswith("State:"))
    except FileNotFoundError:
        return False
    return "Z" not in state.split()[1]


def test_the_child_dies_when_its_parent_is_killed(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=os.getcwd()
    )
    try:
        child = int(parent.stdout.readline())
        assert alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(child), "the child outlived its killed parent"
    finally:
        parent.kill()
        parent.wait(10)


def test_a_stop_kills_the_child_and_a_result_comes_back():
    assert run_stoppable(divmod, 7, 2, should_stop=lambda: None) == (3, 1)
    with pytest.raises(Interrupted, match="asked"):
        run_stoppable(time.sleep, 60, should_stop=lambda: "asked")
