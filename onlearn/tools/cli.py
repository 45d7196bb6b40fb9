"""The ``onlearn`` command: serve, worker, monitor, retrain, jobs, demo, label, schema, store,
keys, export, import (``onlearn --help`` lists them all)."""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from onlearn.errors import ConfigError, OnlearnError

EPILOG = """examples:
  onlearn serve --config examples/phishing.toml
  onlearn demo --model phishing --dataset phishing --delay 20
  onlearn label --model phishing
  onlearn retrain --model phishing
  onlearn retrain --model phishing --candidates hoeffding_tree,adaptive_random_forest --metric log_loss
  onlearn jobs list
  onlearn jobs cancel JOB_ID
  onlearn store sign-specs --config examples/phishing.toml --store sqlite:///.data/onlearn.db
  onlearn store migrate --store sqlite:///.data/onlearn.db
  onlearn models list phishing
  onlearn models rollback phishing --reason "accuracy dropped"
  onlearn schema infer data.csv --target label --model my_model
  onlearn keys new --name app --roles predict
  onlearn export --model phishing --format parquet --out phishing.parquet
  onlearn import phishing.parquet --model phishing --store redis://localhost:6379/0
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
        code = args.func(args) or 0
        sys.stdout.flush()  # a reader that left shows here, where it is handled, not at exit
        return code
    except OnlearnError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader left (`onlearn models history m | head`): nothing to report. Python's own
        # flush at exit would raise again on the closed pipe, so it flushes into /dev/null.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def at_least(minimum: int):
    """An argparse type for a whole number of at least ``minimum``: ``--limit 0`` would
    otherwise read as "no limit" and stream everything."""

    def whole_number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return whole_number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onlearn",
        description="Serve a model over HTTP and keep it learning from the labels that come back.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"onlearn {package_version()}",
        help="print the version",
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
    _log_level_argument(serve)
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
    _log_level_argument(worker)
    worker.add_argument("--sidecar-of", type=int, help=argparse.SUPPRESS)
    worker.set_defaults(func=cmd_worker)

    monitor = commands.add_parser(
        "monitor", help="run the monitor: validation statistics, drift, alarms"
    )
    monitor.add_argument("--config", help="TOML file declaring the models (or $ONLEARN_CONFIG)")
    monitor.add_argument("--store", help="store URL (or $ONLEARN_STORE_URL)")
    _log_level_argument(monitor)
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
    retrain.add_argument("--model", required=True, help="model name on the server")
    _url_argument(retrain)
    retrain.add_argument("--reason", help="why, kept with the job and the version")
    retrain.add_argument(
        "--candidates",
        help="what to train, comma-separated: ids of the config's [refit] candidates or catalog "
        'pipeline names; or a JSON list with tables, e.g. \'[{"name": "adaptive_random_forest", '
        "\"n_models\": 20}]' (default: the config's candidates)",
    )
    retrain.add_argument(
        "--metric",
        help="pick the best candidate by: accuracy, log_loss, macro_f1 (classification); mae, "
        "rmse (regression) (default: the config's, else accuracy or mae)",
    )
    retrain.add_argument("--passes", type=int, help="passes over the train events, 1 to 20")
    retrain.add_argument(
        "--holdout", type=float, help="share of the newest labels held out, 0.05 to 0.5"
    )
    retrain.add_argument(
        "--max-rows", type=int, help="train on the newest N label events (default 100,000)"
    )
    retrain.add_argument(
        "--register-anyway",
        action="store_true",
        help="register the best candidate even if it does not beat the champion",
    )
    retrain.add_argument("--no-wait", action="store_true", help="print the job id and return")
    _api_key_argument(retrain)
    retrain.set_defaults(func=cmd_retrain)

    models = commands.add_parser(
        "models", help="versions, lineage, promotion and rollback on a running server"
    )
    _url_argument(models)
    _api_key_argument(models)
    models_commands = models.add_subparsers(title="models commands", metavar="COMMAND")
    listing = models_commands.add_parser("list", help="versions of a model with roles and lineage")
    listing.add_argument("model", help="model name on the server")
    listing.set_defaults(func=cmd_models_list)
    history = models_commands.add_parser("history", help="the audit history of role changes")
    history.add_argument("model", help="model name on the server")
    history.set_defaults(func=cmd_models_history)
    promote = models_commands.add_parser("promote", help="give a role to a version")
    promote.add_argument("model", help="model name on the server")
    promote.add_argument("version", help="the version to promote, e.g. v2")
    promote.add_argument(
        "--role",
        default="champion",
        choices=["champion", "challenger", "shadow", "canary"],
        help="the role to give it (default champion)",
    )
    promote.add_argument("--share", type=float, help="a canary's share of requests")
    promote.add_argument("--reason", help="why, kept in the audit history")
    promote.set_defaults(func=cmd_models_promote)
    rollback = models_commands.add_parser("rollback", help="the previous champion answers again")
    rollback.add_argument("model", help="model name on the server")
    rollback.add_argument("--reason", help="why, kept in the audit history")
    rollback.set_defaults(func=cmd_models_rollback)
    models.set_defaults(func=lambda args: models.print_help() or 2)

    jobs = commands.add_parser("jobs", help="the training worker's jobs on a running server")
    _url_argument(jobs)
    _api_key_argument(jobs)
    jobs_commands = jobs.add_subparsers(title="jobs commands", metavar="COMMAND")
    jobs_list = jobs_commands.add_parser("list", help="recent jobs, newest first")
    jobs_list.add_argument("--model", help="only this model's jobs")
    jobs_list.add_argument(
        "--limit", type=at_least(1), default=20, help="at most this many (default 20)"
    )
    jobs_list.set_defaults(func=cmd_jobs_list)
    jobs_show = jobs_commands.add_parser("show", help="one job: state, result or error")
    jobs_show.add_argument("job_id", help="the job's id (from `onlearn jobs list`)")
    jobs_show.set_defaults(func=cmd_jobs_show)
    jobs_cancel = jobs_commands.add_parser(
        "cancel", help="cancel a job: it stops at its next check and registers nothing"
    )
    jobs_cancel.add_argument("job_id", help="the job's id (from `onlearn jobs list`)")
    jobs_cancel.set_defaults(func=cmd_jobs_cancel)
    jobs.set_defaults(func=lambda args: jobs.print_help() or 2)

    store = commands.add_parser("store", help="maintenance of a store (run on the store itself)")
    store_commands = store.add_subparsers(title="store commands", metavar="COMMAND")
    sign = store_commands.add_parser(
        "sign-specs",
        help="sign the version specs of a store made by an earlier onlearn (lists each one)",
    )
    sign.add_argument("--config", help="TOML file declaring the models (or $ONLEARN_CONFIG)")
    sign.add_argument("--store", help="store URL (or $ONLEARN_STORE_URL)")
    sign.add_argument(
        "--resign",
        action="store_true",
        help="also sign specs whose signature does not match (after checking them: a spec "
        "edited in the store names the code a server will run)",
    )
    sign.set_defaults(func=cmd_store_sign_specs)
    migrate = store_commands.add_parser(
        "migrate",
        help="upgrade a store made by an earlier onlearn in place, including the steps too long "
        "to run at start (SQLite: the VACUUM that lets the file shrink after trims); stop the "
        "server first",
    )
    migrate.add_argument("--store", help="store URL (or $ONLEARN_STORE_URL)")
    migrate.set_defaults(func=cmd_store_migrate)
    store.set_defaults(func=lambda args: store.print_help() or 2)

    demo = commands.add_parser("demo", help="stream a river dataset through a running server")
    _url_argument(demo)
    demo.add_argument("--model", default="phishing", help="model name on the server")
    demo.add_argument(
        "--dataset",
        help="river dataset: phishing, bananas, image_segments (multiclass), trump_approval, "
        "chick_weights (regression); default: the one the model is named after, else phishing",
    )
    demo.add_argument("--limit", type=at_least(1), help="stop after this many rows")
    demo.add_argument(
        "--delay",
        type=at_least(0),
        default=0,
        help="send each label this many rows after its prediction",
    )
    demo.add_argument(
        "--delay-s", type=float, default=0.0, help="and at least this many seconds after it"
    )
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    _api_key_argument(demo)
    demo.set_defaults(func=cmd_demo)

    label = commands.add_parser("label", help="label queued predictions in the terminal")
    label.add_argument("--model", required=True, help="model name on the server")
    _url_argument(label)
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
    infer.add_argument("--limit", type=at_least(1), help="read at most this many rows")
    infer.add_argument(
        "--task",
        choices=["classification", "regression"],
        help="the task; by default inferred from the --target column (many distinct numbers: "
        "regression; text, booleans, or a few repeated numbers: classification)",
    )
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

    _history_commands(commands)
    accept_group_options_after_subcommands(parser)
    return parser


def accept_group_options_after_subcommands(parser: argparse.ArgumentParser) -> None:
    """Let the options of a command group come after its subcommand too, for every group:
    ``onlearn models list phishing --url U`` as well as ``onlearn models --url U list phishing``.

    argparse reads a group's options only before the subcommand, and people write them last.
    Each subcommand gets a copy of each option of its group that it lacks, defaulting to
    nothing (``SUPPRESS``): a subcommand writes every default it has over what the group
    parsed, so a default there would undo ``--url`` given before the subcommand. Called once
    the whole parser is built, so that groups added later get it without doing anything."""
    shared = [
        action
        for action in parser._actions
        if action.option_strings
        and not isinstance(action, argparse._HelpAction | argparse._VersionAction)
    ]
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for sub in {id(p): p for p in action.choices.values()}.values():  # aliases: one parser
            for option in shared:
                if not set(option.option_strings) & set(sub._option_string_actions):
                    after = copy.copy(option)
                    after.default = argparse.SUPPRESS
                    after.required = False
                    sub._add_action(after)
            accept_group_options_after_subcommands(sub)


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onlearn")
    except PackageNotFoundError:  # run from a checkout without `make install`
        return "(not installed: run `make install`)"


def _log_level_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="least severe log lines shown (default info)",
    )


def _url_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default="http://127.0.0.1:8000",
        help="address of the running server (default http://127.0.0.1:8000)",
    )


def _api_key_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api-key",
        default=os.environ.get("ONLEARN_API_KEY"),
        help="API key of a server with access control ($ONLEARN_API_KEY)",
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from onlearn.config import load_settings
    from onlearn.store import capabilities_of

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
        capabilities_of(settings.store_url).local_file and settings.config_path
    ):
        print(
            "error: --workers > 1 needs a shared store (sqlite://...) and a --config file",
            file=sys.stderr,
        )
        return 2
    from serving import server

    with serving_layout(settings, args.log_level) as layout:
        server.run(layout.settings, args.log_level, on_stop=layout.stopping)
    return 0


@dataclass(frozen=True)
class Layout:
    """What :func:`serving_layout` hands the server: the settings its processes run with, and
    what to call as soon as a stop is asked (SIGTERM), before requests in flight are waited for:
    the sidecars are told to stop at once, so that they are gone within ``SIDECAR_STOP_S`` of
    the signal however long the server itself takes to finish."""

    settings: Any
    stopping: Callable[[], None] = lambda: None


@contextlib.contextmanager
def serving_layout(settings, log_level: str):
    """What ``onlearn serve`` sets up around its server processes; yields the :class:`Layout`
    they run with. The benchmarks' server runs inside it too, so that it measures this layout.

    Versions are registered (and the signing key made) once, here, before any process starts:
    several processes doing it at the same time would race to register the first version. With
    the embedded SQLite store, the worker and the monitor run as processes of their own beside
    the server: a refit is seconds of pure Python, and as a thread of the server it held the
    interpreter lock long enough to stall every request (the soak benchmark saw 30 s). memory://
    lives in one process only: there the worker and the monitor run as its threads (and, on
    Redis, only when asked: there they are meant to be processes of their own).

    First of all it takes the store's serve lock (SQLite only), held until its sidecars have
    stopped: a second ``onlearn serve`` on the same file refuses to start, naming this one."""
    from onlearn.keys import resolve_secret
    from onlearn.registry import ensure_registered
    from onlearn.store import open_store, serve_lock
    from onlearn.topology import Placement, serve_topology

    with serve_lock(settings.store_url, serving=server_address(settings)):
        secret = resolve_secret(settings.secret_key, settings.store_url)
        with open_store(settings.store_url) as store:
            for model in settings.models:
                ensure_registered(store, model, at=time.time(), secret=secret)
        roles = serve_topology(settings).placed(Placement.PROCESS)
        if not roles:
            yield Layout(settings)
            return
        sidecars = start_sidecars(settings, log_level, roles)
        try:
            # The server processes run neither role: their sidecars do.
            yield Layout(
                replace(settings, run_worker=False, run_monitor=False),
                stopping=lambda: terminate(sidecars),
            )
        finally:
            stop_sidecars(sidecars)


SIDECAR_STOP_S = 5.0
"""How long ``onlearn serve`` gives its worker and monitor to stop after its own stop. A refit
stops at its next check (well under a second) and hands its job back; a process still there
after this is killed (its job comes back when its lease runs out)."""


def terminate(sidecars: list[subprocess.Popen]) -> None:
    """SIGTERM to each sidecar still running; returns at once."""
    for sidecar in sidecars:
        if sidecar.poll() is None:
            sidecar.terminate()


def stop_sidecars(sidecars: list[subprocess.Popen], deadline_s: float = SIDECAR_STOP_S) -> None:
    terminate(sidecars)
    until = time.monotonic() + deadline_s
    for sidecar in sidecars:
        try:
            sidecar.wait(max(0.0, until - time.monotonic()))
        except subprocess.TimeoutExpired:
            sidecar.kill()
            sidecar.wait()


def server_address(settings) -> str:
    """``http://host:port`` of the server the settings describe."""
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"http://{host}:{settings.port}"


