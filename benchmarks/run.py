"""Run the serving benchmarks in one go and write benchmarks/RESULTS.md: ``make bench``.

    .venv/bin/python -m benchmarks.run [--duration 5] [--warmup 2] [--only predict,library]

1. HTTP predict: bare FastAPI endpoint vs onlearn ``POST /models/phishing/predict``.
2. HTTP feedback, durable, with and without ``?wait=false``, vs the bare endpoint.
3. In-process library: Engine (memory://) vs a bare river loop on the same pipeline.
4. HTTP batch predict, 1000 rows per request.
5. HTTP RED metrics: the middleware's cost per request in process, and HTTP predict served with
   and without it (same rounds as 1).

Servers run one at a time, each its own process, pinned to the first CPU; the load generator
runs in another process pinned to the second (``--no-pin`` to let the OS place them). See
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks import data, procs, report
from benchmarks.procs import ROOT, Client, Server, loadgen
from benchmarks.server import UVICORN_SETTINGS

BENCHMARKS = ("predict", "feedback", "library", "batch", "metrics")
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
OUT = ROOT / "benchmarks" / "out"
PREDICT = f"/models/{data.MODEL}/predict"
BATCH = f"/models/{data.MODEL}/predict/batch"
FEEDBACK = f"/models/{data.MODEL}/feedback"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Serving benchmarks: onlearn vs bare baselines, written to RESULTS.md.",
    )
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring")
    p.add_argument("--duration", type=float, default=5.0, help="seconds measured per HTTP run")
    p.add_argument("--connections", type=int, default=32, help="predict load connections")
    p.add_argument(
        "--rounds", type=int, default=3, help="rounds of bare + onlearn predict (best is kept)"
    )
    p.add_argument("--feedback-connections", type=int, default=64, help="feedback load connections")
    p.add_argument("--batch-connections", type=int, default=4, help="batch predict connections")
    p.add_argument("--batch-rows", type=int, default=1000, help="rows per batch predict request")
    p.add_argument(
        "--feedback-ids",
        type=int,
        default=0,
        help="prediction ids made for each feedback run, each used once (default: from the bare "
        "endpoint's rate)",
    )
    p.add_argument("--events", type=int, default=20_000, help="library benchmark events")
    p.add_argument("--repeats", type=int, default=3, help="library benchmark repeats")
    p.add_argument(
        "--only",
        help=f"comma-separated subset of {','.join(BENCHMARKS)}; RESULTS.md is then left alone "
        "unless --write",
    )
    p.add_argument("--write", action="store_true", help="write RESULTS.md even with --only")
    p.add_argument("--no-write", action="store_true", help="do not write RESULTS.md")
    p.add_argument("--no-pin", action="store_true", help="do not pin server and load generator")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (stores, server logs)")
    p.add_argument(
        "--profile",
        nargs="?",
        const="svg",
        choices=["svg", "txt"],
        help="record each HTTP server during its measured window with py-spy (not a project "
        "dependency: pip install py-spy) into benchmarks/out/profile-*.svg (a flame graph), or "
        "with --profile=txt collapsed stacks, one per line; the profiler costs the server some "
        "CPU, so numbers of such a run are not written unless --write",
    )
    args = p.parse_args(argv)
    args.benchmarks = BENCHMARKS
    if args.only:
        args.benchmarks = tuple(b.strip() for b in args.only.split(",") if b.strip())
        unknown = set(args.benchmarks) - set(BENCHMARKS)
        if unknown:
            p.error(f"unknown benchmarks {sorted(unknown)}; choose from {', '.join(BENCHMARKS)}")
    return args


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        cpus = procs.cpus()
        self.pinned = not args.no_pin and len(cpus) >= 2
        self.server_cpu = cpus[0] if self.pinned else None
        self.load_cpu = cpus[1] if self.pinned else None
        self.results: dict[str, Any] = {}
        self.n_servers = 0

    def log(self, msg: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)

    def server(self, kind: str, **kwargs: Any) -> Server:
        self.n_servers += 1
        name = f"{self.n_servers}-{kind}"
        if kind.startswith("onlearn"):
            store_dir = self.tmp / name
            store_dir.mkdir()
            kwargs["store"] = f"sqlite:///{store_dir / 'onlearn.db'}"
        return Server(kind, self.tmp / f"{name}.log", cpu=self.server_cpu, **kwargs)

    def load(self, server: Server, path: str, bodies: Path, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("connections", self.args.connections)
        if self.args.profile:
            OUT.mkdir(exist_ok=True)
            name = f"{self.n_servers}-{server.kind}-{path.strip('/').replace('/', '-')}"
            kwargs["profile"] = OUT / f"profile-{name.replace('?', '-')}.{self.args.profile}"
        result = loadgen(
            server,
            path,
            bodies,
            warmup=self.args.warmup,
            duration=self.args.duration,
            cpu=self.load_cpu,
            **kwargs,
        )
        lat = result["latency_ms"]
        if kwargs.get("profile") and kwargs["profile"].exists():
            self.log(f"  profile: {os.path.relpath(kwargs['profile'], Path.cwd())}")
        self.log(
            f"  {path}: {result['rps']:,.0f} req/s, p50 {_ms(lat['p50'])}, p99 {_ms(lat['p99'])}, "
            f"errors {result['errors']}, back-pressure 503s {result['backpressure']}, "
            f"server CPU {_pct(result['server_cpu_util'])}"
        )
        return result

    def train(self, server: Server) -> None:
        """Teach the served model the stream once, so that it answers real probabilities."""
        client = Client(server.port)
        try:
            client.post(f"{FEEDBACK}/batch", data.training_body())
        finally:
            client.close()
        self.log(f"  server idle after {server.settle():.1f} s")

    # 1 and 4: predict, batch predict

    def predict(self, one: bool, batch: bool, metrics: bool = False) -> None:
        """Rounds of (bare server, then onlearn server); each run's best round is kept.

        Other processes on the machine only ever slow a run down, so the best of a few short
        rounds is the steadiest figure; every round is kept in the results. With ``metrics``,
        each round also serves predict from an onlearn server without the HTTP RED metrics.
        """
        one = one or metrics
        bodies = data.write_lines(self.tmp / "predict.jsonl", data.predict_bodies())
        rounds = self.args.rounds if one else 1
        bare_runs, runs, off_runs = [], [], []
        for r in range(1, rounds + 1):
            self.log(f"round {r}/{rounds}: bare FastAPI server, predict")
            with self.server("bare") as s:
                bare_runs.append(self.load(s, "/predict", bodies, expect='"prediction_id"'))
            if not (one or (batch and r == rounds)):
                continue
            last = r == rounds
            what = ["predict"] if one else []
            what += ["batch predict"] if batch and last else []
            self.log(f"round {r}/{rounds}: onlearn server (sqlite store), {', '.join(what)}")
            with self.server("onlearn") as s:
                self.train(s)
                if one:
                    runs.append(self.load(s, PREDICT, bodies, expect='"prediction_id"'))
                if batch and last:
                    self.batch(s)
                self.results.setdefault("records", []).append(records_stats(s))
            if metrics:
                self.log(f"round {r}/{rounds}: onlearn server without HTTP RED metrics, predict")
                with self.server("onlearn-nometrics") as s:
                    self.train(s)
                    off_runs.append(self.load(s, PREDICT, bodies, expect='"prediction_id"'))
                    client = Client(s.port)
                    try:
                        counted = "onlearn_http_requests" in scrape(client)
                    finally:
                        client.close()
                    if counted:
                        raise procs.BenchError("the server without RED metrics counted requests")
        if off_runs:
            self.results["predict_nometrics"] = best(off_runs)
            self.results["predict_nometrics_rounds"] = off_runs
        self.results["bare_predict"] = best(bare_runs)
        self.results["bare_predict_rounds"] = bare_runs
        if runs:
            self.results["predict"] = best(runs)
            self.results["predict_rounds"] = runs

    def batch(self, server: Server) -> None:
        batch_file = data.write_lines(
            self.tmp / "batch.jsonl", data.batch_bodies(self.args.batch_rows)
        )
        run = self.load(
            server,
            BATCH,
            batch_file,
            connections=self.args.batch_connections,
            expect='"predictions"',
        )
        run["rows_per_request"] = self.args.batch_rows
        self.results["batch"] = run

    # 2: feedback

    def feedback(self) -> None:
        self.log("onlearn server (sqlite store): feedback")
        with self.server("onlearn") as s:
            self.train(s)
            client = Client(s.port)
            try:
                t0 = time.perf_counter()
                n_ids = self.feedback_ids()
                files = {}
                for mode in ("wait", "nowait"):
                    ids = make_prediction_ids(client, n_ids)
                    files[mode] = data.write_lines(
                        self.tmp / f"feedback-{mode}.jsonl",
                        (data.dumps({"prediction_id": pid, "label": y}) for pid, y in ids),
                    )
                self.log(
                    f"  made 2 x {n_ids:,} prediction ids by batch predict "
                    f"in {time.perf_counter() - t0:.1f} s"
                )
                time.sleep(0.2)  # let the last prediction records reach the store
                for mode, key, path, expect in (
                    ("wait", "feedback", FEEDBACK, '"applied":true'),
                    ("nowait", "feedback_nowait", f"{FEEDBACK}?wait=false", '"seq":'),
                ):
                    before = scrape(client)
                    run = self.load(
                        s,
                        path,
                        files[mode],
                        connections=self.args.feedback_connections,
                        once=True,
                        expect=expect,
                    )
                    after = scrape(client)
                    events = after["onlearn_log_committed_events"] - before.get(
                        "onlearn_log_committed_events", 0
                    )
                    batches = after["onlearn_log_commit_batches"] - before.get(
                        "onlearn_log_commit_batches", 0
                    )
                    run["commit"] = {
                        "events": int(events),
                        "batches": int(batches),
                        "events_per_batch": events / batches if batches else 0.0,
                        # The fresh store's log holds only what this process committed.
                        "unapplied": int(
                            after["onlearn_log_committed_events"] - after["onlearn_applied_seq"]
                        ),
                        "applied_seq": int(after["onlearn_applied_seq"]),
                        # Written by the worker process (niced, on the server's CPU here).
                        "snapshot_seq": int(after.get("onlearn_snapshot_seq", 0)),
                    }
                    self.results[key] = run
            finally:
                client.close()

    def feedback_ids(self) -> int:
        """Enough ids for warm-up and window at 3/4 of the bare endpoint's rate, well above the
        feedback target (a run that runs out anyway ends its window early, and says so)."""
        if self.args.feedback_ids:
            return self.args.feedback_ids
        bare = self.results.get("bare_predict")
        rate = bare["rps"] if bare else 4000.0
        n = int(rate * (self.args.warmup + self.args.duration) * 0.75)
        return min(max(n, 5000), 60_000) // 1000 * 1000

    # 3: library

    def library(self) -> None:
        self.log(f"library in-process: {self.args.events:,} events x {self.args.repeats} repeats")
        args = ["-m", "benchmarks.library", "--events", str(self.args.events)]
        args += ["--repeats", str(self.args.repeats)]
        if self.server_cpu is not None:
            args += ["--cpu", str(self.server_cpu)]
        lib = procs.run_json(args, timeout=300)
        self.results["library"] = lib
        self.log(
            f"  onlearn {lib['engine_eps']:,.0f} events/s, bare {lib['bare_eps']:,.0f} events/s"
        )

    # 5: HTTP RED metrics, in process (HTTP: in predict)

    def http_metrics(self) -> None:
        self.log("HTTP RED metrics middleware in process")
        args = ["-m", "benchmarks.http_metrics"]
        if self.server_cpu is not None:
            args += ["--cpu", str(self.server_cpu)]
        m = procs.run_json(args, timeout=300)
        self.results["http_metrics"] = m
        self.log(
            f"  {m['red_cost_us']:.2f} us per request (prometheus_client's labels: "
            f"{m['prometheus_client_cost_us']:.2f} us)"
        )

    def run(self) -> None:
        b = self.args.benchmarks
        if {"predict", "feedback", "batch", "metrics"} & set(b):
            self.predict(one="predict" in b, batch="batch" in b, metrics="metrics" in b)
        if "metrics" in b:
            self.http_metrics()
        if "feedback" in b:
            self.feedback()
        if "library" in b:
            self.library()


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the most requests per second among those without errors (if any)."""
    clean = [r for r in runs if not r["errors"]] or runs
    return max(clean, key=lambda r: r["rps"])


