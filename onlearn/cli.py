"""The ``onlearn`` command: serve, demo, schema infer."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from onlearn.errors import OnlearnError

EPILOG = """examples:
  onlearn serve --config examples/phishing.toml
  onlearn demo --model phishing --dataset phishing --delay 20
  onlearn label --model phishing
  onlearn schema infer data.csv --target label --model my_model
"""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    logging.basicConfig(
        level=getattr(args, "log_level", "info").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns the bar
    try:
        return args.func(args) or 0
    except OnlearnError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onlearn",
        description="Serve a model over HTTP and keep it learning from the labels that come back.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve the configured models over HTTP")
    serve.add_argument("--config", help="TOML file declaring the models (or $ONLEARN_CONFIG)")
    serve.add_argument(
        "--store", help="store URL: sqlite:///path.db or memory:// (or $ONLEARN_STORE_URL)"
    )
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.add_argument(
        "--workers", type=int, help="server processes, each following the log (default 1)"
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=cmd_serve)

    demo = commands.add_parser("demo", help="stream a river dataset through a running server")
    demo.add_argument("--url", default="http://127.0.0.1:8000", help="server address")
    demo.add_argument("--model", default="phishing", help="model name on the server")
    demo.add_argument(
        "--dataset",
        default="phishing",
        help="river dataset: phishing, bananas, image_segments, trump_approval, chick_weights",
    )
    demo.add_argument("--limit", type=int, help="stop after this many rows")
    demo.add_argument(
        "--delay", type=int, default=0, help="send each label this many rows after its prediction"
    )
    demo.add_argument(
        "--delay-s", type=float, default=0.0, help="and at least this many seconds after it"
    )
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    demo.set_defaults(func=cmd_demo)

    label = commands.add_parser("label", help="label queued predictions in the terminal")
    label.add_argument("--model", required=True, help="model name on the server")
    label.add_argument("--url", default="http://127.0.0.1:8000", help="server address")
    label.add_argument(
        "--labeller", default=os.environ.get("USER"), help="your name, kept with each label"
    )
    label.add_argument(
        "--lease-s", type=float, help="how long an item is yours (server default if absent)"
    )
    label.add_argument(
        "--wait",
        action="store_true",
        help="when the queue is empty, wait for more instead of ending",
    )
    label.set_defaults(func=cmd_label)

    schema = commands.add_parser("schema", help="feature schema tools")
    schema_commands = schema.add_subparsers(title="schema commands", metavar="COMMAND")
    infer = schema_commands.add_parser(
        "infer", help="print a schema inferred from a CSV file, to paste into the config"
    )
    infer.add_argument("file", help="CSV file with a header row")
    infer.add_argument("--target", help="the label column, left out of the features")
    infer.add_argument("--model", default="my_model", help="model name for the TOML table")
    infer.add_argument("--limit", type=int, help="read at most this many rows")
    infer.add_argument("--task", default="classification", choices=["classification", "regression"])
    infer.set_defaults(func=cmd_schema_infer)
    schema.set_defaults(func=lambda args: schema.print_help() or 2)
    return parser


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from onlearn.config import load_settings
    from onlearn.keys import resolve_secret
    from onlearn.registry import ensure_registered
    from onlearn.store.base import open_store

    settings = load_settings(
        args.config, store_url=args.store, host=args.host, port=args.port, workers=args.workers
    )
    if not settings.models:
        print(
            "error: no models configured; pass --config (see examples/phishing.toml)",
            file=sys.stderr,
        )
        return 2
    if settings.workers > 1 and not (
        settings.store_url.startswith("sqlite:") and settings.config_path
    ):
        print(
            "error: --workers > 1 needs a shared store (sqlite://...) and a --config file",
            file=sys.stderr,
        )
        return 2
    # Register versions (and make the signing key) once, here, before any worker starts: several
    # processes doing it at the same time would race to register the first version.
    resolve_secret(settings.secret_key, settings.store_url)
    with open_store(settings.store_url) as store:
        for model in settings.models:
            ensure_registered(store, model, at=time.time())

    log_level = args.log_level
    if settings.workers == 1:
        from serving.app import create_app

        app = create_app(settings)
        uvicorn.run(app, host=settings.host, port=settings.port, log_level=log_level)
        return 0
    os.environ.update(ONLEARN_CONFIG=settings.config_path, ONLEARN_STORE_URL=settings.store_url)
    if settings.secret_key:
        os.environ["ONLEARN_SECRET_KEY"] = settings.secret_key
    uvicorn.run(
        "serving.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=log_level,
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    import httpx

    from onlearn.client import Client, ClientError
    from onlearn.demo import run_demo

    try:
        with Client(args.url) as client:
            summary = run_demo(
                client,
                args.model,
                args.dataset,
                limit=args.limit,
                delay_rows=args.delay,
                delay_s=args.delay_s,
                progress=not args.no_progress,
            )
    except ClientError as e:
        print(f"error: the server refused a request: {e}", file=sys.stderr)
        return 1
    except (httpx.HTTPError, OSError, ValueError) as e:
        print(f"error: {e} (is `onlearn serve` running at {args.url}?)", file=sys.stderr)
        return 1
    print("\n".join(summary.lines()))
    return 0


def cmd_label(args: argparse.Namespace) -> int:
    import httpx

    from onlearn.client import Client, ClientError
    from onlearn.labeller import run_labeller

    try:
        with Client(args.url) as client:
            counts = run_labeller(
                client, args.model, labeller=args.labeller, lease_s=args.lease_s, wait=args.wait
            )
    except ClientError as e:
        print(f"error: the server refused a request: {e}", file=sys.stderr)
        return 1
    except httpx.HTTPError as e:
        print(f"error: {e} (is `onlearn serve` running at {args.url}?)", file=sys.stderr)
        return 1
    print(f"labelled {counts['labelled']}, skipped {counts['skipped']}")
    return 0


def cmd_schema_infer(args: argparse.Namespace) -> int:
    from onlearn.schema import infer_schema_from_csv, schema_to_toml

    schema = infer_schema_from_csv(args.file, target=args.target, limit=args.limit)
    print(schema_to_toml(schema, args.model, args.target, task=args.task))
    return 0


if __name__ == "__main__":
    sys.exit(main())
