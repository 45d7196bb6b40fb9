"""Drift monitoring: concept drift detectors on error streams, input drift tests by window size.

    .venv/bin/python -m benchmarks.drift [--seeds 20] [--references 10] [--windows 2000]
                                         [--jobs 2] [--quick] [--no-write]

A. Concept drift detectors (``onlearn.drift.detector_from_config``, default parameters): river's
   ADWIN, DDM, EDDM, HDDM_A, HDDM_W, KSWIN, Page-Hinkley and FHDDM, and our Linear Four Rates.
   Every detector sees the same ``(y_true, y_pred)`` stream of a seed (errors for most, the pair
   for LFR) and starts afresh after each detection, as river's do. Every detector runs on
   every seed and scenario (KSWIN too: ours decides as river's at some 25 us per update).

   - stationary streams (error rate 0.1 and 0.3): false alarms per 10,000 events;
   - raw Bernoulli streams with a known drift at t = 5000: abrupt (error 0.1 -> 0.3), gradual
     (the same, the new rate mixed in along a sigmoid of width 1000 centred at 5500), and an
     imbalanced recall drop (10% positives, recall 0.9 -> 0.4, specificity 0.95: the error
     rate only moves from 0.055 to 0.105);
   - a river HoeffdingTreeClassifier learning prequentially (predict, then learn) on
     ``river.datasets.synth`` SEA (variant 0 -> 2), Agrawal (function 0 -> 2) and STAGGER
     (function 0 -> 2) joined by ``ConceptDriftStream`` at 5000: "abrupt" with width 50 (the
     narrowest it allows there: it computes exp(4 * (position - t) / width), which overflows for
     width < 4 * position / 709) and gradual with width 1000.

   A drift is detected when a detection falls in [start, start + 2000), ``start`` being the
   drift point of a raw abrupt stream, else where the transition begins (centre - width / 2,
   where the new concept is 12% of the stream: 4975 for width 50, 5000 for the raw gradual
   stream); delay = first such detection - start. Detections before ``start`` are false
   alarms (on the classifier streams they include changes of the error rate while the tree is
   still learning the first concept). Cost per update: microseconds, best of 3 passes over a stationary
   stream (LFR with its table of bounds computed; the time to compute it is given apart).

B. Input drift tests (``onlearn.drift.stats``), against a reference of 10,000 values (numbers:
   N(0, 1) in 10 quantile bins; categories: 8 values, 40% to 1%): the share of windows that
   alarm at alpha = 0.01, for window sizes 50 to 1000, with no drift (false alarms) and with a
   drift (power): the mean moved by 0.2 sd; 8 points of the top category's share moved to the
   rarest. And the dataset-level alarm over 20 features (none, BH, Holm), and the monitor's cost.

C. The false alarm rate per reference, at the monitor's default sizes (a reference profile of
   1000 rows: a sample of 1000 values and 10 quantile bins; windows of 500): ``--references``
   references, each drawn afresh from the truth (numbers N(0, 1); the 8 categories of B), and
   ``--windows`` no-drift windows against each, with the plain two-sample tests
   (``reference_confidence=None``) and the bounded ones (the default, 0.99), exactly as
   ``InputDriftMonitor`` computes them. Goal: every reference at most 2 x alpha. Power, over
   the same references: 200 windows each, mean moved by 0.3 sd, 8 points of category share
   moved. And the share of 100-row windows whose PSI exceeds 0.1, per reference.

D. Feature importance (``onlearn.drift.feature_importance``, the worker's default budget): the
   CPU time of one computation for the catalog's classifiers trained on 3000 rows of 10 numeric
   features (the label from 2 of them), over a window of 1000 labelled rows: weights for the
   logistic regression, permutation importance for the others.

Writes the ``drift`` section of benchmarks/RESULTS.md and the raw numbers to
benchmarks/out/drift.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.procs import write_section
from onlearn.drift import (
    DETECTORS,
    InputDriftMonitor,
    LinearFourRates,
    build_profile,
    detector_from_config,
)
from onlearn.drift import stats as dstats

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
OUT = ROOT / "benchmarks" / "out" / "drift.json"
BEGIN = "<!-- drift:start -->"
END = "<!-- drift:end -->"

N_EVENTS = 10_000
DRIFT_AT = 5_000
HORIZON = 2_000
GRADUAL_WIDTH = 1_000
ABRUPT_WIDTH = 50
ALPHA = 0.01
SIZES = (50, 100, 200, 500, 1000)
CATEGORY_P = np.array([0.4, 0.2, 0.15, 0.1, 0.08, 0.04, 0.02, 0.01])
CATEGORY_MOVED = np.array([0.32, 0.2, 0.15, 0.1, 0.08, 0.04, 0.02, 0.09])
SHIFT = 0.2

NAMES = {
    "adwin": "ADWIN",
    "ddm": "DDM",
    "eddm": "EDDM",
    "hddm_a": "HDDM_A",
    "hddm_w": "HDDM_W",
    "kswin": "KSWIN",
    "page_hinkley": "PageHinkley",
    "fhddm": "FHDDM",
    "lfr": "LFR (ours)",
}
REFERENCE_ROWS = 1_000  # the monitor's reference_size
MONITOR_WINDOW = 500  # the monitor's window
CONFIDENCE = 0.99  # InputDriftMonitor's reference_confidence
POWER_WINDOWS = 200


# -- A. concept drift ------------------------------------------------------------------------


def sigmoid_share(t: int, centre: float, width: float) -> float:
    x = -4.0 * (t - centre) / width
    return 0.0 if x > 700 else 1.0 / (1.0 + math.exp(x))


def bernoulli_pairs(kind: str, seed: int) -> tuple[list, int | None, int]:
    """(pairs, drift start or None, events) of a raw scenario."""
    rng = random.Random(seed)
    pairs = []
    if kind.startswith("stationary"):
        error = float(kind.split("=")[1])
        for _ in range(2 * N_EVENTS):
            y = rng.random() < 0.5
            pairs.append((y, y if rng.random() >= error else not y))
        return pairs, None, len(pairs)
    if kind == "imbalanced recall drop":
        for t in range(N_EVENTS):
            y = rng.random() < 0.1
            recall = 0.9 if t < DRIFT_AT else 0.4
            pairs.append((y, (rng.random() < recall) if y else (rng.random() >= 0.95)))
        return pairs, DRIFT_AT, N_EVENTS
    gradual = kind.startswith("gradual")
    centre = DRIFT_AT + GRADUAL_WIDTH / 2
    for t in range(N_EVENTS):
        if gradual:
            new = rng.random() < sigmoid_share(t, centre, GRADUAL_WIDTH)
        else:
            new = t >= DRIFT_AT
        error = 0.3 if new else 0.1
        y = rng.random() < 0.5
        pairs.append((y, y if rng.random() >= error else not y))
    return pairs, DRIFT_AT, N_EVENTS


def classifier_pairs(kind: str, seed: int) -> tuple[list, int, int]:
    from river import tree
    from river.datasets import synth

    name, how = kind.split(" ", 1)
    if name == "SEA":
        before, after = synth.SEA(variant=0, seed=seed), synth.SEA(variant=2, seed=seed + 1000)
    elif name == "Agrawal":
        before = synth.Agrawal(classification_function=0, seed=seed)
        after = synth.Agrawal(classification_function=2, seed=seed + 1000)
    else:
        before = synth.STAGGER(classification_function=0, seed=seed)
        after = synth.STAGGER(classification_function=2, seed=seed + 1000)
    width = ABRUPT_WIDTH if how == "abrupt" else GRADUAL_WIDTH
    stream = synth.ConceptDriftStream(
        stream=before, drift_stream=after, position=DRIFT_AT, width=width, seed=seed
    )
    model = tree.HoeffdingTreeClassifier()
    pairs = []
    for x, y in itertools.islice(stream, N_EVENTS):
        pairs.append((y, model.predict_one(x)))
        model.learn_one(x, y)
    return pairs, DRIFT_AT - width // 2, N_EVENTS


RAW = (
    "stationary error=0.1",
    "stationary error=0.3",
    "abrupt 0.1->0.3",
    "gradual 0.1->0.3",
    "imbalanced recall drop",
)
CLASSIFIER = tuple(
    f"{s} {how}" for s in ("SEA", "Agrawal", "STAGGER") for how in ("abrupt", "gradual")
)


def run_detectors(task: tuple[str, int]) -> list[dict]:
    scenario, seed = task
    if scenario in RAW:
        pairs, start, n = bernoulli_pairs(scenario, seed)
    else:
        pairs, start, n = classifier_pairs(scenario, seed)
    errors = sum(y != p for y, p in pairs[: start or len(pairs)]) / (start or len(pairs))
    out = []
    for name in DETECTORS:
        detector = detector_from_config(name)
        update = detector.update_pair
        hits = []
        for t, (y, p) in enumerate(pairs):
            update(y, p)
            if detector.drift_detected:
                hits.append(t)
        out.append(
            {
                "scenario": scenario,
                "seed": seed,
                "detector": name,
                "start": start,
                "events": n,
                "detections": hits,
                "error_before": errors,
            }
        )
    return out


def summarise_detectors(records: list[dict]) -> dict:
    table: dict[tuple[str, str], dict] = {}
    for (scenario, name), group in itertools.groupby(
        sorted(records, key=lambda r: (r["scenario"], r["detector"])),
        key=lambda r: (r["scenario"], r["detector"]),
    ):
        group = list(group)
        row: dict[str, Any] = {"runs": len(group)}
        start = group[0]["start"]
        if start is None:
            events = sum(r["events"] for r in group)
            row["false_per_10k"] = 1e4 * sum(len(r["detections"]) for r in group) / events
        else:
            before = sum(sum(t < start for t in r["detections"]) for r in group)
            row["false_per_10k"] = 1e4 * before / (start * len(group))
            delays = []
            for r in group:
                found = [t - start for t in r["detections"] if start <= t < start + HORIZON]
                if found:
                    delays.append(found[0])
            row["detected"] = len(delays) / len(group)
            row["delay"] = statistics.mean(delays) if delays else None
        row["error_before"] = statistics.mean(r["error_before"] for r in group)
        table[(scenario, name)] = row
    return table


def detector_costs(events: int = 30_000) -> dict:
    rng = random.Random(0)
    pairs = [
        (y, y if rng.random() >= 0.1 else not y)
        for y in (rng.random() < 0.5 for _ in range(events))
    ]
    t0 = time.perf_counter()
    LinearFourRates().warm_up()
    table_s = time.perf_counter() - t0
    costs = {}
    for name in DETECTORS:
        n = 1000 if name == "kswin" else events
        best = math.inf
        for _ in range(1 if name == "kswin" else 3):
            detector = detector_from_config(name)
            update = detector.update_pair
            t0 = time.perf_counter()
            for y, p in pairs[:n]:
                update(y, p)
                detector.drift_detected  # noqa: B018 - read as a monitor would
            best = min(best, (time.perf_counter() - t0) / n)
        costs[name] = best * 1e6
    # LFR bare, without the wrapper: the cost of the algorithm itself
    lfr = LinearFourRates()
    best = math.inf
    for _ in range(3):
        lfr = LinearFourRates()
        t0 = time.perf_counter()
        for y, p in pairs:
            lfr.update(y, p)
        best = min(best, (time.perf_counter() - t0) / events)
    return {"us_per_update": costs, "lfr_bare_us": best * 1e6, "lfr_table_s": table_s}


# -- B. input drift --------------------------------------------------------------------------


def input_reference(seed: int = 123) -> dict:
    rng = np.random.default_rng(seed)
    m = 10_000
    rows = [
        {"x": float(v), "c": int(c)}
        for v, c in zip(rng.normal(size=m), rng.choice(8, size=m, p=CATEGORY_P), strict=True)
    ]
    profile = build_profile(rows, numeric=["x"], categorical=["c"], sample_size=m)
    x, c = profile["x"], profile["c"]
    return {
        "edges": np.asarray(x.edges),
        "sample": np.asarray(x.sample),
        "x_counts": np.asarray(x.bin_counts),
        "c_counts": np.asarray(c.bin_counts),
        "c_index": np.array([c.categories.index(i) for i in range(8)]),
    }


NUMERIC_METHODS = (
    "PSI > 0.1",
    "PSI > 0.25",
    "PSI, chi2 approx.",
    "PSI, calibrated",
    "KL, calibrated",
    "JS, calibrated",
    "Hellinger, calibrated",
    "chi2 (bins), calibrated",
    "KS",
)
CATEGORICAL_METHODS = (
    "PSI > 0.1",
    "PSI, calibrated",
    "chi2, asymptotic",
    "chi2, calibrated",
)


def input_task(task: tuple[str, int, bool, int]) -> dict:
    kind, n, drifted, trials = task
    ref = input_reference()
    rng = np.random.default_rng([n, int(drifted), kind == "numeric"])
    hits: dict[str, int] = {}
    if kind == "numeric":
        null = dstats.HistogramNull(ref["x_counts"], n, seed=(1, n))
        m = int(ref["x_counts"].sum())
        for _ in range(trials):
            w = rng.normal(SHIFT if drifted else 0.0, 1.0, size=n)
            counts = np.bincount(np.searchsorted(ref["edges"], w), minlength=len(ref["x_counts"]))
            h = {
                k: float(v) for k, v in dstats.histogram_statistics(ref["x_counts"], counts).items()
            }
            used = int(np.count_nonzero((ref["x_counts"] + counts) > 0))
            decisions = {
                "PSI > 0.1": h["psi"] > 0.1,
                "PSI > 0.25": h["psi"] > 0.25,
                "PSI, chi2 approx.": dstats.asymptotic_p_value("psi", h["psi"], n, m, used)
                <= ALPHA,
                "PSI, calibrated": null.p_value("psi", h["psi"]) <= ALPHA,
                "KL, calibrated": null.p_value("kl", h["kl"]) <= ALPHA,
                "JS, calibrated": null.p_value("js", h["js"]) <= ALPHA,
                "Hellinger, calibrated": null.p_value("hellinger", h["hellinger"]) <= ALPHA,
                "chi2 (bins), calibrated": null.p_value("chi2", h["chi2"]) <= ALPHA,
                "KS": dstats.ks_test(ref["sample"], w)[1] <= ALPHA,
            }
            for k, v in decisions.items():
                hits[k] = hits.get(k, 0) + bool(v)
    else:
        null = dstats.HistogramNull(ref["c_counts"], n, seed=(2, n))
        p = CATEGORY_MOVED if drifted else CATEGORY_P
        for _ in range(trials):
            cats = ref["c_index"][rng.choice(8, size=n, p=p)]
            counts = np.bincount(cats, minlength=len(ref["c_counts"]))
            psi = float(dstats.psi(ref["c_counts"], counts))
            chi2 = float(dstats.chi2_statistic(ref["c_counts"], counts)[0])
            decisions = {
                "PSI > 0.1": psi > 0.1,
                "PSI, calibrated": null.p_value("psi", psi) <= ALPHA,
                "chi2, asymptotic": dstats.chi2_test(ref["c_counts"], counts)[1] <= ALPHA,
                "chi2, calibrated": null.p_value("chi2", chi2) <= ALPHA,
            }
            for k, v in decisions.items():
                hits[k] = hits.get(k, 0) + bool(v)
    return {
        "kind": kind,
        "n": n,
        "drifted": drifted,
        "trials": trials,
        "rates": {k: v / trials for k, v in hits.items()},
    }


def dataset_task(task: tuple[int, int]) -> dict:
    """20 numeric features, window 200, KS per feature; 2 of them shifted by 0.3 sd or none."""
    trials, n_drifted = task
    rng = np.random.default_rng([7, n_drifted])
    k, window = 20, 200
    samples = [np.sort(rng.normal(size=5000)) for _ in range(k)]
    out = {c: {"alarms": 0, "true": 0, "false": 0} for c in ("none", "bh", "holm")}
    for _ in range(trials):
        p_values = []
        for j in range(k):
            w = rng.normal(0.3 if j < n_drifted else 0.0, 1.0, size=window)
            p_values.append(dstats.ks_test(samples[j], w)[1])
        for c in out:
            flags = dstats.reject(p_values, ALPHA, c)
            out[c]["alarms"] += any(flags)
            out[c]["true"] += sum(flags[:n_drifted])
            out[c]["false"] += sum(flags[n_drifted:])
    return {"n_drifted": n_drifted, "trials": trials, "result": out}


def monitor_costs() -> dict:
    rng = random.Random(3)
    names = [f"x{i}" for i in range(10)]
    cats = [f"c{i}" for i in range(5)]

    def row():
        r = {n: rng.gauss(0, 1) for n in names}
        r.update({c: rng.choice("abcdefgh") for c in cats})
        return r

    profile = build_profile((row() for _ in range(10_000)), numeric=names, categorical=cats)
    monitor = InputDriftMonitor(profile, window=500)
    rows = [row() for _ in range(5000)]
    t0 = time.perf_counter()
    for r in rows:
        monitor.update(r)
    update_us = (time.perf_counter() - t0) / len(rows) * 1e6
    t0 = time.perf_counter()
    monitor.report()
    cold_ms = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    for _ in range(5):
        monitor.report()
    warm_ms = (time.perf_counter() - t0) / 5 * 1e3
    return {"features": 15, "window": 500, "update_us": update_us, "report_cold_ms": cold_ms,
            "report_warm_ms": warm_ms}  # fmt: skip


# -- C. false alarms per reference ----------------------------------------------------------


def reference_task(task: tuple[int, int]) -> dict:
    """One reference of the monitor's size, drawn afresh; no-drift windows against it."""
    index, windows = task
    rng = np.random.default_rng([11, index])
    m, n = REFERENCE_ROWS, MONITOR_WINDOW
    rows = [
        {"x": float(v), "c": int(c)}
        for v, c in zip(rng.normal(size=m), rng.choice(8, size=m, p=CATEGORY_P), strict=True)
    ]
    profile = build_profile(rows, numeric=["x"], categorical=["c"], sample_size=m)
    x, c = profile["x"], profile["c"]
    sample, edges = np.asarray(x.sample), np.asarray(x.edges)
    x_counts, c_counts = np.asarray(x.bin_counts), np.asarray(c.bin_counts)
    c_index = np.array([c.categories.index(i) if i in c.categories else len(c_counts)
                        for i in range(8)])  # fmt: skip
    c_counts = np.append(c_counts, 0)  # a category the reference never saw: its own bin
    nulls = {
        bounded: dstats.HistogramNull(
            c_counts, n, seed=(42, 1, n), reference_confidence=CONFIDENCE if bounded else None
        )
        for bounded in (False, True)
    }
    psi_null = dstats.HistogramNull(
        x_counts, 100, seed=(42, 0, 100), reference_confidence=CONFIDENCE
    )
    out = {"index": index, "windows": windows}

    def decide(shift: float, p) -> tuple[bool, bool, bool, bool]:
        w = rng.normal(shift, 1.0, size=n)
        d, plain = dstats.ks_test(sample, w)
        bounded = dstats.ks_bound_p_value(d, n, len(sample), CONFIDENCE)
        counts = np.bincount(c_index[rng.choice(8, size=n, p=p)], minlength=len(c_counts))
        chi2 = float(dstats.chi2_statistic(c_counts, counts)[0])
        return (
            plain <= ALPHA,
            bounded <= ALPHA,
            nulls[False].p_value("chi2", chi2) <= ALPHA,
            nulls[True].p_value("chi2", chi2) <= ALPHA,
        )

    keys = ("ks plain", "ks bounded", "chi2 plain", "chi2 bounded")
    null_hits = np.sum([decide(0.0, CATEGORY_P) for _ in range(windows)], axis=0)
    power_hits = np.sum([decide(0.3, CATEGORY_MOVED) for _ in range(POWER_WINDOWS)], axis=0)
    out["false"] = {k: int(v) for k, v in zip(keys, null_hits, strict=True)}
    out["power"] = {k: int(v) for k, v in zip(keys, power_hits, strict=True)}
    psi_over = psi_calibrated = 0
    for _ in range(windows):
        w = rng.normal(size=100)
        counts = np.bincount(np.searchsorted(edges, w), minlength=len(x_counts))
        psi = float(dstats.psi(x_counts, counts))
        psi_over += psi > 0.1
        psi_calibrated += psi_null.p_value("psi", psi) <= ALPHA
    out["psi_over_0.1"] = psi_over
    out["psi_calibrated"] = psi_calibrated
    return out


