"""Turn a run's measurements into the summary table, the details, and the RESULTS.md section."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The same convention as the other suites' sections: each one replaces only its own.
BEGIN = "<!-- serving-throughput:start -->"
END = "<!-- serving-throughput:end -->"

HOW_TO = """## Serving throughput: HTTP predict and feedback, library overhead, batch predict

How to run: `make bench` (that is `.venv/bin/python -m benchmarks.run`; `--help` lists the
options). It takes about three minutes, prints the tables below and rewrites this
section (and nothing else of this file). benchmarks/README.md describes each benchmark.

What each line means (targets from the design notes, section 8 "What good looks like"):

- **1. predict req/s**: `POST /models/phishing/predict`, one row per request, prediction records
  persisted on the embedded SQLite store (config examples/phishing.toml, a fresh store in a temp
  dir, the model taught the stream once first), against a bare FastAPI `async def` endpoint that
  takes the same body through a pydantic model (benchmarks/bare_app.py). Best of a few rounds of
  (bare, onlearn) for each side. Target (issue 12): onlearn >= 0.85 x bare.
- **1. predict p99**: the 99th percentile latency of those two runs. Target: <= 2 x bare.
- **1. server CPU per request** (info): the server's CPU time per request in the window (its
  worker and monitor processes included). Less disturbed by other load on the machine than req/s; a ratio of 1.18 is the 0.85 target.
- **2. feedback durable req/s**: `POST /models/phishing/feedback` with
  `{"prediction_id", "label"}`, each id used once (made beforehand by batch predict); answered
  once the label is fsynced in the log (group commit) and applied by the model. Compared with the
  bare predict endpoint's req/s. Target (issue 12): >= 0.6 x bare.
- **2. feedback ?wait=false**: the same, answered once durable, without waiting for the apply.
- **3. library, batch calls**: in-process, no HTTP: `Engine` on a `memory://` store,
  `predict_many` of 100 rows then `feedback_many` of their labels (sync, wait=True: learned when
  it returns, one `learn_one` per label event), on the Phishing stream, against a bare loop of
  `predict_proba_one` + `learn_one` per event on the same pipeline (`build_pipeline`, same spec
  and schema). Events/s, best of the repeats. Target: >= 0.7 x bare.
- **3. library, single-event calls**: the same with `predict_one` + `feedback_one` per event.
  Target: >= 0.4 x bare.
- **4. batch predict**: `POST /models/phishing/predict/batch`, 1000 rows per request; rows/s.
  Target: >= 100k rows/s.
