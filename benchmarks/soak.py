"""Load and soak: a real ``onlearn serve`` held at half of its measured capacity for a set time,
with computed verdicts on errors, memory and tail latency. ``make soak`` (10 minutes).

    .venv/bin/python -m benchmarks.soak [--duration 600] [--interval 10] [--store sqlite|redis]
                                        [--fraction 0.5] [--feedback-share 0.3] [--no-write]

1. ``onlearn serve --config examples/phishing.toml`` starts as its own process (one server
   process by default, with its training worker and monitor in the background as they run by
   default), on the embedded SQLite store in a fresh temp dir (``--store redis``: a private
   ``redis-server``). The model is taught the Phishing stream once.
2. Capacity: a closed loop (``--capacity-connections`` connections, one request in flight on
   each) of the mixed workload for ``--capacity-duration`` seconds after a warm-up. The workload:
   ``POST /models/phishing/predict`` of a Phishing row, and for ``--feedback-share`` of the
   predictions (30%, drawn with a seeded RNG) ``POST /models/phishing/feedback`` with the
   prediction id and the row's true label (durable: answered once applied), sent as soon as the
   prediction came back. Capacity is the answered requests (both kinds) per second.
3. Soak: an open loop at ``--fraction`` (0.5) of that rate for ``--duration`` seconds. Predicts
   arrive as a Poisson process at ``target / (1 + share)`` per second, whether or not earlier
   answers came back: a request waits for a free connection (more are opened, up to
   ``--max-connections``) and its latency counts from its scheduled arrival, so a stall shows in
   the latency instead of slowing the load down (no coordinated omission). Every ``--interval``
   seconds: answered requests/s, errors (a status other than 200, an answer without
   ``prediction_id`` / ``"applied":true``, a lost connection; a request still unanswered 30 s
   after the end counts too), p50/p99/max latency, the RSS of the server's process tree (from
   /proc), its CPU, the store's size on disk (SQLite file + WAL) and the model's
   ``applied_seq``.
4. Verdicts (the exit code is 1 when one fails):
   - errors: none at all;
   - rate held: the answered rate over the run is within 5% of the target;
   - memory flat: the least-squares slope of the RSS over the second half of the run is at most
     ``--rss-slope`` MiB/min (the first half takes the warm-up: allocator arenas, SQLite's page
     cache, buffers filling to their bounds);
   - p99 stable: the median of the interval p99s of the last quarter of the run is at most
     ``--p99-factor`` (2) times that of the first quarter (the first interval, a warm-up, left
     out): no drift;
   - no stall: no interval's p99 is over ``--stall-factor`` (10) times the median interval p99
     of the run.

The load generator is benchmarks/loadgen.py's connection (HTTP/1.1 keep-alive, every answer
parsed and checked) driven by a scheduler here; it runs in its own process (``python -m
benchmarks.soak loadgen ...``) and prints one JSON line per interval, which this runner pairs with
its own samples of the server. With 2+ CPUs and one server process, the server is pinned to the
first CPU and the load generator to the second (``--no-pin`` to turn it off). The section between
``<!-- soak:start -->`` and ``<!-- soak:end -->`` of benchmarks/RESULTS.md is rewritten (appended
when absent); the raw numbers go to benchmarks/out/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import json
import math
import os
import platform
import random
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import data, procs
from benchmarks import loadgen as lg
from benchmarks.procs import ROOT, BenchError, Client, Server
from benchmarks.run import git_state, scrape

RESULTS = ROOT / "benchmarks" / "RESULTS.md"
OUT = ROOT / "benchmarks" / "out"
BEGIN = "<!-- soak:start -->"
END = "<!-- soak:end -->"
PREDICT = f"/models/{data.MODEL}/predict"
FEEDBACK = f"/models/{data.MODEL}/feedback"
EXPECT = {"predict": b'"prediction_id"', "feedback": b'"applied":true'}
# A shared store (Redis) needs an explicit key to sign the model snapshots.
SECRET = "benchmark-only-secret-key"
# Latency histogram: bucket b holds latencies in [GROWTH**b, GROWTH**(b+1)) microseconds, so
# percentiles pooled over several intervals are within 2% of the exact ones.
GROWTH = 1.02
_LOG_GROWTH = math.log(GROWTH)
DRAIN_S = 30.0
RATE_TOLERANCE = 0.05


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.soak",
        description="Soak onlearn serve at half its measured capacity; verdicts on errors, "
        "memory and p99, written to the soak section of benchmarks/RESULTS.md.",
    )
    p.add_argument("--duration", type=float, default=600.0, help="soak seconds (default 600)")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    p.add_argument("--store", choices=["sqlite", "redis"], default="sqlite")
    p.add_argument("--workers", type=int, default=1, help="onlearn serve --workers")
    p.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        help="one more argument for onlearn serve (repeat), e.g. --serve-arg=--no-worker",
    )
    p.add_argument("--fraction", type=float, default=0.5, help="share of capacity to hold")
    p.add_argument(
        "--feedback-share", type=float, default=0.3, help="predictions followed by feedback"
    )
    p.add_argument("--capacity-duration", type=float, default=10.0, help="closed-loop seconds")
    p.add_argument("--capacity-connections", type=int, default=32)
    p.add_argument("--warmup", type=float, default=2.0, help="closed-loop warm-up seconds")
    p.add_argument(
        "--rate", type=float, help="soak at this many requests/s; skips the capacity run"
    )
    p.add_argument("--connections", type=int, default=16, help="open-loop connections at start")
    p.add_argument("--max-connections", type=int, default=128, help="open-loop connection cap")
    p.add_argument("--rss-slope", type=float, default=1.0, help="memory verdict, MiB/min")
    p.add_argument("--p99-factor", type=float, default=2.0, help="p99 verdict, last/first")
    p.add_argument(
        "--stall-factor", type=float, default=10.0, help="stall verdict, worst/median p99"
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--no-pin", action="store_true", help="do not pin server and load generator")
    p.add_argument("--no-write", action="store_true", help="do not write RESULTS.md")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (store, server log)")
    p.add_argument(
        "--render",
        metavar="JSON",
        help="run nothing: print and write the section again from a soak.json (with the notes "
        "and options given here, when the file does not hold its own)",
    )
    p.add_argument(
        "--note",
        action="append",
        default=[],
        help="a sentence for the reading in RESULTS.md, e.g. about other work (repeat)",
    )
    args = p.parse_args(argv)
    if args.duration < 4 * args.interval:
        p.error("--duration must cover at least 4 intervals (the verdicts compare quarters)")
    if not 0 < args.fraction <= 1 or not 0 <= args.feedback_share <= 1:
        p.error("--fraction must be in (0, 1], --feedback-share in [0, 1]")
    return args


# --- the load generator: a mixed predict + feedback workload, closed or open loop ---------------


def bucket(latency_s: float) -> int:
    return int(math.log(max(latency_s * 1e6, 1.0)) / _LOG_GROWTH)


def hist_percentile(hist: dict[int, int], q: float) -> float | None:
    """The ``q`` quantile (ms) of a latency histogram: the upper bound of its bucket."""
    n = sum(hist.values())
    if not n:
        return None
    rank = max(1, math.ceil(q * n))
    seen = 0
    for b in sorted(hist):
        seen += hist[b]
        if seen >= rank:
            return GROWTH ** (b + 1) / 1000
    return None


def merge(hists: list[dict[int, int]]) -> dict[int, int]:
    out: collections.Counter[int] = collections.Counter()
    for h in hists:
        out.update(h)
    return dict(out)


class Interval:
    """What one interval of the open loop saw, by answer time."""

    def __init__(self) -> None:
        self.ok = collections.Counter()  # by kind
        self.errors = 0
        self.latencies: list[float] = []
        self.hist: collections.Counter[int] = collections.Counter()
        self.arrivals = 0
        self.lags: list[float] = []  # scheduled arrival -> written to a connection

    def add(self, kind: str, latency: float, ok: bool) -> None:
        if ok:
            self.ok[kind] += 1
            self.latencies.append(latency)
            self.hist[bucket(latency)] += 1
        else:
            self.errors += 1


class MixedConnection(lg.Connection):
    """A loadgen connection that knows what it sent (predict or feedback, when it was due)."""

    def __init__(self, gen: MixedLoad) -> None:
        super().__init__(gen)
        self.kind = "predict"
        self.label = False
        self.due = 0.0
        self.then: tuple | None = None  # closed loop: the feedback to send next

    def send(self, request: tuple[str, bytes, bool, float]) -> None:
        self.kind, raw, self.label, self.due = request
        self.busy = True
        self.sent_at = time.perf_counter()
        self.transport.write(raw)

    def send_next(self) -> None:
        self.gen.next_for(self)

    def answered(self, body: bytes) -> None:
        self.gen.on_answer(self, body)


class MixedLoad(lg.LoadGenerator):
    """benchmarks/loadgen.py's generator with a mixed workload: predict, then feedback with the
    prediction id for ``share`` of them. Closed loop (``rate`` None): each connection sends its
    next request when the previous is answered. Open loop: predicts are due at Poisson arrival
    times at ``rate`` per second; latency counts from the due time."""

    def __init__(
        self,
        rows: list[tuple[bytes, bool]],
        *,
        share: float,
        seed: int,
        rate: float | None,
        interval: float,
        max_connections: int,
        **kw: Any,
    ) -> None:
        super().__init__([], once=False, status=200, expect=None, **kw)
        self.rows = rows
        self.share = share
        self.rng = random.Random(seed)
        self.arrival_rng = random.Random(seed + 1)
        self.rate = rate
        self.interval_s = interval
        self.max_connections = max_connections
        self.window_kinds: collections.Counter[str] = collections.Counter()
        # open loop
        self.idle: collections.deque[MixedConnection] = collections.deque()
        self.backlog: collections.deque[tuple[str, bytes, bool, float]] = collections.deque()
        self.opening = 0
        self.cur = Interval()
        self.drain = Interval()
        self.ending = False
        self.max_backlog = 0
        self.peak_connections = 0

    def feedback_request(self, body: bytes, label: bool, due: float) -> tuple | None:
        try:
            pid = json.loads(body)["prediction_id"]
        except (ValueError, KeyError, TypeError):
            return None
        raw = lg.build_request(
            self.host,
            self.port,
            FEEDBACK,
            data.dumps({"prediction_id": pid, "label": label}).encode(),
        )
        return ("feedback", raw, label, due)

    def predict_request(self, due: float) -> tuple[str, bytes, bool, float]:
        raw, label = self.rows[self.index % len(self.rows)]
        self.index += 1
        return ("predict", raw, label, due)

    # Called by connections

    def next_for(self, conn: MixedConnection) -> None:
        if self.stopping and (self.rate is None or not self.backlog):
            conn.busy = False
            self._check_done()
            return
        if self.rate is None:
            request, conn.then = conn.then, None
            self.sent += 1
            conn.send(request or self.predict_request(time.perf_counter()))
        elif self.backlog:
            conn.send(self.backlog.popleft())
        else:
            conn.busy = False
            self.idle.append(conn)
            self._check_done()

    def on_answer(self, conn: MixedConnection, body: bytes) -> None:
        now = time.perf_counter()
        kind, status = conn.kind, conn.status
        self.answers += 1
        self.statuses[status] += 1
        ok = status == 200 and EXPECT[kind] in body
        if not ok:
            # Counted in its interval below, with the answers.
            super().error(f"{kind}: status {status}" if status != 200 else f"{kind}: body", body)
        latency = now - conn.due
        if self.rate is None:
            if self.phase == "measure":
                if ok:
                    self.window_ok += 1
                    self.window_kinds[kind] += 1
                    self.latencies.append(latency)
                else:
                    self.window_errors += 1
        else:
            (self.drain if self.ending else self.cur).add(kind, latency, ok)
        if ok and kind == "predict" and not self.stopping and self.rng.random() < self.share:
            request = self.feedback_request(body, conn.label, now)
            if request is None:
                self.error("predict: no prediction_id", body)
            elif self.rate is None:
                conn.then = request
            else:
                self.dispatch(request)

    def error(self, kind: str, body: bytes = b"") -> None:
        """A transport error: a lost connection, a malformed answer, a failed connect."""
        super().error(kind, body)
        if self.rate is not None:
            (self.drain if self.ending else self.cur).errors += 1

    def lost(self, conn: lg.Connection) -> None:
        try:
            self.idle.remove(conn)  # type: ignore[arg-type]
        except ValueError:
            pass
        super().lost(conn)

    async def _connect(self) -> None:
        await self.loop.create_connection(lambda: MixedConnection(self), self.host, self.port)
        self.peak_connections = max(self.peak_connections, len(self.live))

    def _check_done(self) -> None:
        if self.rate is None:
            super()._check_done()
        elif self.ending and not self.backlog and not any(c.busy for c in self.live):
            if not self.finished.done():
                self.finished.set_result(None)

    # Open loop

    def dispatch(self, request: tuple[str, bytes, bool, float]) -> None:
        if self.idle:
            conn = self.idle.popleft()
            conn.send(request)
            # How late the timer let us send (a wait for a connection shows in the backlog).
            self.cur.lags.append(conn.sent_at - conn.due)
            return
        self.backlog.append(request)
        self.max_backlog = max(self.max_backlog, len(self.backlog))
        if len(self.live) + self.opening < self.max_connections and self.opening < 4:
            self.opening += 1
            self.loop.create_task(self._open_one())

    async def _open_one(self) -> None:
        try:
            await self._connect()
        except OSError as e:
            self.error(f"connect: {e.__class__.__name__}")
        finally:
            self.opening -= 1

    def _tick(self) -> None:
        now = time.perf_counter()
        while self.next_due <= now and self.next_due < self.t_stop:
            self.cur.arrivals += 1
            self.sent += 1
            self.dispatch(self.predict_request(self.next_due))
            self.next_due += self.arrival_rng.expovariate(self.rate)
        if self.next_due < self.t_stop:
            self.loop.call_later(max(0.0, self.next_due - time.perf_counter()), self._tick)

    def _emit(self, k: int) -> None:
        # The event loop's timers may fire a few ms early (uvloop measures the delay from the
        # time cached at the start of its iteration). The last interval must not end before
        # every arrival due in it was dispatched: an arrival sent after the end was declared
        # could be cut off by the end-of-run accounting and counted as unanswered.
        early = self.t0 + k * self.interval_s - time.perf_counter()
        if early > 0 or (k == self.n_intervals and self.next_due < self.t_stop):
            self.loop.call_later(max(early, 0.001), self._emit, k)
            return
        cur, self.cur = self.cur, Interval()
        if k == self.n_intervals:
            self.ending = True
            self.stopping = True
        else:
            self.loop.call_later(
                self.t0 + (k + 1) * self.interval_s - time.perf_counter(), self._emit, k + 1
            )
        line = interval_record(cur, self.interval_s)
        line.update(
            interval=k,
            t=round(time.perf_counter() - self.t0, 3),
            backlog=len(self.backlog),
            connections=len(self.live),
            loadgen_cpu_s=lg.own_cpu_seconds() - self.own_start,
        )
        print(json.dumps(line), flush=True)
        if self.ending:
            self._check_done()

    async def run_open(self, duration: float) -> dict[str, Any]:
        self.loop = asyncio.get_running_loop()
        self.finished = self.loop.create_future()
        await asyncio.gather(*(self._connect() for _ in range(self.connections)))
        self.n_intervals = round(duration / self.interval_s)
        self.phase = "measure"
        self.t0 = self.t_start = time.perf_counter()
        self.own_start = lg.own_cpu_seconds()
        self.t_stop = self.t0 + self.n_intervals * self.interval_s
        self.next_due = self.t0
        self._tick()
        self.loop.call_later(self.interval_s, self._emit, 1)
        try:
            await asyncio.wait_for(asyncio.shield(self.finished), duration + DRAIN_S + 5)
        except TimeoutError:
            pass
        now = time.perf_counter()
        waiting = [("backlog", r[0], now - r[3]) for r in self.backlog]
        waiting += [("sent", c.kind, now - c.sent_at) for c in self.live if c.busy]
        unanswered = len(waiting)
        if unanswered:
            self.errors += unanswered
            self.error_kinds["unanswered 30 s after the end"] += unanswered
        for conn in list(self.live):
            conn.busy = False
            conn.transport.close()
        return {
            "final": True,
            "drain": interval_record(self.drain, 1.0),
            "unanswered": unanswered,
            # Where each one was and for how long: a request the server never answered has waited
            # the whole drain; one that is only a few ms old points at this load generator.
            "unanswered_samples": [
                {"where": w, "kind": k, "age_s": round(age, 3)} for w, k, age in waiting[:20]
            ],
            "sent": self.sent,
            "answers": self.answers,
            "errors": self.errors,
            "error_kinds": dict(self.error_kinds),
            "error_samples": self.samples,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "max_backlog": self.max_backlog,
            "peak_connections": self.peak_connections,
        }

    def report(self) -> dict[str, Any]:
        out = super().report()
        out["by_kind"] = dict(self.window_kinds)
        return out


def interval_record(iv: Interval, seconds: float) -> dict[str, Any]:
    lat = sorted(iv.latencies)
    lags = sorted(iv.lags)

    def pct(xs: list[float], q: float) -> float | None:
        return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))] * 1000 if xs else None

    return {
        "arrivals": iv.arrivals,
        "ok": sum(iv.ok.values()),
        "ok_by_kind": dict(iv.ok),
        "rps": sum(iv.ok.values()) / seconds,
        "errors": iv.errors,
        "p50_ms": pct(lat, 0.5),
        "p99_ms": pct(lat, 0.99),
        "max_ms": lat[-1] * 1000 if lat else None,
        "lag_p99_ms": pct(lags, 0.99),
        "hist": dict(iv.hist),
    }


def loadgen_main(argv: list[str]) -> int:
    """The load generator child: ``python -m benchmarks.soak loadgen --port P ...``."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.soak loadgen")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rate", type=float, help="open loop at this many predicts/s")
    p.add_argument("--share", type=float, required=True)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--max-connections", type=int, default=128)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--interval", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--cpu", type=int)
    p.add_argument("--server-pid", type=int)
    args = p.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    rows = [
        (lg.build_request("127.0.0.1", args.port, PREDICT, data.dumps({"features": x}).encode()), y)
        for x, y in data.phishing()
    ]
    gen = MixedLoad(
        rows,
        share=args.share,
        seed=args.seed,
        rate=args.rate,
        interval=args.interval,
        max_connections=args.max_connections,
        host="127.0.0.1",
        port=args.port,
        connections=args.connections,
        warmup=args.warmup,
        duration=args.duration,
        server_pid=args.server_pid,
    )
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    report = runner(gen.run() if args.rate is None else gen.run_open(args.duration))
    print(json.dumps(report), flush=True)
    return 0


