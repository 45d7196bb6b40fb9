"""Active learning: prequential accuracy against the share of labels bought.

    .venv/bin/python -m benchmarks.active_learning [--seeds 5] [--jobs 2] [--quick] [--no-write]

For every stream, model and seed, each budgeted strategy of ``onlearn.active`` (entropy measure,
no evaluation slice) decides on every prediction whether to buy its label; the model learns only
from the labels bought. Accuracy is prequential and counts *every* point: predict, score, then
learn if the label was bought. References on the same stream and seed:

- ``all labels``: learn from every point (the 100 % column);
- ``random baseline``: labels at uniformly random points, exactly as many as the strategy that
  bought most at that budget on that run, so that random never has fewer labels than the
  strategy it is compared with. (The ``random`` strategy is the paper's Random: it asks with
  probability ``budget`` under the budget manager, and buys less than the budget.)

The budget is the credit budget of ``onlearn/active/budget.py``: over n predictions a strategy
asks at most ``budget * n + credit`` labels, and at most ``floor(min(1, 5 * budget) * WINDOW)``
in any ``WINDOW`` predictions. River's ``EntropySampler`` is run at the goal budget too.

Streams: river's bundled datasets (each seed a different shuffle) and synthetic streams with
concept drift (each seed different generators): abrupt, gradual and incremental drift,
categorical inputs, 7 to 10 classes. Models: the catalog pipelines ``logistic_regression``,
``hoeffding_tree`` (every budget on the first six streams) and ``adaptive_random_forest`` (the
goal budget only, like the four streams added with issue 14). Writes the ``active-learning`` section of
benchmarks/RESULTS.md, benchmarks/active_learning.png (a run over every budget, not
``--goal-only``, with matplotlib installed: ``make bench-active``) and the raw numbers to
benchmarks/out/active_learning.json.
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import json
import math
import os
import platform
import random
import statistics
import sys
import time
import timeit
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from river import datasets
from river.datasets import synth

from benchmarks.procs import write_section
from onlearn.active import DEFAULT_STEP, STRATEGIES, Sampler
from onlearn.active.budget import (
    DEFAULT_COLD_START,
    DEFAULT_CREDIT,
    DEFAULT_DRIFT_CREDIT,
    DEFAULT_REPAY,
)
from onlearn.active.sampler import DEFAULT_MEASURE
from onlearn.models import PipelineSpec, build_pipeline
from onlearn.weights import event_pace, label_weight, learn_weighted, takes_pace, takes_weight

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
PLOT = ROOT / "benchmarks" / "active_learning.png"
OUT = ROOT / "benchmarks" / "out" / "active_learning.json"
BEGIN = "<!-- active-learning:start -->"
END = "<!-- active-learning:end -->"
COMMAND = ".venv/bin/python -m benchmarks.active_learning"

BUDGETS = (0.01, 0.05, 0.1, 0.2, 0.5)
MODELS = ("logistic_regression", "hoeffding_tree", "adaptive_random_forest")
# The forest with 5 trees instead of river's (and the catalog's) 10 unless --forest-trees says
# otherwise: it costs ~1.4 ms per learn_one with 10, and the full run must stay under ~15
# minutes on 2 cores. Run at the goal budget only.
FOREST_TREES = 5
SPECS = {"adaptive_random_forest": {"n_models": FOREST_TREES}}
ALL_BUDGETS_MODELS = ("logistic_regression", "hoeffding_tree")
ENTROPY = "river EntropySampler"  # river.active.EntropySampler, see run_task
MEASURE = DEFAULT_MEASURE  # the sampler's default
WINDOW = 200  # the rate cap's window: streams here are short, see the notes in RESULTS.md
BASELINE = "random baseline"  # not the "random" strategy: see the module docstring
GOAL_BUDGET = 0.1
GOAL_RATIO = 0.97

Rows = list[tuple[dict[str, Any], Any]]


# ---------------------------------------------------------------------------------------------
# streams


def _shuffled(dataset: Iterable, seed: int) -> Rows:
    rows = [({str(k): v for k, v in x.items()}, y) for x, y in dataset]
    random.Random(seed).shuffle(rows)
    return rows


def _drift(first, second, n: int, width: int, seed: int) -> Rows:
    # river 0.26 computes exp(4 * (position - t) / width) before the drift: it overflows unless
    # width >= 4 * position / 709 (so width=1 always does). 50 is abrupt enough.
    stream = synth.ConceptDriftStream(
        stream=first, drift_stream=second, position=n // 2, width=width, seed=seed
    )
    return [({str(k): v for k, v in x.items()}, y) for x, y in stream.take(n)]


def _sea_abrupt(seed: int, n: int) -> Rows:
    return _drift(
        synth.SEA(variant=0, noise=0.05, seed=seed),
        synth.SEA(variant=3, noise=0.05, seed=seed + 1000),
        n,
        width=50,
        seed=seed,
    )


def _agrawal_abrupt(seed: int, n: int) -> Rows:
    return _drift(
        synth.Agrawal(classification_function=0, seed=seed),
        synth.Agrawal(classification_function=2, seed=seed + 1000),
        n,
        width=50,
        seed=seed,
    )


def _agrawal_gradual(seed: int, n: int) -> Rows:
    return _drift(
        synth.Agrawal(classification_function=1, seed=seed),
        synth.Agrawal(classification_function=4, seed=seed + 1000),
        n,
        width=n // 4,
        seed=seed,
    )


def _stagger_abrupt(seed: int, n: int) -> Rows:
    # Categorical inputs: size, colour and shape as category codes (one-hot for the linear model,
    # nominal attributes for the trees).
    rows = _drift(
        synth.STAGGER(classification_function=0, seed=seed),
        synth.STAGGER(classification_function=2, seed=seed + 1000),
        n,
        width=50,
        seed=seed,
    )
    return [({k: str(v) for k, v in x.items()}, y) for x, y in rows]


def _led_abrupt(seed: int, n: int) -> Rows:
    return _drift(
        synth.LEDDrift(seed=seed, noise_percentage=0.1, irrelevant_features=True),
        synth.LEDDrift(
            seed=seed + 1000, noise_percentage=0.1, irrelevant_features=True, n_drift_features=7
        ),
        n,
        width=50,
        seed=seed,
    )


def _rbf_incremental(seed: int, n: int) -> Rows:
    stream = synth.RandomRBFDrift(
        seed_model=seed,
        seed_sample=seed,
        n_classes=8,
        n_features=10,
        n_centroids=40,
        change_speed=0.0005,
        n_drift_centroids=20,
    )
    return [({str(k): v for k, v in x.items()}, y) for x, y in stream.take(n)]


def _hyperplane_gradual(seed: int, n: int) -> Rows:
    stream = synth.Hyperplane(
        seed=seed, n_features=10, n_drift_features=4, mag_change=0.001, noise_percentage=0.05
    )
    return [({str(k): v for k, v in x.items()}, y) for x, y in stream.take(n)]


# Synthetic streams cost nothing to lengthen and production streams are long: at 10,000 points
# the learning curve of a learner given a tenth of the labels levels off before the end on most
# of them, so the cold start (where a 10 % learner has seen a tenth of the examples) no longer
# weighs on the whole run. river's bundled datasets keep their size. Drifts sit at the middle.
SYNTHETIC_LENGTH = 10_000

# name -> (rows for a seed and a length, length, description; {drift} and {gradual} are filled
# in with the drift position and the gradual drift's width for the length used)
STREAMS: dict[str, tuple[Callable[[int, int], Rows], int, str]] = {
    "phishing": (
        lambda seed, n: _shuffled(datasets.Phishing(), seed)[:n],
        1250,
        "`datasets.Phishing`, 9 features, 2 classes, shuffled per seed",
    ),
    "bananas": (
        lambda seed, n: _shuffled(datasets.Bananas(), seed)[:n],
        4000,
        "`datasets.Bananas` (4000 of its 5300 points), 2 features, 2 classes, shuffled per seed",
    ),
    "image_segments": (
        lambda seed, n: _shuffled(datasets.ImageSegments(), seed)[:n],
        2310,
        "`datasets.ImageSegments`, 18 features, 7 classes, shuffled per seed",
    ),
    "sea_abrupt": (
        _sea_abrupt,
        SYNTHETIC_LENGTH,
        "`synth.SEA` variant 0 -> 3 (threshold 8 -> 9.5), 5 % label noise, abrupt drift at "
        "{drift} (width 50)",
    ),
    "agrawal_abrupt": (
        _agrawal_abrupt,
        SYNTHETIC_LENGTH,
        "`synth.Agrawal` classification function 0 -> 2, abrupt drift at {drift} (width 50)",
    ),
    "agrawal_gradual": (
        _agrawal_gradual,
        SYNTHETIC_LENGTH,
        "`synth.Agrawal` classification function 1 -> 4, gradual drift centred at {drift} "
        "(width {gradual})",
    ),
    "stagger_abrupt": (
        _stagger_abrupt,
        SYNTHETIC_LENGTH,
        "`synth.STAGGER` function 0 -> 2, 3 categorical inputs, abrupt drift at {drift} (width 50)",
    ),
    "led_abrupt": (
        _led_abrupt,
        SYNTHETIC_LENGTH,
        "`synth.LEDDrift`, 10 classes, 24 binary inputs, 10 % noise; 0 -> 7 drifting features, "
        "abrupt drift at {drift} (width 50)",
    ),
    "rbf_incremental": (
        _rbf_incremental,
        SYNTHETIC_LENGTH,
        "`synth.RandomRBFDrift`, 8 classes, 10 features, 20 of 40 centroids moving (speed "
        "0.0005): incremental drift throughout",
    ),
    "hyperplane_gradual": (
        _hyperplane_gradual,
        SYNTHETIC_LENGTH,
        "`synth.Hyperplane`, 10 features, 4 drifting (magnitude 0.001), 5 % noise: gradual drift "
        "throughout",
    ),
}
# Streams added with issue 14 (never tuned on): run at the goal budget only, with every model.
NEW_STREAMS = ("stagger_abrupt", "led_abrupt", "rbf_incremental", "hyperplane_gradual")
CATEGORICAL = {"stagger_abrupt": ["size", "color", "shape"]}
# Abrupt changes at n // 2: the recovery figure is the accuracy over the RECOVERY points after.
ABRUPT = ("sea_abrupt", "agrawal_abrupt", "stagger_abrupt", "led_abrupt")
DRIFTING = (*ABRUPT, "agrawal_gradual", "rbf_incremental", "hyperplane_gradual")
RECOVERY = 500


# ---------------------------------------------------------------------------------------------
# one run


def prequential(
    rows: Rows,
    model_name: str,
    buy: Callable[[dict], dict | None],
    taught: Callable[[dict, Any], None] | None = None,
    *,
    stream: str = "",
    wrap: Callable[[Any], Any] | None = None,
    params: dict[str, Any] | None = None,
    self_label: float | None = None,
) -> tuple[float, int, float | None, float]:
    """Accuracy on every point (test, then train on the bought labels), labels bought, the
    accuracy over the RECOVERY points after an abrupt change (None for other streams), and the
    accuracy over the last quarter of the stream (where the learning curve has levelled off or
    not).
    ``buy(proba)`` is None for a label not bought, else the weights of the label event the
    server would write (``sample_p``, ``pace``; {} for none), learned as the server learns
    them (onlearn/weights.py). ``taught(proba, y)`` is told each bought label (the sampler
    steers on it). ``params``: the pipeline's parameters (default: the benchmark's ``SPECS``).
    ``self_label``: self-training (benchmarks/self_training.py; onlearn does not do it): a point
    not bought whose top probability reaches it is learned with the model's own answer."""
    categorical = CATEGORICAL.get(stream, [])
    numeric = [k for k in rows[0][0] if k not in categorical]
    model = build_pipeline(
        PipelineSpec(
            name=model_name, params=SPECS.get(model_name, {}) if params is None else params
        ),
        task="classification",
        numeric=numeric,
        categorical=categorical,
    )
    if wrap is not None:
        model = wrap(model)
    # river's EntropySampler learns through the model it wraps: weighted and paced there.
    learner = model.classifier if isinstance(model, _Unwrapped) else model
    takes, paced = takes_weight(learner), takes_pace(learner)
    start = len(rows) // 2 if stream in ABRUPT else len(rows)
    correct = bought = after = late = 0
    tail = len(rows) - len(rows) // 4
    for i, (x, y) in enumerate(rows):
        proba = model.predict_proba_one(x)
        hit = bool(proba) and max(proba, key=proba.__getitem__) == y
        correct += hit
        late += hit and i >= tail
        if start <= i < start + RECOVERY:
            after += hit
        weights = buy(proba)
        if weights is not None:
            w = label_weight(weights, paced=paced)
            learn_weighted(learner, x, y, w, takes, event_pace(weights))
            bought += 1
            if taught is not None:
                taught(proba, y)
        elif (
            self_label is not None
            and proba
            and proba[guess := max(proba, key=proba.get)] >= (self_label)
        ):
            learn_weighted(learner, x, guess, 1.0, takes, 1.0)
    recovery = after / min(RECOVERY, len(rows) - start) if start < len(rows) else None
    return correct / len(rows), bought, recovery, late / (len(rows) - tail)


