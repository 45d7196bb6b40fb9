"""Many models in one process: start-up, threads, idle CPU, memory and predict throughput of
``onlearn serve`` with 1, 100, 300 and 1000 models, on SQLite and on Redis (issue 12, section 1).

    .venv/bin/python -m benchmarks.many_models [--counts 1,100,300,1000] [--redis-counts 1,300]
        [--ready-timeout 60] [--idle 10] [--duration 5] [--no-write] [--keep]

For each count N, a fresh store and a generated config of N models ``m0000``... (the Phishing
schema of examples/phishing.toml, logistic regression):

1. Seed: in this process, through the library on the same store, each model gets 100 labels
   (``predict_many`` of 100 rows, then ``feedback_many`` by prediction id, durable and applied),
   100 models per ``Engine``; closing an engine writes the live snapshot of each of its models
   (``Maintenance.snapshot_live``). The run checks that every model has a snapshot at seq 100.
2. Restart: ``onlearn serve`` (the real command, ``python -m onlearn.tools.cli serve``) on that
   store; start-up is the time from spawning it to its first ``GET /readyz`` answered 200. A
   server not ready within ``--ready-timeout`` is measured anyway (threads, CPU, memory) and
   reported as not ready; no predict run then.
3. Idle: once the processes are quiet (under 10% of a core over a second, at most ``--settle``
   s after ready), for ``--idle`` s with no traffic: the CPU time (utime + stime from
   /proc/PID/stat) of each process, its thread count (/proc/PID/task) and RSS (VmRSS).
4. Predict: ``POST /models/{name}/predict`` round robin over all N models (request k goes to
   model k mod N, rows of the Phishing stream), 32 keep-alive connections, from a load generator
   process (benchmarks/loadgen.py's generator, with a path per request); compared with the
   1-model run of the same store.

SQLite: one ``onlearn serve`` in its default layout (its training worker and monitor are
processes beside it); the server and its sidecars are pinned to the first CPU, the load
generator to the second (``--no-pin`` to turn it off), as in ``make bench``. Redis: a private
``redis-server`` on a free port, 2 ``onlearn serve`` replicas, an ``onlearn worker`` and an
``onlearn monitor`` on it (on Redis they are deployed on their own), nothing pinned; the load
generator spreads its connections over both replicas.

Goals (issue 12): 1000 models ready in under 10 s; idle CPU under 5% of a core per process;
predict over 1000 models at least 0.8x one model; threads independent of the model count.
Writes the ``many-models`` section of benchmarks/RESULTS.md and benchmarks/out/many_models.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shlex
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks import data, procs
from benchmarks import loadgen as lg
from benchmarks.procs import ROOT, BenchError, Client
from benchmarks.run import git_state

RESULTS = ROOT / "benchmarks" / "RESULTS.md"
OUT = ROOT / "benchmarks" / "out"
BEGIN = "<!-- many-models:start -->"
END = "<!-- many-models:end -->"
SECRET = "benchmark-only-secret-key"
LABELS_PER_MODEL = 100
SEED_CHUNK = 100  # models per seeding Engine: fewer threads than all at once
_PAGE = os.sysconf("SC_PAGE_SIZE")

# Goals of issue 12, section 1.
GOAL_READY_S = 10.0
GOAL_IDLE_CPU = 0.05
GOAL_PREDICT_RATIO = 0.8


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.many_models",
        description="onlearn serve with many models: start-up, threads, idle CPU, RSS, predict.",
    )
    p.add_argument("--counts", default="1,100,300,1000", help="model counts on SQLite")
    p.add_argument(
        "--redis-counts", default="1,300", help="model counts on Redis, 2 replicas ('' for none)"
    )
    p.add_argument("--replicas", type=int, default=2, help="onlearn serve replicas on Redis")
    p.add_argument(
        "--ready-timeout", type=float, default=60.0, help="seconds a server may take to be ready"
    )
    p.add_argument(
        "--settle", type=float, default=20.0, help="at most this many seconds of waiting for quiet"
    )
    p.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measurement")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of predict before measuring")
    p.add_argument("--duration", type=float, default=5.0, help="seconds of predict measured")
    p.add_argument("--connections", type=int, default=32, help="predict load connections")
    p.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="predict runs per count, the best kept (other work on the machine only slows down)",
    )
    p.add_argument("--no-pin", action="store_true", help="do not pin the SQLite server and load")
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        help="before each count, wait up to this many seconds for the machine to be idle",
    )
    p.add_argument("--redis-server", default="redis-server", help="the redis-server program")
    p.add_argument("--no-write", action="store_true", help="do not write RESULTS.md")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (stores, server logs)")
    args = p.parse_args(argv)
    try:
        args.sqlite_counts = [int(n) for n in args.counts.split(",") if n.strip()]
        args.redis_model_counts = [int(n) for n in args.redis_counts.split(",") if n.strip()]
    except ValueError:
        p.error("--counts and --redis-counts take comma-separated integers, e.g. 1,100")
    if min(args.sqlite_counts + args.redis_model_counts, default=1) < 1:
        p.error("model counts must be at least 1")
    return args


# --- the config and the seed --------------------------------------------------------------------


def model_names(n: int) -> list[str]:
    return [f"m{i:04d}" for i in range(n)]


def write_config(path: Path, names: list[str], store_url: str) -> Path:
    """A TOML config of ``names``, each the example model (Phishing schema, logistic regression)."""
    path.write_text(config_text(dict.fromkeys(names, "logistic_regression"), store_url))
    return path


def config_text(pipelines: dict[str, str], store_url: str) -> str:
    """A TOML config of models ``{name: catalog pipeline name}``, all on the example model's
    schema (Phishing), signed with the benchmarks' secret."""
    example = (ROOT / data.CONFIG).read_text()
    features = example[example.index("[models.phishing.features]") :].split("\n", 1)[1]
    lines = [
        "# Generated by a benchmark (benchmarks/many_models.py config_text)",
        "[store]",
        f'url = "{store_url}"',
        "",
        "[security]",
        f'secret_key = "{SECRET}"',
        "",
    ]
    for name, pipeline in pipelines.items():
        lines += [
            f"[models.{name}]",
            'task = "classification"',
            'target = "is_phishing"',
            "classes = [true, false]",
            f'pipeline = {{ name = "{pipeline}" }}',
            "",
            f"[models.{name}.features]",
            features.strip(),
            "",
        ]
    return "\n".join(lines) + "\n"


