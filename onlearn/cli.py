"""The ``onlearn`` command: serve, demo, schema infer."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import subprocess
import sys
import time
from dataclasses import replace

from onlearn.errors import OnlearnError

EPILOG = """examples:
  onlearn serve --config examples/phishing.toml
  onlearn demo --model phishing --dataset phishing --delay 20
  onlearn label --model phishing
  onlearn retrain --model phishing
  onlearn models list phishing
  onlearn models rollback phishing --reason "accuracy dropped"
  onlearn schema infer data.csv --target label --model my_model
  onlearn keys new --name app --roles predict
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
    serve.add_argument(
        "--no-worker", action="store_true", help="do not run the training worker in the background"
    )
    serve.add_argument(
        "--no-monitor", action="store_true", help="do not run the monitor in the background"
    )
    serve.add_argument(
        "--allow-no-auth",
        action="store_true",
        default=None,
        help="serve on a non-loopback address without API keys anyway ($ONLEARN_ALLOW_NO_AUTH)",
    )
    serve.set_defaults(func=cmd_serve)

    worker = commands.add_parser(
        "worker",
        help="run the training worker: refits, snapshots, promotion gates, retrain triggers",
    )
    worker.add_argument("--config", help="TOML file declaring the models (or $ONLEARN_CONFIG)")
    worker.add_argument("--store", help="store URL (or $ONLEARN_STORE_URL)")
    worker.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    worker.add_argument("--sidecar-of", type=int, help=argparse.SUPPRESS)
    worker.set_defaults(func=cmd_worker)

    monitor = commands.add_parser(
        "monitor", help="run the monitor: validation statistics, drift, alarms"
    )
    monitor.add_argument("--config", help="TOML file declaring the models (or $ONLEARN_CONFIG)")
    monitor.add_argument("--store", help="store URL (or $ONLEARN_STORE_URL)")
    monitor.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    monitor.add_argument(
        "--cpu-share",
        type=float,
        default=1.0,
        help="share of one CPU the monitor may use; it falls behind (and skips old traffic) "
        "rather than take more (default 1)",
    )
    monitor.add_argument("--sidecar-of", type=int, help=argparse.SUPPRESS)
    monitor.set_defaults(func=cmd_monitor)

    retrain = commands.add_parser(
        "retrain", help="start a batch refit on a running server and follow it"
    )
    retrain.add_argument("--model", required=True)
    retrain.add_argument("--url", default="http://127.0.0.1:8000", help="server address")
    retrain.add_argument("--reason", help="why, kept with the job and the version")
    retrain.add_argument(
        "--register-anyway",
        action="store_true",
        help="register the best candidate even if it loses",
    )
    retrain.add_argument("--no-wait", action="store_true", help="print the job id and return")
    _api_key_argument(retrain)
    retrain.set_defaults(func=cmd_retrain)

    models = commands.add_parser(
        "models", help="versions, lineage, promotion and rollback on a running server"
    )
    models.add_argument("--url", default="http://127.0.0.1:8000", help="server address")
    _api_key_argument(models)
    models_commands = models.add_subparsers(title="models commands", metavar="COMMAND")
    listing = models_commands.add_parser("list", help="versions of a model with roles and lineage")
    listing.add_argument("model")
    listing.set_defaults(func=cmd_models_list)
    history = models_commands.add_parser("history", help="the audit history of role changes")
    history.add_argument("model")
    history.set_defaults(func=cmd_models_history)
    promote = models_commands.add_parser("promote", help="give a role to a version")
    promote.add_argument("model")
    promote.add_argument("version")
    promote.add_argument(
        "--role", default="champion", choices=["champion", "challenger", "shadow", "canary"]
    )
    promote.add_argument("--share", type=float, help="a canary's share of requests")
    promote.add_argument("--reason")
    promote.set_defaults(func=cmd_models_promote)
    rollback = models_commands.add_parser("rollback", help="the previous champion answers again")
    rollback.add_argument("model")
    rollback.add_argument("--reason")
    rollback.set_defaults(func=cmd_models_rollback)
    models.set_defaults(func=lambda args: models.print_help() or 2)

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
    _api_key_argument(demo)
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
    _api_key_argument(label)
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

    keys = commands.add_parser("keys", help="API keys for access control")
    keys_commands = keys.add_subparsers(title="keys commands", metavar="COMMAND")
    new = keys_commands.add_parser(
        "new", help="print a fresh random key and the config line with its hash"
    )
    new.add_argument("--name", required=True, help="who the key is for (kept in the audit trail)")
    new.add_argument(
        "--roles", required=True, help="comma-separated: predict, label, admin (e.g. predict,label)"
    )
    new.set_defaults(func=cmd_keys_new)
    keys.set_defaults(func=lambda args: keys.print_help() or 2)
    return parser


