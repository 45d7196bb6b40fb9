"""Cross-check of the HTTP predict and feedback ratios with wrk instead of benchmarks/loadgen.py.

    python -m benchmarks.wrk_check [--duration 5] [--connections 32] [--feedback-connections 64]

The same servers as ``make bench`` (benchmarks/server.py, pinned to the first CPU; onlearn on a
fresh SQLite store, taught the stream once), loaded by wrk (one thread, pinned to the second
CPU, keep-alive, a Lua script that cycles through the same bodies). Feedback: each prediction id
once (made by batch predict beforehand), wrk's script takes them in order and stops handing new
ones when they run out. wrk counts non-2xx answers apart; any makes the run suspect and is
printed. Prints one JSON object (req/s and latencies per run); RESULTS.md quotes it by hand.
wrk is not a project dependency: ``apt-get install -y wrk``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import data, procs
from benchmarks.loadgen import server_cpu_seconds
from benchmarks.procs import Client, Server
from benchmarks.run import FEEDBACK, PREDICT, make_prediction_ids

SCRIPT = r"""
local bodies = {}
for line in io.lines("%(bodies)s") do bodies[#bodies + 1] = line end
local i = 0
local once = %(once)s
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i + 1
  if i > #bodies then
    if once then i = #bodies else i = 1 end
  end
  return wrk.format(nil, nil, nil, bodies[i])
end
done = function(summary, latency, requests)
  io.write(string.format("JSON {\"requests\": %%d, \"seconds\": %%f, \"non2xx\": %%d, " ..
    "\"errors\": %%d, \"p50_ms\": %%f, \"p99_ms\": %%f, \"bodies\": %%d}\n",
    summary.requests, summary.duration / 1e6, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, #bodies))
end
"""


def wrk(port: int, path: str, bodies: Path, *, connections: int, duration: float, cpu: int | None,
        once: bool, tmp: Path) -> dict[str, Any]:  # fmt: skip
    script = tmp / f"{bodies.stem}.lua"
    script.write_text(SCRIPT % {"bodies": bodies, "once": "true" if once else "false"})
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "-s", str(script)]
    cmd.append(f"http://127.0.0.1:{port}{path}")
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu), *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    match = re.search(r"^JSON (\{.*\})$", out, re.M)
    if match is None:
        raise procs.BenchError(f"no summary from wrk:\n{out}")
    result = json.loads(match.group(1))
    result["rps"] = result["requests"] / result["seconds"]
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--feedback-connections", type=int, default=64)
    p.add_argument("--feedback-ids", type=int, default=40_000)
    p.add_argument(
        "--rounds", type=int, default=3, help="rounds of bare + onlearn predict (best is kept)"
    )
    args = p.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    cpus = procs.cpus()
    server_cpu, load_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    tmp = Path(tempfile.mkdtemp(prefix="onlearn-wrk-"))
    bodies = data.write_lines(tmp / "predict.jsonl", data.predict_bodies())
    version = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    out: dict[str, Any] = {"wrk": (version.stdout or version.stderr).splitlines()[0], "runs": {}}

    def run(name: str, server: Server, path: str, body: Path, conns: int, *, warm: Path) -> None:
        common = {"connections": conns, "cpu": load_cpu, "tmp": tmp, "once": name != "predict"}
        if name == "bare_predict":
            common["once"] = False
        wrk(server.port, path, warm, duration=args.warmup, **common)
        before = server_cpu_seconds(server.pid)
        result = wrk(server.port, path, body, duration=args.duration, **common)
        after = server_cpu_seconds(server.pid)
        # The server's CPU time (its processes, all threads) per request: steadier than req/s
        # when other work shares the machine.
        if before is not None and after is not None and result["requests"]:
            result["server_cpu_us_per_request"] = (after - before) / result["requests"] * 1e6
        out.setdefault("rounds", {}).setdefault(name, []).append(result["rps"])
        if name not in out["runs"] or result["rps"] > out["runs"][name]["rps"]:
            out["runs"][name] = result
        print(
            f"[wrk] {name}: {result['rps']:,.0f} req/s, p50 {result['p50_ms']:.2f} ms, "
            f"p99 {result['p99_ms']:.2f} ms, non-2xx {result['non2xx']}, "
            f"errors {result['errors']}, {result['requests']} requests, "
            f"{result['bodies']} bodies, server CPU "
            f"{result.get('server_cpu_us_per_request', 0):.0f} us/request",
            file=sys.stderr,
            flush=True,
        )

    store = tmp / "onlearn"
    store.mkdir()

    def onlearn() -> Server:
        db = store / f"onlearn-{len(list(store.iterdir()))}.db"
        return Server("onlearn", tmp / "onlearn.log", cpu=server_cpu, store=f"sqlite:///{db}")

    def train(server: Server) -> None:
        client = Client(server.port)
        try:
            client.post(f"{FEEDBACK}/batch", data.training_body())
        finally:
            client.close()
        server.settle()

    # Other work on the machine only slows a run down: the best of a few rounds, as run.py.
    for _ in range(args.rounds - 1):
        with Server("bare", tmp / "bare.log", cpu=server_cpu) as s:
            run("bare_predict", s, "/predict", bodies, args.connections, warm=bodies)
        with onlearn() as s:
            train(s)
            run("predict", s, PREDICT, bodies, args.connections, warm=bodies)
    with Server("bare", tmp / "bare.log", cpu=server_cpu) as s:
        run("bare_predict", s, "/predict", bodies, args.connections, warm=bodies)
    with onlearn() as s:
        train(s)
        run("predict", s, PREDICT, bodies, args.connections, warm=bodies)
        # A new connection: the server closes one left idle while wrk ran.
        client = Client(s.port)
        try:
            files = {}
            for mode in ("wait", "nowait"):
                ids = make_prediction_ids(client, args.feedback_ids)
                files[mode] = data.write_lines(
                    tmp / f"feedback-{mode}.jsonl",
                    (data.dumps({"prediction_id": pid, "label": y}) for pid, y in ids),
                )
            time.sleep(0.2)
            # The warm-up takes the first ids; the measured run goes on from a fresh list.
            for mode, path in (("wait", FEEDBACK), ("nowait", f"{FEEDBACK}?wait=false")):
                lines = files[mode].read_text().splitlines()
                cut = len(lines) // 4
                warm = data.write_lines(tmp / f"warm-{mode}.jsonl", lines[:cut])
                rest = data.write_lines(tmp / f"rest-{mode}.jsonl", lines[cut:])
                run(f"feedback_{mode}", s, path, rest, args.feedback_connections, warm=warm)
        finally:
            client.close()
    bare = out["runs"]["bare_predict"]["rps"]
    out["ratios"] = {k: v["rps"] / bare for k, v in out["runs"].items()}
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
