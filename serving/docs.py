"""The API's documentation pages, ``/docs`` (Swagger UI) and ``/redoc``, with their scripts and
styles served by this app rather than a CDN: they work on a machine without internet.

The files come from the ``fastapi-standalone-docs`` distribution (MIT; swagger-ui-dist 5 and
redoc 2, with ReDoc's one hard-coded CDN image, its logo, pointed at the page's own path), read
from its package data: a maintained copy that updates with ``pip``, not files copied into this
repository. Its ``StandaloneDocs`` is not used: it replaces FastAPI's page functions for the whole
process and mounts static directories, routes that take any method and any path below them,
where each route of this app has one decided role (serving/auth.py); here each file is named.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import FileResponse, HTMLResponse

DOCS = "/docs"
REDOC = "/redoc"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"
ASSETS = "/docs/assets"
# ReDoc's script asks for its logo at the page's path + "/logo-mini.svg".
REDOC_LOGO = "/redoc/logo-mini.svg"
# The files the two pages load, and nothing else of the distribution's: name -> (folder of the
# package's static/, media type).
FILES = {
    "swagger-ui-bundle.js": ("swagger", "text/javascript"),
    "swagger-ui.css": ("swagger", "text/css"),
    "redoc.standalone.js": ("redoc", "text/javascript"),
    "logo-mini.svg": ("redoc", "image/svg+xml"),
    "favicon.png": ("fastapi", "image/png"),
}
# Swagger UI sends the document to validator.swagger.io for a badge unless told not to.
SWAGGER_PARAMETERS = {"validatorUrl": None}


def asset_path(name: str) -> Path:
    folder, _ = FILES[name]
    # A directory on disk, as pip installs the distribution (FileResponse streams from a path).
    static = resources.files("fastapi_standalone_docs").joinpath("static", folder, name)
    return Path(str(static))


def install(app: FastAPI) -> None:
    """Add the pages to an app built with ``docs_url=None, redoc_url=None``."""

    def root(request: Request) -> str:
        return request.scope.get("root_path", "").rstrip("/")

    async def swagger_ui(request: Request) -> HTMLResponse:
        base = root(request)
        return get_swagger_ui_html(
            openapi_url=base + app.openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{base}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{base}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{base}{ASSETS}/favicon.png",
            oauth2_redirect_url=base + OAUTH2_REDIRECT,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters={**SWAGGER_PARAMETERS, **(app.swagger_ui_parameters or {})},
        )

    async def oauth2_redirect(request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        base = root(request)
        return get_redoc_html(
            openapi_url=base + app.openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{base}{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{base}{ASSETS}/favicon.png",
            with_google_fonts=False,  # fonts.googleapis.com: the system's fonts instead
        )

    async def asset(name: str) -> FileResponse:
        if name not in FILES:
            raise HTTPException(404, f"no documentation asset {name!r}; there are {sorted(FILES)}")
        return FileResponse(asset_path(name), media_type=FILES[name][1])

    async def redoc_logo() -> FileResponse:
        return await asset("logo-mini.svg")

    app.add_api_route(DOCS, swagger_ui, methods=["GET"], include_in_schema=False)
    app.add_api_route(OAUTH2_REDIRECT, oauth2_redirect, methods=["GET"], include_in_schema=False)
    app.add_api_route(REDOC, redoc, methods=["GET"], include_in_schema=False)
    app.add_api_route(REDOC_LOGO, redoc_logo, methods=["GET"], include_in_schema=False)
    app.add_api_route(ASSETS + "/{name}", asset, methods=["GET"], include_in_schema=False)
