"""Predict latency on a model while it learns label batches at full speed: the hand-off lock
against the plain lock it replaced, and against no learning at all, in one run; and, over HTTP,
how much the learning of one model disturbs another model served by the same server.

    .venv/bin/python -m benchmarks.learn_stall [--part lock isolation] [--seconds 6]
        [--batch 500] [--pause-ms 0 1] [--cpu N] [--probe-seconds 5] [--no-pin] [--write]

**lock** (in process): an ``Engine`` on a ``memory://`` store, the Phishing model with an
adaptive random forest (``{ name = "adaptive_random_forest" }``), first taught ``--warm``
labels. One thread predicts one row at a time for ``--seconds`` (back to back, then with a pause
of 1 ms between calls: ``--pause-ms``) and records each call's latency; in the loaded runs
another thread calls ``feedback_many`` with batches of ``--batch`` labels (inline features,
``wait=True``) as fast as it can. Three runs per pause, each on a fresh engine taught the same
labels:

- ``quiet``: nobody learns.
- ``plain Lock (before)``: the model lock is a ``threading.Lock`` taken per event, as before the
  hand-off (swapped in here only, on the runtime).
- ``hand-off lock``: ``onlearn.handoff_lock.HandoffLock``, as served.

**isolation** (over HTTP): ``onlearn serve`` (the real command, its worker and monitor sidecars
beside it) on a fresh SQLite store with two models of the Phishing schema: ``forest`` (adaptive
random forest, taught ``--warm`` labels) and ``light`` (logistic regression, taught the stream
once). Four probes, each one keep-alive connection sending one request after the other for
``--probe-seconds`` (after 1 s of warm-up; benchmarks/loadgen.py): predict on ``light``, predict
on ``forest``, feedback on ``light`` with inline features (durable and applied: the default) and
the same with ``?wait=false`` (durable only). Each probe runs quiet, then while two connections
post ``/models/forest/feedback/batch`` with ``--batch`` labels each (inline features, answered
once applied) back to back, which keeps the forest learning at full speed; the labels it learned
per second are read from the server's ``applied_seq``. The server and its sidecars are pinned to
the first CPU, the probes and the forest load to the second (``--no-pin`` to turn it off).

Goals (issue 12): predict p99 under load at most 5x quiet, on the model that learns and on
another; the other model's feedback p99 at most 2x quiet. ``--write`` rewrites the ``learn-stall``
(lock) and ``learn-isolation`` (isolation) sections of RESULTS.md, for the parts run.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks import data, procs
from benchmarks.data import MODEL, stream

RESULTS = Path(__file__).with_name("RESULTS.md")


class PlainLock:
    """The model lock before the hand-off: a ``threading.Lock``, which the learner takes back
    between two events of a batch before a waiting predict wakes up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> bool:
        return self._lock.acquire()

    def __exit__(self, *exc) -> None:
        self._lock.release()

    def acquire(self) -> bool:
        return self._lock.acquire()

    def release(self) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    @contextmanager
    def after_waiters(self):
        with self._lock:
            yield


def _settings():
    from onlearn.config import settings_from_mapping

    features = {
        name: {"type": "number", "min": 0, "max": 1}
        for name in (
            "empty_server_form_handler",
            "popup_window",
            "https",
            "request_from_other_domain",
            "anchor_from_other_domain",
            "is_popular",
            "long_url",
        )
    } | {"age_of_domain": {"type": "integer"}, "ip_in_url": {"type": "integer"}}
    return settings_from_mapping(
        {
            "store": {"url": "memory://"},
            "security": {"secret_key": "benchmark"},
            "models": {
                MODEL: {
                    "task": "classification",
                    "target": "is_phishing",
                    "classes": [True, False],
                    "pipeline": {"name": "adaptive_random_forest"},
                    "features": features,
                }
            },
        }
    )