def start_sidecars(settings, log_level: str, roles: list[str]) -> list[subprocess.Popen]:
    """``onlearn worker`` and/or ``onlearn monitor`` processes (``roles``) for ``onlearn serve``,
    on its store and config. They run at a lower priority, the monitor within its CPU
    share, and stop when the server stops or dies (``--sidecar-of``)."""
    env = dict(os.environ)
    if settings.secret_key:
        env["ONLEARN_SECRET_KEY"] = settings.secret_key
    common = ["--config", settings.config_path, "--store", settings.store_url]
    common += ["--log-level", log_level, "--sidecar-of", str(os.getpid())]
    extra = {"worker": [], "monitor": ["--cpu-share", str(settings.engine.monitor_cpu_share)]}
    return [
        subprocess.Popen(
            [sys.executable, "-m", "onlearn.tools.cli", role, *common, *extra[role]], env=env
        )
        for role in roles
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

    from onlearn.background.worker import Worker
    from onlearn.config import load_settings
    from onlearn.engine import Engine

    bind_to_parent(args.sidecar_of)
    settings = load_settings(args.config, store_url=args.store)
    if not settings.models:
        print(
            "error: no models configured; pass --config (see examples/phishing.toml)",
            file=sys.stderr,
        )
        return 2
    stop = stop_on_signals()
    exit_after(stop, WORKER_EXIT_S)
    # Scorecards, not models: the worker checks gates and triggers from the answers stored in
    # label events, and learns a model only to snapshot it (onlearn/background/snapshotter.py).
    with Engine.from_settings(settings, learns=False) as engine:
        Worker(engine).run(stop)
    return 0


WORKER_EXIT_S = 4.0
"""A worker asked to stop exits within this, whatever it is doing: a refit sees the stop within
a second, but a step that cannot check must not keep the process (and a CPU) after its server."""


def exit_after(stop, seconds: float) -> None:
    """Once ``stop`` is set, end the process after ``seconds`` if it has not ended by itself.
    A job cut short there is reclaimed after its lease, and what it wrote is keyed by the job."""
    import threading

    def watchdog() -> None:
        stop.wait()
        time.sleep(seconds)
        logging.getLogger(__name__).error(
            "still running %.0f s after the stop: exiting now; a job cut short comes back "
            "after its lease",
            seconds,
        )
        logging.shutdown()
        os._exit(3)

    threading.Thread(target=watchdog, name="onlearn-exit-watchdog", daemon=True).start()


def cmd_monitor(args: argparse.Namespace) -> int:

    from onlearn.background.monitor import Monitor
    from onlearn.config import load_settings
    from onlearn.store import open_store

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
    exit_after(stop, WORKER_EXIT_S)
    with open_store(settings.store_url) as store:
        Monitor(settings, store, cpu_share=args.cpu_share).run(stop)
    return 0


def _http_command(run) -> int:
    """Run ``run`` against the server; refusals and connection errors become one clear line."""
    import httpx

    from onlearn.tools.client import ClientError

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


def _candidates_option(text: str | None) -> list | None:
    import json

    if text is None:
        return None
    if text.lstrip().startswith("["):
        try:
            value = json.loads(text)
        except ValueError as e:
            raise ConfigError(f"--candidates is not a JSON list: {e}") from None
        return value
    return [name.strip() for name in text.split(",") if name.strip()]


def cmd_retrain(args: argparse.Namespace) -> int:
    from onlearn.tools.client import Client

    def run() -> int:
        with Client(args.url, api_key=args.api_key) as client:
            job = client.retrain(
                args.model,
                reason=args.reason,
                candidates=_candidates_option(args.candidates),
                metric=args.metric,
                passes=args.passes,
                holdout=args.holdout,
                max_rows=args.max_rows,
                register_anyway=args.register_anyway or None,
            )
            print(f"job {job['job_id']} queued")
            if args.no_wait:
                return 0
            from tqdm import tqdm

            with tqdm(desc=f"refit {args.model}", bar_format="{desc}: {elapsed} {postfix}") as bar:
                while True:
                    state = client.job(job["job_id"])
                    bar.set_postfix_str(f"{state['state']} (attempt {state['attempts']})")
                    if state["state"] in ("done", "failed", "cancelled"):
                        break
                    time.sleep(1.0)
            if state["state"] != "done":
                print(f"the refit {state['state']}: {shown(state['error'])}", file=sys.stderr)
                return 1
            result = state["result"] or {}
            if result.get("registered"):
                print(f"registered {result['registered']} as challenger: {result.get('reason')}")
            else:
                print(f"no new version: the best candidate {shown(result.get('reason'))}")
            return 0

    return _http_command(run)


def cmd_jobs_list(args: argparse.Namespace) -> int:
    from onlearn.tools.client import Client

    def run() -> None:
        with Client(args.url, api_key=args.api_key) as client:
            jobs = client.jobs(args.model, limit=args.limit)
            if not jobs:
                print("no jobs")
            for job in jobs:
                print(_job_line(job))

    return _http_command(run)


def _job_line(job: dict) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job["created_at"]))
    line = f"{job['job_id']}  {when}  {job['kind']} {job['model']}  {job['state']}"
    line += f" (attempt {job['attempts']} of {job['max_attempts']})"
    result = job.get("result") or {}
    if result.get("registered"):
        line += f"  registered {result['registered']}"
    elif job["state"] == "done" and result.get("reason"):
        line += f"  nothing registered: {result['reason']}"
    if job.get("error") and job["state"] != "done":
        line += f"  {job['error']}"
    return line