def _api_key_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api-key",
        default=os.environ.get("ONLEARN_API_KEY"),
        help="API key of a server with access control ($ONLEARN_API_KEY)",
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from onlearn.config import load_settings

    settings = load_settings(
        args.config,
        store_url=args.store,
        host=args.host,
        port=args.port,
        workers=args.workers,
        run_worker=False if args.no_worker else None,
        run_monitor=False if args.no_monitor else None,
        allow_no_auth=args.allow_no_auth,
    )
    refusal = open_without_keys(settings)
    if refusal:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
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
    from serving import server

    with serving_layout(settings, args.log_level) as served:
        server.run(served, args.log_level)
    return 0


@contextlib.contextmanager
def serving_layout(settings, log_level: str):
    """What ``onlearn serve`` sets up around its server processes; yields the settings they
    run with. The benchmarks' server runs inside it too, so that it measures this layout.

    Versions are registered (and the signing key made) once, here, before any process starts:
    several processes doing it at the same time would race to register the first version. With
    the embedded SQLite store, the worker and the monitor run as processes of their own beside
    the server: a refit is seconds of pure Python, and as a thread of the server it held the
    interpreter lock long enough to stall every request (the soak benchmark saw 30 s). memory://
    lives in one process only: there the worker and the monitor run as its threads (and, on
    Redis, only when asked: there they are meant to be processes of their own)."""
    from onlearn.keys import resolve_secret
    from onlearn.registry import ensure_registered
    from onlearn.store.base import open_store

    resolve_secret(settings.secret_key, settings.store_url)
    with open_store(settings.store_url) as store:
        for model in settings.models:
            ensure_registered(store, model, at=time.time())
    if settings.workers == 1 and not (
        settings.store_url.startswith("sqlite:") and settings.config_path
    ):
        yield settings
        return
    sidecars = start_sidecars(settings, log_level)
    try:
        yield replace(settings, run_worker=False, run_monitor=False)
    finally:
        for sidecar in sidecars:
            sidecar.terminate()
        for sidecar in sidecars:
            try:
                sidecar.wait(30)
            except subprocess.TimeoutExpired:
                sidecar.kill()  # a refit does not hold the stop: its job's lease runs out


def start_sidecars(settings, log_level: str) -> list[subprocess.Popen]:
    """``onlearn worker`` and ``onlearn monitor`` processes for ``onlearn serve`` (unless turned
    off), on its store and config. They run at a lower priority, the monitor within its CPU
    share, and stop when the server stops or dies (``--sidecar-of``)."""
    env = dict(os.environ)
    if settings.secret_key:
        env["ONLEARN_SECRET_KEY"] = settings.secret_key
    common = ["--config", settings.config_path, "--store", settings.store_url]
    common += ["--log-level", log_level, "--sidecar-of", str(os.getpid())]
    roles = {
        "worker": [],
        "monitor": ["--cpu-share", str(settings.engine.monitor_cpu_share)],
    }
    wanted = {"worker": settings.run_worker, "monitor": settings.run_monitor}
    return [
        subprocess.Popen([sys.executable, "-m", "onlearn.cli", role, *common, *extra], env=env)
        for role, extra in roles.items()
        if wanted[role] is not False
    ]


