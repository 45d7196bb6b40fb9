"""Accuracy estimated without labels (CBPE), against the accuracy the labels then measure.

    .venv/bin/python -m benchmarks.performance_estimate [--seeds 3] [--n 20000] [--quick]
                                                        [--no-write]

A river model learns prequentially (predict, then learn the label) on ``river.datasets.synth``
streams: SEA (binary, 10% label noise, stationary), Hyperplane (binary, gradual drift,
``mag_change`` 0.001), LED (10 classes, 10% noise) and Agrawal with an abrupt concept change
(function 0 -> 2 at n / 2, ``ConceptDriftStream`` width 50, or the narrowest river allows
there: 58 at 10,000). Models: a Hoeffding tree, and a
standardised logistic regression (softmax regression on LED).

The monitor's estimator (``onlearn.drift.PerformanceEstimator``, window 500) sees every
prediction's confidence and learns its calibration from either every label or a 1% random slice
(the monitor's two calibration sources). At the end of each window of 500 predictions (after the
first 1000) its estimate is compared with the accuracy of those 500 predictions: mean and
largest |estimated - measured|, and the same for the raw confidence (no calibration) to show
what the calibration buys; the ECE of the raw confidence at the end; and, on the Agrawal stream,
the largest gap in the 2000 predictions after the change (CBPE assumes no concept drift: this is
the figure of that limit).

Writes the ``performance-estimate`` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from pathlib import Path

from benchmarks.procs import write_section
from onlearn.drift import PerformanceEstimator, confidence_of

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
BEGIN = "<!-- performance-estimate:start -->"
END = "<!-- performance-estimate:end -->"
WINDOW = 500
BURN_IN = 1000
AFTER_CHANGE = 2000


def stream(name: str, n: int, seed: int):
    from river.datasets import synth

    if name == "sea":
        data = synth.SEA(variant=0, noise=0.1, seed=seed)
    elif name == "hyperplane":
        data = synth.Hyperplane(seed=seed, mag_change=0.001, noise_percentage=0.05)
    elif name == "led":
        data = synth.LED(seed=seed, noise_percentage=0.1)
    else:
        data = synth.ConceptDriftStream(
            synth.Agrawal(classification_function=0, seed=seed),
            synth.Agrawal(classification_function=2, seed=seed + 1000),
            position=n // 2,
            # river computes exp(4 * (position - t) / width), which overflows for a width under
            # 4 * position / 709: the narrowest width it allows there.
            width=max(50, math.ceil(4 * (n // 2) / 700)),
            seed=seed,
        )
    return data.take(n)


def model(name: str, stream_name: str):
    from river import linear_model, preprocessing, tree

    if name == "tree":
        return tree.HoeffdingTreeClassifier()
    if stream_name == "led":
        return preprocessing.StandardScaler() | linear_model.SoftmaxRegression()
    return preprocessing.StandardScaler() | linear_model.LogisticRegression()


def run(stream_name: str, model_name: str, n: int, seed: int) -> dict:
    learner = model(model_name, stream_name)
    estimators = {
        "all": PerformanceEstimator(window=WINDOW, reference_size=WINDOW),
        "slice": PerformanceEstimator(window=WINDOW, reference_size=WINDOW),
    }
    draw = random.Random(seed)
    gaps: dict[str, list[float]] = {"all": [], "slice": [], "raw": []}
    after: dict[str, list[float]] = {"all": [], "slice": [], "raw": []}
    right_window: list[bool] = []
    conf_window: list[float] = []
    for t, (x, y) in enumerate(stream(stream_name, n, seed)):
        proba = learner.predict_proba_one(x)
        label = max(proba, key=proba.get) if proba else None
        confidence = confidence_of(label, proba) if proba else None
        if confidence is not None:
            right = label == y
            in_slice = draw.random() < 0.01
            for source, estimator in estimators.items():
                estimator.observe(confidence)
                if source == "all" or in_slice:
                    estimator.learn(confidence, right)
            right_window.append(right)
            conf_window.append(confidence)
        learner.learn_one(x, y)
        if (t + 1) % WINDOW == 0 and t + 1 > BURN_IN and len(right_window) == WINDOW:
            measured = sum(right_window) / WINDOW
            values = {s: e.estimate() for s, e in estimators.items()}
            values["raw"] = sum(conf_window) / WINDOW
            changed = stream_name == "agrawal" and n // 2 < t + 1 <= n // 2 + AFTER_CHANGE
            for source, value in values.items():
                (after if changed else gaps)[source].append(abs(value - measured))
        if (t + 1) % WINDOW == 0:
            right_window, conf_window = [], []
    return {
        "gaps": gaps,
        "after": after,
        "ece": estimators["all"].calibrator.ece(),
        "slice_labels": estimators["slice"].calibrator.n,
    }


def summarise(results: list[dict]) -> dict:
    out = {}
    for source in ("all", "slice", "raw"):
        gaps = [g for r in results for g in r["gaps"][source]]
        after = [g for r in results for g in r["after"][source]]
        out[source] = {
            "mean": statistics.fmean(gaps),
            "max": max(gaps),
            "after_max": max(after) if after else None,
        }
    out["ece"] = statistics.fmean(r["ece"] for r in results)
    out["slice_labels"] = statistics.fmean(r["slice_labels"] for r in results)
    return out


def table(cells: dict, args) -> str:
    def pts(v):
        return "-" if v is None else f"{100 * v:.1f}"

    lines = [
        BEGIN,
        "## Accuracy estimated without labels (CBPE): estimate against measured accuracy",
        "",
        f"How to run: `.venv/bin/python -m benchmarks.performance_estimate --seeds {args.seeds} "
        f"--n {args.n}` ({args.elapsed:.0f} s on this machine). Rewrites this section.",
        "",
        "A river model learns prequentially on each stream; the monitor's estimator sees every "
        "prediction's confidence and calibrates on every label (`all`) or on a 1% random slice "
        f"(`slice`, about {args.slice_labels:.0f} labels per run); `raw` is the mean confidence "
        f"without calibration. Each window of {WINDOW} predictions after the first {BURN_IN}: "
        "|estimated - measured accuracy| in accuracy points, mean and largest over windows and "
        f"{args.seeds} seeds. ECE: of the raw confidence on the last labels. After change: the "
        f"largest gap in the {AFTER_CHANGE} predictions after Agrawal's abrupt concept change "
        "(excluded from the other columns): CBPE assumes no concept drift, and this is that limit.",
        "",
        "| stream | model | all: mean | all: max | slice: mean | slice: max | raw: mean | "
        "raw: max | ECE | after change (all / slice / raw) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (stream_name, model_name), s in cells.items():
        after = (
            " / ".join(pts(s[k]["after_max"]) for k in ("all", "slice", "raw"))
            if s["all"]["after_max"] is not None
            else "-"
        )
        lines.append(
            f"| {stream_name} | {model_name} | {pts(s['all']['mean'])} | {pts(s['all']['max'])} "
            f"| {pts(s['slice']['mean'])} | {pts(s['slice']['max'])} | {pts(s['raw']['mean'])} "
            f"| {pts(s['raw']['max'])} | {s['ece']:.3f} | {after} |"
        )
    lines += ["", END]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=3, help="seeds per stream and model")
    p.add_argument("--n", type=int, default=20_000, help="predictions per run")
    p.add_argument("--quick", action="store_true", help="1 seed, 4000 predictions: a smoke run")
    p.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.n = 1, 4000
    started = time.perf_counter()
    cells = {}
    for stream_name in ("sea", "hyperplane", "led", "agrawal"):
        for model_name in ("tree", "logistic"):
            results = [run(stream_name, model_name, args.n, seed) for seed in range(args.seeds)]
            cells[stream_name, model_name] = summarise(results)
            print(stream_name, model_name, cells[stream_name, model_name], flush=True)
    args.elapsed = time.perf_counter() - started
    args.slice_labels = statistics.fmean(c["slice_labels"] for c in cells.values())
    text = table(cells, args)
    print(text)
    if not args.no_write and not args.quick:
        write_section(RESULTS, BEGIN, END, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