def seed(config: Path, store_url: str) -> dict[str, Any]:
    """100 labels per model through the library (predict, then feedback by prediction id), then a
    live snapshot of each at the engines' close; checks that every model has one."""
    from onlearn.config import load_settings
    from onlearn.engine import Engine, FeedbackItem
    from onlearn.registry import CHAMPION
    from onlearn.store import open_store

    settings = load_settings(config, store_url=store_url)
    rows = data.phishing()
    started = time.perf_counter()
    for start in range(0, len(settings.models), SEED_CHUNK):
        chunk = replace(settings, models=settings.models[start : start + SEED_CHUNK])
        with Engine.from_settings(chunk) as engine:
            for i, model in enumerate(chunk.models):
                offset = (start + i) * 7 % len(rows)
                batch = [rows[(offset + k) % len(rows)] for k in range(LABELS_PER_MODEL)]
                predictions = engine.predict_many(model.name, [x for x, _ in batch])
                items = [
                    FeedbackItem(label=y, prediction_id=p.prediction_id)
                    for p, (_, y) in zip(predictions, batch, strict=True)
                ]
                results = engine.feedback_many(model.name, items)
                if not all(r.applied for r in results):
                    raise BenchError(f"seeding {model.name}: a label was not applied")
    seconds = time.perf_counter() - started
    with open_store(store_url) as store:
        snapshots = 0
        for model in settings.models:
            version = store.registry.roles_state(model.name).roles[CHAMPION]
            if store.registry.latest_snapshot_seq(model.name, version) >= LABELS_PER_MODEL:
                snapshots += 1
    if snapshots != len(settings.models):
        raise BenchError(
            f"only {snapshots} of {len(settings.models)} models have a snapshot after seeding"
        )
    return {"seconds": seconds, "labels": LABELS_PER_MODEL * len(settings.models)}


# --- processes and /proc ------------------------------------------------------------------------