def stop_on_signals():
    """An Event set on SIGTERM or SIGINT.

    Set by a short-lived thread, not by the handler: the handler runs in the main thread,
    which may be inside this very Event's ``wait`` holding its lock, and ``Event.set`` there
    deadlocks (a worker stopped with SIGTERM hung for good)."""
    import signal
    import threading

    stop = threading.Event()

    def handler(*_):
        threading.Thread(target=stop.set, name="onlearn-stop", daemon=True).start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)
    return stop


def bind_to_parent(parent: int | None) -> None:
    """A sidecar of ``onlearn serve``: lower priority than the server, and gone with it even
    after a ``kill -9`` (Linux's parent-death signal; elsewhere the server's exit stops it)."""
    if parent is None:
        return
    import signal

    os.nice(10)
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the server died before the signal was set up
        sys.exit(0)


def open_without_keys(settings) -> str | None:
    """Why serving as configured would expose the API to the network with no key, or None."""
    if settings.api_keys or settings.allow_no_auth or is_loopback(settings.host):
        return None
    return (
        f"serving on {settings.host} without API keys would let anyone on the network promote, "
        "roll back and retrain; add keys ([security] api_keys or $ONLEARN_API_KEYS, "
        "`onlearn keys new` makes one), or pass --allow-no-auth ($ONLEARN_ALLOW_NO_AUTH=1) "
        "if something in front of it checks who calls"
    )