class _Entropy:
    """river's ``EntropySampler`` around the model, at the same label share as the budget.

    river asks with probability ``normalised entropy ** discount_factor`` (3, its default) and
    asks nothing while the model answers no probabilities (no label seen yet) or a single
    class (one label seen: entropy 0): this one is started by asking every point until the
    model answers with two classes or more. Its asks are capped cumulatively at
    ``budget x n + 1`` (the 1 lets the first point be asked), so its share never passes the
    budget by more than a label (it may stay below)."""

    def __init__(self, budget: float, seed: int) -> None:
        self.budget = budget
        self.seed = seed
        self.n = self.asked = 0
        self.model: Any = None

    def wrap(self, model: Any) -> Any:
        from river import active

        self.model = active.EntropySampler(model, discount_factor=3, seed=self.seed)
        return _Unwrapped(self)

    def ask(self, proba: dict, wants: bool) -> bool:
        self.n += 1
        ok = (len(proba) < 2 or wants) and self.asked <= self.budget * self.n
        self.asked += ok
        return ok


class _Unwrapped:
    """The wrapped model seen as a predictor that remembers river's last ask. ``prequential``
    teaches its ``classifier``, the model river wraps, directly: river's
    ``ActiveLearningClassifier.learn_one`` would drop the pace (onlearn/weights.py)."""

    def __init__(self, sampler: _Entropy) -> None:
        self.sampler = sampler
        self.wants = False
        self.classifier = sampler.model.classifier

    def predict_proba_one(self, x: dict) -> dict:
        proba, self.wants = self.sampler.model.predict_proba_one(x)
        return proba


