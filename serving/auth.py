"""Access control over HTTP: which role each route needs, checked before the route runs.

A plain ASGI middleware (cheap on the predict path, and it covers the Starlette fast routes as
well as the FastAPI ones). It finds the route a request goes to with the router's own matching
(the first route that fully matches, as the router does), so the policy below cannot disagree
with what actually answers. A route missing from ``POLICY`` needs ``admin``: a route added
without a decision is closed, not open (and tests/test_auth.py fails until it has one).

With no keys configured the middleware is not installed at all.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import signal
import threading

from starlette.routing import Mount, compile_path, get_route_path
from starlette.types import ASGIApp, Receive, Scope, Send

from onlearn.access import ApiKey, Keyring, Role

log = logging.getLogger(__name__)

PREDICT, LABEL, ADMIN = Role.PREDICT, Role.LABEL, Role.ADMIN
OPEN: frozenset[Role] = frozenset()  # no key needed
ANY_KEY = frozenset(Role)  # any valid key: reads that reveal no data and change nothing

# (method, route path) -> the roles any one of which lets a key in; admin always does.
POLICY: dict[tuple[str, str], frozenset[Role]] = {
    # Probes of orchestrators, and the API's documentation (the API's shape is no secret).
    ("GET", "/healthz"): OPEN,
    ("GET", "/readyz"): OPEN,
    ("GET", "/"): OPEN,
    ("GET", "/docs"): OPEN,
    ("GET", "/docs/oauth2-redirect"): OPEN,
    ("GET", "/redoc"): OPEN,
    ("GET", "/docs/assets/{name}"): OPEN,  # the pages' scripts and styles (serving/docs.py)
    ("GET", "/redoc/logo-mini.svg"): OPEN,
    ("GET", "/openapi.json"): OPEN,
    # The pages are static; every API call they make needs a key (they ask for one on a 401).
    ("GET", "/ui"): OPEN,
    ("GET", "/ui/"): OPEN,
    ("GET", "/ui/apikey.js"): OPEN,
    ("GET", "/ui/label"): OPEN,
    ("GET", "/ui/label/{model}"): OPEN,
    # Reads about models: any key (the dashboard works with a label or a predict key).
    ("GET", "/metrics"): ANY_KEY,
    ("GET", "/models"): ANY_KEY,
    ("GET", "/models/{name}"): ANY_KEY,
    ("GET", "/models/{name}/metrics"): ANY_KEY,
    ("GET", "/models/{name}/drift"): ANY_KEY,
    ("GET", "/models/{name}/versions"): ANY_KEY,
    ("GET", "/models/{name}/history"): ANY_KEY,
    # A model's typed document (its features and labels): /openapi.json names no model then.
    ("GET", "/models/{name}/openapi.json"): ANY_KEY,
    # An application.
    ("POST", "/models/{name}/predict"): frozenset({PREDICT}),
    ("POST", "/models/{name}/predict/batch"): frozenset({PREDICT}),
    ("POST", "/models/{name}/feedback"): frozenset({PREDICT, LABEL}),
    ("POST", "/models/{name}/feedback/batch"): frozenset({PREDICT, LABEL}),
    # A person labelling.
    ("POST", "/models/{name}/queue/claim"): frozenset({LABEL}),
    ("POST", "/models/{name}/queue/{item_id}/label"): frozenset({LABEL}),
    ("POST", "/models/{name}/queue/{item_id}/skip"): frozenset({LABEL}),
    ("POST", "/models/{name}/queue/{item_id}/release"): frozenset({LABEL}),
    ("GET", "/models/{name}/queue/stats"): frozenset({LABEL}),
    # An operator: anything that changes which version answers, or starts work.
    ("POST", "/models/{name}/versions/{version}/promote"): frozenset({ADMIN}),
    ("POST", "/models/{name}/rollback"): frozenset({ADMIN}),
    ("POST", "/models/{name}/retrain"): frozenset({ADMIN}),
    ("GET", "/jobs"): frozenset({ADMIN}),
    ("GET", "/jobs/{job_id}"): frozenset({ADMIN}),
    ("POST", "/jobs/{job_id}/cancel"): frozenset({ADMIN}),
    # Label Studio as the labelling front end: one key for its calls, a label key (a predict
    # key may ask predictions too); annotations are a person's labels, so the webhook needs
    # label. These routes take HTTP Basic as well (BASIC_PREFIX).
    ("GET", "/label-studio/{name}/health"): frozenset({PREDICT, LABEL}),
    ("POST", "/label-studio/{name}/setup"): frozenset({PREDICT, LABEL}),
    ("POST", "/label-studio/{name}/predict"): frozenset({PREDICT, LABEL}),
    ("POST", "/label-studio/{name}/webhook"): frozenset({LABEL}),
    ("POST", "/label-studio/{name}/train"): frozenset({LABEL}),
}
DEFAULT = frozenset({ADMIN})

HOW = "send a key as `Authorization: Bearer <key>` or `X-API-Key: <key>`"
# Routes that also take HTTP Basic, the one scheme Label Studio offers its ML backends: the
# password is the API key, the user name is free (Label Studio asks for one; the key's name is
# a good choice). Elsewhere Basic is refused: a key in a browser's password store, sent to any
# route, would be a key the operator never meant to hand out that way.
BASIC_PREFIX = "/label-studio/"
HOW_BASIC = f"{HOW}, or on {BASIC_PREFIX}... routes as HTTP Basic with the key as password"


def needed(method: str, path: str) -> frozenset[Role]:
    """The roles that let a request to the route ``path`` in."""
    return POLICY.get(("GET" if method == "HEAD" else method, path), DEFAULT)


def describe(roles: frozenset[Role]) -> str:
    if roles == ANY_KEY:
        return "any valid key"
    names = sorted(r.value for r in roles | {ADMIN})
    return "a key with role " + " or ".join(names)


class AccessControl:
    """401 without a valid key, 403 when the key lacks the route's role; the key's name goes
    to ``request.state.principal`` (the actor of promotions and refits)."""

    def __init__(self, app: ASGIApp, keyring: Keyring, router) -> None:
        self.app = app
        self.keyring = keyring
        self.router = router
        self._table: list[tuple[re.Pattern, frozenset[str] | None, str]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        roles, template = self._needed(scope)
        if not roles:
            return await self.app(scope, receive, send)
        basic = template.startswith(BASIC_PREFIX)
        how = HOW_BASIC if basic else HOW
        key = _presented(scope["headers"], basic=basic)
        if key is None:
            if not basic and _sent_basic(scope["headers"]):
                how = (
                    f"HTTP Basic is taken on {BASIC_PREFIX}... routes only (Label Studio's); {how}"
                )
            return await _deny(send, 401, f"this route needs an API key: {how}", basic=basic)
        entry = self.keyring.find(key)
        if entry is None:
            return await _deny(
                send, 401, f"the API key is not valid (unknown or revoked): {how}", basic=basic
            )
        if not entry.allows(roles):
            return await _deny(send, 403, _forbidden(entry, scope, roles))
        scope.setdefault("state", {})["principal"] = entry.name
        await self.app(scope, receive, send)

    def _needed(self, scope: Scope) -> tuple[frozenset[Role], str]:
        """The roles the request's route needs, and its path template ("" for no route)."""
        if self._table is None:  # built at the first request: every route is added by then
            self._table = [
                (compile_path(path)[0], methods, path) for path, methods in route_table(self.router)
            ]
        method = "GET" if scope["method"] == "HEAD" else scope["method"]
        path = get_route_path(scope)
        for regex, methods, template in self._table:
            if regex.match(path) and (methods is None or method in methods):
                return needed(method, template), template
        # No route answers this: the router says 404 or 405, to a caller with a valid key only
        # (probing paths or methods tells nothing without a key).
        return ANY_KEY, ""


