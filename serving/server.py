"""Run the HTTP server: the part of ``onlearn serve`` that needs uvicorn (the core, and so the
CLI, does not import the web stack)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from types import FrameType

import uvicorn
from uvicorn.main import STARTUP_FAILURE

from onlearn.config import Settings


def connection_options(settings: Settings) -> dict:
    """uvicorn's options for the ``[limits]`` on connections (see serving/connections.py)."""
    limits = settings.limits
    return {
        "http": "serving.connections:Connection",
        "timeout_keep_alive": limits.keep_alive_timeout_s,
        "limit_concurrency": limits.max_connections,
        "timeout_graceful_shutdown": limits.graceful_shutdown_s,
    }


class _Server(uvicorn.Server):
    """uvicorn's server, telling ``on_stop`` the moment a stop is asked (before it waits up to
    ``graceful_shutdown_s`` for requests in flight and writes the shutdown snapshots)."""

    def __init__(self, config: uvicorn.Config, on_stop: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_stop = on_stop

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._on_stop()
        super().handle_exit(sig, frame)


def run(settings: Settings, log_level: str, on_stop: Callable[[], None] = lambda: None) -> None:
    """Serve until stopped: one process with the app built here, or ``settings.workers``
    processes that each build it from the environment (uvicorn's factory mode). ``on_stop`` is
    called when SIGTERM or SIGINT arrives (one process; with several, uvicorn's supervisor
    handles the signals and the caller's cleanup runs when they have stopped)."""
    if settings.workers == 1:
        from serving.app import create_app

        config = uvicorn.Config(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_level=log_level,
            **connection_options(settings),
        )
        server = _Server(config, on_stop)
        with contextlib.suppress(KeyboardInterrupt):
            server.run()
        if not server.started:  # as uvicorn.run: the port was taken, or the app failed to start
            sys.exit(STARTUP_FAILURE)
        return
    os.environ.update(ONLEARN_CONFIG=settings.config_path, ONLEARN_STORE_URL=settings.store_url)
    if settings.secret_key:
        os.environ["ONLEARN_SECRET_KEY"] = settings.secret_key
    for name, value in (
        ("ONLEARN_RUN_WORKER", settings.run_worker),
        ("ONLEARN_RUN_MONITOR", settings.run_monitor),
    ):
        if value is not None:
            os.environ[name] = "true" if value else "false"
    uvicorn.run(
        "serving.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=log_level,
        **connection_options(settings),
    )