def make_prediction_ids(client: Client, n: int) -> list[tuple[str, bool]]:
    """``n`` (prediction_id, true label) pairs, by batch predict over the stream."""
    rows = data.stream(n)
    out = []
    for i in range(0, n, 1000):
        chunk = rows[i : i + 1000]
        body = data.dumps({"rows": [{"features": x} for x, _ in chunk]})
        answer = client.post(BATCH, body)
        out.extend(
            (p["prediction_id"], y) for p, (_, y) in zip(answer["predictions"], chunk, strict=True)
        )
    return out


def scrape(client: Client) -> dict[str, float]:
    """The Prometheus metrics, summed over their labels."""
    totals: dict[str, float] = {}
    for line in client.get_text("/metrics").splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        name = name.split("{", 1)[0]
        try:
            totals[name] = totals.get(name, 0.0) + float(value)
        except ValueError:
            continue
    # prometheus_client names counters with a _total suffix
    return {k.removesuffix("_total"): v for k, v in totals.items()}


def records_stats(server: Server) -> dict[str, float]:
    client = Client(server.port)
    try:
        m = scrape(client)
    finally:
        client.close()
    return {
        "written": m.get("onlearn_prediction_records_written", 0.0),
        "dropped": m.get("onlearn_prediction_records_dropped", 0.0),
        "refused": m.get("onlearn_prediction_records_refused", 0.0),
        "pending": m.get("onlearn_prediction_records_pending", 0.0),
    }


