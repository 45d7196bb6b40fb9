"""Scale out on Redis: predict and feedback throughput with 1, 2 and 4 serve replicas, and the
replication lag between replicas. ``.venv/bin/python -m benchmarks.replicas`` (about 3 minutes).

    .venv/bin/python -m benchmarks.replicas [--replicas 1,2,4] [--duration 5] [--no-write]

1. Throughput: for each configuration, the embedded SQLite store with one server process, then
   1, 2 and 4 server processes on one private ``redis-server`` (``appendonly yes``,
   ``appendfsync everysec``; a fresh one per configuration): ``POST /models/phishing/predict``,
   then ``POST /models/phishing/feedback`` by prediction id (each id once, durable, answered once
   applied by the replica that took it). The load generator of benchmarks/loadgen.py opens its
   connections round-robin over the replicas' ports (it stands in for the load balancer). Once
   more with ``appendfsync always`` for the feedback of one replica.
2. Replication lag, two replicas A and B: feedback with inline features to A; once A answered
   (durable and applied on A), B's ``GET /models`` is polled until its ``applied_seq`` reaches
   the event's seq. Samples one at a time (idle), under a predict load and under a feedback load
   on both replicas, and with the followers polling every 5 ms instead of 50.

Every process (servers, Redis, load generator) is unpinned: on a 2-core machine they share the
same two CPUs, and the results say how much CPU each side took. The section between
``<!-- replicas:start -->`` and ``<!-- replicas:end -->`` of benchmarks/RESULTS.md is rewritten
(appended when absent); the raw numbers go to benchmarks/out/replicas.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from benchmarks import data, procs
from benchmarks import loadgen as lg
from benchmarks.procs import ROOT, BenchError, Client, Server
from benchmarks.run import git_state, make_prediction_ids, scrape
from benchmarks.server import UVICORN_SETTINGS

RESULTS = ROOT / "benchmarks" / "RESULTS.md"
OUT = ROOT / "benchmarks" / "out"
BEGIN = "<!-- replicas:start -->"
END = "<!-- replicas:end -->"
PREDICT = f"/models/{data.MODEL}/predict"
FEEDBACK = f"/models/{data.MODEL}/feedback"
# Signs the model snapshots of the replicas: a shared store needs an explicit key.
SECRET = "benchmark-only-secret-key"
FAST_POLL_MS = 5.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.replicas",
        description="Serve replicas on Redis: throughput with 1, 2, 4 replicas and replication "
        "lag, written to the replicas section of benchmarks/RESULTS.md.",
    )
    p.add_argument("--replicas", default="1,2,4", help="replica counts on Redis (default 1,2,4)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring")
    p.add_argument("--duration", type=float, default=5.0, help="seconds measured per run")
    p.add_argument("--connections", type=int, default=32, help="predict load connections")
    p.add_argument("--feedback-connections", type=int, default=64, help="feedback connections")
    p.add_argument("--lag-samples", type=int, default=300, help="idle replication lag samples")
    p.add_argument(
        "--lag-load-s", type=float, default=6.0, help="seconds of lag sampling under each load"
    )
    p.add_argument("--no-sqlite", action="store_true", help="skip the SQLite baseline")
    p.add_argument("--no-always", action="store_true", help="skip the appendfsync always run")
    p.add_argument("--no-lag", action="store_true", help="skip the replication lag")
    p.add_argument("--redis-server", default="redis-server", help="the redis-server program")
    p.add_argument("--no-write", action="store_true", help="do not write RESULTS.md")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (stores, server logs)")
    args = p.parse_args(argv)
    try:
        args.counts = [int(n) for n in args.replicas.split(",") if n.strip()]
    except ValueError:
        p.error("--replicas takes a comma-separated list of integers, e.g. 1,2,4")
    if not args.counts or min(args.counts) < 1:
        p.error("--replicas needs at least one count >= 1")
    return args


# --- processes ----------------------------------------------------------------------------------


class RedisServer:
    """A private ``redis-server`` on a free loopback port, its data in ``directory``."""

    def __init__(self, program: str, directory: Path, *, appendfsync: str = "everysec") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.port = procs.free_port()
        self.appendfsync = appendfsync
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(directory)]
        args += ["--appendonly", "yes", "--appendfsync", appendfsync, "--save", ""]
        args += ["--maxmemory-policy", "noeviction", "--logfile", str(directory / "redis.log")]
        program_path = shutil.which(program)
        if program_path is None:
            raise BenchError(f"{program} not found: install Redis 7 (apt-get install redis-server)")
        self.proc = procs.spawn(args, program=program_path, stdout=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        import redis

        self.client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"redis-server exited early; see {directory / 'redis.log'}")
            try:
                if self.client.ping():
                    break
            except redis.exceptions.RedisError:
                if time.monotonic() > deadline:
                    raise BenchError("redis-server did not answer in 10 s") from None
                time.sleep(0.05)
        self.version = self.client.info("server")["redis_version"]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def set_appendfsync(self, mode: str) -> None:
        self.client.config_set("appendfsync", mode)
        self.appendfsync = mode

    def close(self) -> None:
        self.client.close()
        procs.stop(self.proc, grace_s=5.0)


class Replica(Server):
    """``python -m benchmarks.server onlearn`` with a config of our choice: the app that ``onlearn
    serve`` builds for one process, with the uvicorn settings of the other benchmarks."""

    def __init__(self, log_path: Path, *, store: str, config: str) -> None:
        self.kind = "onlearn"
        self.port = procs.free_port()
        self.log_path = log_path
        args = ["-m", "benchmarks.server", "onlearn", "--port", str(self.port)]
        args += ["--store", store, "--config", config]
        self._log = log_path.open("wb")
        self.proc = procs.spawn(args, stdout=self._log, stderr=subprocess.STDOUT)


# --- the load generator, over several targets ---------------------------------------------------


class _PortConnection(lg.Connection):
    """A connection that counts the requests it sends to its replica."""

    def __init__(self, gen: MultiTargetLoad, port: int) -> None:
        super().__init__(gen)
        self.port = port

    def send_next(self) -> None:
        before = self.gen.sent
        super().send_next()
        if self.gen.sent != before:
            self.gen.per_port[self.port] += 1


class MultiTargetLoad(lg.LoadGenerator):
    """benchmarks/loadgen.py's generator with its connections opened round-robin over ``ports``
    (as an L4 balancer would place them), and the CPU time of several processes measured over
    the window (the replicas and Redis), not one."""

    def __init__(self, requests: list[bytes], *, ports: list[int], pids: dict[str, int], **kw):
        super().__init__(requests, port=ports[0], server_pid=None, **kw)
        self.ports = ports
        self.pids = pids
        self.turn = 0
        self.per_port: Counter[int] = Counter()
        self.cpu_before: dict[str, float | None] = {}
        self.cpu_after: dict[str, float | None] = {}

    async def _connect(self) -> None:
        port = self.ports[self.turn % len(self.ports)]
        self.turn += 1
        await self.loop.create_connection(lambda: _PortConnection(self, port), self.host, port)

    def _cpu(self) -> dict[str, float | None]:
        cpu = {name: lg.server_cpu_seconds(pid) for name, pid in self.pids.items()}
        cpu["machine"] = machine_busy_seconds()
        return cpu

    def _start_window(self) -> None:
        if self.phase == "warmup":
            self.cpu_before = self._cpu()
        super()._start_window()

    def _end_window(self) -> None:
        if self.phase == "measure":
            self.cpu_after = self._cpu()
        super()._end_window()

    def report(self) -> dict[str, Any]:
        out = super().report()
        window = out["window_s"]
        cpu = {
            name: self.cpu_after[name] - self.cpu_before[name]
            for name in (*self.pids, "machine")
            if self.cpu_before.get(name) is not None and self.cpu_after.get(name) is not None
        }
        out["cpu_s"] = cpu
        out["cpu_util"] = {k: v / window for k, v in cpu.items()} if window else {}
        out["sent_per_port"] = {str(p): self.per_port[p] for p in self.ports}
        return out


def machine_busy_seconds() -> float | None:
    """CPU time the whole machine spent busy so far (all CPUs, every process), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    # cpu user nice system idle iowait irq softirq steal ...
    busy = sum(int(fields[i]) for i in (1, 2, 3, 6, 7, 8))
    return busy / os.sysconf("SC_CLK_TCK")