def strategy_sampler(name: str, budget: float, seed: int) -> Sampler:
    cls = STRATEGIES[name]
    kwargs: dict[str, Any] = {"budget": budget, "window": WINDOW}
    if "seed" in inspect.signature(cls).parameters:
        kwargs["seed"] = seed
    return Sampler(cls(**kwargs), measure=MEASURE, evaluation_rate=0.0, seed=seed)


def budgets_for(stream: str, model: str) -> tuple[float, ...]:
    if stream in NEW_STREAMS or model not in ALL_BUDGETS_MODELS:
        return (GOAL_BUDGET,)
    return BUDGETS


def run_task(task: tuple[str, str, int, int | None]) -> tuple[list[dict[str, Any]], float]:
    """Every strategy and reference on one stream, model and seed; and the CPU seconds used."""
    cpu = time.process_time()
    stream, model_name, seed, limit = task
    make, length, _ = STREAMS[stream]
    rows = make(seed, min(length, limit or length))
    n = len(rows)
    out = []

    def record(
        strategy: str, budget: float, result: tuple[float, int, float | None, float]
    ) -> None:
        accuracy, bought, recovery, tail = result
        out.append(
            {
                "stream": stream,
                "model": model_name,
                "seed": seed,
                "strategy": strategy,
                "budget": budget,
                "accuracy": accuracy,
                "recovery": recovery,
                "tail": tail,
                "share": bought / n,
                "length": n,
            }
        )

    def run(buy, taught=None, wrap=None):
        return prequential(rows, model_name, buy, taught, stream=stream, wrap=wrap)

    def decide(proba, s):
        d = s.decide(proba)
        return {"sample_p": d.p, "pace": s.pace(d.reason)} if d.ask else None

    record("all labels", 1.0, run(lambda proba: {}))
    for budget in budgets_for(stream, model_name):
        shares = []
        for name in STRATEGIES:
            sampler = strategy_sampler(name, budget, seed)
            result = run(lambda p, s=sampler: decide(p, s), sampler.learn_one)
            record(name, budget, result)
            shares.append(result[1] / n)
        # Exactly as many labels as the strategy that bought most, at uniformly random points,
        # learned with the pace weight the strategies' labels carry.
        chosen = set(random.Random(seed).sample(range(n), round(max(shares) * n)))
        positions = itertools.count()
        paced = {"pace": strategy_sampler("random", budget, seed).pace("uncertain")}
        record(
            BASELINE,
            budget,
            run(lambda p, i=positions, c=chosen, w=paced: w if next(i) in c else None),
        )
        if budget == GOAL_BUDGET:
            entropy_sampler = _Entropy(budget, seed)
            holder: dict[str, Any] = {}

            def wrap(model, e=entropy_sampler, h=holder):
                h["m"] = e.wrap(model)
                return h["m"]

            record(
                ENTROPY,
                budget,
                run(
                    lambda p, e=entropy_sampler, h=holder, w=paced: (
                        w if e.ask(p, h["m"].wants) else None
                    ),
                    wrap=wrap,
                ),
            )
    return out, time.process_time() - cpu