def proc_facts(pid: int) -> dict[str, Any] | None:
    """Threads, RSS and CPU seconds of one process, from /proc (None once it is gone)."""
    try:
        threads = len(os.listdir(f"/proc/{pid}/task"))
        with open(f"/proc/{pid}/statm") as f:
            rss = int(f.read().split()[1]) * _PAGE
    except OSError:
        return None
    return {"threads": threads, "rss_mib": rss / 2**20, "cpu_s": lg.process_cpu_seconds(pid)}


def role_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return "gone"
    for role in (b"serve", b"worker", b"monitor"):
        if role in argv:
            return role.decode()
    return Path(argv[0].decode(errors="replace")).name or "?"


class Started:
    """A process of the run: ``onlearn serve``, ``worker``, ``monitor`` or ``redis-server``."""

    def __init__(self, name: str, proc: subprocess.Popen, log_path: Path | None, port=None):
        self.name = name
        self.proc = proc
        self.log_path = log_path
        self.port = port
        self.spawned = time.monotonic()
        self.ready_s: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, n: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


def onlearn(
    role: str, config: Path, store_url: str, log_path: Path, *, cpu: int | None, port=None
) -> Started:
    args = ["-m", "onlearn.tools.cli", role, "--config", str(config), "--store", store_url]
    args += ["--log-level", "warning"]
    if port is not None:
        args += ["--port", str(port)]
    log = log_path.open("wb")
    pin = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
    proc = procs.spawn(args, stdout=log, stderr=subprocess.STDOUT, preexec_fn=pin)
    log.close()  # the child holds its own descriptor
    return Started(role, proc, log_path, port)


def wait_ready(servers: list[Started], timeout: float) -> None:
    """Poll each server's /readyz until 200; sets ``ready_s`` (None when not ready in time)."""
    deadline = time.monotonic() + timeout
    waiting = list(servers)
    while waiting and time.monotonic() < deadline:
        for server in list(waiting):
            if server.proc.poll() is not None:
                raise BenchError(f"{server.name} exited early:\n{server.log_tail()}")
            try:
                client = Client(server.port, timeout=2.0)
                try:
                    status, _ = client.request("GET", "/readyz")
                finally:
                    client.close()
            except OSError:
                continue
            if status == 200:
                server.ready_s = time.monotonic() - server.spawned
                waiting.remove(server)
        time.sleep(0.05)


def machine_busy(seconds: float = 3.0) -> float | None:
    """The CPU the whole machine used over ``seconds``, in cores (2.0: both of 2 busy): taken
    before a run, it says what other work was running on the machine."""
    from benchmarks.replicas import machine_busy_seconds

    before, t0 = machine_busy_seconds(), time.monotonic()
    time.sleep(seconds)
    after = machine_busy_seconds()
    if before is None or after is None:
        return None
    return (after - before) / (time.monotonic() - t0)


def members(started: list[Started]) -> dict[str, int]:
    """Every process to measure, by a readable name: the started ones and their children
    (``onlearn serve``'s worker and monitor sidecars on SQLite)."""
    out: dict[str, int] = {}
    for s in started:
        for pid in lg.process_tree(s.pid):
            name = s.name if pid == s.pid else f"{s.name}/{role_of(pid)}"
            while name in out:
                name += "'"
            out[name] = pid
    return out


def settle(pids: dict[str, int], timeout: float, busy: float = 0.10) -> float | None:
    """Seconds until the start-up work is done: the thread count of every process unchanged for
    3 s (the sidecars start a thread per model as they load them) and all ``pids`` together
    under ``busy`` of a core over a second (the monitor reads what seeding predicted); None if
    that did not happen within ``timeout``."""
    start = time.monotonic()
    counts: list[dict[str, int]] = []
    while time.monotonic() - start < timeout:
        before = sum(lg.process_cpu_seconds(p) or 0.0 for p in pids.values())
        time.sleep(1.0)
        after = sum(lg.process_cpu_seconds(p) or 0.0 for p in pids.values())
        counts = [*counts[-2:], {name: _threads(pid) for name, pid in pids.items()}]
        if len(counts) == 3 and counts[0] == counts[1] == counts[2] and after - before < busy:
            return time.monotonic() - start
    return None


