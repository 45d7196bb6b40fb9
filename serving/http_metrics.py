"""HTTP RED metrics (rate, errors, duration) by route template, method and status.

A plain ASGI middleware, outermost, so that it sees every answer: the fast routes (served ahead
of FastAPI's routing, :mod:`serving.fast`), FastAPI's, and those given before any route runs
(401 and 403 of access control, 413 of the size limit, 504 of the deadline, 500 of an error).

The label is the route's template (``/models/{name}/predict``), never the path: a model name or
an item id in a label would make a series per value. A path no route serves is counted as
``other``, and a method outside :data:`METHODS` as ``other``, so that a scanner probing random
paths adds one series, not one per path.

Cost: prometheus_client's ``labels(...)`` takes a lock and builds a key per call, and each
``observe`` takes another lock (4.5 us a request together). Here a routed request costs two
clock reads, one dict lookup of its series by (route, method, status) and a bisect into the
buckets (1.3 us, benchmarks/RESULTS.md line 5); :class:`HttpCollector` turns the counts into
metric families at scrape time. Counts are bumped on the event loop's thread only (the middleware runs there, whatever
runs the endpoint), so they need no lock.
"""

from __future__ import annotations

import re
import time
from bisect import bisect_left

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from starlette.routing import Mount, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.auth import route_table

# Seconds. A predict takes about 0.3 ms, a batch or a feedback that waits for its commit a few
# ms, a refit request or a stalled store up to the request timeout (30 s by default).
BUCKETS = (
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"


class _Series:
    """One (route, method, status): the sum of durations and per-bucket counts (not cumulative;
    the last one is +Inf; their sum is the count)."""

    __slots__ = ("buckets", "total")

    def __init__(self) -> None:
        self.total = 0.0
        self.buckets = [0] * (len(BUCKETS) + 1)

    def add(self, seconds: float) -> None:
        self.total += seconds
        self.buckets[bisect_left(BUCKETS, seconds)] += 1


class HttpMetrics:
    """The counts, and the route templates known so far."""

    def __init__(self) -> None:
        self.series: dict[tuple[str, str, int], _Series] = {}
        # id of a route -> its template: routes are not all hashable, and live as long as the app
        self._templates: dict[int, str] = {}
        self._table: list[tuple[object, frozenset[str] | None, str]] | None = None
        # (id of a route, method, status) -> its series, for routes outside mounts
        self._routed: dict[tuple[int, str, int], _Series] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.series_of(route, method, status).add(seconds)

    def series_of(self, route: str, method: str, status: int) -> _Series:
        key = (route, method, status)
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = _Series()
        return series

    def record(self, scope: Scope, root_path: str, router, status: int, seconds: float) -> None:
        """Count a request of ``scope`` answered with ``status`` in ``seconds``."""
        method = scope["method"]
        route = scope.get("route")
        if route is not None and method in METHODS and scope.get("root_path", "") == root_path:
            # The usual request: a route outside any mount, a known method. One lookup.
            key = (id(route), method, status)
            series = self._routed.get(key)
            if series is None:
                series = self._routed[key] = self.series_of(
                    self.template(scope, router, root_path), method, status
                )
        else:
            series = self.series_of(
                self.template(scope, router, root_path),
                method if method in METHODS else OTHER,
                status,
            )
        series.add(seconds)

    def template(self, scope: Scope, router, root_path: str = "") -> str:
        """The template of the route that answered, or of the route the path would reach when
        the answer came before routing; ``other`` when no route serves the path.

        ``root_path``: the scope's before the app ran. A mount adds the path it matched to it:
        the request is then counted under the mount's template from the route table
        (``/static/{path}``), never under the concrete prefix (a mount's path may hold
        parameters).
        """
        route = scope.get("route")
        if route is not None and scope.get("root_path", "") == root_path:
            found = self._templates.get(id(route))
            if found is None:
                found = self._templates[id(route)] = _template_of(route)
            return found
        return self._match(scope, router)

    def _match(self, scope: Scope, router) -> str:
        # Only for answers given before routing (and 404s): the router's own walk, again.
        if self._table is None:
            self._table = [
                (compile_path(path)[0], methods, _MOUNTED.sub("/{path}", path))
                for path, methods in route_table(router)
            ]
        path = scope.get("path", "")
        method = scope.get("method")
        fallback = OTHER
        for regex, methods, template in self._table:
            if regex.match(path):  # type: ignore[attr-defined]
                if methods is None or method in methods:
                    return template
                if fallback is OTHER:
                    fallback = template  # the path is served, not with this method: a 405
        return fallback


# What auth.route_table gives a mount (``/static/{rest:path}``), labelled ``/static/{path}``.
_MOUNTED = re.compile(r"/\{rest:path\}$")


def _template_of(route) -> str:
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    if path is None:
        return OTHER
    if isinstance(getattr(route, "original_route", route), Mount):
        return path.rstrip("/") + "/{path}"  # an app that is not a router (static files)
    return path


class HttpMetricsMiddleware:
    """Times every HTTP request and counts it under its route template, method and status."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics, router) -> None:
        self.app = app
        self.metrics = metrics
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        root_path = scope.get("root_path", "")
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            # Unhandled: the server error middleware outside answers 500, unless the answer
            # had started (then the client sees a cut answer; the status sent is counted). A
            # cancellation (the server stopping) is no answer: not counted.
            if not status:
                status = 500
            raise
        finally:
            if status:  # 0: the client went away before any answer; nothing was served
                self.metrics.record(
                    scope, root_path, self.router, status, time.perf_counter() - started
                )


class HttpCollector:
    """The counts as ``onlearn_http_requests_total`` and the histogram
    ``onlearn_http_request_duration_seconds``, built at scrape time."""

    def __init__(self, metrics: HttpMetrics) -> None:
        self.metrics = metrics

    def collect(self):
        labels = ["route", "method", "status"]
        requests = CounterMetricFamily(
            "onlearn_http_requests",
            "HTTP requests answered, by route template ('other': a path no route serves), "
            "method and status",
            labels=labels,
        )
        duration = HistogramMetricFamily(
            "onlearn_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer, by route template, method "
            "and status",
            labels=labels,
        )
        bounds = [repr(b) for b in BUCKETS] + ["+Inf"]
        for (route, method, status), series in list(self.metrics.series.items()):
            values = [route, method, str(status)]
            # A snapshot of the counts: the loop may bump them while this runs in a thread.
            total, per_bucket = series.total, list(series.buckets)
            cumulative, running = [], 0
            for bound, n in zip(bounds, per_bucket, strict=True):
                running += n
                cumulative.append((bound, running))
            requests.add_metric(values, running)
            duration.add_metric(values, cumulative, total)
        yield requests
        yield duration
