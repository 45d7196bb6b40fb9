"""Where the training worker and the monitor run beside ``onlearn serve``: the one place that
decides it (``onlearn.tools.cli`` starts the processes, ``serving.app`` the threads, both from here).

The store's declared capabilities decide (``onlearn.store.capabilities``), not its URL.

- The embedded SQLite store with a config file: **processes** of their own (sidecars, niced,
  gone with the server). As threads they shared the server's interpreter lock, and a refit,
  seconds of pure Python, stalled every request (docs/architecture.md, "Background work never
  runs in the server's interpreter").
- ``memory://``, or an app built in-process (no command line to give a sidecar): **threads** of
  the server.
- A shared store reached over the network (Redis): **elsewhere**, their own deployments
  (``onlearn worker``, ``onlearn monitor``), unless asked for with ``ONLEARN_RUN_WORKER`` /
  ``ONLEARN_RUN_MONITOR`` (then threads).

``run_worker``/``run_monitor`` set to False always means elsewhere (``--no-worker``, or the
server processes of a serve whose sidecars already run them).
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from onlearn.config import Settings
from onlearn.store import capabilities_of

if TYPE_CHECKING:
    from onlearn.engine import Engine


class Placement(enum.Enum):
    PROCESS = "process"  # a sidecar process started by `onlearn serve`
    THREAD = "thread"  # a thread of the serving process
    ELSEWHERE = "elsewhere"  # not beside this server: its own deployment, or turned off


@dataclass(frozen=True)
class Topology:
    worker: Placement
    monitor: Placement

    def placed(self, placement: Placement) -> list[str]:
        """The roles (``worker``, ``monitor``) that run as ``placement``."""
        return [role for role in ("worker", "monitor") if getattr(self, role) is placement]


def serve_topology(settings: Settings, *, sidecars: bool = True) -> Topology:
    """Where a server with these settings runs its worker and monitor. ``sidecars``: whether
    the caller can start processes (``onlearn serve`` can; an app built in-process, as tests and
    embedding applications do, runs them as threads instead)."""
    store = capabilities_of(settings.store_url)
    if store.local_file and settings.config_path and sidecars:
        default = Placement.PROCESS  # a sidecar reads the config file and opens the same file
    elif not store.networked:
        default = Placement.THREAD  # memory:// lives in this process only
    else:
        default = Placement.ELSEWHERE

    def place(asked: bool | None) -> Placement:
        if asked is False:
            return Placement.ELSEWHERE
        if asked is True and default is Placement.ELSEWHERE:
            return Placement.THREAD
        return default

    return Topology(worker=place(settings.run_worker), monitor=place(settings.run_monitor))


def threads_beside(engine: Engine, settings: Settings) -> list[tuple[str, Callable]]:
    """The ``(thread name, run(stop))`` pairs the serving process runs for the roles placed as
    threads; each ``run`` returns once its ``threading.Event`` is set. The app starts no
    process: ``onlearn serve`` has started its sidecars already, and handed the app settings
    that place those roles elsewhere."""
    placed = serve_topology(settings, sidecars=False).placed(Placement.THREAD)
    targets: list[tuple[str, Callable[[threading.Event], None]]] = []
    # Imported only when placed here: a server whose worker runs elsewhere does not load the
    # refit and drift machinery at start.
    if "worker" in placed:
        from onlearn.background.worker import Worker

        targets.append(("onlearn-worker", Worker(engine, replay_snapshots=True).run))
    if "monitor" in placed:
        from onlearn.background.monitor import Monitor

        monitor = Monitor(
            settings,
            engine.store,
            clock=engine.clock,
            cpu_share=settings.engine.monitor_cpu_share,
        )
        targets.append(("onlearn-monitor", monitor.run))
    return targets
