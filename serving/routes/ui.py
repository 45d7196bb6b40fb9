"""Pages for people: the dashboard, the labelling page (and an index of them)."""

from __future__ import annotations

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
    if not request.app.state.keyring:
        request.app.state.engine.runtime(model)  # 404 for an unknown model
    # With keys, the page is the same for any name: a 404 here would tell a caller without a
    # key which models exist. The page's API calls need a key and say 404 to one.
    return HTMLResponse(_page("label.html"))


@router.get("/ui/label", response_class=HTMLResponse)
async def label_index() -> HTMLResponse:
    """The models with a labelling queue, listed by the page from ``GET /models`` (with a key
    when the server has keys): the page itself names none."""
    return HTMLResponse(_page("label_index.html"))