def cmd_jobs_show(args: argparse.Namespace) -> int:
    from onlearn.tools.client import Client

    def run() -> None:
        with Client(args.url, api_key=args.api_key) as client:
            job = client.job(args.job_id)
            print(_job_line(job))
            reason = (job.get("params") or {}).get("reason")
            if reason:
                print(f"asked: {reason}")
            result = job.get("result") or {}
            if result.get("reason"):
                print(f"result: {result['reason']}")

    return _http_command(run)


def cmd_jobs_cancel(args: argparse.Namespace) -> int:
    from onlearn.tools.client import Client

    def run() -> None:
        with Client(args.url, api_key=args.api_key) as client:
            job = client.cancel_job(args.job_id)
            print(f"job {job['job_id']} cancelled: it stops at its next check, registering nothing")

    return _http_command(run)


def cmd_store_sign_specs(args: argparse.Namespace) -> int:
    from onlearn.config import load_settings
    from onlearn.keys import resolve_secret
    from onlearn.registry import sign_specs
    from onlearn.store import open_store

    settings = load_settings(args.config, store_url=args.store)
    if not settings.models:
        print(
            "error: no models configured; pass --config (the models whose specs to sign)",
            file=sys.stderr,
        )
        return 2
    secret = resolve_secret(settings.secret_key, settings.store_url)
    refused = 0
    with open_store(settings.store_url) as store:
        for model in settings.models:
            for line in sign_specs(store, model, secret, resign=args.resign):
                print(line.text)
                refused += line.refused
    if refused:
        print(
            f"{refused} spec(s) left unsigned: check them, then run again with --resign, or "
            "restore the store from a backup",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_store_migrate(args: argparse.Namespace) -> int:
    from onlearn.store import migrate_store

    url = args.store or os.environ.get("ONLEARN_STORE_URL")
    if not url:
        print("error: give the store: --store URL (or $ONLEARN_STORE_URL)", file=sys.stderr)
        return 2
    migrate_store(url, say=lambda line: print(line, flush=True))
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    from onlearn.tools.client import Client

    def run() -> None:
        with Client(args.url, api_key=args.api_key) as client:
            for v in client.versions(args.model):
                lineage = v["lineage"]
                trained = lineage.get("trained_on")
                span = "-"
                if trained:
                    first, last = trained.get("from_seq"), trained.get("to_seq", "now")
                    span = f"seq {shown(first)}..{shown(last)}"
                roles = ",".join(v["roles"]) or "-"
                # A regressor's live quality is its mean absolute error, not an accuracy.
                regression = v["spec"].get("task") == "regression"
                name, form = ("mae", ".4g") if regression else ("accuracy", ".3f")
                value = (v["metrics"] or {}).get(name)
                quality = format(value, form) if value is not None else "-"
                print(
                    f"{v['version']:>5}  {roles:<18} source={shown(lineage.get('source'))}"
                    f"  parent={shown(lineage.get('parent'))}  trained on {span}  {name}={quality}"
                )

    return _http_command(run)


def cmd_models_history(args: argparse.Namespace) -> int:
    from onlearn.tools.client import Client

    def run() -> None:
        with Client(args.url, api_key=args.api_key) as client:
            for row in client.history(args.model):
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["at"]))
                change = f"{shown(row.get('previous'))} -> {shown(row.get('version'))}"
                print(
                    f"{when}  seq={shown(row.get('seq'))}  {row['role']}: {change}"
                    f"  by {shown(row.get('actor'))}: {shown(row.get('reason'))}"
                )

    return _http_command(run)


