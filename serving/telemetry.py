"""FastAPI's native OpenTelemetry hooks, only when an OpenTelemetry provider is configured.

FastAPI (0.16x) asks, on every request, whether a tracer, meter or logger provider has been set
up since; each question reads environment variables, about 4% of the CPU of a predict. A server
started with providers in place (``opentelemetry-instrument onlearn serve``, or an SDK set up
before the app is built) keeps FastAPI's telemetry as it comes; one without turns the hooks off,
so that a request costs one boolean test. Providers set up after the app is built are not seen.
"""

from __future__ import annotations

from typing import Any


def fastapi_kwargs() -> dict[str, Any]:
    """``FastAPI(**fastapi_kwargs())``: the hooks off when no provider is configured; nothing
    (FastAPI's defaults) when one is, or when this FastAPI has no native telemetry."""
    try:
        from fastapi.telemetry._api import _unconfigured  # FastAPI's own test, private
        from opentelemetry import _logs, metrics, trace
    except ImportError:
        return {}
    providers = (
        trace.get_tracer_provider(),
        metrics.get_meter_provider(),
        _logs.get_logger_provider(),
    )
    if all(_unconfigured(p) for p in providers):
        return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    return {}