# ---------------------------------------------------------------------------------------------
# per-call cost


def per_call_costs() -> dict[str, float]:
    """Microseconds per call, best of 5 repeats."""
    import numpy as np
    from modAL.uncertainty import classifier_entropy, classifier_uncertainty

    from onlearn.active import (
        entropy,
        least_confident,
        margin,
        sampler_from_config,
        uncertainty_many,
    )

    rng = random.Random(0)
    probas = [{True: (p := rng.random()), False: 1 - p} for _ in range(1000)]
    proba = probas[0]

    class Identity:  # modAL's measures take a classifier: this one returns its input
        @staticmethod
        def predict_proba(X):
            return X

    def best(stmt: Callable[[], Any], number: int) -> float:
        # Many short samples (about a millisecond each), the fastest kept: a sample that ran
        # without being preempted, even on a busy machine.
        return min(timeit.repeat(stmt, number=number, repeat=200)) / number * 1e6

    def row() -> np.ndarray:
        return np.array([[proba[True], proba[False]]])

    costs = {
        "least_confident(proba), pure Python": best(lambda: least_confident(proba), 1000),
        "margin(proba), pure Python": best(lambda: margin(proba), 1000),
        "entropy(proba), pure Python": best(lambda: entropy(proba), 1000),
        "modAL classifier_uncertainty on one row (numpy)": best(
            lambda: classifier_uncertainty(Identity, row()), 100
        ),
        "modAL classifier_entropy on one row (numpy + scipy.stats.entropy)": best(
            lambda: classifier_entropy(Identity, row()), 2
        ),
        "uncertainty_many (modAL), per row of 1000": best(lambda: uncertainty_many(probas), 1)
        / 1000,
    }

    def decide_cost(config: dict[str, Any], others: list) -> float:
        sampler = sampler_from_config({**config, "evaluation_rate": 0.01})
        decide = sampler.decide
        return best(lambda: [decide(p, others) for p in probas[:300]], 1) / 300

    for name in STRATEGIES:
        costs[f"Sampler.decide, {name}, entropy"] = decide_cost({"strategy": name}, [])
    for measure in ("least_confident", "margin"):
        costs[f"Sampler.decide, variable_uncertainty, {measure}"] = decide_cost(
            {"measure": measure}, []
        )
    for measure in ("vote_entropy", "kl_max_disagreement"):
        costs[f"Sampler.decide, variable_uncertainty, {measure}, 1 shadow"] = decide_cost(
            {"measure": measure}, [proba]
        )
    return costs