def cmd_models_promote(args: argparse.Namespace) -> int:
    from onlearn.tools.client import Client

    def run() -> None:
        with Client(args.url, api_key=args.api_key) as client:
            answer = client.promote(
                args.model, args.version, args.role, share=args.share, reason=args.reason
            )
            print(f"roles now (seq {answer['seq']}): {roles_line(answer)}")

    return _http_command(run)


def cmd_models_rollback(args: argparse.Namespace) -> int:
    from onlearn.tools.client import Client

    def run() -> None:
        with Client(args.url, api_key=args.api_key) as client:
            answer = client.rollback(args.model, reason=args.reason)
            print(f"rolled back (seq {answer['seq']}): {roles_line(answer)}")

    return _http_command(run)


def shown(value) -> str:
    """A value as a person reads it in the CLI's output: ``-`` for nothing (never ``None``)."""
    return "-" if value is None or value == "" else str(value)


def roles_line(answer: dict) -> str:
    """The roles of a promote or rollback answer, for people:
    ``champion v2, canary v3 (share 0.1), previous v1``.

    >>> roles_line({"roles": {"champion": "v2", "previous": "v1"}, "canary_share": None})
    'champion v2, previous v1'
    """
    share = answer.get("canary_share")
    parts = []
    for role, version in (answer.get("roles") or {}).items():
        part = f"{role} {shown(version)}"
        if role == "canary" and share is not None:
            part += f" (share {share:g})"
        parts.append(part)
    return ", ".join(parts) or "-"


