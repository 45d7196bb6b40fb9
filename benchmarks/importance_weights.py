"""Importance weights: prequential accuracy of the randomised strategies with and without them.

    .venv/bin/python -m benchmarks.importance_weights [--seeds 10] [--jobs 1] [--quick] [--no-write]

For every stream, model and seed, each randomised strategy of ``onlearn.active`` (random,
randomized_variable_uncertainty, split; entropy measure, no evaluation slice) decides at a 10 %
budget whether to buy each label, twice on the same rows with the same seeds: once learning each
bought label once (``pace_weight = false``: the pace weight is measured by
benchmarks/active_learning.py), once with ``importance_weights = true``, learning it with the weight
``min(1 / p, weight_clip)`` (onlearn/weights.py, the path the engine takes). The sampler's
decisions are the same in both runs until the models differ (the strategies see the models'
probabilities). Accuracy is prequential over every point: predict, score, then learn if bought.

The table gives, per cell, the mean accuracy without and with weights over the seeds, and the
paired difference (with - without) with its 95 % t interval over the seeds. Streams and models
are those of benchmarks/active_learning.py. Writes the ``importance-weights`` section of
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from scipy import stats

from benchmarks.active_learning import STREAMS, WINDOW, Rows
from benchmarks.procs import map_tasks, seeded_args, write_section
from onlearn.active import sampler_from_config
from onlearn.models import PipelineSpec, build_pipeline
from onlearn.weights import DEFAULT_WEIGHT_CLIP, event_weight, learn_weighted, takes_weight

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
BEGIN = "<!-- importance-weights:start -->"
END = "<!-- importance-weights:end -->"
COMMAND = ".venv/bin/python -m benchmarks.importance_weights"

BUDGET = 0.1
STRATEGIES = ("random", "randomized_variable_uncertainty", "split")
MODELS = ("logistic_regression", "hoeffding_tree")
STREAM_NAMES = ("phishing", "bananas", "image_segments", "sea_abrupt", "agrawal_abrupt")
QUICK_STREAMS = ("phishing", "sea_abrupt")


def prequential(rows: Rows, model_name: str, strategy: str, seed: int, weighted: bool) -> dict:
    """Accuracy on every point, labels bought and the mean weight of the bought labels."""
    numeric = list(rows[0][0])
    model = build_pipeline(
        PipelineSpec(name=model_name), task="classification", numeric=numeric, categorical=[]
    )
    sampler = sampler_from_config(
        {
            "strategy": strategy,
            "budget": BUDGET,
            "window": WINDOW,
            "measure": "entropy",
            "seed": seed,
            "importance_weights": True,
            "weight_clip": DEFAULT_WEIGHT_CLIP,
        }
    )
    takes = takes_weight(model)
    correct = bought = 0
    weights = 0.0
    for x, y in rows:
        proba = model.predict_proba_one(x)
        if proba:
            correct += max(proba, key=proba.__getitem__) == y
        decision = sampler.decide(proba) if proba else sampler.decide({y: 0.5, None: 0.5})
        if decision.ask:
            bought += 1
            w = event_weight({"sample_p": decision.p}) if weighted else 1.0
            weights += w
            learn_weighted(model, x, y, w, takes)
    return {
        "accuracy": correct / len(rows),
        "share": bought / len(rows),
        "mean_weight": weights / bought if bought else 0.0,
    }


def run_task(task: tuple[str, str, int, int | None]) -> list[dict[str, Any]]:
    stream, model_name, seed, limit = task
    make, length, _ = STREAMS[stream]
    rows = make(seed, min(length, limit or length))
    out = []
    for strategy in STRATEGIES:
        for weighted in (False, True):
            result = prequential(rows, model_name, strategy, seed, weighted)
            out.append(
                {
                    "stream": stream,
                    "model": model_name,
                    "seed": seed,
                    "strategy": strategy,
                    "weighted": weighted,
                    "length": len(rows),
                    **result,
                }
            )
    return out


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    cells: dict[tuple, dict[bool, dict[int, dict]]] = {}
    for r in records:
        key = (r["stream"], r["model"], r["strategy"])
        cells.setdefault(key, {}).setdefault(r["weighted"], {})[r["seed"]] = r
    rows = []
    for (stream, model, strategy), by in cells.items():
        seeds = sorted(by[False])
        plain = [by[False][s]["accuracy"] for s in seeds]
        weighted = [by[True][s]["accuracy"] for s in seeds]
        diffs = [w - p for w, p in zip(weighted, plain, strict=True)]
        mean = statistics.fmean(diffs)
        if len(diffs) > 1:
            half = stats.t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5
        else:
            half = float("nan")
        rows.append(
            {
                "stream": stream,
                "model": model,
                "strategy": strategy,
                "seeds": len(seeds),
                "plain": statistics.fmean(plain),
                "weighted": statistics.fmean(weighted),
                "diff": mean,
                "low": mean - half,
                "high": mean + half,
                "share": statistics.fmean(by[True][s]["share"] for s in seeds),
                "mean_weight": statistics.fmean(by[True][s]["mean_weight"] for s in seeds),
            }
        )
    return rows


def _verdict(row: dict[str, Any]) -> str:
    if row["low"] > 0:
        return "better"
    if row["high"] < 0:
        return "worse"
    return "no difference"


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace, elapsed: float) -> str:
    command = COMMAND + (" --quick" if args.quick else "") + f" --seeds {args.seeds}"
    lines = [
        BEGIN,
        "## Importance weights (issue 14 §1)",
        "",
        f"Command: `{command}` ({elapsed:.0f} s wall, {args.jobs} process(es), "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} cores). Budget {BUDGET:.0%}, window {WINDOW}, entropy measure, "
        f"weight clip {DEFAULT_WEIGHT_CLIP:g}, {args.seeds} seeds per cell; each seed runs the "
        "same rows with and without weights (the same sampler seed). Accuracy is prequential "
        "over every point, in %. The difference is weighted - unweighted, in points, with its "
        "95 % t interval over the seeds; *better* / *worse* when the interval excludes 0. "
        "`mean w`: the mean weight of a bought label. `without` learns each bought label "
        "once (`pace_weight = false`); with importance weights off the server's default "
        "learns logistic regression's bought labels with the pace weight instead (see the "
        'active-learning section and docs/operations.md, "Pace weights").',
        "",
        "| stream | model | strategy | labels | without | with | difference [95 % CI] "
        "| mean w | verdict |",
        "|---|---|---|---:|---:|---:|---|---:|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["stream"], r["model"], r["strategy"])):
        lines.append(
            f"| {r['stream']} | {r['model']} | {r['strategy']} | {r['share']:.1%} "
            f"| {100 * r['plain']:.2f} | {100 * r['weighted']:.2f} "
            f"| {100 * r['diff']:+.2f} [{100 * r['low']:+.2f}, {100 * r['high']:+.2f}] "
            f"| {r['mean_weight']:.2f} | {_verdict(r)} |"
        )
    counts = {v: sum(_verdict(r) == v for r in rows) for v in ("better", "no difference", "worse")}
    lines += [
        "",
        f"Cells: {counts['better']} better, {counts['no difference']} no difference, "
        f"{counts['worse']} worse, of {len(rows)}.",
        END,
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = seeded_args(
        __doc__,
        argv,
        seeds=10,
        jobs=1,
        quick="two streams cut to 800 points",
        quick_seeds=2,
    )
    streams = QUICK_STREAMS if args.quick else STREAM_NAMES
    limit = 800 if args.quick else None
    tasks = [
        (stream, model, seed, limit)
        for stream in streams
        for model in MODELS
        for seed in range(args.seeds)
    ]
    started = time.perf_counter()
    results = map_tasks(run_task, tasks, args.jobs)
    records = [r for rs in results for r in rs]
    text = markdown(summarise(records), args, time.perf_counter() - started)
    print(text)
    if not args.no_write:
        write_section(RESULTS, BEGIN, END, text)


if __name__ == "__main__":
    main()
