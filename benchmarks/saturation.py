"""Batch predict at saturation: no prediction answered 200 lacks its record; ``make bench-saturation``.

    .venv/bin/python -m benchmarks.saturation [--duration 3] [--connections 16] [--rows 1000]
        [--max-pending 1500] [--no-pin]

Seen on an older onlearn: at saturation its record writer dropped 51% of 400k prediction records
(feedback by their ids then got 404). This starts ``onlearn serve`` (the layout of
``benchmarks.server``, SQLite store) on examples/phishing.toml with a small record buffer
(``[engine] max_pending_predictions``), loads batch predict from more connections than it can
serve, then counts: rows answered 200, requests refused with 503 (back-pressure, reported apart
from errors), the records in the store once the writer has drained, and the server's own
counters (``onlearn_prediction_records_dropped``, ``_refused``). Prints one JSON object; exits 1
when a record is missing or dropped, or a request failed otherwise. A check, not a timed test:
how many 503s a run sees depends on the machine.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import data, procs
from benchmarks.procs import ROOT, Client, Server, loadgen
from benchmarks.run import BATCH, scrape
from benchmarks.server import DEFAULT_CONFIG


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=3.0, help="seconds of load (all counted)")
    p.add_argument("--connections", type=int, default=16, help="batch predict connections")
    p.add_argument("--rows", type=int, default=1000, help="rows per batch predict request")
    p.add_argument(
        "--max-pending",
        type=int,
        default=1500,
        # Below twice the writer's help_at (2000): callers then leave the writing to its
        # thread, which a few connections of 1000-row batches outrun, so the bound is reached.
        help="[engine] max_pending_predictions of the server: small, so the run reaches it",
    )
    p.add_argument("--no-pin", action="store_true", help="do not pin server and load generator")
    return p.parse_args(argv)


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    config = tmp / "saturation.toml"
    text = (ROOT / DEFAULT_CONFIG).read_text()
    config.write_text(f"{text}\n[engine]\nmax_pending_predictions = {args.max_pending}\n")
    db = tmp / "onlearn.db"
    cpus = procs.cpus()
    pinned = not args.no_pin and len(cpus) >= 2
    bodies = data.write_lines(tmp / "batch.jsonl", data.batch_bodies(args.rows))
    with Server(
        "onlearn",
        tmp / "server.log",
        store=f"sqlite:///{db}",
        cpu=cpus[0] if pinned else None,
        config=config,
    ) as server:
        load = loadgen(
            server,
            BATCH,
            bodies,
            connections=args.connections,
            warmup=0.0,
            duration=args.duration,
            cpu=cpus[1] if pinned else None,
            expect='"predictions"',
        )
        client = Client(server.port)
        try:
            deadline = time.monotonic() + 60
            while True:  # the writer drains what it admitted
                metrics = scrape(client)
                if metrics.get("onlearn_prediction_records_pending", 0) == 0:
                    break
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        finally:
            client.close()
    with sqlite3.connect(db) as conn:
        (stored,) = conn.execute(
            "SELECT count(*) FROM predictions WHERE model = ?", (data.MODEL,)
        ).fetchone()
    answered_rows = load["statuses"].get("200", 0) * args.rows
    return {
        "connections": args.connections,
        "rows_per_request": args.rows,
        "max_pending_predictions": args.max_pending,
        "seconds": load["window_s"],
        "requests_200": load["statuses"].get("200", 0),
        "rows_answered": answered_rows,
        "rows_per_s": load["rps"] * args.rows,
        "backpressure_503": load["backpressure"],
        "errors": load["errors"],
        "error_samples": load["error_samples"],
        "records_stored": stored,
        "records_missing": answered_rows - stored,
        "records_dropped": metrics.get("onlearn_prediction_records_dropped", 0),
        "records_unwritable": metrics.get("onlearn_prediction_records_unwritable", 0),
        "rows_refused": metrics.get("onlearn_prediction_records_refused", 0),
        "records_pending_at_end": metrics.get("onlearn_prediction_records_pending", 0),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="onlearn-saturation-") as tmp:
        result = run(args, Path(tmp))
    print(json.dumps(result, indent=2))
    ok = (
        result["records_missing"] == 0
        and result["records_dropped"] == 0
        and result["errors"] == 0
        and result["rows_refused"] == result["backpressure_503"] * args.rows
    )
    if not ok:
        print(
            "FAILED: every 200 must have its record, nothing dropped, no error, and the "
            "server's refused rows must be the 503s seen",
            file=sys.stderr,
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