def _threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def measure_idle(pids: dict[str, int], seconds: float) -> dict[str, dict[str, Any]]:
    """Per process: threads and RSS at the end, CPU used over ``seconds`` with no traffic; and
    under ``other``, the CPU the rest of the machine used meanwhile (other processes, and kernel
    work not charged to a process)."""
    from benchmarks.replicas import machine_busy_seconds

    before = {name: lg.process_cpu_seconds(pid) for name, pid in pids.items()}
    machine_before = machine_busy_seconds()
    t0 = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    machine_after = machine_busy_seconds()
    out: dict[str, dict[str, Any]] = {}
    for name, pid in pids.items():
        facts = proc_facts(pid)
        if facts is None or before[name] is None or facts["cpu_s"] is None:
            out[name] = {"gone": True}
            continue
        out[name] = {
            "pid": pid,
            "threads": facts["threads"],
            "rss_mib": facts["rss_mib"],
            "idle_cpu": (facts["cpu_s"] - before[name]) / elapsed,
        }
    if machine_before is not None and machine_after is not None:
        ours = sum(f["idle_cpu"] for f in out.values() if not f.get("gone"))
        out["other"] = {
            "gone": True,  # not a process of the run
            "cpu": max(0.0, (machine_after - machine_before) / elapsed - ours),
        }
    return out


def wait_quiet(timeout: float, busy: float = 0.10) -> float | None:
    """Wait until the machine is idle (under ``busy`` of a core over 2 s), at most ``timeout``
    s: other work on the machine slows every figure down. The CPU it used at the end."""
    deadline = time.monotonic() + timeout
    while True:
        used = machine_busy(2.0)
        if used is None or used < busy or time.monotonic() > deadline:
            return used


# --- the load generator child -------------------------------------------------------------------


def loadgen_main(argv: list[str]) -> int:
    """``python -m benchmarks.many_models loadgen``: predict round robin over the models."""
    from benchmarks.replicas import MultiTargetLoad, machine_busy_seconds

    p = argparse.ArgumentParser(prog="python -m benchmarks.many_models loadgen")
    p.add_argument("--ports", required=True, help="comma-separated server ports")
    p.add_argument("--models", type=int, required=True, help="m0000... up to this count")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--cpu", type=int)
    p.add_argument("--pid", action="append", default=[], help="NAME=PID whose CPU to measure")
    args = p.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    ports = [int(x) for x in args.ports.split(",")]
    pids = {name: int(pid) for name, _, pid in (item.partition("=") for item in args.pid)}
    names = model_names(args.models)
    bodies = [b.encode() for b in data.predict_bodies()]
    # Request k: model k mod N, row k mod 1250; lcm(N, 1250) requests cover every pair once.
    requests = [
        lg.build_request(
            "127.0.0.1",
            ports[0],
            f"/models/{names[k % len(names)]}/predict",
            bodies[k % len(bodies)],
        )
        for k in range(math.lcm(len(names), len(bodies)))
    ]

    class PerProcessLoad(MultiTargetLoad):
        """CPU of each named process alone (the SQLite server's sidecars are named too)."""

        def _cpu(self) -> dict[str, float | None]:
            cpu = {name: lg.process_cpu_seconds(pid) for name, pid in self.pids.items()}
            cpu["machine"] = machine_busy_seconds()
            return cpu

    gen = PerProcessLoad(
        requests,
        ports=ports,
        pids=pids,
        host="127.0.0.1",
        connections=args.connections,
        warmup=args.warmup,
        duration=args.duration,
        once=False,
        status=200,
        expect=b'"prediction_id"',
    )
    try:
        import uvloop
    except ImportError:
        import asyncio

        report = asyncio.run(gen.run())
    else:
        report = uvloop.run(gen.run())
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")
    return 0


