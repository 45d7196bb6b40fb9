"""Pages for people: the dashboard, the labelling page (and an index of them)."""

from __future__ import annotations

import html
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

router = APIRouter(tags=["pages"], include_in_schema=False)


def _page(name: str) -> str:
    return resources.files("serving").joinpath("static", name).read_text(encoding="utf-8")


@router.get("/ui/", response_class=HTMLResponse)
async def dashboard() -> HTMLResponse:
    """Drift, accuracy, labels and alarms of each model, from ``GET /models/{name}/drift``."""
    return HTMLResponse(_page("dashboard.html"))


@router.get("/ui/apikey.js")
async def apikey_script() -> Response:
    """The pages' shared script: ask for an API key on a 401 and send it."""
    return Response(_page("apikey.js"), media_type="text/javascript")


@router.get("/ui")
async def dashboard_redirect() -> RedirectResponse:
    return RedirectResponse("/ui/")


@router.get("/ui/label/{model}", response_class=HTMLResponse)
async def label_page(model: str, request: Request) -> HTMLResponse:
    request.app.state.engine.runtime(model)  # 404 for an unknown model
    return HTMLResponse(_page("label.html"))


@router.get("/ui/label", response_class=HTMLResponse)
async def label_index(request: Request) -> HTMLResponse:
    engine = request.app.state.engine
    links = (
        "".join(
            f'<li><a href="/ui/label/{html.escape(rt.name)}">{html.escape(rt.name)}</a></li>'
            for rt in engine.runtimes.values()
            if rt.config.active is not None
        )
        or "<li>No model has a labelling queue: add an [models.NAME.active] table.</li>"
    )
    return HTMLResponse(
        "<!doctype html><meta charset=utf-8><title>onlearn: label</title>"
        "<h1>Label for a model</h1>"
        f"<ul>{links}</ul>"
    )