def route_table(router) -> list[tuple[str, frozenset[str] | None]]:
    """Every route the router serves, in its order, as (path template, methods).

    FastAPI 0.165 keeps included routers as nodes of the route list; its
    ``iter_route_contexts`` flattens them. A mount is matched on its prefix, any method.
    """
    try:
        from fastapi.routing import iter_route_contexts

        routes = list(iter_route_contexts(router.routes))
    except ImportError:  # FastAPI before included routers became nodes: the list is flat
        routes = list(router.routes)
    table = []
    for route in routes:
        path = getattr(route, "path", None)
        if path is None:
            continue
        if isinstance(getattr(route, "original_route", route), Mount):
            table.append((path.rstrip("/") + "/{rest:path}", None))
            continue
        methods = getattr(route, "methods", None)
        table.append((path, frozenset(methods) if methods else None))
    return table


def _presented(headers: list[tuple[bytes, bytes]], *, basic: bool = False) -> bytes | None:
    bearer = api_key = None
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                bearer = token.strip()
            elif basic and scheme.lower() == b"basic" and token.strip():
                bearer = _basic_password(token.strip())
        elif name == b"x-api-key" and value.strip():
            api_key = value.strip()
    return bearer if bearer is not None else api_key


def _sent_basic(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(
        name == b"authorization" and value.partition(b" ")[0].lower() == b"basic"
        for name, value in headers
    )


def _basic_password(token: bytes) -> bytes | None:
    """The password of HTTP Basic credentials (``base64(user:password)``), the API key."""
    try:
        decoded = base64.b64decode(token, validate=True)
    except ValueError:  # binascii.Error: not base64
        return None
    _, colon, password = decoded.partition(b":")
    return password if colon and password else None


def _forbidden(entry: ApiKey, scope: Scope, roles: frozenset[Role]) -> str:
    has = ", ".join(sorted(r.value for r in entry.roles))
    return (
        f"{scope['method']} {scope['path']} needs {describe(roles)}; "
        f"key {entry.name!r} has role {has}"
    )


async def _deny(send: Send, status: int, detail: str, *, basic: bool = False) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="onlearn"'))
        if basic:
            headers.append((b"www-authenticate", b'Basic realm="onlearn"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def install(app, keyring: Keyring) -> None:
    """Check keys on every request when there are keys; with none, access control is off."""
    app.state.keyring = keyring
    if not keyring:
        return
    app.add_middleware(AccessControl, keyring=keyring, router=app.router)
    _document(app)
    log.info("access control on: %d API keys", len(keyring))


@contextlib.contextmanager
def reload_on_sighup(keyring: Keyring, config_path: str | None):
    """While the app runs, SIGHUP reads the API keys again (the configuration file and
    ``ONLEARN_API_KEYS``) and swaps them in: keys are added or revoked without a restart. Where
    a signal can be caught (the main thread of a process: the server of ``onlearn serve``). A
    reload that fails, or that would leave no key, keeps the current keys and says why in the
    log; a server without keys says that it has none to reload (SIGHUP's default would have
    stopped it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()

    def reload() -> None:
        from onlearn.config import load_settings

        if not keyring:
            log.warning(
                "SIGHUP: access control is off (no API keys at start); restart the server "
                "with keys to turn it on"
            )
            return
        try:
            keyring.replace(load_settings(config_path).api_keys)
        except Exception as e:  # the server keeps serving with the keys it has
            log.error("SIGHUP: API keys not reloaded: %s", e)
            return
        log.warning("SIGHUP: API keys reloaded: %d keys", len(keyring))

    loop.add_signal_handler(signal.SIGHUP, reload)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGHUP)


def _document(app) -> None:
    """Declare the bearer scheme in the OpenAPI document, so /docs has an Authorize button."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            components = schema.setdefault("components", {})
            components.setdefault("securitySchemes", {})["apiKey"] = {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key; " + HOW,
            }
            schema["security"] = [{"apiKey": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