def loadgen_main(argv: list[str]) -> int:
    """The load generator child: ``python -m benchmarks.replicas loadgen --ports 1,2 ...``."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.replicas loadgen")
    p.add_argument("--ports", required=True, help="comma-separated replica ports")
    p.add_argument("--path", required=True)
    p.add_argument("--bodies", required=True)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--once", action="store_true")
    p.add_argument("--expect")
    p.add_argument("--pid", action="append", default=[], help="NAME=PID whose CPU to measure")
    args = p.parse_args(argv)
    ports = [int(x) for x in args.ports.split(",")]
    pids = {}
    for item in args.pid:
        name, _, pid = item.partition("=")
        pids[name] = int(pid)
    bodies = lg.read_bodies(args.bodies)
    requests = [lg.build_request("127.0.0.1", ports[0], args.path, b) for b in bodies]
    gen = MultiTargetLoad(
        requests,
        ports=ports,
        pids=pids,
        host="127.0.0.1",
        connections=args.connections,
        warmup=args.warmup,
        duration=args.duration,
        once=args.once,
        status=200,
        expect=args.expect.encode() if args.expect else None,
    )
    try:
        import uvloop
    except ImportError:
        report = __import__("asyncio").run(gen.run())
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
        self.results: dict[str, Any] = {"throughput": [], "lag": []}
        self.n = 0
        self.redis_version = "-"
        self.config = data.CONFIG
        self.fast_config = tmp / "phishing-fast-poll.toml"
        self.fast_config.write_text(
            (ROOT / data.CONFIG).read_text() + f"\n[engine]\npoll_interval_ms = {FAST_POLL_MS:g}\n"
        )
        self.predict_bodies = data.write_lines(tmp / "predict.jsonl", data.predict_bodies())
        self.inline_bodies = data.write_lines(
            tmp / "inline-feedback.jsonl",
            (data.dumps({"features": x, "label": y}) for x, y in data.phishing()),
        )

    def log(self, msg: str) -> None:
        print(f"[replicas {time.strftime('%H:%M:%S')}] {msg}", flush=True)

    # set-up

    def redis(self, appendfsync: str = "everysec") -> RedisServer:
        self.n += 1
        r = RedisServer(
            self.args.redis_server, self.tmp / f"{self.n}-redis", appendfsync=appendfsync
        )
        self.redis_version = r.version
        return r

    def replicas(self, stack: ExitStack, n: int, store: str, config: str) -> list[Replica]:
        """Register the versions once (as ``onlearn serve`` does before its processes start),
        then start ``n`` replicas together and wait until each is ready."""
        from onlearn.config import load_settings
        from onlearn.keys import resolve_secret
        from onlearn.registry import ensure_registered
        from onlearn.store import open_store

        settings = load_settings(config, store_url=store)
        secret = resolve_secret(settings.secret_key, settings.store_url)
        with open_store(store) as s:
            for model in settings.models:
                ensure_registered(s, model, at=time.time(), secret=secret)
        self.n += 1
        servers = [
            Replica(self.tmp / f"{self.n}-replica-{i}.log", store=store, config=config)
            for i in range(n)
        ]
        for server in servers:
            stack.callback(server.close)
        for server in servers:
            server.wait_ready(timeout=120)
        return servers

    def train(self, servers: list[Replica]) -> None:
        """Teach the model the stream once (on the first replica), then wait until every replica
        applied it, so that none catches up during a measurement."""
        client = Client(servers[0].port)
        try:
            answer = client.post(f"{FEEDBACK}/batch", data.training_body())
        finally:
            client.close()
        head = max(r["seq"] for r in answer["results"])
        for server in servers:
            wait_applied(server.port, head, timeout=30)

    def load(
        self,
        servers: list[Replica],
        redis: RedisServer | None,
        path: str,
        bodies: Path,
        *,
        connections: int,
        expect: str,
        once: bool = False,
        duration: float | None = None,
    ) -> dict[str, Any]:
        duration = self.args.duration if duration is None else duration
        argv = ["-m", "benchmarks.replicas", "loadgen"]
        argv += ["--ports", ",".join(str(s.port) for s in servers), "--path", path]
        argv += ["--bodies", str(bodies), "--connections", str(connections)]
        argv += ["--warmup", str(self.args.warmup), "--duration", str(duration)]
        argv += ["--expect", expect]
        if once:
            argv.append("--once")
        for i, server in enumerate(servers):
            argv += ["--pid", f"replica{i}={server.pid}"]
        if redis is not None:
            argv += ["--pid", f"redis={redis.pid}"]
        run = procs.run_json(argv, timeout=self.args.warmup + duration + 90)
        run["replicas_cpu_util"] = sum(
            v for k, v in run["cpu_util"].items() if k.startswith("replica")
        )
        run["redis_cpu_util"] = run["cpu_util"].get("redis")
        machine = run["cpu_util"].get("machine")
        # What the rest of the machine took meanwhile (other work slows every figure down).
        run["other_cpu_util"] = (
            max(
                0.0,
                machine
                - run["replicas_cpu_util"]
                - (run["redis_cpu_util"] or 0.0)
                - (run["loadgen_cpu_util"] or 0.0),
            )
            if machine is not None
            else None
        )
        ok = run["requests"]
        run["replicas_cpu_us_per_request"] = (
            run["replicas_cpu_util"] * run["window_s"] / ok * 1e6 if ok else None
        )
        run["redis_cpu_us_per_request"] = (
            run["redis_cpu_util"] * run["window_s"] / ok * 1e6
            if ok and run["redis_cpu_util"] is not None
            else None
        )
        lat = run["latency_ms"]
        redis_cpu = (
            f", redis {run['redis_cpu_util'] * 100:.0f}%"
            if run["redis_cpu_util"] is not None
            else ""
        )
        self.log(
            f"  {path}: {run['rps']:,.0f} req/s, p50 {_num(lat['p50'])} ms, p99 "
            f"{_num(lat['p99'])} ms, errors {run['errors']}; CPU: replicas "
            f"{run['replicas_cpu_util'] * 100:.0f}%{redis_cpu}, load generator "
            f"{(run['loadgen_cpu_util'] or 0) * 100:.0f}%, other processes "
            f"{(run['other_cpu_util'] or 0) * 100:.0f}%"
        )
        return run

    def feedback_run(
        self, servers: list[Replica], redis: RedisServer | None, predict_rps: float
    ) -> dict[str, Any]:
        """Feedback by prediction id, each id once; the ids are made by batch predict first,
        spread over the replicas (any replica joins any record: they are in the store)."""
        n_ids = min(
            max(int(predict_rps * (self.args.warmup + self.args.duration) * 0.6), 5000), 40_000
        )
        n_ids = n_ids // 1000 * 1000
        pairs: list[tuple[str, bool]] = []
        clients = [Client(s.port) for s in servers]
        try:
            per = n_ids // len(servers) // 1000 * 1000 or 1000
            for i, client in enumerate(clients):
                want = per if i < len(clients) - 1 else n_ids - per * (len(clients) - 1)
                pairs.extend(make_prediction_ids(client, max(want, 0)))
            before = [scrape(c) for c in clients]
        finally:
            for c in clients:
                c.close()
        random.Random(7).shuffle(pairs)
        self.n += 1
        bodies = data.write_lines(
            self.tmp / f"{self.n}-feedback.jsonl",
            (data.dumps({"prediction_id": pid, "label": y}) for pid, y in pairs),
        )
        time.sleep(0.3)  # the prediction writers flush every 20 ms
        run = self.load(
            servers,
            redis,
            FEEDBACK,
            bodies,
            connections=self.args.feedback_connections,
            expect='"applied":true',
            once=True,
        )
        clients = [Client(s.port) for s in servers]
        try:
            after = [scrape(c) for c in clients]
        finally:
            for c in clients:
                c.close()
        events = sum(
            a.get("onlearn_log_committed_events", 0) - b.get("onlearn_log_committed_events", 0)
            for a, b in zip(after, before, strict=True)
        )
        batches = sum(
            a.get("onlearn_log_commit_batches", 0) - b.get("onlearn_log_commit_batches", 0)
            for a, b in zip(after, before, strict=True)
        )
        run["ids"] = n_ids
        run["commit"] = {
            "events": int(events),
            "appends": int(batches),
            "events_per_append": events / batches if batches else 0.0,
        }
        return run

    def throughput(
        self,
        label: str,
        store_kind: str,
        servers: list[Replica],
        redis: RedisServer | None,
        *,
        always: bool = False,
    ) -> None:
        self.train(servers)
        entry: dict[str, Any] = {"label": label, "store": store_kind, "replicas": len(servers)}
        self.log(f"{label}: predict")
        entry["predict"] = self.load(
            servers,
            redis,
            PREDICT,
            self.predict_bodies,
            connections=self.args.connections,
            expect='"prediction_id"',
        )
        self.log(f"{label}: feedback")
        entry["feedback"] = self.feedback_run(servers, redis, entry["predict"]["rps"])
        if redis is not None:
            entry["appendfsync"] = redis.appendfsync
        self.results["throughput"].append(entry)
        if always and redis is not None:
            redis.set_appendfsync("always")
            self.log(f"{label}: feedback with appendfsync always")
            run = self.feedback_run(servers, redis, entry["predict"]["rps"])
            redis.set_appendfsync("everysec")
            self.results["throughput"].append(
                {
                    "label": f"{label}, appendfsync always",
                    "store": store_kind,
                    "replicas": len(servers),
                    "appendfsync": "always",
                    "feedback": run,
                }
            )

    def lag(self, servers: list[Replica], redis: RedisServer, poll_ms: float) -> None:
        a, b = servers[0], servers[1]
        rng = random.Random(11)
        self.log(f"replication lag, followers polling every {poll_ms:g} ms: idle")
        self.results["lag"].append(
            {
                "condition": "idle (one feedback at a time)",
                "poll_interval_ms": poll_ms,
                **lag_samples(a.port, b.port, rng, count=self.args.lag_samples),
            }
        )
        if poll_ms == FAST_POLL_MS:
            return
        loads = (
            ("predict", PREDICT, self.predict_bodies, self.args.connections, '"prediction_id"'),
            ("feedback", FEEDBACK, self.inline_bodies, self.args.feedback_connections, '"seq":'),
        )
        for what, path, bodies, conns, expect in loads:
            self.log(f"replication lag under a {what} load on both replicas")
            holder: dict[str, Any] = {}
            kwargs = {"connections": conns, "expect": expect, "duration": self.args.lag_load_s + 1}
            thread = threading.Thread(
                target=self._load_into,
                args=(holder, servers, redis, path, bodies),
                kwargs=kwargs,
                daemon=True,
            )
            thread.start()
            time.sleep(self.args.warmup + 0.5)
            samples = lag_samples(a.port, b.port, rng, seconds=self.args.lag_load_s)
            thread.join()
            if "error" in holder:
                raise BenchError(f"the {what} load failed: {holder['error']}")
            load = holder["run"]
            self.results["lag"].append(
                {
                    "condition": f"under a {what} load ({conns} connections over both "
                    f"replicas, {load['rps']:,.0f} req/s)",
                    "poll_interval_ms": poll_ms,
                    "load": {k: load[k] for k in ("rps", "errors", "latency_ms")},
                    **samples,
                }
            )

    def _load_into(self, holder: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        try:
            holder["run"] = self.load(*args, **kwargs)
        except Exception as e:  # raised again by the caller
            holder["error"] = repr(e)

    def run(self) -> None:
        if not self.args.no_sqlite:
            self.n += 1
            store_dir = self.tmp / f"{self.n}-sqlite"
            store_dir.mkdir()
            with ExitStack() as stack:
                servers = self.replicas(
                    stack, 1, f"sqlite:///{store_dir / 'onlearn.db'}", self.config
                )
                self.throughput("SQLite, 1 process", "sqlite", servers, None)
        for n in self.args.counts:
            with ExitStack() as stack:
                redis = self.redis()
                stack.callback(redis.close)
                self.log(f"redis {redis.version} on port {redis.port}: {n} replica(s) starting")
                servers = self.replicas(stack, n, redis.url, self.config)
                label = f"Redis, {n} replica{'s' if n > 1 else ''}"
                self.throughput(
                    label, "redis", servers, redis, always=n == 1 and not self.args.no_always
                )
                if n == 2 and not self.args.no_lag:
                    self.lag(servers, redis, poll_ms=50.0)
        if not self.args.no_lag:
            with ExitStack() as stack:
                redis = self.redis()
                stack.callback(redis.close)
                servers = self.replicas(stack, 2, redis.url, str(self.fast_config))
                self.train(servers)
                self.lag(servers, redis, poll_ms=FAST_POLL_MS)


def wait_applied(port: int, seq: int, *, timeout: float) -> None:
    client = Client(port)
    try:
        deadline = time.monotonic() + timeout
        while applied_seq(client) < seq:
            if time.monotonic() > deadline:
                raise BenchError(f"the replica on port {port} did not reach seq {seq}")
            time.sleep(0.02)
    finally:
        client.close()


def applied_seq(client: Client) -> int:
    status, answer = client.request("GET", "/models")
    if status != 200:
        raise BenchError(f"GET /models answered {status}")
    return next(m["applied_seq"] for m in answer["models"] if m["name"] == data.MODEL)


def lag_samples(
    port_a: int,
    port_b: int,
    rng: random.Random,
    *,
    count: int | None = None,
    seconds: float | None = None,
) -> dict[str, Any]:
    """Feedback to A; from A's answer (durable, applied on A) until B's ``GET /models`` shows
    the event's seq applied. B is polled about every millisecond; a pause of 0-10 ms between
    samples keeps them from falling in step with B's poll interval."""
    a, b = Client(port_a), Client(port_b)
    rows = data.phishing()
    lags: list[float] = []
    acks: list[float] = []
    polls = 0
    deadline = time.perf_counter() + seconds if seconds is not None else None
    i = 0
    try:
        while True:
            if count is not None and len(lags) >= count:
                break
            if deadline is not None and time.perf_counter() >= deadline:
                break
            x, y = rows[i % len(rows)]
            i += 1
            t0 = time.perf_counter()
            seq = a.post(FEEDBACK, data.dumps({"features": x, "label": y}))["seq"]
            t1 = time.perf_counter()
            while applied_seq(b) < seq:
                polls += 1
                if time.perf_counter() - t1 > 10:
                    raise BenchError(f"replica B did not apply seq {seq} within 10 s")
                time.sleep(0.001)
            t2 = time.perf_counter()
            lags.append((t2 - t1) * 1000)
            acks.append((t1 - t0) * 1000)
            time.sleep(rng.uniform(0, 0.01))
    finally:
        a.close()
        b.close()
    return {
        "samples": len(lags),
        "lag_ms": percentiles(lags),
        "ack_ms": percentiles(acks),
        "polls_per_sample": polls / len(lags) if lags else None,
    }