def cmd_demo(args: argparse.Namespace) -> int:
    import httpx

    from onlearn.tools.client import Client, ClientError
    from onlearn.tools.demo import run_demo

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

    from onlearn.tools.client import Client, ClientError
    from onlearn.tools.labeller import run_labeller

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
    from onlearn.schema import infer_schema_from_csv, infer_task_from_csv, schema_to_toml

    schema = infer_schema_from_csv(args.file, target=args.target, limit=args.limit)
    task, note = args.task, None
    if task is None and args.target is not None:
        task, why = infer_task_from_csv(args.file, args.target, limit=args.limit)
        note = f"task inferred from {args.target!r}: {why}; --task to choose another"
    elif task is None:
        task, note = "classification", "no --target to infer the task from: classification"
    print(schema_to_toml(schema, args.model, args.target, task=task, note=note))
    return 0


# Data in and out (onlearn/history.py, onlearn/history_files.py)


def _history_commands(commands) -> None:
    export = commands.add_parser(
        "export",
        help="write a model's labelled history (the retained part of its log) to a file",
        description="Write the label events of a model's log (features, label, source, "
        "labeller, event time, seq, the version that answered, corrections as rows of their "
        "own) to JSON Lines or Parquet. Reads the store directly (run it where the store is "
        "reachable); events trimmed before the export are not in the file, and the summary on "
        "stderr says which seqs it covered.",
    )
    export.add_argument("--model", required=True, help="the model whose history to export")
    _store_arguments(export)
    export.add_argument(
        "--format", choices=["jsonl", "parquet"], help="default: from --out's suffix, else jsonl"
    )
    export.add_argument(
        "--since",
        help="first event: a seq (inclusive) or an ISO-8601 event time (inclusive, UTC unless "
        "it names a zone)",
    )
    export.add_argument(
        "--until", help="last event: a seq (inclusive) or an ISO-8601 event time (exclusive)"
    )
    export.add_argument("--out", help="the file to write (default: standard output, jsonl only)")
    export.set_defaults(func=cmd_export)

    load = commands.add_parser(
        "import",
        help="append a labelled history from a file (an export, or your own) to a model's log",
        description="Append the rows of a JSON Lines or Parquet file to a model's log as label "
        "events, in the file's order; serving processes on the store learn them as they "
        "follow the log. Idempotent by event_id: importing a file again appends nothing. Every "
        "row is checked against the model's schema first; a bad row stops the import before "
        "anything is appended, naming its line and field (or see --skip-invalid). Exit code 1 "
        "when a row stopped the import, or when rows were left out because the log holds "
        "their event_id with another label (the rest is appended).",
    )
    load.add_argument("file", help="a .jsonl or .parquet file")
    load.add_argument("--model", required=True, help="the model to import into")
    _store_arguments(load)
    load.add_argument("--format", choices=["jsonl", "parquet"], help="default: from the suffix")
    load.add_argument(
        "--skip-invalid",
        action="store_true",
        help="skip bad rows (and corrections of them), count them and show the first few, "
        "instead of stopping at the first",
    )
    load.add_argument(
        "--batch",
        type=at_least(1),
        default=1000,
        help="label events per durable append (default 1000)",
    )
    load.set_defaults(func=cmd_import)


