"""Predict latency on a model while it learns label batches at full speed: the hand-off lock
against the plain lock it replaced, and against no learning at all, in one run.

    .venv/bin/python -m benchmarks.learn_stall [--seconds 6] [--batch 500] [--pause-ms 0 1]
                                               [--cpu N] [--write]

In process: an ``Engine`` on a ``memory://`` store, the Phishing model with an adaptive random
forest (``{ name = "adaptive_random_forest" }``), first taught ``--warm`` labels. One thread
predicts one row at a time for ``--seconds`` (back to back, then with a pause of 1 ms between
calls: ``--pause-ms``) and records each call's latency; in the loaded runs another thread calls
``feedback_many`` with batches of ``--batch`` labels (inline features, ``wait=True``) as fast as
it can. Three runs per pause, each on a fresh engine taught the same labels:

- ``quiet``: nobody learns.
- ``plain Lock (before)``: the model lock is a ``threading.Lock`` taken per event, as before the
  hand-off (swapped in here only, on the runtime).
- ``hand-off lock``: ``onlearn.handoff_lock.HandoffLock``, as served.

Goal (issue 12): predict p99 under load at most 5x quiet. ``--write`` rewrites the
``learn-stall`` section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
        "--write", action="store_true", help="rewrite the learn-stall section of RESULTS.md"
    )
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    results = run(args.seconds, args.batch, args.warm, args.pause_ms)
    flags = "".join(
        f" --{name} {value}"
        for name, value, default in (
            ("seconds", args.seconds, 6.0),
            ("batch", args.batch, 500),
            ("warm", args.warm, 2000),
            ("pause-ms", " ".join(f"{p:g}" for p in args.pause_ms), "0 1"),
            ("cpu", args.cpu, None),
        )
        if value != default
    )
    section = render(args, results, f".venv/bin/python -m benchmarks.learn_stall{flags} --write")
    print(section)
    if args.write:
        text = RESULTS.read_text()
        pattern = re.compile(r"<!-- learn-stall:start -->.*?<!-- learn-stall:end -->\n", re.S)
        if pattern.search(text):
            text = pattern.sub(lambda _: section, text)
        else:
            text = text.rstrip("\n") + "\n\n" + section
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
