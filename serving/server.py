"""Run the HTTP server: the part of ``onlearn serve`` that needs uvicorn (the core, and so the
CLI, does not import the web stack)."""

from __future__ import annotations

import os

import uvicorn

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


def run(settings: Settings, log_level: str) -> None:
    """Serve until stopped: one process with the app built here, or ``settings.workers``
    processes that each build it from the environment (uvicorn's factory mode)."""
    if settings.workers == 1:
        from serving.app import create_app

        app = create_app(settings)
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_level=log_level,
            **connection_options(settings),
        )
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