def _quantile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def run_one(
    lock: str | None, seconds: float, batch: int, warm: int, pause_s: float
) -> dict[str, Any]:
    """``lock``: None (quiet), "plain" or "handoff"."""
    from onlearn.engine import Engine, FeedbackItem

    rows = stream(warm + 50_000)
    items = [FeedbackItem(label=y, features=x) for x, y in rows]
    with Engine.from_settings(_settings()) as engine:
        rt = engine.runtime(MODEL)
        for start in range(0, warm, batch):
            engine.feedback_many(MODEL, items[start : start + batch])
        if lock == "plain":
            rt.lock = PlainLock()  # nobody holds the lock between two calls
        stop = threading.Event()
        learned = [0]

        def learn() -> None:
            at = warm
            while not stop.is_set():
                chunk = items[at : at + batch]
                if len(chunk) < batch:
                    at, chunk = 0, items[:batch]
                engine.feedback_many(MODEL, chunk)
                learned[0] += len(chunk)
                at += batch

        learner = threading.Thread(target=learn, daemon=True) if lock else None
        if learner:
            learner.start()
            time.sleep(0.2)  # the first batch is under way
        before = rt.labels_applied
        latencies = []
        x = rows[0][0]
        t_end = time.perf_counter() + seconds
        while (t0 := time.perf_counter()) < t_end:
            engine.predict_one(MODEL, x)
            latencies.append(time.perf_counter() - t0)
            time.sleep(pause_s)
        applied = rt.labels_applied - before
        stop.set()
        if learner:
            learner.join()
    latencies.sort()
    return {
        "predicts": len(latencies),
        "p50_ms": _quantile(latencies, 0.50) * 1e3,
        "p99_ms": _quantile(latencies, 0.99) * 1e3,
        "max_ms": latencies[-1] * 1e3,
        "labels_per_s": applied / seconds,
    }


RUNS = (("quiet", None), ("plain Lock (before)", "plain"), ("hand-off lock", "handoff"))


def run(
    seconds: float, batch: int, warm: int, pauses_ms: list[float]
) -> list[tuple[str, dict[str, Any]]]:
    results = []
    for pause_ms in pauses_ms:
        for name, lock in RUNS:
            result = run_one(lock, seconds, batch, warm, pause_ms / 1e3)
            results.append((name, {"pause_ms": pause_ms, **result}))
            print(name, results[-1], flush=True)
    return results


