"""The RED middleware on its own, driven as an ASGI server drives it: what no real client can
send through uvicorn (an unknown method, an endpoint that raises, a client that leaves)."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route, Router

from serving.http_metrics import BUCKETS, HttpCollector, HttpMetrics, HttpMetricsMiddleware


async def ok(request):
    return PlainTextResponse("ok")


async def boom(request):
    raise RuntimeError("a bug")


async def ok_app(scope, receive, send):  # an app that is not a router (static files)
    await PlainTextResponse("ok")(scope, receive, send)


async def never_answers(request):
    raise asyncio.CancelledError  # the client went away before any answer


ROUTER = Router(
    [
        Route("/models/{name}/predict", ok, methods=["POST"]),
        Route("/boom", boom),
        Route("/gone", never_answers),
        Mount("/static", routes=[Route("/{path:path}", ok)]),
        Mount("/files", app=ok_app),
        Mount("/users/{uid}", routes=[Route("/page", ok)]),
    ]
)


def call(app, method: str, path: str) -> int:
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "scheme": "http",
        "server": ("test", 80),
        "http_version": "1.1",
    }
    try:
        asyncio.run(app(scope, receive, send))
    except (RuntimeError, asyncio.CancelledError):
        pass
    return next((m["status"] for m in sent if m["type"] == "http.response.start"), 0)


@pytest.fixture
def metrics() -> tuple[HttpMetrics, HttpMetricsMiddleware]:
    m = HttpMetrics()
    return m, HttpMetricsMiddleware(ROUTER, metrics=m, router=ROUTER)


def counts(m: HttpMetrics) -> dict[tuple[str, str, int], int]:
    return {key: sum(s.buckets) for key, s in m.series.items()}


def test_templates_methods_and_statuses_are_bounded(metrics):
    m, app = metrics
    for name in ("a", "b", "c"):
        assert call(app, "POST", f"/models/{name}/predict") == 200
    assert call(app, "GET", "/models/a/predict") == 405
    assert call(app, "BREW", "/models/a/predict") == 405
    for n in range(20):
        assert call(app, "GET", f"/probe/{n}") == 404
        assert call(app, "GET", f"/static/css/{n}.css") == 200
    assert counts(m) == {
        ("/models/{name}/predict", "POST", 200): 3,
        ("/models/{name}/predict", "GET", 405): 1,
        ("/models/{name}/predict", "other", 405): 1,
        ("other", "GET", 404): 20,
        ("/static/{path}", "GET", 200): 20,
    }


def test_an_unhandled_error_counts_as_500_and_a_client_gone_is_not_counted(metrics):
    m, app = metrics
    call(app, "GET", "/boom")
    call(app, "GET", "/gone")
    assert counts(m) == {("/boom", "GET", 500): 1}


def test_answers_given_before_routing_find_their_template():
    """A middleware inside (access control, the size limit) answers before the router sets
    scope["route"]: the template comes from the route table."""
    m = HttpMetrics()

    async def refuse(scope, receive, send):
        await send({"type": "http.response.start", "status": 413, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    app = HttpMetricsMiddleware(refuse, metrics=m, router=ROUTER)
    call(app, "POST", "/models/x/predict")
    call(app, "POST", "/nowhere")
    call(app, "GET", "/files/a.txt")
    assert counts(m) == {
        ("/models/{name}/predict", "POST", 413): 1,
        ("other", "POST", 413): 1,
        ("/files/{path}", "GET", 413): 1,
    }


def test_the_collector_exports_a_counter_and_a_cumulative_histogram():
    m = HttpMetrics()
    for seconds in (0.0001, 0.0003, 0.002, 0.002, 100.0):
        m.observe("/r", "GET", 200, seconds)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HttpCollector(m))
    families = {
        f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())
    }
    labels = {"route": "/r", "method": "GET", "status": "200"}
    (total,) = families["onlearn_http_requests"].samples
    assert (total.name, total.labels, total.value) == ("onlearn_http_requests_total", labels, 5)
    histogram = {
        (s.name, s.labels.get("le")): s.value
        for s in families["onlearn_http_request_duration_seconds"].samples
    }
    assert histogram["onlearn_http_request_duration_seconds_count", None] == 5
    assert histogram["onlearn_http_request_duration_seconds_sum", None] == pytest.approx(100.0044)
    bucket = "onlearn_http_request_duration_seconds_bucket"
    assert histogram[bucket, "0.00025"] == 1
    assert histogram[bucket, "0.0005"] == 2
    assert histogram[bucket, "0.0025"] == 4  # 0.002 <= 0.0025: "le" includes the bound
    assert histogram[bucket, repr(BUCKETS[-1])] == 4
    assert histogram[bucket, "+Inf"] == 5