# ---------------------------------------------------------------------------------------------
# report


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(records: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["stream"], r["model"], r["strategy"], r["budget"]), []).append(r)
    out = {}
    for key, rs in groups.items():
        acc, acc_std = _mean_std([r["accuracy"] for r in rs])
        share = statistics.fmean(r["share"] for r in rs)
        recovery = [r["recovery"] for r in rs if r.get("recovery") is not None]
        out[key] = {
            "accuracy": acc,
            "std": acc_std,
            "share": share,
            "n": len(rs),
            "length": rs[0]["length"],
            "recovery": statistics.fmean(recovery) if recovery else None,
            "tail": statistics.fmean(r["tail"] for r in rs),
            "by_seed": {r["seed"]: r["accuracy"] for r in rs},
        }
    return out


def paired_interval(a: dict[int, float], b: dict[int, float]) -> tuple[float, float, float]:
    """Mean of a - b over the seeds both have, and its 95 % t interval."""
    from scipy import stats

    diffs = [a[k] - b[k] for k in sorted(a.keys() & b.keys())]
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return mean, -math.inf, math.inf
    half = stats.t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return mean, mean - half, mean + half


COMPARED = (*STRATEGIES, ENTROPY)


def cells(streams, models) -> list[tuple[str, str]]:
    return list(itertools.product(streams, models))


def verdicts(summary, streams, models) -> list[dict[str, Any]]:
    """The design goal at the goal budget, per stream, model and strategy: at least GOAL_RATIO
    of all labels, and a paired difference to the random baseline whose 95 % interval is not
    entirely below -0.5 points."""
    rows = []
    for stream, model in cells(streams, models):
        full = summary[(stream, model, "all labels", 1.0)]
        rand = summary[(stream, model, BASELINE, GOAL_BUDGET)]
        for name in COMPARED:
            s = summary[(stream, model, name, GOAL_BUDGET)]
            ratio = s["accuracy"] / full["accuracy"]
            delta, low, high = paired_interval(s["by_seed"], rand["by_seed"])
            rows.append(
                {
                    "stream": stream,
                    "model": model,
                    "strategy": name,
                    "ratio": ratio,
                    "tail_ratio": s["tail"] / full["tail"],
                    "delta": delta,
                    "low": low,
                    "high": high,
                    "share": s["share"],
                    "holds": ratio >= GOAL_RATIO and high >= -0.005,
                }
            )
    return rows


