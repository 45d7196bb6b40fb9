"""Start one server for a benchmark: the bare baseline app or onlearn, with the same uvicorn settings.

    python -m benchmarks.server bare --port 8123 [--cpu 0]
    python -m benchmarks.server onlearn --port 8123 --store sqlite:///tmp/x/onlearn.db [--cpu 0]
    python -m benchmarks.server onlearn-nometrics ...   (onlearn without the HTTP RED metrics)

Both run in one server process with one worker, uvloop and httptools, no access log and log
level ``warning``; only the app differs. onlearn runs in the layout of ``onlearn serve``
(``onlearn.tools.cli.serving_layout``): on the SQLite store its training worker and monitor are
processes beside the server (started here, pinned like it, gone with it), on memory:// threads of
it.
"""

from __future__ import annotations

import argparse
import os
import sys

# The one set of uvicorn settings both servers share; RESULTS.md prints it.
UVICORN_SETTINGS = {
    "workers": 1,
    "loop": "uvloop",
    "http": "httptools",
    "log_level": "warning",
    "access_log": False,
}

DEFAULT_CONFIG = "examples/phishing.toml"


def serve(kind: str, host: str, port: int, config: str, store: str | None) -> None:
    import uvicorn

    if kind == "bare":
        from benchmarks.bare_app import app

        uvicorn.run(app, host=host, port=port, **UVICORN_SETTINGS)
        return
    from onlearn.config import load_settings
    from onlearn.tools.cli import serving_layout
    from serving.app import create_app

    settings = load_settings(config, store_url=store)
    with serving_layout(settings, UVICORN_SETTINGS["log_level"]) as layout:
        app = create_app(layout.settings)
        if kind == "onlearn-nometrics":
            # What the RED metrics cost: the same app without their middleware (the middleware
            # stack is built at the first request). Not a setting: onlearn always counts.
            from serving.http_metrics import HttpMetricsMiddleware

            app.user_middleware = [
                m for m in app.user_middleware if m.cls is not HttpMetricsMiddleware
            ]
        uvicorn.run(app, host=host, port=port, **UVICORN_SETTINGS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["bare", "onlearn", "onlearn-nometrics"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--store", help="onlearn store URL (sqlite:///path or memory://)")
    parser.add_argument("--cpu", type=int, help="pin this process (all its threads) to one CPU")
    args = parser.parse_args(argv)

    if args.cpu is not None:
        # Before any thread starts, so that every thread of the server inherits the mask.
        os.sched_setaffinity(0, {args.cpu})

    serve(args.kind, args.host, args.port, args.config, args.store)
    return 0


if __name__ == "__main__":
    sys.exit(main())