def reference_table(results: list[dict]) -> list[str]:
    results = sorted(results, key=lambda r: r["index"])
    windows = results[0]["windows"]
    keys = ("ks plain", "ks bounded", "chi2 plain", "chi2 bounded")
    lines = [
        f"False alarm rate per reference (alpha = {ALPHA}; goal: every reference at most "
        f"{2 * ALPHA}), {len(results)} references of {REFERENCE_ROWS} rows x {windows} "
        f"no-drift windows of {MONITOR_WINDOW} rows; plain: the two-sample tests, bounded: "
        f"``reference_confidence = {CONFIDENCE}`` (the default):",
        "",
        "| reference | KS plain | KS bounded | chi2 plain | chi2 bounded | "
        "PSI > 0.1, 100 rows | PSI bounded, 100 rows |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        cells = [f"{r['false'][k] / windows:.4f}" for k in keys]
        cells.append(f"{r['psi_over_0.1'] / windows:.3f}")
        cells.append(f"{r['psi_calibrated'] / windows:.4f}")
        lines.append(f"| {r['index']} | " + " | ".join(cells) + " |")
    worst = [max(r["false"][k] for r in results) / windows for k in keys]
    psi = [r["psi_over_0.1"] / windows for r in results]
    lines.append(
        "| **worst** | "
        + " | ".join(f"**{w:.4f}**" for w in worst)
        + f" | {min(psi):.3f}-{max(psi):.3f} | |"
    )
    power = [sum(r["power"][k] for r in results) / (POWER_WINDOWS * len(results)) for k in keys]
    held = all(w <= 2 * ALPHA for w in (worst[1], worst[3]))
    lines += [
        "",
        f"Power over the same references ({POWER_WINDOWS} windows each): mean moved by 0.3 sd, "
        f"KS plain {power[0]:.3f}, bounded {power[1]:.3f}; 8 points of category share moved, "
        f"chi2 plain {power[2]:.3f}, bounded {power[3]:.3f}.",
        "",
        f"Reading: the goal {'holds' if held else 'is missed'} for the bounded tests (worst "
        f"reference {worst[1]:.4f} for KS, {worst[3]:.4f} for chi2, against "
        f"{worst[0]:.4f} and {worst[2]:.4f} plain). The plain KS misses it because it takes "
        "the reference as one draw among many: its level holds on average over references, "
        "and an unlucky one lets windows of the true distribution look drifted. The bound is "
        "conservative (its rates are far under alpha: the triangle inequality adds the two "
        "deviations at their worst), and costs power on small shifts. PSI's 0.1 rule, with no "
        f"drift, is exceeded by {min(r['psi_over_0.1'] for r in results) / windows:.0%}-"
        f"{max(r['psi_over_0.1'] for r in results) / windows:.0%} of 100-row windows against "
        "these 1000-row references (29% against the 10,000-row one of B).",
    ]
    return lines


# -- D. feature importance cost -------------------------------------------------------------


def importance_costs() -> list[dict]:
    from onlearn.drift import ImportanceBudget, feature_importance
    from onlearn.models.catalog import PipelineSpec, build_pipeline

    rng = random.Random(4)
    features = [f"x{i}" for i in range(10)]
    rows = [{f: rng.gauss(0, 1) for f in features} for _ in range(4000)]
    labels = [r["x0"] + 0.5 * r["x1"] + rng.gauss(0, 0.3) > 0 for r in rows]
    out = []
    for name in ("logistic_regression", "gaussian_naive_bayes", "hoeffding_tree",
                 "adaptive_random_forest"):  # fmt: skip
        model = build_pipeline(
            PipelineSpec.from_config(name),
            task="classification",
            numeric=features,
            categorical=[],
            classes=[True, False],
        )
        for x, y in zip(rows[:3000], labels[:3000], strict=True):
            model.learn_one(x, y)
        t0 = time.process_time()
        result = feature_importance(
            model, features, rows[3000:], labels[3000:], budget=ImportanceBudget()
        )
        cpu = time.process_time() - t0
        out.append(
            {
                "model": name,
                "method": result.method,
                "rows": result.rows,
                "cpu_s": cpu,
                "thread_cpu_s": result.seconds,
                "top": result.ranking[:3],
                "detail": result.detail,
            }
        )
    return out


def importance_table(results: list[dict]) -> list[str]:
    budget = "window 1000, sample 300, time cap 1 s"
    lines = [
        f"One computation per version, default budget ({budget}); 10 features, label from "
        "x0 and x1:",
        "",
        "| model | method | rows used | CPU s (thread) | CPU s (process) | top 3 |",
        "|---|---|---:|---:|---:|---|",
    ]
    for r in results:
        top = ", ".join(r["top"]) or r["detail"]
        lines.append(
            f"| {r['model']} | {r['method']} | {r['rows']} | {r['thread_cpu_s']:.3f} | "
            f"{r['cpu_s']:.3f} | {top} |"
        )
    return lines


# -- report ----------------------------------------------------------------------------------


def fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def detector_tables(table: dict, costs: dict) -> list[str]:
    lines = []
    stationary = [s for s in RAW if s.startswith("stationary")]
    drifting = [s for s in RAW if not s.startswith("stationary")] + list(CLASSIFIER)
    lines += [
        "False alarms per 10,000 events on stationary streams, and cost per update:",
        "",
        "| detector | " + " | ".join(stationary) + " | runs | us / update |",
        "|---|" + "---:|" * (len(stationary) + 2),
    ]
    for name in DETECTORS:
        cells = [fmt(table.get((s, name), {}).get("false_per_10k"), 2) for s in stationary]
        runs = table.get((stationary[0], name), {}).get("runs", 0)
        us = costs["us_per_update"][name]
        lines.append(f"| {NAMES[name]} | " + " | ".join(cells) + f" | {runs} | {fmt(us, 1)} |")
    lines += [
        "",
        f"LFR alone, without the config wrapper: {costs['lfr_bare_us']:.1f} us per update; "
        f"its table of bounds (eta 0.9, levels 0.01 / 0.0001) takes {costs['lfr_table_s']:.1f} s "
        "to compute in full, once per process (or column by column, some 20 ms each, as rates "
        "first need them).",
        "",
        "Detection rate (in the 2000 events after the drift starts) / mean delay (events) / "
        "false alarms per 10,000 events before the drift:",
        "",
        "| scenario | error before | " + " | ".join(NAMES[d] for d in DETECTORS) + " |",
        "|---|---:|" + "---|" * len(DETECTORS),
    ]
    for s in drifting:
        first = table.get((s, "adwin"), {})
        cells = []
        for name in DETECTORS:
            row = table.get((s, name))
            if row is None:
                cells.append("-")
                continue
            cells.append(
                f"{100 * row['detected']:.0f}% / {fmt(row['delay'], 0)} / "
                f"{fmt(row['false_per_10k'], 1)}"
            )
        lines.append(f"| {s} | {fmt(first.get('error_before'), 3)} | " + " | ".join(cells) + " |")
    return lines


def kswin_reading(table: dict) -> list[str]:
    """What KSWIN found of the changes, against ADWIN (the default detector)."""
    abrupt = [s for s in RAW + CLASSIFIER if "abrupt" in s or s == "imbalanced recall drop"]
    gradual = [s for s in RAW + CLASSIFIER if "gradual" in s]

    def found(name: str, scenarios: list[str]) -> str:
        rows = [table[(s, name)] for s in scenarios if (s, name) in table]
        hits = round(sum(r["detected"] * r["runs"] for r in rows))
        return f"{hits} of {sum(r['runs'] for r in rows)}"

    return [
        "",
        f"KSWIN at onlearn's defaults (a window of 500, 150 against 150 values, alpha 0.005) "
        f"found {found('kswin', abrupt)} abrupt changes ({', '.join(abrupt)}; every seed), "
        f"ADWIN {found('adwin', abrupt)}; of the gradual ones, {found('kswin', gradual)} "
        f"against {found('adwin', gradual)}. At river's defaults (a window of 100, 30 against "
        "30) this benchmark found 45 of 100 abrupt changes (7 of 20 of abrupt 0.1->0.3, 0 of "
        "20 imbalanced recall drops; run of 2026-12-07 before the change): a KS test of 30 "
        "against 30 right-or-wrong answers is a test of two proportions with little power. "
        "What still falls short (changes of an error rate that a window of 150 does not see, "
        "gradual ones, the imbalanced recall drop) is documented in docs/operations.md "
        "(Monitor): ADWIN, the default, for a classifier's errors.",
    ]


def input_tables(results: list[dict]) -> list[str]:
    by = {(r["kind"], r["n"], r["drifted"]): r for r in results}
    lines = []
    for kind, methods, what in (
        ("numeric", NUMERIC_METHODS, f"a number (drift: mean + {SHIFT} sd)"),
        ("categorical", CATEGORICAL_METHODS, "a category (drift: 8 points of share moved)"),
    ):
        for drifted, title in ((False, "false alarms"), (True, "power")):
            trials = by[(kind, SIZES[0], drifted)]["trials"]
            lines += [
                f"Share of windows alarming, {title}, {what}; alpha = {ALPHA}, "
                f"{trials} windows per cell:",
                "",
                "| test | " + " | ".join(f"n = {n}" for n in SIZES) + " |",
                "|---|" + "---:|" * len(SIZES),
            ]
            for method in methods:
                cells = [f"{by[(kind, n, drifted)]['rates'][method]:.3f}" for n in SIZES]
                lines.append(f"| {method} | " + " | ".join(cells) + " |")
            lines.append("")
    return lines


def dataset_table(results: list[dict]) -> list[str]:
    lines = [
        f"Dataset-level alarm over 20 numeric features (KS, window 200, alpha = {ALPHA}); "
        "features flagged per window:",
        "",
        "| correction | alarms, no drift | alarms, 2 of 20 shifted 0.3 sd | true flagged | "
        "false flagged |",
        "|---|---:|---:|---:|---:|",
    ]
    null = next(r for r in results if r["n_drifted"] == 0)
    drift = next(r for r in results if r["n_drifted"] > 0)
    for c in ("none", "bh", "holm"):
        a = null["result"][c]["alarms"] / null["trials"]
        b = drift["result"][c]["alarms"] / drift["trials"]
        t = drift["result"][c]["true"] / drift["trials"]
        f = drift["result"][c]["false"] / drift["trials"]
        lines.append(f"| {c} | {a:.3f} | {b:.3f} | {t:.2f} | {f:.2f} |")
    return lines


def section(args, table, costs, inputs, datasets, monitor, references, importance, seconds):
    command = ".venv/bin/python -m benchmarks.drift" + (" --quick" if args.quick else "")
    defaults = (args.seeds, args.trials, args.references, args.windows) == (20, 1000, 10, 2000)
    if not args.quick and not defaults:
        command += (
            f" --seeds {args.seeds} --trials {args.trials} --references {args.references}"
            f" --windows {args.windows}"
        )
    lines = [
        BEGIN,
        "## Drift monitoring: concept drift detectors and input drift tests",
        "",
        f"Command: `{command}` ({seconds:.0f} s with {args.jobs} processes; "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs). "
        "What is measured is in the docstring of benchmarks/drift.py; raw numbers in "
        "benchmarks/out/drift.json.",
        "",
        "### A. Concept drift detectors (default parameters)",
        "",
        f"{args.seeds} seeds per scenario, every detector (KSWIN included). "
        f"Every stream {N_EVENTS:,} events (stationary: {2 * N_EVENTS:,}), drift at "
        f"{DRIFT_AT:,}. Costs and times were measured on a machine shared with other work, so "
        "they are indicative.",
        "",
    ]
    lines += detector_tables(table, costs)
    lines += kswin_reading(table)
    lines += ["", "### B. Input drift tests by window size", ""]
    lines += input_tables(inputs)
    lines += dataset_table(datasets)
    lines += ["", "### C. False alarms per reference, at the monitor's sizes", ""]
    lines += reference_table(references)
    lines += ["", "### D. Feature importance: the CPU budget", ""]
    lines += importance_table(importance)
    lines += [
        "",
        f"InputDriftMonitor, {monitor['features']} features (10 numbers, 5 categories), window "
        f"{monitor['window']}: update {monitor['update_us']:.1f} us per row; report "
        f"{monitor['report_warm_ms']:.0f} ms ({monitor['report_cold_ms']:.0f} ms the first "
        "time, which simulates the null of each histogram for the window size).",
        END,
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.drift", description=__doc__.split("\n")[0]
    )
    p.add_argument("--seeds", type=int, default=20, help="seeds per detector scenario")
    p.add_argument("--trials", type=int, default=1000, help="windows per input drift cell")
    p.add_argument(
        "--references", type=int, default=10, help="references drawn for the per-reference rates"
    )
    p.add_argument(
        "--windows", type=int, default=2000, help="no-drift windows against each reference"
    )
    p.add_argument("--jobs", type=int, default=2, help="worker processes")
    p.add_argument(
        "--quick", action="store_true", help="2 seeds, 200 windows, 3 references: a smoke run"
    )
    p.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.trials, args.references, args.windows = 2, 200, 3, 200
    t0 = time.perf_counter()
    tasks = [(s, seed) for seed in range(args.seeds) for s in CLASSIFIER + RAW]
    input_tasks = [
        (kind, n, drifted, args.trials if not drifted else max(200, args.trials // 3))
        for kind in ("numeric", "categorical")
        for n in SIZES
        for drifted in (False, True)
    ]
    dataset_tasks = [(max(100, args.trials // 3), 0), (max(100, args.trials // 3), 2)]
    with ProcessPoolExecutor(args.jobs) as pool:
        detector_futures = [pool.submit(run_detectors, t) for t in tasks]
        input_futures = [pool.submit(input_task, t) for t in input_tasks]
        dataset_futures = [pool.submit(dataset_task, t) for t in dataset_tasks]
        reference_futures = [
            pool.submit(reference_task, (i, args.windows)) for i in range(args.references)
        ]
        records = [r for f in detector_futures for r in f.result()]
        inputs = [f.result() for f in input_futures]
        datasets = [f.result() for f in dataset_futures]
        references = [f.result() for f in reference_futures]
    costs = detector_costs()
    monitor = monitor_costs()
    importance = importance_costs()
    table = summarise_detectors(records)
    seconds = time.perf_counter() - t0
    text = section(args, table, costs, inputs, datasets, monitor, references, importance, seconds)
    print(text)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "records": records,
                "costs": costs,
                "inputs": inputs,
                "datasets": datasets,
                "monitor": monitor,
                "references": references,
                "importance": importance,
            }
        )
    )
    if not args.no_write:
        write_section(RESULTS, BEGIN, END, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