# --- the benchmark ------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.results: list[dict[str, Any]] = []
        cpus = procs.cpus()
        self.pinned = not args.no_pin and len(cpus) >= 2
        self.server_cpu = cpus[0] if self.pinned else None
        self.load_cpu = cpus[1] if self.pinned else None
        self.redis_version = "-"

    def log(self, msg: str) -> None:
        print(f"[many-models {time.strftime('%H:%M:%S')}] {msg}", flush=True)

    def run(self) -> None:
        for n in self.args.sqlite_counts:
            self.case("sqlite", n)
        for n in self.args.redis_model_counts:
            self.case("redis", n)

    def case(self, kind: str, n: int) -> None:
        from benchmarks.replicas import RedisServer

        where = self.tmp / f"{kind}-{n}"
        where.mkdir()
        entry: dict[str, Any] = {"store": kind, "models": n}
        if self.args.wait_quiet > 0:
            entry["machine_busy_before"] = wait_quiet(self.args.wait_quiet)
        self.results.append(entry)
        with ExitStack() as stack:
            redis = None
            if kind == "redis":
                redis = RedisServer(self.args.redis_server, where / "redis")
                stack.callback(redis.close)
                self.redis_version = redis.version
                store_url = redis.url
            else:
                store_url = f"sqlite:///{where / 'onlearn.db'}"
            config = write_config(where / "models.toml", model_names(n), store_url)
            self.log(f"{kind}, {n} models: seeding {LABELS_PER_MODEL} labels each")
            entry["seed"] = seed(config, store_url)
            self.log(f"  seeded in {entry['seed']['seconds']:.1f} s; starting onlearn serve")
            started = self.start(stack, kind, config, store_url, where)
            servers = [s for s in started if s.name.startswith("serve")]
            wait_ready(servers, self.args.ready_timeout)
            entry["ready_s"] = {s.name: s.ready_s for s in servers}
            ready = all(s.ready_s is not None for s in servers)
            self.log(
                "  ready: "
                + ", ".join(
                    f"{s.name} {_secs(s.ready_s, self.args.ready_timeout)}" for s in servers
                )
            )
            watched = started + ([Started("redis", redis.proc, None)] if redis else [])
            pids = members(watched)
            entry["settle_s"] = settle(pids, self.args.settle) if ready else None
            self.log(f"  settled after {_num(entry['settle_s'], 1)} s; idle {self.args.idle:g} s")
            entry["idle"] = measure_idle(pids, self.args.idle)
            for name, facts in entry["idle"].items():
                if not facts.get("gone"):
                    self.log(
                        f"    {name}: {facts['threads']} threads, idle CPU "
                        f"{facts['idle_cpu'] * 100:.1f}%, RSS {facts['rss_mib']:.0f} MiB"
                    )
            if ready:
                rounds = [self.predict(servers, n, pids) for _ in range(self.args.rounds)]
                entry["predict"] = max(rounds, key=lambda r: r["rps"])
                entry["predict_rounds"] = [r["rps"] for r in rounds]
            entry["stop_s"] = {}
            for s in started:
                t0 = time.monotonic()
                procs.stop(s.proc, grace_s=30.0)
                entry["stop_s"][s.name] = time.monotonic() - t0

    def start(
        self, stack: ExitStack, kind: str, config: Path, store_url: str, where: Path
    ) -> list[Started]:
        started: list[Started] = []

        def stop_all() -> None:
            for s in started:
                procs.stop(s.proc, grace_s=10.0)

        stack.callback(stop_all)
        if kind == "sqlite":
            port = procs.free_port()
            started.append(
                onlearn(
                    "serve", config, store_url, where / "serve.log", cpu=self.server_cpu, port=port
                )
            )
            return started
        for i in range(self.args.replicas):
            s = onlearn(
                "serve",
                config,
                store_url,
                where / f"serve{i}.log",
                cpu=None,
                port=procs.free_port(),
            )
            s.name = f"serve{i}"
            started.append(s)
        for role in ("worker", "monitor"):
            started.append(onlearn(role, config, store_url, where / f"{role}.log", cpu=None))
        return started

    def predict(self, servers: list[Started], n: int, pids: dict[str, int]) -> dict[str, Any]:
        argv = ["-m", "benchmarks.many_models", "loadgen", "--models", str(n)]
        argv += ["--ports", ",".join(str(s.port) for s in servers)]
        argv += ["--connections", str(self.args.connections)]
        argv += ["--warmup", str(self.args.warmup), "--duration", str(self.args.duration)]
        if self.load_cpu is not None and len(servers) == 1:
            argv += ["--cpu", str(self.load_cpu)]
        for name, pid in pids.items():
            argv += ["--pid", f"{name}={pid}"]
        run = procs.run_json(argv, timeout=self.args.warmup + self.args.duration + 120)
        lat = run["latency_ms"]
        self.log(
            f"  predict over {n} models: {run['rps']:,.0f} req/s, p50 {_num(lat['p50'])} ms, "
            f"p99 {_num(lat['p99'])} ms, errors {run['errors']}"
        )
        return {
            k: run[k]
            for k in (
                "rps",
                "latency_ms",
                "errors",
                "error_kinds",
                "cpu_util",
                "loadgen_cpu_util",
                "window_s",
            )
        }