def render(args, results: list[tuple[str, dict[str, Any]]], command: str) -> str:
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [
        "<!-- learn-stall:start -->",
        "## Predict while the same model learns: the hand-off lock",
        "",
        f"Command: `{command}` (benchmarks/learn_stall.py; its docstring says what each run does).",
        "In process, memory:// store, the Phishing model with an adaptive random forest taught "
        f"{args.warm:,} labels; one thread predicts one row at a time (back to back, or "
        f"with a pause between calls) for {args.seconds:g} s per run while another calls `feedback_many` with "
        f"batches of {args.batch} labels as fast as it can. Goal (issue 12): predict p99 under "
        "load at most 5x quiet.",
        "",
        f"### Run of {when} ({platform.machine()}, {os.cpu_count()} CPUs)",
        "",
        "| pause ms | run | predicts | p50 ms | p99 ms | max ms | p99 / quiet p99 "
        "| labels learned/s |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    quiet = {r["pause_ms"]: r["p99_ms"] for name, r in results if name == "quiet"}
    for name, r in results:
        lines.append(
            f"| {r['pause_ms']:g} | {name} | {r['predicts']:,} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
            f"| {r['max_ms']:.1f} | {r['p99_ms'] / quiet[r['pause_ms']]:.1f}x | {r['labels_per_s']:,.0f} |"
        )
    lines += ["", "<!-- learn-stall:end -->"]
    return "\n".join(lines) + "\n"


# --- isolation: another model of the same server, over HTTP --------------------------------------

FOREST = "forest"
LIGHT = "light"
ISOLATION_BEGIN = "<!-- learn-isolation:start -->"
ISOLATION_END = "<!-- learn-isolation:end -->"
# (probe, path, kind, bytes every answer holds)
PROBES = (
    ("predict light", f"/models/{LIGHT}/predict", "predict", '"prediction_id"'),
    (
        "predict forest (the model learning)",
        f"/models/{FOREST}/predict",
        "predict",
        '"prediction_id"',
    ),
    ("feedback light, durable + applied", f"/models/{LIGHT}/feedback", "feedback", '"seq"'),
    ("feedback light, ?wait=false", f"/models/{LIGHT}/feedback?wait=false", "feedback", '"seq"'),
)
GOALS = {"predict": 5.0, "feedback": 2.0}  # p99 under load at most this times quiet


def _applied_seq(client: procs.Client, model: str) -> int:
    status, answer = client.request("GET", "/models")
    if status != 200:
        raise procs.BenchError(f"GET /models answered {status}")
    return next(m["applied_seq"] for m in answer["models"] if m["name"] == model)


def run_isolation(args, tmp: Path) -> dict[str, Any]:
    """Quiet probes, then the same probes while the forest learns at full speed."""
    from benchmarks.many_models import (
        config_text,
        machine_busy,
        members,
        onlearn,
        settle,
        wait_quiet,
        wait_ready,
    )

    busy_before = wait_quiet(args.wait_quiet) if args.wait_quiet > 0 else machine_busy()
    cpus = procs.cpus()
    pinned = not args.no_pin and len(cpus) >= 2
    server_cpu, load_cpu = (cpus[0], cpus[1]) if pinned else (None, None)
    store_url = f"sqlite:///{tmp / 'onlearn.db'}"
    config = tmp / "models.toml"
    config.write_text(
        config_text({FOREST: "adaptive_random_forest", LIGHT: "logistic_regression"}, store_url)
    )
    rows = data.phishing()
    bodies = {
        "predict": data.write_lines(tmp / "predict.jsonl", data.predict_bodies()),
        "feedback": data.write_lines(
            tmp / "feedback.jsonl", (data.dumps({"features": x, "label": y}) for x, y in rows)
        ),
    }
    batches = [
        data.dumps(
            {
                "items": [
                    {"features": x, "label": y}
                    for x, y in (rows[(b * args.batch + k) % len(rows)] for k in range(args.batch))
                ]
            }
        )
        for b in range(10)
    ]
    batch_file = data.write_lines(tmp / "forest-batches.jsonl", batches)
    server = onlearn(
        "serve", config, store_url, tmp / "serve.log", cpu=server_cpu, port=procs.free_port()
    )
    load = None
    try:
        wait_ready([server], 60.0)
        if server.ready_s is None:
            raise procs.BenchError(f"onlearn serve was not ready in 60 s:\n{server.log_tail()}")
        client = procs.Client(server.port, timeout=120.0)
        client.post(f"/models/{LIGHT}/feedback/batch", data.training_body())
        for start in range(0, args.warm, args.batch):
            client.post(f"/models/{FOREST}/feedback/batch", batches[start // args.batch % 10])
        waited = settle(members([server]), 60.0)
        print(f"isolation: server ready, models taught, quiet after {waited} s", flush=True)

        def probe(name: str, path: str, kind: str, expect: str, loaded: bool) -> dict[str, Any]:
            before, t0 = _applied_seq(client, FOREST), time.monotonic()
            run = procs.loadgen(
                server,
                path,
                bodies[kind],
                connections=1,
                warmup=1.0,
                duration=args.probe_seconds,
                cpu=load_cpu,
                expect=expect,
            )
            learned = (_applied_seq(client, FOREST) - before) / (time.monotonic() - t0)
            lat = run["latency_ms"]
            print(
                f"  {'loaded' if loaded else 'quiet '} {name}: {run['requests']:,} requests, "
                f"p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms, max {lat['max']:.1f} ms, "
                f"errors {run['errors']}; forest learned {learned:,.0f} labels/s",
                flush=True,
            )
            return {
                "requests": run["requests"],
                "errors": run["errors"],
                "latency_ms": lat,
                "server_cpu_util": run["server_cpu_util"],
                "forest_labels_per_s": learned,
            }

        results: dict[str, Any] = {name: {} for name, *_ in PROBES}
        for name, path, kind, expect in PROBES:
            results[name]["quiet"] = probe(name, path, kind, expect, loaded=False)
        load_args = ["-m", "benchmarks.loadgen", "--port", str(server.port)]
        load_args += ["--path", f"/models/{FOREST}/feedback/batch", "--bodies", str(batch_file)]
        load_args += ["--connections", str(args.load_connections), "--warmup", "0"]
        load_args += ["--duration", "100000", "--expect", '"results"']
        if load_cpu is not None:
            load_args += ["--cpu", str(load_cpu)]
        load = procs.spawn(load_args, stdout=subprocess.DEVNULL)
        started = _applied_seq(client, FOREST)
        deadline = time.monotonic() + 30
        while _applied_seq(client, FOREST) < started + args.batch:
            if time.monotonic() > deadline or load.poll() is not None:
                raise procs.BenchError("the forest load did not get a batch learned in 30 s")
            time.sleep(0.05)
        for name, path, kind, expect in PROBES:
            results[name]["loaded"] = probe(name, path, kind, expect, loaded=True)
        client.close()
    finally:
        if load is not None:
            procs.stop(load, grace_s=2.0)
        procs.stop(server.proc, grace_s=30.0)
    return {
        "results": results,
        "ready_s": server.ready_s,
        "busy_before": busy_before,
        "pins": (
            f"onlearn serve and its sidecars on CPU {server_cpu}, the probes and the forest "
            f"load on CPU {load_cpu}"
            if pinned
            else "nothing pinned"
        ),
    }


def render_isolation(args, outcome: dict[str, Any], command: str) -> str:
    import sqlite3

    from benchmarks.run import git_state

    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [
        ISOLATION_BEGIN,
        "## Another model while a forest learns: predict and feedback isolation over HTTP",
        "",
        f"Command: `{command}` (benchmarks/learn_stall.py, the isolation part; its docstring "
        "says what each probe does). `onlearn serve` on a fresh SQLite store, its worker and "
        "monitor sidecars beside it, two models of the Phishing schema: `forest` (adaptive random "
        f"forest, taught {args.warm:,} labels) and `light` (logistic regression). Each probe is "
        "one connection sending one request after the other for "
        f"{args.probe_seconds:g} s: quiet, then while {args.load_connections} connections post "
        f"batches of {args.batch} labels to `/models/forest/feedback/batch` back to back (the "
        "forest learns at full speed). Goals (issue 12): predict p99 under load at most 5x "
        "quiet on both models; the other model's feedback p99 at most 2x quiet.",
        "",
        f"### Run of {when} ({platform.machine()}, {os.cpu_count()} CPUs)",
        "",
        "| probe | quiet p50 ms | quiet p99 ms | loaded p50 ms | loaded p99 ms | loaded max ms "
        "| p99 loaded / quiet | goal | result | requests quiet / loaded | forest labels learned/s "
        "| server CPU loaded |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|",
    ]
    for name, _, kind, _ in PROBES:
        q, lo = outcome["results"][name]["quiet"], outcome["results"][name]["loaded"]
        ratio = lo["latency_ms"]["p99"] / q["latency_ms"]["p99"]
        goal = GOALS[kind]
        errors = q["errors"] + lo["errors"]
        verdict = "ERRORS" if errors else ("pass" if ratio <= goal else "SHORT")
        lines.append(
            f"| {name} | {q['latency_ms']['p50']:.2f} | {q['latency_ms']['p99']:.2f} "
            f"| {lo['latency_ms']['p50']:.2f} | {lo['latency_ms']['p99']:.2f} "
            f"| {lo['latency_ms']['max']:.1f} | {ratio:.1f}x | <= {goal:g}x | **{verdict}** "
            f"| {q['requests']:,} / {lo['requests']:,} | {lo['forest_labels_per_s']:,.0f} "
            f"| {(lo['server_cpu_util'] or 0) * 100:.0f}% |"
        )
    lines += [
        "",
        "Server CPU: the server and its sidecars, in share of one core (they are pinned to one).",
        "",
        "| | |",
        "|---|---|",
        f"| git | {git_state()} |",
        f"| pinning | {outcome['pins']} |",
        f"| Python | {platform.python_version()}; SQLite {sqlite3.sqlite_version} |",
        f"| onlearn serve ready after | {outcome['ready_s']:.1f} s |",
        "| other work | "
        + (
            f"the machine used {outcome['busy_before'] * 100:.0f}% of a core over 3 s before "
            "the run (other processes: they slow every figure down) |"
            if outcome["busy_before"] is not None
            else "- |"
        ),
        "",
        ISOLATION_END,
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--part",
        nargs="+",
        choices=["lock", "isolation"],
        default=["lock", "isolation"],
        help="lock: in process, the model that learns; isolation: over HTTP, another model",
    )
    parser.add_argument("--seconds", type=float, default=6.0, help="predicting time per run")
    parser.add_argument("--batch", type=int, default=500, help="labels per feedback_many call")
    parser.add_argument(
        "--pause-ms",
        type=float,
        nargs="+",
        default=[0.0, 1.0],
        help="pauses between predicts, a set of runs each",
    )
    parser.add_argument("--cpu", type=int, help="pin this process to one CPU")
    parser.add_argument("--warm", type=int, default=2000, help="labels taught before each run")
    parser.add_argument(
        "--probe-seconds", type=float, default=5.0, help="isolation: measured seconds per probe"
    )
    parser.add_argument(
        "--load-connections",
        type=int,
        default=2,
        help="isolation: connections posting label batches to the forest",
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="isolation: do not pin the server and the clients"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        help="isolation: first wait up to this many seconds for the machine to be idle",
    )
    parser.add_argument(
        "--keep", action="store_true", help="isolation: keep the temp dir (store, server log)"
    )
    parser.add_argument(
        "--write",
        action="store_true",
        help="rewrite the sections of RESULTS.md of the parts run (learn-stall, learn-isolation)",
    )
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    flags = "".join(
        f" --{name} {value}"
        for name, value, default in (
            ("part", " ".join(args.part), "lock isolation"),
            ("seconds", args.seconds, 6.0),
            ("batch", args.batch, 500),
            ("warm", args.warm, 2000),
            ("pause-ms", " ".join(f"{p:g}" for p in args.pause_ms), "0 1"),
            ("cpu", args.cpu, None),
            ("probe-seconds", args.probe_seconds, 5.0),
            ("load-connections", args.load_connections, 2),
        )
        if value != default
    ) + (" --no-pin" if args.no_pin else "")
    command = f".venv/bin/python -m benchmarks.learn_stall{flags} --write"
    if os.environ.get("MAKELEVEL") and not flags:
        command = f"make bench-stall` (`{command}"
    if "lock" in args.part:
        results = run(args.seconds, args.batch, args.warm, args.pause_ms)
        section = render(args, results, command)
        print(section)
        if args.write:
            text = RESULTS.read_text()
            pattern = re.compile(r"<!-- learn-stall:start -->.*?<!-- learn-stall:end -->\n", re.S)
            if pattern.search(text):
                text = pattern.sub(lambda _: section, text)
            else:
                text = text.rstrip("\n") + "\n\n" + section
            RESULTS.write_text(text)
    if "isolation" in args.part:
        procs.install_sigterm_handler()
        tmp = Path(tempfile.mkdtemp(prefix="onlearn-isolation-"))
        outcome: dict[str, Any] = {}

        def isolation() -> None:
            outcome.update(run_isolation(args, tmp))

        failed = procs.run_in(tmp, isolation, keep=args.keep, what="the isolation benchmark")
        if failed is not None:
            return failed
        section = render_isolation(args, outcome, command)
        print(section)
        if args.write:
            procs.write_section(RESULTS, ISOLATION_BEGIN, ISOLATION_END, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
