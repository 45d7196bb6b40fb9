"""What the HTTP RED metrics cost a request, in process: ``python -m benchmarks.http_metrics``.

One ASGI request through a trivial app that routes as Starlette does (it sets ``scope["route"]``
to onlearn's predict route and answers 200), with and without
:class:`serving.http_metrics.HttpMetricsMiddleware` in front; the difference is the middleware's
cost per request. For comparison, the same counts kept with prometheus_client's own
``Counter.labels(...).inc()`` and ``Histogram.labels(...).observe()`` (what the middleware avoids).
Prints one JSON object (benchmarks/run.py reads it). Best of ``--repeats``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.routing import Route

from serving.http_metrics import BUCKETS, HttpMetrics, HttpMetricsMiddleware

ROUTE = Route("/models/{name}/predict", lambda request: None, methods=["POST"])
START = {"type": "http.response.start", "status": 200, "headers": []}
BODY = {"type": "http.response.body", "body": b"{}"}


async def app(scope, receive, send) -> None:
    scope["route"] = ROUTE  # what the router does
    await send(START)
    await send(BODY)


async def receive() -> dict:
    return {"type": "http.request", "body": b""}


async def send(message) -> None:
    pass


def scope() -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": "/models/phishing/predict", "root_path": ""}


async def _loop(asgi, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        await asgi(scope(), receive, send)
    return time.perf_counter() - started


def prometheus_client_app():
    """The same counts through prometheus_client's per-label objects."""
    registry = CollectorRegistry()
    labels = ["route", "method", "status"]
    count = Counter("requests", "", labels, registry=registry)
    duration = Histogram("duration", "", labels, buckets=BUCKETS, registry=registry)

    async def counted(s, r, snd) -> None:
        t0 = time.perf_counter()
        status = 0

        async def sending(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await snd(message)

        await app(s, r, sending)
        key = (s["route"].path, s["method"], str(status))
        count.labels(*key).inc()
        duration.labels(*key).observe(time.perf_counter() - t0)

    return counted


def measure(n: int, repeats: int) -> dict[str, Any]:
    metrics = HttpMetrics()
    variants = {
        "bare": app,
        "red": HttpMetricsMiddleware(app, metrics=metrics, router=None),
        "prometheus_client": prometheus_client_app(),
    }
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, asgi in variants.items():  # interleaved: drift in the machine hits each alike
            seconds[name].append(asyncio.run(_loop(asgi, n)))
    us = {name: min(s) / n * 1e6 for name, s in seconds.items()}
    counted = sum(sum(s.buckets) for s in metrics.series.values())
    assert counted == n * repeats, counted
    return {
        "requests": n,
        "repeats": repeats,
        "bare_us": us["bare"],
        "red_us": us["red"],
        "prometheus_client_us": us["prometheus_client"],
        "red_cost_us": us["red"] - us["bare"],
        "prometheus_client_cost_us": us["prometheus_client"] - us["bare"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--cpu", type=int, help="pin this process to one CPU")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    json.dump(measure(args.requests, args.repeats), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