def notes(summary, vs, streams, models) -> list[str]:
    """What the numbers say, worded from the numbers, and how to read them."""
    default = "variable_uncertainty"
    out = ["Reading the results:", ""]
    misses = [v for v in vs if v["strategy"] == default and not v["holds"]]
    if misses:
        out.append(
            f"- `{default}` (the default strategy) misses the goal on: "
            + "; ".join(
                f"{v['stream']}/{v['model']} ("
                + ", ".join(
                    ([f"{100 * v['ratio']:.1f} % of all labels"] if v["ratio"] < GOAL_RATIO else [])
                    + (
                        [
                            f"{100 * v['delta']:+.1f} points vs random, 95 % interval up to "
                            f"{100 * v['high']:+.1f}"
                        ]
                        if v["high"] < -0.005
                        else []
                    )
                )
                + ")"
                for v in misses
            )
            + "."
        )
    if misses:
        starved = [
            v
            for v in misses
            if summary[(v["stream"], v["model"], BASELINE, GOAL_BUDGET)]["accuracy"]
            < 0.9 * summary[(v["stream"], v["model"], "all labels", 1.0)]["accuracy"]
        ]
        short = sum(v["ratio"] < GOAL_RATIO for v in misses)
        losses = sum(v["high"] < -0.005 for v in misses)
        levelled = [
            f"{v['stream']}/{v['model']} {100 * v['tail_ratio']:.1f} %"
            for v in misses
            if v["tail_ratio"] >= GOAL_RATIO
        ]
        out.append(
            f"- What limits it: {short} of the {len(misses)} misses are the ratio to `all "
            f"labels`; {losses} are a loss to random (a 95 % interval entirely below -0.5 "
            f"points). On {len(starved)} of them, random labels at the same count stay below 90 % "
            "of `all labels`: the learner is short of labels, and where labels go cannot close a "
            "gap that the count of labels makes. Over the last quarter of the stream, "
            f"{len(levelled)} of the misses reach {GOAL_RATIO:.0%} of `all labels`"
            + (f" ({', '.join(levelled)})" if levelled else "")
            + ": there the miss is the start of the stream, where a model given a tenth of the "
            "labels has seen a tenth of the examples; on the others the gap lasts to the end."
        )
    weak = [
        f"{stream}/{model} ({100 * summary[(stream, model, 'all labels', 1.0)]['accuracy']:.1f} %)"
        for stream, model in cells(streams, models)
        if summary[(stream, model, "all labels", 1.0)]["accuracy"] < 0.6
    ]
    if weak:
        out.append(
            "- Learning from every label stays below 60 % on "
            + ", ".join(weak)
            + ": the model learns this stream slowly or barely (a linear model on bananas is near "
            "chance; 10-class LED needs thousands of labels), so a tenth of the labels is far "
            "from the learning curve's plateau."
        )
    out += [
        "- `bought` is held by the credit budget (`onlearn/active/budget.py`): over n "
        f"predictions a strategy asks at most budget x n + credit labels (credit {DEFAULT_CREDIT} "
        f"by default; the cold start of {DEFAULT_COLD_START} is repaid by asking "
        f"{1 - DEFAULT_REPAY:.0%} of the budget until the asks are back at budget x n, after "
        f"{DEFAULT_COLD_START / (DEFAULT_REPAY * GOAL_BUDGET):.0f} predictions at 10 %; a drift "
        "alarm opens the line again, so drifting streams end a little above the budget). "
        "The `random baseline` gets exactly as many labels as the strategy that bought "
        "most, so the comparison is at equal labels. A rate cap allows at most "
        f"floor(min(1, 5 x budget) x {WINDOW}) asks in any {WINDOW} predictions.",
        f"- `{ENTROPY}`: `river.active.EntropySampler` (discount factor 3, its default) around "
        "the same model. It buys nothing from a model with no label (no probabilities) or with "
        "one (a single class: entropy 0), so it is started by asking every point until the "
        "model answers two classes; its asks are capped at budget x n + 1, so its share is at "
        "most the budget (see its `bought`).",
        f"- Stream lengths: river's bundled datasets keep their size (1250 to 4000 points), the "
        f"synthetic streams have {SYNTHETIC_LENGTH} (issue 14, second round: 3000 to 4000 "
        "before), so that prequential accuracy, which counts the cold start, is not dominated "
        "by it; production streams are longer still.",
        "",
    ]
    return out


def _length(stream: str, summary) -> int:
    return next(s["length"] for (st, *_), s in summary.items() if st == stream)