def machine_facts(
    args: argparse.Namespace, bench: Bench, tmp: Path, load_before: float
) -> dict[str, Any]:
    def version(pkg: str) -> str:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return "-"

    pins = (
        f"servers and the library run on CPU {bench.server_cpu}, the load generator on CPU "
        f"{bench.load_cpu} (os.sched_setaffinity)"
        if bench.pinned
        else "none (--no-pin, or fewer than 2 CPUs)"
    )
    exe = Path(sys.executable)
    exe_text = os.path.relpath(exe, ROOT) if exe.is_relative_to(ROOT) else str(exe)
    command = shlex.join([exe_text, "-m", "benchmarks.run", *sys.argv[1:]])
    if os.environ.get("MAKELEVEL"):
        command = f"make bench` (`{command}"
    uv = ", ".join(f"{k}={v}" for k, v in UVICORN_SETTINGS.items())
    return {
        "timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": f"`{command}`",
        "git": git_state(),
        "CPU count": f"{os.cpu_count()} ({_cpu_model()}); usable: {len(procs.cpus())}",
        "pinning": pins,
        "Python": f"{platform.python_version()} ({platform.python_implementation()})",
        "OS": platform.platform(),
        "packages": ", ".join(
            f"{p} {version(p)}"
            for p in ("fastapi", "starlette", "pydantic", "uvicorn", "uvloop", "httptools", "river")
        ),
        "uvicorn (both servers)": uv,
        "store": f"sqlite in a fresh temp dir per onlearn server ({_filesystem(tmp)})",
        "durations": (
            f"warm-up {args.warmup:g} s, measured {args.duration:g} s per HTTP run; "
            f"{args.rounds} rounds of bare + onlearn predict"
        ),
        "load": (
            f"1-min load average {load_before:.2f} before the run, {os.getloadavg()[0]:.2f} "
            "after it (the run's own processes count in the second; other work on the machine "
            "slows the numbers down)"
        ),
    }