def _store_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML file declaring the model (or $ONLEARN_CONFIG)")
    parser.add_argument("--store", help="store URL (default: the config's, or $ONLEARN_STORE_URL)")


def _history_model(args: argparse.Namespace):
    from onlearn.config import load_settings

    settings = load_settings(args.config, store_url=args.store)
    config = settings.model(args.model)
    if config is None:
        known = ", ".join(m.name for m in settings.models) or "none"
        raise ConfigError(
            f"model {args.model!r} is not in the config (models: {known}); pass --config with "
            "the file that declares it: its schema checks and types the rows"
        )
    return settings, config


def _bound(option: str, text: str | None):
    from onlearn.history import parse_bound

    if text is None:
        return None
    try:
        return parse_bound(text)
    except ValueError as e:
        raise ConfigError(f"{option}: {e}") from None


def _existing_store(url: str) -> None:
    """Opening a SQLite store creates its file: an export from a mistyped path would write an
    empty file, say nothing was there, and leave a new database behind."""
    from onlearn.store import capabilities_of

    if capabilities_of(url).local_file:
        from onlearn.store.sqlite.connection import parse_sqlite_url

        path, _ = parse_sqlite_url(url)
        if not os.path.exists(path):
            raise ConfigError(f"store {url}: {path} does not exist (is --store right?)")


