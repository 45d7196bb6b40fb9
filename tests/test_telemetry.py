"""FastAPI's OpenTelemetry hooks are on only when a provider is configured (they cost ~4% of a
predict's CPU per request otherwise). Each case runs in a fresh interpreter: OpenTelemetry's
global providers can be set once per process."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.servers import ROOT

PROBE = """
import json, sys
if sys.argv[1] == "tracer":
    from opentelemetry import trace
    trace.set_tracer_provider(trace.NoOpTracerProvider())
from serving.app import create_app
from onlearn.config import Settings
app = create_app(Settings(store_url="memory://"))
print(json.dumps({k: app._telemetry[k] for k in ("tracing", "metrics", "logs")}))
"""


def telemetry_of_an_app(setup: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, setup], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def test_without_a_provider_the_hooks_are_off():
    assert telemetry_of_an_app("none") == {"tracing": False, "metrics": False, "logs": False}


def test_with_a_configured_tracer_provider_fastapi_keeps_its_telemetry():
    assert telemetry_of_an_app("tracer") == {"tracing": True, "metrics": True, "logs": True}