def describe(stream: str, args: argparse.Namespace) -> str:
    _, length, text = STREAMS[stream]
    n = min(length, args.limit or length)
    return text.format(drift=n // 2, gradual=n // 4) + f"; {n} points"


def _cell(s: dict[str, float] | None) -> str:
    return "" if s is None else f"{100 * s['accuracy']:.1f} ± {100 * s['std']:.1f}"


def markdown(records, summary, streams, models, args, costs, elapsed) -> str:
    seeds = sorted({r["seed"] for r in records})
    lines = [
        BEGIN,
        "## Active learning: accuracy against labels bought",
        "",
        f"Command: `{' '.join([COMMAND, *args.argv])}`"
        + f" ({elapsed / 60:.1f} min wall with {args.jobs} processes, {args.cpu / 60:.1f} min of "
        "CPU in them; `--quick` for a smoke run).",
        "",
        f"Prequential accuracy (%) on **every** point, mean ± std over {len(seeds)} seeds: the "
        "model predicts each point, is scored, and learns from it only if the strategy bought "
        f"its label. Strategies use the `{MEASURE}` measure, the default credit budget (credit "
        f"{DEFAULT_CREDIT}, cold start {DEFAULT_COLD_START}, drift credit {DEFAULT_DRIFT_CREDIT}, "
        f"repay {DEFAULT_REPAY}, rate cap min(1, 5 x budget) over {WINDOW} predictions), the "
        f"variable strategies' default step {DEFAULT_STEP}, and steer on the labels they bought; "
        "no evaluation slice. Bought labels are learned as the server learns them: with the "
        "pace weight min(1 / budget, 10) by `logistic_regression` (SGD steps as long as the "
        "steps of all labels together), once by the trees and the forest, the Hoeffding "
        "tree checking for splits every grace_period / pace labels "
        '(docs/operations.md, "Pace weights"). '
        "`random baseline` buys labels at uniformly random points, exactly as many as the "
        "strategy that bought most at that budget on that run, learned with the same pace "
        "weight (as are river's `EntropySampler`'s). `all labels` learns from every "
        "point. `bought` is the mean share of labels actually bought. Models: the catalog's "
        "`logistic_regression`, `hoeffding_tree` and `adaptive_random_forest` "
        f"({SPECS['adaptive_random_forest']['n_models']} trees"
        + (
            ", the catalog's default"
            if SPECS["adaptive_random_forest"]["n_models"] == 10
            else ", to keep the run short; the catalog's default is 10"
        )
        + "); the forest and the streams added with issue 14 run at the goal budget only.",
        "",
        "Streams:",
        "",
        *(f"- `{s}`: {describe(s, args)}" for s in streams),
        "",
    ]
    vs = verdicts(summary, streams, models)
    lines += [
        f"### The design goal at a {GOAL_BUDGET:.0%} budget",
        "",
        f"At least {GOAL_RATIO:.0%} of the accuracy of learning from every label, and a paired "
        f"difference to `random baseline` (same {len(seeds)} seeds) whose 95 % t interval is not "
        "entirely below -0.5 points. Cells: accuracy as a share of `all labels` / mean "
        "difference to `random baseline` in points [95 % interval]; **bold** where both hold.",
        "",
        "| stream | model | " + " | ".join(COMPARED) + " |",
        "|---|---|" + "---|" * len(COMPARED),
    ]
    for stream, model in cells(streams, models):
        row = []
        for v in vs:
            if v["stream"] == stream and v["model"] == model:
                text = (
                    f"{100 * v['ratio']:.1f} % / {100 * v['delta']:+.1f} "
                    f"[{100 * v['low']:+.1f}, {100 * v['high']:+.1f}]"
                )
                row.append(f"**{text}**" if v["holds"] else text)
        lines.append(f"| {stream} | {model} | " + " | ".join(row) + " |")
    lines.append("")
    total = len(streams) * len(models)
    drifting = [c for c in cells(streams, models) if c[0] in DRIFTING]

    def held(name: str, among) -> int:
        return sum(
            v["holds"] for v in vs if v["strategy"] == name and (v["stream"], v["model"]) in among
        )

    every = cells(streams, models)
    lines += [
        "| strategy | goal held, all cells | share | drifting cells | share | bought (mean) |",
        "|---|---|---|---|---|---|",
        *(
            f"| {name} | {held(name, every)}/{total} | {100 * held(name, every) / total:.0f} % "
            f"| {held(name, drifting)}/{len(drifting)} | "
            f"{100 * held(name, drifting) / max(1, len(drifting)):.0f} % | "
            f"{100 * statistics.fmean(v['share'] for v in vs if v['strategy'] == name):.1f} % |"
            for name in COMPARED
        ),
        "",
        *notes(summary, vs, streams, models),
    ]
    # recovery after an abrupt change
    abrupt = [c for c in cells(streams, models) if c[0] in ABRUPT]
    if abrupt:
        lines += [
            f"### Recovery: accuracy over the {RECOVERY} points after an abrupt change",
            "",
            f"Mean over seeds, at a {GOAL_BUDGET:.0%} budget, against `all labels`; the change "
            "is at the middle of each stream.",
            "",
            "| stream | model | all labels | " + " | ".join([*COMPARED, BASELINE]) + " |",
            "|---|---|---|" + "---|" * (len(COMPARED) + 1),
        ]
        for stream, model in abrupt:
            full = summary[(stream, model, "all labels", 1.0)]["recovery"]
            row = [
                f"{100 * summary[(stream, model, name, GOAL_BUDGET)]['recovery']:.1f}"
                for name in (*COMPARED, BASELINE)
            ]
            lines.append(f"| {stream} | {model} | {100 * full:.1f} | " + " | ".join(row) + " |")
        lines.append("")
    # tables per stream
    for stream, model in cells(streams, models):
        full = summary[(stream, model, "all labels", 1.0)]
        budgets = budgets_for(stream, model)
        lines += [
            f"### {stream}, {model}",
            "",
            "| strategy | " + " | ".join(f"{b:.0%}" for b in budgets) + " | 100 % |",
            "|---|" + "---|" * (len(budgets) + 1),
        ]
        for name in [*STRATEGIES, BASELINE, ENTROPY]:
            row = [_cell(summary.get((stream, model, name, b))) for b in budgets]
            lines.append(f"| {name} | " + " | ".join(row) + f" | {_cell(full)} |")
        bought = [
            "/".join(
                f"{100 * summary[(stream, model, name, b)]['share']:.1f}"
                for name in ("variable_uncertainty", BASELINE)
            )
            for b in budgets
        ]
        lines += [
            "| bought (%): variable_uncertainty / random baseline | "
            + " | ".join(bought)
            + " | 100 |",
            "",
        ]
    # costs
    lines += [
        "### Per-call cost",
        "",
        "Microseconds per call on this machine (best of 5), 2-class probabilities, evaluation "
        "slice at 1 %:",
        "",
        "| call | us |",
        "|---|---|",
        *(f"| {name} | {us:.2f} |" for name, us in costs.items()),
        "",
        f"Machine: {platform.platform()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; load average {args.load:.1f} when the run started (other work "
        "on the machine slows the wall time and the per-call costs).",
        "",
        END,
    ]
    return "\n".join(lines) + "\n"


def plot(summary, streams, models, path: Path) -> bool:
    """One panel per stream and model: accuracy against the share of labels bought."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FixedLocator, NullLocator
    except ImportError:
        return False
    panels = [c for c in itertools.product(streams, models) if len(budgets_for(*c)) > 1]
    ncols = 2 * len(models) if len(panels) > 2 * len(models) else len(panels)
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.9 * nrows), squeeze=False)
    styles = {name: "-o" for name in STRATEGIES} | {BASELINE: "--s"}
    for ax, (stream, model) in zip(axes.flat, panels, strict=False):
        for name, style in styles.items():
            points = [summary[(stream, model, name, b)] for b in budgets_for(stream, model)]
            ax.errorbar(
                [100 * p["share"] for p in points],
                [100 * p["accuracy"] for p in points],
                yerr=[100 * p["std"] for p in points],
                fmt=style,
                markersize=3,
                linewidth=1,
                capsize=2,
                label=name,
                color="black" if name == BASELINE else None,
            )
        full = summary[(stream, model, "all labels", 1.0)]["accuracy"]
        ax.axhline(100 * full, color="grey", linewidth=1.2, label="all labels")
        ax.axhline(100 * GOAL_RATIO * full, color="grey", linewidth=0.8, linestyle=":")
        ax.axvline(100 * GOAL_BUDGET, color="grey", linewidth=0.5, linestyle=":")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator([1, 2, 5, 10, 20, 50]))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels(["1", "2", "5", "10", "20", "50"])
        ax.set_title(f"{stream}, {model}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("labels bought (%)", fontsize=7)
        ax.set_ylabel("accuracy (%)", fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.suptitle(
        "Prequential accuracy against the share of labels bought, mean ± std over seeds "
        f"(grey: all labels; dotted: {GOAL_RATIO:.0%} of it, and the {GOAL_BUDGET:.0%} budget)",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


# ---------------------------------------------------------------------------------------------
# main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.active_learning", description=__doc__)
    p.add_argument("--seeds", type=int, default=10, help="seeds per stream and model")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    p.add_argument("--streams", default=",".join(STREAMS), help="comma-separated subset")
    p.add_argument("--quick", action="store_true", help="1 seed, streams cut to 1500 points")
    p.add_argument("--no-write", action="store_true", help="leave RESULTS.md and the plot alone")
    p.add_argument(
        "--goal-only",
        action="store_true",
        help=f"only the goal budget ({GOAL_BUDGET:.0%}%) on every stream and model (no plot)",
    )
    p.add_argument(
        "--forest-trees",
        type=int,
        default=FOREST_TREES,
        help=f"trees of the adaptive random forest (default {FOREST_TREES}; the catalog's: 10)",
    )
    args = p.parse_args(argv)
    if args.forest_trees < 1:
        p.error("--forest-trees must be at least 1")
    args.limit = 1500 if args.quick else None
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    global BUDGETS
    if args.goal_only:  # before the pool forks: the workers see it too
        BUDGETS = (GOAL_BUDGET,)
    SPECS["adaptive_random_forest"] = {"n_models": args.forest_trees}  # likewise
    args.load = os.getloadavg()[0]
    streams = [s for s in args.streams.split(",") if s]
    if unknown := set(streams) - set(STREAMS):
        raise SystemExit(f"unknown streams {sorted(unknown)}; choose from {', '.join(STREAMS)}")
    seeds = range(1 if args.quick else args.seeds)
    limit = args.limit
    costs = per_call_costs()
    for name, us in costs.items():
        print(f"{us:9.2f} us  {name}")
    tasks = [(s, m, seed, limit) for s in streams for m in MODELS for seed in seeds]
    # Longest first, so that the last task does not run alone.
    tasks.sort(
        key=lambda t: (
            -STREAMS[t[0]][1]
            * (3 if t[0] == "image_segments" else 1)
            * (8 if t[1] == "adaptive_random_forest" else len(budgets_for(t[0], t[1])))
        )
    )
    started = time.perf_counter()
    records: list[dict[str, Any]] = []
    args.cpu = 0.0
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for i, (result, cpu) in enumerate(pool.map(run_task, tasks), 1):
            records.extend(result)
            args.cpu += cpu
            print(
                f"[{i}/{len(tasks)}] {result[0]['stream']} {result[0]['model']} "
                f"seed {result[0]['seed']} ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    elapsed = time.perf_counter() - started
    summary = summarise(records)
    text = markdown(records, summary, streams, list(MODELS), args, costs, elapsed)
    print(text)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"records": records, "costs": costs}, indent=1))
    if not args.no_write:
        write_section(RESULTS, BEGIN, END, text)
        print(f"wrote {os.path.relpath(RESULTS)}")
        if args.goal_only:
            print("--goal-only: no plot (one budget)")
        elif plot(summary, streams, list(MODELS), PLOT):
            print(f"wrote {os.path.relpath(PLOT)}")
        else:
            print("matplotlib is not installed: no plot (.venv/bin/pip install matplotlib)")


if __name__ == "__main__":
    main()
