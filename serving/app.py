"""The HTTP layer: an app factory with a lifespan that starts and stops the engine."""

from __future__ import annotations

import gc
import logging
import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from onlearn.access import Keyring
from onlearn.config import Settings, load_settings
from onlearn.engine import Engine
from onlearn.topology import threads_beside
from serving import auth, docs, errors, fast, openapi
from serving.http_metrics import HttpMetrics, HttpMetricsMiddleware
from serving.limits import BodySizeLimit, RequestTimeout
from serving.prometheus import registry_for
from serving.routes import (
    feedback,
    health,
    label_studio,
    metrics,
    models,
    predict,
    queue,
    ui,
    versions,
)
from serving.telemetry import fastapi_kwargs

log = logging.getLogger(__name__)

DESCRIPTION = """Serve a model and keep it learning from the labels that come back.

1. `POST /models/{name}/predict` with `{"features": {...}}` answers a label, probabilities and a
   `prediction_id`.
2. When the true label is known, `POST /models/{name}/feedback` with
   `{"prediction_id": ..., "label": ...}`: the label is logged durably, then learned.
"""


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> FastAPI:
    """Build the app. With no arguments, settings come from ``ONLEARN_*`` variables.

    An engine passed in is started if needed and left open for its owner; one built here from
    the settings is closed with the app.
    """
    settings = settings or (engine.settings if engine else load_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        own = engine is None
        eng = engine or Engine.from_settings(settings)
        app.state.engine = eng
        app.state.prometheus = registry_for(eng, app.state.http_metrics)
        if not eng.started:
            await run_in_threadpool(eng.start)
        background = Background(eng, settings)
        background.start()
        # What start-up loaded (modules, models, schemas) lives as long as the process: frozen,
        # a full collection no longer walks it. Under load, full collections that found nothing
        # paused the server 70-90 ms every ~20 s (measured with gc.callbacks in the soak).
        gc.freeze()
        try:
            with auth.reload_on_sighup(app.state.keyring, settings.config_path):
                yield
        finally:
            await run_in_threadpool(background.stop)
            if own:
                await run_in_threadpool(eng.close)

    app = FastAPI(
        title="onlearn",
        description=DESCRIPTION,
        version=_version(),
        lifespan=lifespan,
        docs_url=None,  # served by serving/docs.py, without a CDN
        redoc_url=None,
        **fastapi_kwargs(),
    )
    app.state.settings = settings
    errors.install(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.limits.max_body_bytes)
    # Added after the size limit, so it runs first: a request without a key is refused before
    # its body is read.
    auth.install(app, Keyring(settings.api_keys))
    # Outside the others (but the metrics): the deadline covers everything the request waits
    # for, its body included.
    app.add_middleware(RequestTimeout, timeout_s=settings.limits.request_timeout_s)
    # Outside the deadline: the 504s it gives, and every other answer, are counted and timed.
    app.state.http_metrics = HttpMetrics()
    app.add_middleware(HttpMetricsMiddleware, metrics=app.state.http_metrics, router=app.router)
    routers = [
        health.router,
        models.router,
        predict.router,
        feedback.router,
        queue.router,
        versions.router,
        metrics.router,
        ui.router,
        label_studio.router,
    ]
    for router in routers:
        app.include_router(router)
    fast.install(app, routers)
    openapi.install(app)
    docs.install(app)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/docs")

    return app


class Background:
    """The threads that run beside the server (the worker and the monitor with ``memory://``;
    :mod:`onlearn.topology` decides which): started with the app, stopped with it."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self._targets = threads_beside(engine, settings)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for name, target in self._targets:
            thread = threading.Thread(target=target, args=(self._stop,), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        # A refit may run for minutes: do not hold the shutdown for it. Its job's lease runs out
        # and a worker takes it again; everything it writes is keyed, so nothing is doubled.
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onlearn")
    except PackageNotFoundError:
        return "dev"