def cmd_export(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from onlearn.history import ExportReport, export_rows
    from onlearn.history_files import format_of, write_rows
    from onlearn.store import open_store

    settings, config = _history_model(args)
    fmt = format_of(args.out, args.format)
    since, until = _bound("--since", args.since), _bound("--until", args.until)
    if since is not None and until is not None and type(since) is type(until):
        # Seqs are inclusive at both ends, times [since, until): both ways an empty window.
        empty = since > until if isinstance(since, int) else since >= until
        if empty:
            raise ConfigError(
                f"--since {args.since} is after --until {args.until}: the window holds no event"
            )
    _existing_store(settings.store_url)
    report = ExportReport(config.name)
    with open_store(settings.store_url) as store:
        rows = export_rows(store, config.name, since=since, until=until, report=report)
        # disable=None: a bar on a terminal only, not in the logs of a job
        with tqdm(rows, desc=f"export {config.name}", unit=" events", disable=None) as bar:
            write_rows(bar, args.out, fmt, config)
    print(report.summary(), file=sys.stderr)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from onlearn.history_files import format_of, read_rows
    from onlearn.history_import import import_rows
    from onlearn.store import open_store

    settings, config = _history_model(args)
    fmt = format_of(args.file, args.format)
    bars: dict[str, tqdm] = {}

    def progress(phase: str, n: int) -> None:
        if phase not in bars:
            total = bars["check"].n if phase == "import" and "check" in bars else None
            for bar in bars.values():
                bar.close()
            label = "check" if phase == "check" else "import"
            bars[phase] = tqdm(
                desc=f"{label} {config.name}", total=total, unit=" rows", disable=None
            )
        bars[phase].update(n)

    try:
        with open_store(settings.store_url) as store:
            report = import_rows(
                store,
                config,
                lambda: read_rows(args.file, fmt),
                skip_invalid=args.skip_invalid,
                batch=args.batch,
                progress=progress,
            )
    finally:
        for bar in bars.values():
            bar.close()
    for error in report.errors:
        print(f"skipped: {error}", file=sys.stderr)
    print(report.summary())
    if report.conflicts:
        # Rows the user asked for that did not go in: a script must see it (exit 1), as with a
        # bad row; everything else was appended, and a rerun appends nothing twice.
        print(
            f"error: {report.conflicts} rows were not imported: the log holds their event with "
            "another label (correct it with feedback and `correction: true`, or drop the rows)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