def git_state() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "-"
    n = len(dirty.splitlines())
    return f"{head}" + (f" plus {n} uncommitted changed/new paths" if n else " (clean)")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _filesystem(path: Path) -> str:
    best, fstype = "", "unknown"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            mount = parts[1]
            if str(path).startswith(mount) and len(mount) > len(best):
                best, fstype = mount, parts[2]
    except (OSError, IndexError):
        pass
    return f"{path.parent} on {fstype}"


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f} ms"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.0f}%"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    procs.install_sigterm_handler()
    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="onlearn-bench-"))
    bench = Bench(args, tmp)
    started = time.perf_counter()
    failed = procs.run_in(tmp, bench.run, keep=args.keep)
    if failed is not None:
        return failed

    results = bench.results
    lines = report.summary_lines(results)
    machine = machine_facts(args, bench, tmp, load_before)
    print()
    print(report.summary_table(lines))
    print()
    print(report.details_table(results))
    for note in report.notes(results):
        print(note)
    print(f"\n(total {time.perf_counter() - started:.0f} s)")

    OUT.mkdir(exist_ok=True)
    write = not args.no_write and ((not args.only and not args.profile) or args.write)
    # The raw numbers behind RESULTS.md; a partial or profiled run goes to another file.
    raw = OUT / ("serving.json" if write else "serving-partial.json")
    raw.write_text(json.dumps({"machine": machine, **results}, indent=2))
    if write:
        procs.write_section(
            RESULTS, report.BEGIN, report.END, report.section(results, machine, lines)
        )
        print(
            f"wrote {os.path.relpath(RESULTS, Path.cwd())} and {os.path.relpath(raw, Path.cwd())}"
        )
    errors = sum(ln.errors for ln in lines)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