# --- the server and its samples ------------------------------------------------------------------


class Serve(Server):
    """``onlearn serve --config examples/phishing.toml`` on a free port, as a user runs it."""

    def __init__(
        self,
        log_path: Path,
        *,
        store: str,
        workers: int,
        extra: list[str],
        cpu: int | None,
        env: dict[str, str],
    ) -> None:
        self.kind = "onlearn serve"
        self.port = procs.free_port()
        self.log_path = log_path
        self.args = ["-m", "onlearn.tools.cli", "serve", "--config", data.CONFIG, "--store", store]
        self.args += ["--port", str(self.port), "--log-level", "warning"]
        if workers != 1:
            self.args += ["--workers", str(workers)]
        self.args += extra
        self._log = log_path.open("wb")
        # Pinned before Python starts, so that every thread and child inherits the mask.
        pin = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
        self.proc = procs.spawn(
            self.args, stdout=self._log, stderr=subprocess.STDOUT, preexec_fn=pin, env=env
        )


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def machine_busy_seconds() -> float | None:
    """CPU time the whole machine spent busy so far (all CPUs, every process), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    return sum(int(fields[i]) for i in (1, 2, 3, 6, 7, 8)) / os.sysconf("SC_CLK_TCK")


class Sampler:
    """Samples of the server: RSS and CPU of its process tree, store size, metrics."""

    def __init__(self, server: Serve, store_path: Path | None, redis: Any | None) -> None:
        self.server = server
        self.store_path = store_path
        self.redis = redis
        self.client = Client(server.port, timeout=10.0)

    def store_bytes(self) -> int:
        if self.redis is not None:
            info = self.redis.client.info()
            return int(info.get("used_memory", 0)) + int(info.get("aof_current_size", 0))
        total = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                total += os.path.getsize(f"{self.store_path}{suffix}")
            except OSError:
                pass
        return total

    def __call__(self) -> dict[str, Any]:
        pids = lg.process_tree(self.server.pid)
        m = scrape(self.client)
        out = {
            "at": time.perf_counter(),
            "processes": len(pids),
            "rss_bytes": sum(rss_bytes(p) for p in pids),
            "cpu_s": lg.server_cpu_seconds(self.server.pid) or 0.0,
            "machine_busy_s": machine_busy_seconds(),
            "store_bytes": self.store_bytes(),
            "applied_seq": int(m.get("onlearn_applied_seq", 0)),
            "committed_events": int(m.get("onlearn_log_committed_events", 0)),
            "records_pending": int(m.get("onlearn_prediction_records_pending", 0)),
            "records_dropped": int(m.get("onlearn_prediction_records_dropped", 0)),
        }
        if self.redis is not None:
            out["redis_rss_bytes"] = rss_bytes(self.redis.pid)
        return out

    def close(self) -> None:
        self.client.close()


# --- the run -------------------------------------------------------------------------------------


class Soak:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        cpus = procs.cpus()
        self.pinned = not args.no_pin and args.workers == 1 and len(cpus) >= 2
        self.server_cpu = cpus[0] if self.pinned else None
        self.load_cpu = cpus[1] if self.pinned else None
        self.results: dict[str, Any] = {}
        self.redis = None
        self.server: Serve | None = None

    def log(self, msg: str) -> None:
        print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", flush=True)

    def start(self) -> None:
        env = dict(os.environ)
        if self.args.store == "redis":
            # The private redis-server of the replicas benchmark (appendonly, everysec).
            from benchmarks.replicas import RedisServer

            self.redis = RedisServer("redis-server", self.tmp / "redis")
            store, self.store_path = self.redis.url, None
            env["ONLEARN_SECRET_KEY"] = SECRET
            self.results["redis_version"] = self.redis.version
        else:
            self.store_path = self.tmp / "store" / "onlearn.db"
            self.store_path.parent.mkdir()
            store = f"sqlite:///{self.store_path}"
        self.server = Serve(
            self.tmp / "serve.log",
            store=store,
            workers=self.args.workers,
            extra=self.args.serve_arg,
            cpu=self.server_cpu,
            env=env,
        )
        self.server.wait_ready()
        shown = [
            a.replace(str(self.tmp), "$TMP").replace(str(self.server.port), "$PORT")
            for a in self.server.args[2:]
        ]
        self.results["server_command"] = "onlearn " + " ".join(shown)
        client = Client(self.server.port)
        try:
            client.post(f"{FEEDBACK}/batch", data.training_body())
        finally:
            client.close()
        self.sampler = Sampler(self.server, self.store_path, self.redis)

    def loadgen_args(self, **kw: Any) -> list[str]:
        args = ["-m", "benchmarks.soak", "loadgen", "--port", str(self.server.port)]
        args += ["--share", str(self.args.feedback_share), "--seed", str(self.args.seed)]
        args += ["--server-pid", str(self.server.pid)]
        if self.load_cpu is not None:
            args += ["--cpu", str(self.load_cpu)]
        for key, value in kw.items():
            args += [f"--{key.replace('_', '-')}", str(value)]
        return args

    def capacity(self) -> float:
        a = self.args
        self.log(
            f"capacity: closed loop, {a.capacity_connections} connections, "
            f"{a.warmup:g} s warm-up + {a.capacity_duration:g} s"
        )
        before = self.sampler()
        run = procs.run_json(
            self.loadgen_args(
                connections=a.capacity_connections,
                warmup=a.warmup,
                duration=a.capacity_duration,
            ),
            timeout=a.warmup + a.capacity_duration + 60,
        )
        run["server_before"], run["server_after"] = before, self.sampler()
        self.results["capacity"] = run
        lat = run["latency_ms"]
        kinds = run["by_kind"]
        self.log(
            f"  {run['rps']:,.0f} req/s ({kinds.get('predict', 0) / run['window_s']:,.0f} predict, "
            f"{kinds.get('feedback', 0) / run['window_s']:,.0f} feedback), p50 {_ms(lat['p50'])}, "
            f"p99 {_ms(lat['p99'])}, errors {run['errors']}, "
            f"server CPU {_pct(run['server_cpu_util'])}"
        )
        if run["errors"]:
            self.log(f"  errors: {run['error_kinds']} {run['error_samples'][:2]}")
        return run["rps"]

    def soak(self, target: float) -> None:
        a = self.args
        share = a.feedback_share
        predict_rate = target / (1 + share)
        self.results["target_rps"] = target
        self.results["predict_rate"] = predict_rate
        self.log(
            f"soak: open loop, {target:,.0f} req/s ({predict_rate:,.0f} predict/s Poisson + "
            f"{share:.0%} feedback) for {a.duration:g} s, a sample every {a.interval:g} s"
        )
        start = self.sampler()
        proc = procs.spawn(
            self.loadgen_args(
                rate=predict_rate,
                duration=a.duration,
                interval=a.interval,
                connections=a.connections,
                max_connections=a.max_connections,
            ),
            stdout=subprocess.PIPE,
        )
        rows: list[dict[str, Any]] = []
        final: dict[str, Any] = {}
        server_exit = None
        try:
            for line in proc.stdout:
                record = json.loads(line)
                if record.get("final"):
                    final = record
                    break
                record["server"] = self.sampler() if self.server.proc.poll() is None else None
                if record["server"] is None:
                    server_exit = self.server.proc.returncode
                rows.append(record)
                self.log("  " + interval_line(record, rows, start, a.interval))
            proc.wait(timeout=60)
        finally:
            procs.stop(proc, grace_s=2.0)
        if not final:
            raise BenchError(
                f"the load generator ended without its report (exit {proc.returncode})"
            )
        if final["unanswered"]:
            self.log(f"  unanswered at the end: {final['unanswered_samples']}")
        self.results["soak"] = {
            "start": start,
            "intervals": rows,
            "final": final,
            "server_exit": server_exit,
            "end": self.sampler() if self.server.proc.poll() is None else None,
        }

    def run(self) -> None:
        self.start()
        if self.args.rate:
            self.results["capacity"] = None
            target = self.args.rate
        else:
            target = self.capacity() * self.args.fraction
        self.soak(target)
        self.results["verdicts"] = verdicts(self.results, self.args)

    def close(self) -> None:
        if self.server is not None:
            if hasattr(self, "sampler"):
                self.sampler.close()
            self.server.close()
        if self.redis is not None:
            self.redis.close()


def interval_line(r: dict[str, Any], rows: list[dict], start: dict, interval: float) -> str:
    s = r["server"] or {}
    prev = rows[-2]["server"] if len(rows) > 1 else start
    cpu = (s["cpu_s"] - prev["cpu_s"]) / interval if s and prev else None
    before = rows[-2]["loadgen_cpu_s"] if len(rows) > 1 else 0.0
    load_cpu = (r["loadgen_cpu_s"] - before) / interval
    return (
        f"t={r['interval'] * interval:5.0f}s {r['rps']:7,.0f} req/s  errors {r['errors']}  "
        f"p50 {_ms(r['p50_ms'])}  p99 {_ms(r['p99_ms'])}  max {_ms(r['max_ms'])}  "
        f"RSS {_mib(s.get('rss_bytes'))}  CPU {_pct(cpu)} (loadgen {_pct(load_cpu)})  store {_mib(s.get('store_bytes'))}  "
        f"applied_seq {s.get('applied_seq', '-')}  backlog {r['backlog']}  conns {r['connections']}"
    )


# --- verdicts ------------------------------------------------------------------------------------


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``(x, y)`` points."""
    if len(points) < 2:
        return None
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if not sxx:
        return None
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def verdicts(results: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    soak = results["soak"]
    rows = soak["intervals"]
    final = soak["final"]
    n = len(rows)
    q = max(1, n // 4)
    seconds = n * args.interval
    answered = sum(r["ok"] for r in rows)
    achieved = answered / seconds if seconds else 0.0
    target = results["target_rps"]

    # Memory: RSS (MiB) against time (minutes) over the second half.
    half = [r for r in rows[n // 2 :] if r["server"]]
    points = [(r["interval"] * args.interval / 60, r["server"]["rss_bytes"] / 2**20) for r in half]
    rss_slope = slope(points)
    # The rise the fit gives over the second half: under 1 MiB (one allocator arena or so) is
    # not a trend, whatever the slope of a short run says.
    rss_rise = rss_slope * (points[-1][0] - points[0][0]) if rss_slope is not None else None
    rss = [soak["start"]["rss_bytes"]] + [r["server"]["rss_bytes"] for r in rows if r["server"]]
    bytes_per_request = (
        rss_slope * 2**20 / (achieved * 60) if rss_slope is not None and achieved else None
    )

    # Tail latency. Drift: the median of the interval p99s of the last quarter against that of
    # the first quarter (the first interval, a warm-up, left out); medians, so that one stall
    # does not make the baseline. Stalls: no interval's p99 far above the run's median.
    first = rows[1 : 1 + q] if n > q + 1 else rows[:q]
    last = rows[n - q :]
    p99_first = _median([r["p99_ms"] for r in first])
    p99_last = _median([r["p99_ms"] for r in last])
    p99_ratio = p99_last / p99_first if p99_first and p99_last else None
    p99_median = _median([r["p99_ms"] for r in rows])
    worst = max(rows, key=lambda r: r["p99_ms"] or 0.0) if rows else None
    stall_ratio = worst["p99_ms"] / p99_median if worst and worst["p99_ms"] and p99_median else None

    checks = {
        "errors": {
            "value": final["errors"],
            "pass": final["errors"] == 0 and soak["server_exit"] is None,
            "rule": "no error at all (any status but 200, bad body, lost connection, unanswered)",
        },
        "rate held": {
            "value": achieved,
            "pass": achieved >= target * (1 - RATE_TOLERANCE),
            "rule": f"answered req/s over the run >= {1 - RATE_TOLERANCE:.0%} of the target",
        },
        "memory flat": {
            "value": rss_slope,
            "pass": rss_slope is not None and (rss_slope <= args.rss_slope or rss_rise <= 1.0),
            "rule": f"RSS slope over the second half <= {args.rss_slope:g} MiB/min (or a rise "
            "under 1 MiB over it)",
        },
        "p99 stable": {
            "value": p99_ratio,
            "pass": p99_ratio is not None and p99_ratio <= args.p99_factor,
            "rule": f"median interval p99 of the last quarter <= {args.p99_factor:g} x that of "
            "the first quarter",
        },
        "no stall": {
            "value": stall_ratio,
            "pass": stall_ratio is not None and stall_ratio <= args.stall_factor,
            "rule": f"every interval's p99 <= {args.stall_factor:g} x the median interval p99 "
            f"of the run ({_ms(p99_median)})",
        },
    }
    return {
        "checks": checks,
        "passed": all(c["pass"] for c in checks.values()),
        "achieved_rps": achieved,
        "answered": answered,
        "rss_start": rss[0] if rss else None,
        "rss_end": rss[-1] if rss else None,
        "rss_min": min(rss) if rss else None,
        "rss_max": max(rss) if rss else None,
        "rss_slope_mib_per_min": rss_slope,
        "rss_rise_second_half": rss_rise,
        "rss_slope_bytes_per_request": bytes_per_request,
        "p99_median_ms": p99_median,
        "worst_interval": worst["interval"] if worst else None,
        "p99_first_ms": p99_first,
        "p99_last_ms": p99_last,
        "p99_run_ms": hist_percentile(merge([_hist(r) for r in rows]), 0.99),
        "p50_run_ms": hist_percentile(merge([_hist(r) for r in rows]), 0.5),
        "max_ms": max((r["max_ms"] or 0.0 for r in rows), default=None),
        "quarter": q,
    }


def _median(xs: list[float | None]) -> float | None:
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def _hist(r: dict[str, Any]) -> dict[int, int]:
    return {int(k): v for k, v in r["hist"].items()}


# --- report --------------------------------------------------------------------------------------


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f} ms"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.0f}%"


def _mib(x: float | None) -> str:
    return "-" if x is None else f"{x / 2**20:.1f} MiB"


def grouped(results: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    """The intervals as table rows: one a minute when the run is 5 minutes or more."""
    soak = results["soak"]
    rows = soak["intervals"]
    g = max(1, round(60 / args.interval)) if args.duration >= 300 else 1
    out = []
    prev = soak["start"]
    for i in range(0, len(rows), g):
        chunk = rows[i : i + g]
        last = chunk[-1]["server"]
        seconds = len(chunk) * args.interval
        hist = merge([_hist(r) for r in chunk])
        cpu = (last["cpu_s"] - prev["cpu_s"]) / seconds if last and prev else None
        busy = (
            (last["machine_busy_s"] - prev["machine_busy_s"]) / seconds
            if last and prev and last["machine_busy_s"] is not None
            else None
        )
        out.append(
            {
                "t": chunk[-1]["interval"] * args.interval,
                "rps": sum(r["ok"] for r in chunk) / seconds,
                "errors": sum(r["errors"] for r in chunk),
                "p50": hist_percentile(hist, 0.5),
                "p99": hist_percentile(hist, 0.99),
                "max": max((r["max_ms"] or 0.0) for r in chunk),
                "rss": last["rss_bytes"] if last else None,
                "cpu": cpu,
                "machine": busy,
                "store": last["store_bytes"] if last else None,
                "applied_seq": last["applied_seq"] if last else None,
                "backlog": max(r["backlog"] for r in chunk),
            }
        )
        prev = last or prev
    return out


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| t (s) | req/s | errors | p50 | p99 | max | server RSS | server CPU | machine CPU "
        "| store | applied_seq | backlog |"
    )
    lines = [head, "|" + "---:|" * 12]
    for r in rows:
        lines.append(
            f"| {r['t']:.0f} | {r['rps']:,.0f} | {r['errors']} | {_ms(r['p50'])} | "
            f"{_ms(r['p99'])} | {_ms(r['max'])} | {_mib(r['rss'])} | {_pct(r['cpu'])} | "
            f"{_cores(r['machine'])} | {_mib(r['store'])} | {r['applied_seq']} | {r['backlog']} |"
        )
    return "\n".join(lines)


def _cores(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f} cores"


def verdict_table(v: dict[str, Any]) -> str:
    fmt = {
        "errors": lambda x: f"{x}",
        "rate held": lambda x: f"{x:,.0f} req/s",
        "memory flat": lambda x: "-" if x is None else f"{x:+.2f} MiB/min",
        "p99 stable": lambda x: "-" if x is None else f"{x:.2f} x",
        "no stall": lambda x: "-" if x is None else f"{x:.1f} x",
    }
    lines = ["| verdict | measured | rule | result |", "|---|---:|---|---|"]
    for name, c in v["checks"].items():
        lines.append(
            f"| {name} | {fmt[name](c['value'])} | {c['rule']} | {'PASS' if c['pass'] else 'FAIL'} |"
        )
    return "\n".join(lines)


def reading(results: dict[str, Any], args: argparse.Namespace) -> list[str]:
    v = results["verdicts"]
    soak = results["soak"]
    rows = soak["intervals"]
    final = soak["final"]
    start, end = soak["start"], soak["end"] or (rows[-1]["server"] if rows else None)
    out = []
    cap = results.get("capacity")
    if cap:
        out.append(
            f"Capacity (closed loop, {args.capacity_connections} connections): "
            f"{cap['rps']:,.0f} req/s of the mix, server CPU {_pct(cap['server_cpu_util'])}; "
            f"the soak held {args.fraction:.0%} of it, {results['target_rps']:,.0f} req/s, and "
            f"answered {v['achieved_rps']:,.0f} req/s on average."
        )
    kinds = collections.Counter()
    for r in rows:
        kinds.update(r["ok_by_kind"])
    out.append(
        f"{v['answered']:,} requests answered in the run ({kinds['predict']:,} predict, "
        f"{kinds['feedback']:,} feedback), {final['errors']} errors"
        + (f" ({final['error_kinds']})" if final["errors"] else "")
        + f"; at most {final['max_backlog']:,} requests waited for a free connection at once, "
        f"and at most {final['peak_connections']} connections were open."
    )
    if final.get("unanswered"):
        ages = ", ".join(
            f"{s['kind']} {s['where']} {s['age_s']:g} s" for s in final["unanswered_samples"]
        )
        out.append(
            f"Unanswered at the end: {final['unanswered']} (kind, where it was, its age: {ages})."
        )
    if start and end:
        applied = end["applied_seq"] - start["applied_seq"]
        out.append(
            f"The log advanced by {applied:,} events applied (the feedback, plus the worker's and "
            f"monitor's control events) for {kinds['feedback']:,} feedback answered as applied; "
            f"{end['records_pending']} prediction records pending at the end, "
            f"{end['records_dropped'] - start['records_dropped']} dropped."
        )
        growth = end["store_bytes"] - start["store_bytes"]
        if v["answered"]:
            out.append(
                f"Store: {_mib(start['store_bytes'])} -> {_mib(end['store_bytes'])}, "
                f"{growth / max(kinds['predict'], 1):,.0f} bytes per prediction: prediction "
                "records are kept for the model's prediction_ttl_s (a week in "
                "examples/phishing.toml) and the log grows with every label, so the store grows "
                "by design; memory is what has to stay flat."
                + (
                    " On Redis the store is memory (used_memory plus the AOF file here): size it "
                    "for prediction_ttl_s times the prediction rate."
                    if args.store == "redis"
                    else ""
                )
            )
    out.append(
        f"Server RSS: {_mib(v['rss_start'])} before the soak, {_mib(v['rss_end'])} at its end "
        f"(min {_mib(v['rss_min'])}, max {_mib(v['rss_max'])}); slope over the second half "
        + (
            f"{v['rss_slope_mib_per_min']:+.2f} MiB/min, that is "
            f"{v['rss_slope_bytes_per_request']:+.1f} bytes per request. A leak of one small "
            "object per request (a dict is 200+ bytes) would show as a steady slope above "
            f"{200 * v['achieved_rps'] * 60 / 2**20:.0f} MiB/min at this rate."
            if v["rss_slope_mib_per_min"] is not None
            and v["rss_slope_bytes_per_request"] is not None
            else "-."
        )
    )
    out.append(
        f"Latency from the scheduled arrival: p50 {_ms(v['p50_run_ms'])}, p99 "
        f"{_ms(v['p99_run_ms'])} over the run, max {_ms(v['max_ms'])}; median p99 of an "
        f"interval {_ms(v['p99_median_ms'])} (first quarter {_ms(v['p99_first_ms'])}, last "
        f"{_ms(v['p99_last_ms'])})."
    )
    last = rows[-1]["server"] if rows else None
    if start and last and start["machine_busy_s"] is not None:
        seconds = len(rows) * args.interval
        machine = (last["machine_busy_s"] - start["machine_busy_s"]) / seconds
        server = (last["cpu_s"] - start["cpu_s"]) / seconds
        loadgen = rows[-1]["loadgen_cpu_s"] / seconds
        out.append(
            f"CPU over the soak: the server {server:.2f} cores, the load generator "
            f"{loadgen:.2f}, the whole machine {machine:.2f} of {os.cpu_count()}: other work "
            f"took about {max(0.0, machine - server - loadgen):.2f} cores."
        )
    for e in episodes(rows, args):
        out.append(
            f"Stalled from t={e['from']:g} s to t={e['to']:g} s (intervals whose p99 is over "
            f"{args.stall_factor:g} x the median interval p99 of the run, {_ms(e['median_p99'])}): "
            f"p50 up to {_ms(e['p50'])}, p99 up to {_ms(e['p99'])}, up to {e['backlog']:,} "
            f"requests waiting for a connection at an interval's end, server CPU up to "
            f"{_pct(e['cpu'])} of an interval, RSS "
            f"{_mib(e['rss_before'])} -> {_mib(e['rss_after'])}."
        )
    lag = [r["lag_p99_ms"] for r in rows if r["lag_p99_ms"] is not None]
    if lag:
        out.append(
            f"The scheduler wrote requests up to {max(lag):.1f} ms after their arrival time (p99 "
            "per interval; event loop timers have millisecond resolution): counted in the latency."
        )
    return out


def episodes(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Runs of consecutive intervals whose p99 is over ``stall_factor`` x the median interval p99
    (stalls and overloads)."""
    median = _median([r["p99_ms"] for r in rows])
    if median is None:
        return []
    out: list[dict[str, Any]] = []
    prev = None
    for i, r in enumerate(rows):
        bad = r["p99_ms"] is not None and r["p99_ms"] > args.stall_factor * median
        if bad:
            s, before = r["server"] or {}, (rows[i - 1]["server"] if i else None) or {}
            cpu = (s["cpu_s"] - before["cpu_s"]) / args.interval if s and before else None
            if prev is None or prev != i - 1:
                out.append(
                    {
                        "from": (r["interval"] - 1) * args.interval,
                        "median_p99": median,
                        "p50": 0.0,
                        "p99": 0.0,
                        "backlog": 0,
                        "cpu": None,
                        "rss_before": before.get("rss_bytes"),
                    }
                )
            e = out[-1]
            e["to"] = r["interval"] * args.interval
            e["p50"] = max(e["p50"], r["p50_ms"] or 0.0)
            e["p99"] = max(e["p99"], r["p99_ms"])
            e["backlog"] = max(e["backlog"], r["backlog"])
            if cpu is not None:
                e["cpu"] = max(e["cpu"] or 0.0, cpu)
            e["rss_after"] = s.get("rss_bytes")
            prev = i
    return out


def section(results: dict[str, Any], machine: dict[str, str], args: argparse.Namespace) -> str:
    v = results["verdicts"]
    parts = [
        BEGIN,
        "## Load and soak: half of capacity for a set time",
        "",
        "`make soak` ([soak.py](soak.py)): a real `onlearn serve` (examples/phishing.toml, "
        "training worker and monitor in the background as by default), its capacity measured "
        "by a closed loop of the mixed workload (predict; feedback with the prediction id for "
        f"{args.feedback_share:.0%} of them, durable), then an open loop (Poisson arrivals, "
        "latency from the scheduled arrival, so no coordinated omission) at "
        f"{args.fraction:.0%} of that capacity. Verdicts are computed; the command exits 1 "
        "when one fails.",
        "",
        f"### Run of {machine['timestamp']}: "
        + (
            "all verdicts pass"
            if v["passed"]
            else "FAILED: " + ", ".join(k for k, c in v["checks"].items() if not c["pass"])
        ),
        "",
        verdict_table(v),
        "",
        "Why these rules: the first half of the run takes the warm-up (allocator arenas, SQLite "
        "page cache, bounded buffers filling up), so the memory slope is fitted on the second "
        "half only; a leak grows with the requests, hence a steady slope. The p99 rules look at the "
        "p99 of each interval: a drift moves their median from the first quarter (the first "
        "interval, a warm-up, left out) to the last; a stall makes one of them stand far above "
        "the median of the run. Pooled p99s (histograms, 2% buckets) are in the reading.",
        "",
        "Reading:",
        "",
        *(f"- {x}" for x in reading(results, args)),
        *(f"- {note}" for note in args.note),
        "",
        "Per "
        + ("minute" if args.duration >= 300 else f"{args.interval:g} s interval")
        + " (t is the end of the row; RSS, store and applied_seq sampled then; server CPU is "
        "the server's process tree, machine CPU every process on the machine: the difference "
        "with the server and the load generator is other work):",
        "",
        table(grouped(results, args)),
        "",
        "Machine and settings:",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {val} |" for k, val in machine.items()),
        END,
    ]
    return "\n".join(parts) + "\n"


def machine_facts(
    args: argparse.Namespace, soak: Soak, load_before: float, git: str
) -> dict[str, str]:
    exe = Path(sys.executable)
    exe_text = os.path.relpath(exe, ROOT) if exe.is_relative_to(ROOT) else str(exe)
    argv, shown = sys.argv[1:], []
    while argv:  # the notes are printed in the reading, not in the command
        arg = argv.pop(0)
        if arg == "--note":
            argv = argv[1:]
        elif not arg.startswith("--note="):
            shown.append(arg)
    command = shlex.join([exe_text, "-m", "benchmarks.soak", *shown])
    command = f"`{command}`"
    if os.environ.get("MAKELEVEL"):
        command = f"`make soak` ({command})"
    cpu_model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cap = args.capacity_connections
    facts = {
        "timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": command,
        "git": git,
        "CPU count": f"{os.cpu_count()} ({cpu_model}); usable: {len(procs.cpus())}",
        "pinning": (
            f"server on CPU {soak.server_cpu}, load generator on CPU {soak.load_cpu}"
            if soak.pinned
            else "none"
        ),
        "Python": f"{platform.python_version()} ({platform.python_implementation()})",
        "OS": platform.platform(),
        "server": f"`{soak.results.get('server_command', '-')}`",
        "store": (
            f"Redis {soak.results.get('redis_version', '?')} (private, appendonly everysec)"
            if args.store == "redis"
            else "SQLite in a fresh temp dir"
        ),
        "capacity run": (
            f"closed loop, {cap} connections, {args.warmup:g} s warm-up + "
            f"{args.capacity_duration:g} s"
            if not args.rate
            else f"skipped (--rate {args.rate:g})"
        ),
        "soak": (
            f"{args.duration:g} s at "
            + (f"{args.rate:g} req/s" if args.rate else f"{args.fraction:.0%} of capacity")
            + f", feedback share "
            f"{args.feedback_share:.0%}, a sample every {args.interval:g} s, "
            f"{args.connections}-{args.max_connections} connections, seed {args.seed}"
        ),
        "load": (
            f"1-min load average {load_before:.2f} before the run, {os.getloadavg()[0]:.2f} "
            "after it (the run's own processes count in the second)"
        ),
    }
    return facts


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["loadgen"]:
        return loadgen_main(argv[1:])
    args = parse_args(argv)
    if args.render:
        return render(args)
    procs.install_sigterm_handler()
    load_before = os.getloadavg()[0]
    # The code the run started from: files edited while it runs are not what it measured.
    git = git_state()
    tmp = Path(tempfile.mkdtemp(prefix="onlearn-soak-"))
    soak = Soak(args, tmp)
    started = time.perf_counter()

    def server_log() -> None:
        if soak.server is not None:
            print(soak.server.log_tail(), file=sys.stderr)

    failed = procs.run_in(
        tmp, soak.run, keep=args.keep, what="the soak", cleanup=soak.close, on_error=server_log
    )
    if failed is not None:
        return failed
    results = soak.results
    machine = machine_facts(args, soak, load_before, git)
    v = results["verdicts"]
    print()
    print(table(grouped(results, args)))
    print()
    print(verdict_table(v))
    print()
    print("\n".join(f"- {x}" for x in reading(results, args)))
    print(f"\n(total {time.perf_counter() - started:.0f} s)")
    OUT.mkdir(exist_ok=True)
    raw = {"machine": machine, "args": vars(args), **results}
    (OUT / "soak.json").write_text(json.dumps(raw, indent=2))
    if not args.no_write:
        procs.write_section(RESULTS, BEGIN, END, section(results, machine, args))
        print(f"wrote {os.path.relpath(RESULTS, Path.cwd())}")
    return 0 if v["passed"] else 1


def render(args: argparse.Namespace) -> int:
    results = json.loads(Path(args.render).read_text())
    machine = results.pop("machine")
    saved = results.pop("args", None)
    if saved:
        notes = args.note or saved.get("note", [])
        args = argparse.Namespace(**{**saved, "note": notes, "no_write": args.no_write})
    results["verdicts"] = verdicts(results, args)  # the rules of this version of the code
    print(table(grouped(results, args)))
    print()
    print(verdict_table(results["verdicts"]))
    print()
    print("\n".join(f"- {x}" for x in reading(results, args)))
    if not args.no_write:
        procs.write_section(RESULTS, BEGIN, END, section(results, machine, args))
        print(f"wrote {os.path.relpath(RESULTS, Path.cwd())}")
    return 0 if results["verdicts"]["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
