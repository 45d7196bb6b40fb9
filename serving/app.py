"""The HTTP layer: an app factory with a lifespan that starts and stops the engine."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from onlearn.config import Settings, load_settings
from onlearn.engine import Engine
from serving import errors, fast
from serving.limits import BodySizeLimit
from serving.prometheus import registry_for
from serving.routes import feedback, health, metrics, models, predict, queue, ui

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
        app.state.prometheus = registry_for(eng)
        if not eng.started:
            await run_in_threadpool(eng.start)
        try:
            yield
        finally:
            if own:
                await run_in_threadpool(eng.close)

    app = FastAPI(
        title="onlearn",
        description=DESCRIPTION,
        version=_version(),
        lifespan=lifespan,
    )
    app.state.settings = settings
    errors.install(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.limits.max_body_bytes)
    for router in (
        health.router,
        models.router,
        predict.router,
        feedback.router,
        queue.router,
        metrics.router,
        ui.router,
    ):
        app.include_router(router)
    fast.install(app)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/docs")

    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onlearn")
    except PackageNotFoundError:
        return "dev"
