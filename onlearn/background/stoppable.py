"""Run a step that cannot check a stop flag itself in a child process that can be stopped.

A scikit-learn ``fit`` is one call into compiled code: it cannot look at a cancellation or a
shutdown flag, and a thread cannot be stopped. So it runs in a child process (spawned, not
forked: the worker has threads and open store connections, which a fork would copy mid-use),
and the parent watches ``should_stop`` while it waits; when it says stop, the child is killed.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any

from onlearn.errors import Interrupted

__all__ = ["run_stoppable"]

_POLL_S = 0.1


def _die_with_parent(parent: int) -> None:
    """A worker killed with SIGKILL runs no ``finally``: its child would go on fitting, holding a
    CPU for minutes with no one to read its result. On Linux the kernel kills the child when the
    thread that started it is gone (PR_SET_PDEATHSIG); a parent gone before that was set leaves
    the child re-parented, which the check after it sees."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1  # <linux/prctl.h>
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def _child(conn, fn: Callable[..., Any], args: tuple, parent: int) -> None:
    _die_with_parent(parent)
    try:
        result = ("ok", fn(*args))
    except BaseException as exc:  # noqa: BLE001 - handed back to the parent, which raises it
        result = ("error", (exc, traceback.format_exc()))
    try:
        conn.send(result)
    except Exception as exc:  # the result or the error does not pickle
        conn.send(("error", (RuntimeError(f"{type(exc).__name__}: {exc}"), "")))
    conn.close()


def run_stoppable(fn: Callable[..., Any], *args: Any, should_stop: Callable[[], str | None]) -> Any:
    """``fn(*args)`` in a child process; its result, or its exception raised again here.

    ``fn``, ``args`` and the result must pickle (``fn`` a module-level function).
    ``should_stop()`` is asked about every 0.1 s; a reason (a string) kills the child and raises
    :class:`~onlearn.errors.Interrupted` with it.
    """
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(
        target=_child, args=(send, fn, args, os.getpid()), name="onlearn-step", daemon=True
    )
    child.start()
    send.close()
    try:
        while True:
            reason = should_stop()
            if reason is not None:
                raise Interrupted(reason)
            if receive.poll(_POLL_S):
                try:
                    status, value = receive.recv()
                except EOFError:
                    child.join(5)
                    raise RuntimeError(
                        f"the child process of {fn.__name__} died (exit code {child.exitcode})"
                    ) from None
                if status == "ok":
                    return value
                exc, _ = value
                raise exc
            if not child.is_alive() and not receive.poll(0):
                raise RuntimeError(
                    f"the child process of {fn.__name__} died (exit code {child.exitcode})"
                )
    finally:
        if child.is_alive():
            child.kill()
        child.join(5)
        receive.close()