# --- the report ---------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _secs(value: float | None, timeout: float) -> str:
    return f"{value:.1f} s" if value is not None else f"not ready in {timeout:g} s"


def _short(name: str) -> str:
    return name.replace("serve/", "")


def summary_table(results: list[dict[str, Any]], timeout: float) -> list[str]:
    base = {
        e["store"]: e["predict"]["rps"]
        for e in results
        if e["models"] == 1 and e.get("predict") and e["predict"]["rps"]
    }
    lines = [
        "| store | models | ready s | threads per process | idle CPU per process "
        "(% of a core) | RSS MiB per process | predict req/s | x 1 model | p50 ms | p99 ms "
        "| errors |",
        "|---|---:|---:|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for e in results:
        idle = {k: v for k, v in e["idle"].items() if not v.get("gone") and k != "redis"}
        ready = max(
            (v for v in e["ready_s"].values() if v is not None),
            default=None,
        )
        if any(v is None for v in e["ready_s"].values()):
            ready_text = f"not ready in {timeout:g} s"
        else:
            ready_text = f"{ready:.1f}"
        threads = ", ".join(f"{_short(k)} {v['threads']}" for k, v in idle.items())
        cpu = ", ".join(f"{_short(k)} {v['idle_cpu'] * 100:.1f}" for k, v in idle.items())
        rss = ", ".join(f"{_short(k)} {v['rss_mib']:.0f}" for k, v in idle.items())
        p = e.get("predict")
        if p:
            ratio = p["rps"] / base[e["store"]] if base.get(e["store"]) else None
            lat = p["latency_ms"]
            tail = (
                f"{p['rps']:,.0f} | {_num(ratio)}x | {_num(lat['p50'])} | {_num(lat['p99'])} "
                f"| {p['errors']}"
            )
        else:
            tail = "- | - | - | - | -"
        lines.append(
            f"| {e['store']} | {e['models']:,} | {ready_text} | {threads} | {cpu} | {rss} | {tail} |"
        )
    return lines


def verdicts(results: list[dict[str, Any]], timeout: float) -> list[str]:
    out = []
    for kind in ("sqlite", "redis"):
        runs = [e for e in results if e["store"] == kind]
        if not runs:
            continue
        big = max(runs, key=lambda e: e["models"])
        base = next((e for e in runs if e["models"] == 1), None)
        ready = list(big["ready_s"].values())
        if all(v is not None for v in ready):
            ok = big["models"] < 1000 or max(ready) < GOAL_READY_S
            ready_text = f"{max(ready):.1f} s"
        else:
            ok, ready_text = False, f"not ready in {timeout:g} s"
        goal_note = "" if big["models"] >= 1000 else " (the goal is set at 1000 models)"
        out.append(
            f"- {kind}: ready with {big['models']:,} models: {ready_text}; goal < "
            f"{GOAL_READY_S:g} s at 1000 models{goal_note}: **{'pass' if ok else 'SHORT'}**"
        )
        worst = [
            (e["models"], name, f["idle_cpu"])
            for e in runs
            for name, f in e["idle"].items()
            if not f.get("gone") and name != "redis"
        ]
        m, name, cpu = max(worst, key=lambda t: t[2])
        out.append(
            f"- {kind}: highest idle CPU of a process: {cpu * 100:.1f}% of a core ({name}, "
            f"{m:,} models); goal < {GOAL_IDLE_CPU * 100:g}% per process: "
            f"**{'pass' if cpu < GOAL_IDLE_CPU else 'SHORT'}**"
        )
        threads = {
            e["models"]: sum(
                f["threads"] for k, f in e["idle"].items() if not f.get("gone") and k != "redis"
            )
            for e in runs
        }
        flat = max(threads.values()) - min(threads.values()) <= 2
        if len(threads) > 1:
            out.append(
                f"- {kind}: threads of all processes by model count: "
                + ", ".join(f"{m:,}: {t}" for m, t in threads.items())
                + f"; goal independent of the model count: **{'pass' if flat else 'SHORT'}**"
            )
        if base and base.get("predict") and big is not base:
            if big.get("predict"):
                ratio = big["predict"]["rps"] / base["predict"]["rps"]
                verdict = "pass" if ratio >= GOAL_PREDICT_RATIO else "SHORT"
                text = (
                    f"{big['predict']['rps']:,.0f} req/s against {base['predict']['rps']:,.0f} "
                    f"with one model = {ratio:.2f}x"
                )
            else:
                verdict, text = "SHORT", "no predict run (not ready)"
            out.append(
                f"- {kind}: predict over {big['models']:,} models: {text}; goal >= "
                f"{GOAL_PREDICT_RATIO:g}x (at 1000 models): **{verdict}**"
            )
    return out


def details_table(results: list[dict[str, Any]], settle: float) -> list[str]:
    lines = [
        "| store | models | seed s | settled after ready s | stop s | rest of the machine in "
        "the idle window (% of a core) | predict req/s by round | CPU in the best predict "
        "window (% of a core) |",
        "|---|---:|---:|---:|---|---:|---|---|",
    ]
    for e in results:
        stop = ", ".join(f"{k} {v:.1f}" for k, v in e["stop_s"].items())
        p = e.get("predict")
        cpu = "-"
        if p:
            util = dict(p["cpu_util"])
            machine = util.pop("machine", None)
            cpu = ", ".join(f"{_short(k)} {v * 100:.0f}" for k, v in util.items() if v is not None)
            cpu += f", load generator {(p.get('loadgen_cpu_util') or 0) * 100:.0f}"
            if machine is not None:
                other = (
                    machine - sum(v for v in util.values() if v) - (p.get("loadgen_cpu_util") or 0)
                )
                cpu += f", other processes {max(other, 0.0) * 100:.0f}"
        settled = _num(e["settle_s"], 1) if e["settle_s"] is not None else f"not in {settle:g}"
        rounds = ", ".join(f"{r:,.0f}" for r in e.get("predict_rounds", [])) or "-"
        other = e["idle"].get("other", {}).get("cpu")
        other_text = f"{other * 100:.0f}" if other is not None else "-"
        lines.append(
            f"| {e['store']} | {e['models']:,} | {e['seed']['seconds']:.1f} | {settled} "
            f"| {stop} | {other_text} | {rounds} | {cpu} |"
        )
    return lines


def machine_facts(
    args: argparse.Namespace, bench: Bench, busy_before: float | None
) -> dict[str, str]:
    from benchmarks.run import _cpu_model

    exe = Path(sys.executable)
    exe_text = os.path.relpath(exe, ROOT) if exe.is_relative_to(ROOT) else str(exe)
    command = shlex.join([exe_text, "-m", "benchmarks.many_models", *sys.argv[1:]])
    if os.environ.get("MAKELEVEL"):
        command = f"make bench-models` (`{command}"
    pins = (
        f"SQLite: onlearn serve and its sidecars on CPU {bench.server_cpu}, the load generator "
        f"on CPU {bench.load_cpu}; Redis: nothing pinned"
        if bench.pinned
        else "nothing pinned"
    )
    return {
        "timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": f"`{command}`",
        "git": git_state(),
        "CPU count": f"{os.cpu_count()} ({_cpu_model()}); usable: {len(procs.cpus())}",
        "pinning": pins,
        "Python": f"{platform.python_version()} ({platform.python_implementation()})",
        "OS": platform.platform(),
        "SQLite": sqlite3.sqlite_version,
        "Redis": f"redis-server {bench.redis_version}, appendonly yes, appendfsync everysec",
        "durations": (
            f"ready timeout {args.ready_timeout:g} s; quiet wait at most {args.settle:g} s; idle "
            f"window {args.idle:g} s; predict warm-up {args.warmup:g} s, measured "
            f"{args.duration:g} s, {args.connections} connections, best of {args.rounds}"
        ),
        "other work": (
            f"the machine used {busy_before * 100:.0f}% of a core over 3 s before the run "
            "(other processes: they slow every figure down)"
            if busy_before is not None
            else "-"
        ),
    }


def section(results: list[dict[str, Any]], machine: dict[str, str], args, wall: float) -> str:
    lines = [
        BEGIN,
        "## Many models per process: start-up, threads, idle CPU, memory, predict",
        "",
        f"How to run: `make bench-models` (`.venv/bin/python -m benchmarks.many_models`; "
        f"`--help` for options). About {wall / 60:.0f} minutes here; not part of `make bench` "
        "(too long for it: each count seeds a store and restarts the server).",
        "",
        "What it does (benchmarks/many_models.py's docstring has the details): for N models "
        "(logistic regression on the example model's Phishing schema, a generated config), "
        f"each model is taught {LABELS_PER_MODEL} labels through the library (predict, then "
        "feedback by prediction id) on a fresh store, the engines' close writes a live snapshot "
        "of every model (checked), then `onlearn serve` starts on that store. **ready** is the "
        "time from spawning it to its first `/readyz` 200 (the interpreter's start and imports "
        "included: see the 1-model row). Then, once start-up work is done (every process's "
        "thread count unchanged for 3 s and all of them under 10% of a core; at most "
        f"{args.settle:g} s), **idle CPU** is each process's CPU time (utime + stime, "
        f"/proc/PID/stat) over {args.idle:g} s with no traffic, as a share of one core, with "
        "its **threads** (/proc/PID/task) and **RSS** at the end. **predict** is `POST "
        "/models/{name}/predict` round robin over all N models (request k to model k mod N), "
        f"{args.connections} connections (benchmarks/loadgen.py's generator), best of "
        f"{args.rounds} runs, against the 1-model run on the same store. SQLite: one `onlearn serve` in its default layout, "
        "its `worker` and `monitor` sidecar processes beside it. Redis: "
        f"{args.replicas} `onlearn serve` replicas (`serve0`, `serve1`) plus an `onlearn worker` "
        "and an `onlearn monitor` on one private redis-server (on Redis they are deployments "
        "of their own; here all on this machine).",
        "",
        "Goals (issue 12, section 1): 1000 models ready in under 10 s; idle CPU under 5% of a "
        "core per process; predict over 1000 models at least 0.8x one model; threads "
        "independent of the model count. Also on Redis with 2 replicas and 300 models.",
        "",
        f"### Run of {machine['timestamp']}",
        "",
        *summary_table(results, args.ready_timeout),
        "",
        "Against the goals:",
        "",
        *verdicts(results, args.ready_timeout),
        "",
        "Seeding, settling, shutdown (`stop s`: SIGTERM to exit), the CPU the rest of the "
        "machine used during the idle window (other processes, and kernel work charged to no "
        "process), each predict round, and the CPU each process took during the best predict "
        "window (`other processes`: the same remainder):",
        "",
        *details_table(results, args.settle),
        "",
        "Machine and settings:",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in machine.items()),
        "",
        END,
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["loadgen"]:
        return loadgen_main(argv[1:])
    args = parse_args(argv)
    procs.install_sigterm_handler()
    busy_before = machine_busy()
    tmp = Path(tempfile.mkdtemp(prefix="onlearn-many-models-"))
    bench = Bench(args, tmp)
    started = time.perf_counter()
    failed = procs.run_in(tmp, bench.run, keep=args.keep, what="the many-models benchmark")
    if failed is not None:
        return failed
    wall = time.perf_counter() - started
    machine = machine_facts(args, bench, busy_before)
    text = section(bench.results, machine, args, wall)
    print()
    print(text)
    OUT.mkdir(exist_ok=True)
    (OUT / "many_models.json").write_text(
        json.dumps({"machine": machine, "results": bench.results}, indent=2)
    )
    if not args.no_write:
        procs.write_section(RESULTS, BEGIN, END, text)
        print(f"wrote {os.path.relpath(RESULTS, Path.cwd())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