def percentiles(xs: list[float]) -> dict[str, float | None]:
    s = sorted(xs)

    def pct(q: float) -> float | None:
        if not s:
            return None
        return s[min(len(s) - 1, max(0, int(q * len(s) + 0.999999) - 1))]

    return {
        "p50": pct(0.5),
        "p90": pct(0.9),
        "p99": pct(0.99),
        "max": s[-1] if s else None,
        "mean": sum(s) / len(s) if s else None,
    }


# --- report -------------------------------------------------------------------------------------


def _num(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def _cores(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _store(e: dict[str, Any]) -> str:
    if e["store"] == "sqlite":
        return "SQLite (embedded)"
    return f"Redis, appendfsync {e['appendfsync']}"


def throughput_table(entries: list[dict[str, Any]]) -> str:
    rows = [
        "| store | serve processes | predict req/s | predict p50 / p99 ms | feedback req/s "
        "| feedback p50 / p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for e in entries:
        p, f = e.get("predict"), e["feedback"]
        errors = (p["errors"] if p else 0) + f["errors"]
        short = " (ran out of ids)" if f.get("exhausted") else ""
        predict = [
            _num(p["rps"]) if p else "-",
            f"{_num(p['latency_ms']['p50'])} / {_num(p['latency_ms']['p99'])}" if p else "-",
        ]
        feedback = [
            _num(f["rps"]) + short,
            f"{_num(f['latency_ms']['p50'])} / {_num(f['latency_ms']['p99'])}",
        ]
        cells = [_store(e), str(e["replicas"]), *predict, *feedback, str(errors)]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def cpu_table(entries: list[dict[str, Any]]) -> str:
    rows = [
        "| run | processes | window s | requests | CPU, cores: replicas / redis / load gen / "
        "other processes | replicas' CPU us per request | redis CPU us per request "
        "| requests sent to each replica |",
        "|---|---:|---:|---:|---|---:|---:|---|",
    ]
    for e in entries:
        for kind in ("predict", "feedback"):
            run = e.get(kind)
            if not run:
                continue
            cores = " / ".join(
                _cores(run[k])
                for k in (
                    "replicas_cpu_util",
                    "redis_cpu_util",
                    "loadgen_cpu_util",
                    "other_cpu_util",
                )
            )
            sent = ", ".join(f"{n:,}" for n in run.get("sent_per_port", {}).values())
            rows.append(
                f"| {_store(e)}: {kind} | {e['replicas']} | {run['window_s']:.2f} "
                f"| {run['requests']:,} | {cores} | {_num(run['replicas_cpu_us_per_request'])} "
                f"| {_num(run['redis_cpu_us_per_request'])} | {sent} |"
            )
    return "\n".join(rows)


def lag_table(entries: list[dict[str, Any]]) -> str:
    rows = [
        "| followers poll every | condition | samples | lag p50 ms | p90 | p99 | max | feedback "
        "answer on A, p50 ms |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for e in entries:
        lag, ack = e["lag_ms"], e["ack_ms"]
        rows.append(
            f"| {e['poll_interval_ms']:g} ms | {e['condition']} | {e['samples']} "
            f"| {_num(lag['p50'])} | {_num(lag['p90'])} | {_num(lag['p99'])} | {_num(lag['max'])} "
            f"| {_num(ack['p50'])} |"
        )
    return "\n".join(rows)


def reading(results: dict[str, Any]) -> list[str]:
    """What the numbers say, computed from them."""
    out = []
    redis_runs = {
        e["replicas"]: e
        for e in results["throughput"]
        if e["store"] == "redis" and e.get("appendfsync") == "everysec"
    }
    sqlite = next((e for e in results["throughput"] if e["store"] == "sqlite"), None)
    one = redis_runs.get(1)
    if one:
        parts = []
        for n, e in sorted(redis_runs.items()):
            if n == 1:
                continue
            parts.append(
                f"{n} replicas {e['predict']['rps'] / one['predict']['rps']:.2f}x predict and "
                f"{e['feedback']['rps'] / one['feedback']['rps']:.2f}x feedback "
                f"(replicas took {e['predict']['replicas_cpu_util']:.2f} cores, Redis "
                f"{_cores(e['predict']['redis_cpu_util'])}, the load generator "
                f"{_cores(e['predict']['loadgen_cpu_util'])})"
            )
        if parts:
            out.append(
                "- Against one replica: "
                + "; ".join(parts)
                + ". This machine has 2 cores for everything: once the replicas, Redis and the "
                "load generator together use both, more replicas only share the same CPU (and "
                "each adds its own follower, prediction writer and commit threads). These runs "
                "show the cost of replication on 2 cores, not how far replicas scale."
            )
        us = [
            f"{n}: {_num(e['predict']['replicas_cpu_us_per_request'])} us"
            for n, e in sorted(redis_runs.items())
        ]
        out.append(
            "- Replicas' CPU per predict request (a figure that does not depend on how many "
            "cores there are) by replica count: "
            + ", ".join(us)
            + ". On a machine with a core per replica plus cores for Redis and the clients, "
            "throughput grows with the replicas as long as this stays flat and Redis has CPU "
            "left; Redis used "
            + ", ".join(
                f"{_num(e['feedback']['redis_cpu_us_per_request'])} us per feedback ({n})"
                for n, e in sorted(redis_runs.items())
            )
            + " (one Redis core would saturate at roughly 1e6 / that many feedback calls per "
            "second, predictions and record writes aside). An estimate from CPU figures, not a "
            "measurement."
        )
        if sqlite:
            out.append(
                f"- One replica on Redis against the embedded SQLite store, one process each: "
                f"predict {one['predict']['rps'] / sqlite['predict']['rps']:.2f}x, feedback "
                f"{one['feedback']['rps'] / sqlite['feedback']['rps']:.2f}x (SQLite commits with "
                "synchronous=FULL, an fsync per group commit; Redis everysec writes to the OS "
                "and fsyncs once a second)."
            )
        always = next((e for e in results["throughput"] if e.get("appendfsync") == "always"), None)
        if always:
            out.append(
                f"- appendfsync always (Redis fsyncs before answering; what SQLite's "
                f"synchronous=FULL promises) costs one replica's feedback "
                f"{(1 - always['feedback']['rps'] / one['feedback']['rps']) * 100:.0f}% of its "
                f"rate here ({_num(always['feedback']['rps'])} against "
                f"{_num(one['feedback']['rps'])} req/s); on another disk the fsync costs "
                "something else."
            )
    others = [
        run["other_cpu_util"]
        for e in results["throughput"]
        for kind in ("predict", "feedback")
        if (run := e.get(kind)) and run.get("other_cpu_util") is not None
    ]
    if others:
        mean = sum(others) / len(others)
        out.append(
            f"- Other processes on the machine took {mean:.2f} cores on average during the "
            f"measured windows (at most {max(others):.2f}) of the {os.cpu_count()}: "
            + (
                "the machine was quiet."
                if max(others) < 0.15
                else "every figure here is lower than on a quiet machine, the runs with the "
                "most such load the most."
            )
        )
    lags = results["lag"]
    if lags:
        slow = [e for e in lags if e["poll_interval_ms"] != FAST_POLL_MS]
        fast = [e for e in lags if e["poll_interval_ms"] == FAST_POLL_MS]
        if slow:
            e = slow[0]
            out.append(
                f"- Replication lag idle: p50 {_num(e['lag_ms']['p50'])} ms, p99 "
                f"{_num(e['lag_ms']['p99'])} ms with the default `poll_interval_ms = 50`: a "
                "replica reads the log when woken by its own commits or every poll interval, so "
                "another replica's label shows up after half an interval on average and at most "
                "about one interval plus the read and the apply."
            )
        if fast:
            e = fast[0]
            out.append(
                f"- With `[engine] poll_interval_ms = {FAST_POLL_MS:g}`: p50 "
                f"{_num(e['lag_ms']['p50'])} ms, p99 {_num(e['lag_ms']['p99'])} ms, at the cost "
                "of each replica reading the log 200 times a second per model (an XRANGE each) "
                "when idle."
            )
    return out


def section(results: dict[str, Any], machine: dict[str, str], wall_s: float) -> str:
    lines = [
        BEGIN,
        "## Scale out: serve replicas on Redis",
        "",
        f"Command: `{machine['command']}` ({wall_s:.0f} s wall; `--help` for options; "
        "benchmarks/replicas.py). It rewrites this section only; raw numbers in "
        "`benchmarks/out/replicas.json`.",
        "",
        "What is measured:",
        "",
        "- **Throughput**: `POST /models/phishing/predict` (32 connections), then "
        "`POST /models/phishing/feedback` by prediction id (64 connections, each id once, "
        "answered once durable in the log and applied by the replica that took it). Each "
        "replica is `python -m benchmarks.server onlearn` (the app `onlearn serve` builds for "
        "one process; uvicorn with uvloop, httptools, no access log), the model taught the "
        "stream once first. Redis: a private `redis-server` per configuration with "
        "`appendonly yes`, `appendfsync everysec` (and one run with `always`), no RDB "
        "snapshots, on the local disk. The load generator is benchmarks/loadgen.py with its "
        "connections placed round-robin over the replicas' ports (the part of a load balancer); "
        "warm-up "
        f"{machine['warmup']} s, then a {machine['duration']} s window.",
        "- **CPU** columns: CPU time of the processes over the window, in cores (1.00 = one "
        "core busy the whole window); per-request figures divide it by the requests answered.",
        "- **Replication lag**: with two replicas A and B, a feedback (inline features) to A; "
        "from A's answer (durable and applied on A) until B's `GET /models` shows "
        "`applied_seq` at or past the event's seq, B polled about every millisecond (so a "
        "sample is at most ~1-2 ms late). Idle, then while a predict and a feedback load run "
        "on both replicas, then with the followers polling every 5 ms.",
        "- Nothing is pinned: servers, Redis and the load generator share the machine's "
        "CPUs, as they would on one host. No `onlearn worker` or `onlearn monitor` runs "
        "(no snapshots are written during the runs).",
        "",
        f"### Run of {machine['timestamp']}",
        "",
        throughput_table(results["throughput"]),
        "",
        "Where the CPU went (the whole machine's busy time over each window, split by process):",
        "",
        cpu_table(results["throughput"]),
        "",
    ]
    if results["lag"]:
        lines += ["Replication lag, replica A to replica B:", "", lag_table(results["lag"]), ""]
    notes = reading(results)
    errors = [
        f"- {e['label']} {kind}: {run['errors']} failed requests "
        f"({', '.join(f'{k}: {n}' for k, n in run['error_kinds'].items())})"
        for e in results["throughput"]
        for kind in ("predict", "feedback")
        if (run := e.get(kind)) and run["errors"]
    ]
    if notes or errors:
        lines += ["Reading it:", "", *notes, *errors, ""]
    lines += ["Machine and settings:", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in machine.items() if k not in ("warmup", "duration")]
    lines += ["", END]
    return "\n".join(lines)


def machine_facts(args: argparse.Namespace, bench: Bench, load_before: float) -> dict[str, str]:
    exe = Path(sys.executable)
    exe_text = os.path.relpath(exe, ROOT) if exe.is_relative_to(ROOT) else str(exe)
    command = shlex.join([exe_text, "-m", "benchmarks.replicas", *sys.argv[1:]])
    cpu_model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": command,
        "git": git_state(),
        "CPU count": f"{os.cpu_count()} ({cpu_model}); usable: {len(procs.cpus())}; nothing pinned",
        "Python": f"{platform.python_version()} ({platform.python_implementation()})",
        "Redis": f"redis-server {bench.redis_version}, appendonly yes, appendfsync everysec "
        "unless said, save '' (no RDB), data in /tmp",
        "uvicorn (each replica)": ", ".join(f"{k}={v}" for k, v in UVICORN_SETTINGS.items()),
        "load": (
            f"1-min load average {load_before:.2f} before the run, {os.getloadavg()[0]:.2f} after"
        ),
        "warmup": f"{args.warmup:g}",
        "duration": f"{args.duration:g}",
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["loadgen"]:
        return loadgen_main(argv[1:])
    args = parse_args(argv)
    procs.install_sigterm_handler()
    os.environ["ONLEARN_SECRET_KEY"] = SECRET  # the replicas inherit it
    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="onlearn-replicas-"))
    bench = Bench(args, tmp)
    started = time.perf_counter()
    failed = procs.run_in(tmp, bench.run, keep=args.keep)
    if failed is not None:
        return failed
    wall = time.perf_counter() - started
    machine = machine_facts(args, bench, load_before)
    results = bench.results
    print()
    print(throughput_table(results["throughput"]))
    print()
    print(cpu_table(results["throughput"]))
    if results["lag"]:
        print()
        print(lag_table(results["lag"]))
    print()
    print("\n".join(reading(results)))
    print(f"\n(total {wall:.0f} s)")
    OUT.mkdir(exist_ok=True)
    (OUT / "replicas.json").write_text(json.dumps({"machine": machine, **results}, indent=2))
    if not args.no_write:
        procs.write_section(RESULTS, BEGIN, END, section(results, machine, wall))
        print(f"wrote {os.path.relpath(RESULTS, Path.cwd())}")
    errors = sum(
        run["errors"]
        for e in results["throughput"]
        for kind in ("predict", "feedback")
        if (run := e.get(kind))
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