def is_loopback(host: str) -> bool:
    """Only addresses this machine alone can reach. A host name other than localhost is not
    resolved: what it resolves to may change, so it counts as reachable."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def cmd_keys_new(args: argparse.Namespace) -> int:
    from onlearn.access import check_name, new_key, parse_roles, toml_entry

    name = check_name(args.name, "--name")
    roles = sorted(parse_roles(args.roles, "--roles"), key=lambda r: r.value)
    key = new_key()
    print(f"key (give it to {name}; it is shown once and not stored anywhere):")
    print(f"  {key}")
    print("\nadd to the config, in [security] api_keys = [ ... ]:")
    print(f"  {toml_entry(name, key, roles)},")
    print("\nor in the environment of the server (plain key):")
    print(f"  ONLEARN_API_KEYS={name}:{'+'.join(r.value for r in roles)}:{key}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:

    from onlearn.config import load_settings
    from onlearn.engine import Engine
    from onlearn.worker import Worker

    bind_to_parent(args.sidecar_of)
    settings = load_settings(args.config, store_url=args.store)
    if not settings.models:
        print(
            "error: no models configured; pass --config (see examples/phishing.toml)",
            file=sys.stderr,
        )
        return 2
    stop = stop_on_signals()
    with Engine.from_settings(settings) as engine:
        Worker(engine).run(stop)
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:

    from onlearn.config import load_settings
    from onlearn.monitor import Monitor
    from onlearn.store.base import open_store

    bind_to_parent(args.sidecar_of)
    if not 0 < args.cpu_share <= 1:
        print(
            "error: --cpu-share is a share of one CPU, more than 0 and at most 1", file=sys.stderr
        )
        return 2
    settings = load_settings(args.config, store_url=args.store)
    if not settings.models:
        print(
            "error: no models configured; pass --config (see examples/phishing.toml)",
            file=sys.stderr,
        )
        return 2
    stop = stop_on_signals()
    with open_store(settings.store_url) as store:
        Monitor(settings, store, cpu_share=args.cpu_share).run(stop)
    return 0


def _http_command(run) -> int:
    """Run ``run`` against the server; refusals and connection errors become one clear line."""
    import httpx

    from onlearn.client import ClientError

    try:
        return run() or 0
    except ClientError as e:
        print(f"error: the server refused: {e}{_key_hint(e)}", file=sys.stderr)
        return 1
    except httpx.HTTPError as e:
        print(f"error: {e} (is `onlearn serve` running?)", file=sys.stderr)
        return 1


def _key_hint(error) -> str:
    if error.status == 401:
        return " (pass --api-key or set $ONLEARN_API_KEY)"
    if error.status == 403:
        return " (this key lacks the role; ask for a key with it: `onlearn keys new`)"
    return ""


def cmd_retrain(args: argparse.Namespace) -> int:
    from onlearn.client import Client

    def run() -> int:
        with Client(args.url, api_key=args.api_key) as client:
            job = client.retrain(
                args.model, reason=args.reason, register_anyway=args.register_anyway or None
            )
            print(f"job {job['job_id']} queued")
            if args.no_wait:
                return 0
            from tqdm import tqdm

            with tqdm(desc=f"refit {args.model}", bar_format="{desc}: {elapsed} {postfix}") as bar:
                while True:
                    state = client.job(job["job_id"])
                    bar.set_postfix_str(f"{state['state']} (attempt {state['attempts']})")
                    if state["state"] in ("done", "failed"):
                        break
                    time.sleep(1.0)
            if state["state"] == "failed":
                print(f"the refit failed: {state['error']}", file=sys.stderr)
                return 1
            result = state["result"] or {}
            if result.get("registered"):
                print(f"registered {result['registered']} as challenger")
            else:
                print(f"no new version: {result.get('reason')}")
            return 0

    return _http_command(run)


def cmd_models_list(args: argparse.Namespace) -> int:
    from onlearn.client import Client

    def run() -> None:
        with Client(args.url, api_key=args.api_key) as client:
            for v in client.versions(args.model):
                lineage = v["lineage"]
                trained = lineage.get("trained_on") or {}
                roles = ",".join(v["roles"]) or "-"
                accuracy = (v["metrics"] or {}).get("accuracy")
                acc = f"{accuracy:.3f}" if accuracy is not None else "-"
                print(
                    f"{v['version']:>5}  {roles:<18} source={lineage.get('source')}  parent={lineage.get('parent')}"
                    f"  trained on seq {trained.get('from_seq')}..{trained.get('to_seq', 'now')}  accuracy={acc}"
                )

    return _http_command(run)


def cmd_models_history(args: argparse.Namespace) -> int:
    from onlearn.client import Client

    def run() -> None:
        with Client(args.url, api_key=args.api_key) as client:
            for row in client.history(args.model):
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["at"]))
                print(
                    f"{when}  seq={row.get('seq')}  {row['role']}: {row.get('previous')} -> {row['version']}  by {row['actor']}: {row['reason']}"
                )

    return _http_command(run)


def cmd_models_promote(args: argparse.Namespace) -> int:
    from onlearn.client import Client

    def run() -> None:
        with Client(args.url, api_key=args.api_key) as client:
            answer = client.promote(
                args.model, args.version, args.role, share=args.share, reason=args.reason
            )
            print(f"roles now (seq {answer['seq']}): {answer['roles']}")

    return _http_command(run)


def cmd_models_rollback(args: argparse.Namespace) -> int:
    from onlearn.client import Client

    def run() -> None:
        with Client(args.url, api_key=args.api_key) as client:
            answer = client.rollback(args.model, reason=args.reason)
            print(f"rolled back (seq {answer['seq']}): {answer['roles']}")

    return _http_command(run)


def cmd_demo(args: argparse.Namespace) -> int:
    import httpx

    from onlearn.client import Client, ClientError
    from onlearn.demo import run_demo

    try:
        with Client(args.url, api_key=args.api_key) as client:
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
        print(f"error: the server refused a request: {e}{_key_hint(e)}", file=sys.stderr)
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
        with Client(args.url, api_key=args.api_key) as client:
            counts = run_labeller(
                client, args.model, labeller=args.labeller, lease_s=args.lease_s, wait=args.wait
            )
    except ClientError as e:
        print(f"error: the server refused a request: {e}{_key_hint(e)}", file=sys.stderr)
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