- **5. HTTP RED metrics** (info): the server CPU per predict of the onlearn server of line 1
  against the same server without the metrics' middleware (`benchmarks.server
  onlearn-nometrics`, a round each beside line 1's); and, in process
  (benchmarks/http_metrics.py), what the middleware adds to one ASGI request, against counting
  through prometheus_client's `labels(...)` objects.

HTTP method: each server runs alone (one at a time) as its own process with the same uvicorn
settings, onlearn in the layout of `onlearn serve` (on SQLite, its training worker and monitor
are processes beside the server, pinned to the same CPU); the load comes from a separate process (benchmarks/loadgen.py: asyncio protocols on
uvloop, keep-alive HTTP/1.1, one request in flight per connection, every status code checked).
Req/s and latencies are taken over a fixed window after a warm-up. Server CPU is the CPU
time of the server's processes (all threads) in the window, from /proc: ~100% when the server is
saturated.
A run with any failed request is marked ERRORS, whatever its numbers. "pass"/"SHORT" compare the
ratio (or the absolute figure for line 4) with the target.
"""


@dataclass
class Line:
    number: str
    measure: str
    value: float | None
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: float | None = None
    lower_is_better: bool = False  # latency: the ratio must stay under the target
    absolute: bool = False  # the target is on the value itself, not a ratio
    errors: int = 0

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline

    @property
    def target_text(self) -> str:
        if self.target is None:
            return "-"
        if self.absolute:
            return f">= {fmt(self.target)} {self.unit}"
        return f"{'<=' if self.lower_is_better else '>='} {self.target:g}x"

    @property
    def verdict(self) -> str:
        if self.errors:
            return f"ERRORS ({self.errors})"
        if self.target is None:
            return "info"
        got = self.value if self.absolute else self.ratio
        if got is None:
            return "not run"
        ok = got <= self.target if self.lower_is_better else got >= self.target
        return "pass" if ok else "SHORT"


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def summary_lines(r: dict[str, Any]) -> list[Line]:
    lines: list[Line] = []
    bare, pred = r.get("bare_predict"), r.get("predict")
    bare_rps = bare["rps"] if bare else None
    if pred:
        lines.append(
            Line(
                "1",
                f"HTTP predict, req/s ({pred['connections']} connections)",
                pred["rps"],
                "req/s",
                bare_rps,
                "bare FastAPI",
                0.85,
                errors=_errors(pred, bare),
            )
        )
        lines.append(
            Line(
                "1",
                "HTTP predict, p99 latency",
                pred["latency_ms"]["p99"],
                "ms",
                bare and bare["latency_ms"]["p99"],
                "bare FastAPI",
                2.0,
                lower_is_better=True,
                errors=_errors(pred, bare),
            )
        )
        lines.append(
            Line(
                "1",
                "HTTP predict, server CPU per request (info: 1.18x = 0.85 when CPU-bound)",
                pred["server_cpu_us_per_request"],
                "us",
                bare and bare["server_cpu_us_per_request"],
                "bare FastAPI",
            )
        )
        lines.append(
            Line(
                "1",
                "HTTP predict, p50 latency",
                pred["latency_ms"]["p50"],
                "ms",
                bare and bare["latency_ms"]["p50"],
                "bare FastAPI",
                errors=_errors(pred, bare),
            )
        )
    for key, name in (
        ("feedback", "HTTP feedback durable (wait=true), req/s"),
        ("feedback_nowait", "HTTP feedback durable, ?wait=false, req/s"),
    ):
        run = r.get(key)
        if run:
            lines.append(
                Line(
                    "2",
                    f"{name} ({run['connections']} connections)",
                    run["rps"],
                    "req/s",
                    bare_rps,
                    "bare FastAPI predict",
                    0.6,
                    errors=_errors(run, bare),
                )
            )
    lib = r.get("library")
    if lib:
        if "batch_eps" in lib:
            lines.append(
                Line(
                    "3",
                    f"library predict_many + feedback_many ({lib['batch_rows']} rows a call), "
                    "events/s (memory://)",
                    lib["batch_eps"],
                    "events/s",
                    lib["bare_eps"],
                    "bare river loop",
                    0.7,
                )
            )
        lines.append(
            Line(
                "3",
                "library predict_one + feedback_one, events/s (memory://)",
                lib["engine_eps"],
                "events/s",
                lib["bare_eps"],
                "bare river loop",
                0.4,
            )
        )
    batch = r.get("batch")
    if batch:
        lines.append(
            Line(
                "4",
                f"HTTP batch predict, rows/s ({batch['rows_per_request']} rows/request)",
                batch["rps"] * batch["rows_per_request"],
                "rows/s",
                target=100_000,
                absolute=True,
                errors=_errors(batch),
            )
        )
    off, red = r.get("predict_nometrics"), r.get("http_metrics")
    if pred and off:
        lines.append(
            Line(
                "5",
                "HTTP predict with RED metrics, server CPU per request (info)",
                pred["server_cpu_us_per_request"],
                "us",
                off["server_cpu_us_per_request"],
                "without RED metrics",
                errors=_errors(pred, off),
            )
        )
        lines.append(
            Line(
                "5",
                f"HTTP predict with RED metrics, req/s ({pred['connections']} connections)",
                pred["rps"],
                "req/s",
                off["rps"],
                "without RED metrics",
                errors=_errors(pred, off),
            )
        )
    if red:
        lines.append(
            Line(
                "5",
                "RED metrics middleware, added to one request (in process)",
                red["red_cost_us"],
                "us",
                red["prometheus_client_cost_us"],
                "prometheus_client labels()",
            )
        )
    return lines


def _errors(*runs: dict[str, Any] | None) -> int:
    return sum(run["errors"] for run in runs if run)


def summary_table(lines: list[Line]) -> str:
    rows = [
        "| # | measure | onlearn | baseline | ratio | target | result |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for ln in lines:
        base = (
            f"{fmt(ln.baseline)} {ln.unit} ({ln.baseline_name})" if ln.baseline is not None else "-"
        )
        ratio = f"{ln.ratio:.2f}x" if ln.ratio is not None else "-"
        rows.append(
            f"| {ln.number} | {ln.measure} | {fmt(ln.value)} {ln.unit} | {base} | {ratio} "
            f"| {ln.target_text} | **{ln.verdict}** |"
        )
    return "\n".join(rows)


HTTP_RUNS = (
    ("bare_predict", "bare FastAPI POST /predict"),
    ("predict", "onlearn POST /models/phishing/predict"),
    ("predict_nometrics", "onlearn without RED metrics POST /models/phishing/predict"),
    ("feedback", "onlearn POST /models/phishing/feedback"),
    ("feedback_nowait", "onlearn POST /models/phishing/feedback?wait=false"),
    ("batch", "onlearn POST /models/phishing/predict/batch (1000 rows)"),
)


def details_table(r: dict[str, Any]) -> str:
    rows = [
        "| run | conns | window s | requests | req/s | p50 ms | p90 ms | p99 ms | max ms "
        "| errors | server CPU | server CPU us/req | loadgen CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, name in HTTP_RUNS:
        run = r.get(key)
        if not run:
            continue
        lat = run["latency_ms"]
        note = " (ran out of ids: short window)" if run.get("exhausted") else ""
        rows.append(
            f"| {name}{note} | {run['connections']} | {run['window_s']:.2f} | {run['requests']} "
            f"| {fmt(run['rps'])} | {fmt(lat['p50'])} | {fmt(lat['p90'])} | {fmt(lat['p99'])} "
            f"| {fmt(lat['max'])} | {run['errors']} | {_pct(run['server_cpu_util'])} "
            f"| {fmt(run['server_cpu_us_per_request'])} | {_pct(run['loadgen_cpu_util'])} |"
        )
    return "\n".join(rows)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.0f}%"


def notes(r: dict[str, Any]) -> list[str]:
    out = []
    for key, name in HTTP_RUNS:
        run = r.get(key)
        if run and run["errors"]:
            kinds = ", ".join(f"{k}: {n}" for k, n in run["error_kinds"].items())
            out.append(f"{name}: {run['errors']} failed requests ({kinds})")
            out.extend(f"  e.g. {s}" for s in run["error_samples"][:3])
    for key in ("feedback", "feedback_nowait"):
        run = r.get(key)
        if run and run.get("commit"):
            c = run["commit"]
            out.append(
                f"{key}: group commit wrote {c['events']} label events in {c['batches']} "
                f"appends ({c['events_per_batch']:.1f} events per fsync); after the run "
                f"{c['unapplied']} committed events were not applied yet; snapshot at seq "
                f"{c['snapshot_seq']} of {c['applied_seq']}"
            )
    lib = r.get("library")
    if lib:
        out.append(
            f"library: {lib['events']} events, best of {lib['repeats']}: "
            f"onlearn {lib['engine_us_per_event']:.1f} us/event, "
            f"bare {lib['bare_us_per_event']:.1f} us/event "
            f"(all runs, s: onlearn {_list(lib['engine_s'])}; bare {_list(lib['bare_s'])}); "
            f"prequential accuracy onlearn {lib['engine_accuracy']:.4f}, "
            f"bare {lib['bare_accuracy']:.4f} (equal: the same model learned the same stream)"
        )
        if "batch_eps" in lib:
            out.append(
                f"library, batch calls of {lib['batch_rows']} rows: "
                f"{lib['batch_us_per_event']:.1f} us/event (all runs, s: {_list(lib['batch_s'])});"
                f" prequential accuracy {lib['batch_accuracy']:.4f} (each batch is predicted "
                "before its labels are learned: a little lower than row by row)"
            )
    for key, name in (
        ("bare_predict_rounds", "bare predict"),
        ("predict_rounds", "onlearn predict"),
        ("predict_nometrics_rounds", "onlearn predict without RED metrics"),
    ):
        runs = r.get(key)
        if runs and len(runs) > 1:
            each = ", ".join(
                f"{x['rps']:,.0f} (server CPU {_pct(x['server_cpu_util'])})" for x in runs
            )
            out.append(f"{name} req/s by round: {each}; the best round is reported")
    recs = r.get("records")
    if recs:
        written = sum(x["written"] for x in recs)
        dropped = sum(x["dropped"] for x in recs)
        out.append(
            f"onlearn predict servers: {written:,.0f} prediction records written to SQLite, "
            f"{dropped:,.0f} dropped"
        )
    starved = [
        name for key, name in HTTP_RUNS if r.get(key) and (r[key]["server_cpu_util"] or 1.0) < 0.9
    ]
    if starved:
        out.append(
            "server CPU under 90% in: " + "; ".join(starved) + " (a saturated server uses ~100% "
            "of its CPU: less means other processes took the CPU, or the server waited on I/O "
            "or locks)"
        )
    return out


def _list(xs: list[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in xs)


def machine_table(m: dict[str, Any]) -> str:
    rows = ["| | |", "|---|---|"]
    rows += [f"| {k} | {v} |" for k, v in m.items()]
    return "\n".join(rows)


def section(r: dict[str, Any], machine: dict[str, Any], lines: list[Line]) -> str:
    parts = [
        BEGIN,
        HOW_TO,
        f"### Run of {machine['timestamp']}",
        "",
        summary_table(lines),
        "",
        "Details of the HTTP runs:",
        "",
        details_table(r),
        "",
    ]
    n = notes(r)
    if n:
        parts += ["Notes:", "", *(f"- {x}" if not x.startswith("  ") else f"  {x}" for x in n), ""]
    parts += ["Machine and settings:", "", machine_table(machine), "", END]
    return "\n".join(parts) + "\n"
