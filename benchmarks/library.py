"""In-process library benchmark: onlearn's Engine versus a bare river loop, same model.

    python -m benchmarks.library [--events 20000] [--repeats 3] [--batch 100] [--cpu 0]

onlearn, single-event calls: an ``Engine`` on a ``memory://`` store with
examples/phishing.toml; per event ``predict_one`` then ``feedback_one`` (synchronous,
``wait=True``: the label is in the log and learned when it returns) with the prediction id.
onlearn, batch calls: the same engine, ``predict_many`` of ``--batch`` rows then
``feedback_many`` of their labels (``wait=True``), one label event and one ``learn_one`` per row
as ever. Bare: the pipeline ``build_pipeline`` makes for the same spec and schema; per event
``predict_proba_one`` then ``learn_one``. All go through the Phishing stream repeated to
``--events``; the best of ``--repeats`` runs of each (interleaved) is taken. Each run's
prequential accuracy is printed as a check that they ran the same model (the batch run predicts
``--batch`` rows before learning them, so its accuracy differs a little). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from typing import Any

from benchmarks.data import CONFIG, MODEL, stream


def settings():
    from onlearn.config import load_settings

    return load_settings(CONFIG, store_url="memory://")


def run_bare(events: list) -> tuple[float, float]:
    from onlearn.models import build_pipeline

    config = settings().model(MODEL)
    model = build_pipeline(
        config.pipeline,
        task=config.task.value,
        numeric=config.schema.numeric,
        categorical=config.schema.categorical,
        classes=config.classes,
    )
    probas: list[Any] = [None] * len(events)
    predict, learn = model.predict_proba_one, model.learn_one
    gc.collect()  # start both sides from a clean heap (the GC stays on: it is part of the cost)
    t0 = time.perf_counter()
    for i, (x, y) in enumerate(events):
        probas[i] = predict(x)
        learn(x, y)
    elapsed = time.perf_counter() - t0
    hits = sum(bool(p) and max(p, key=p.get) == y for p, (_, y) in zip(probas, events, strict=True))
    return elapsed, hits / len(events)


def run_engine(events: list) -> tuple[float, float]:
    from onlearn.engine import Engine, FeedbackItem

    labels: list[Any] = [None] * len(events)
    with Engine.from_settings(settings()) as engine:
        predict, feedback = engine.predict_one, engine.feedback_one
        gc.collect()
        t0 = time.perf_counter()
        for i, (x, y) in enumerate(events):
            p = predict(MODEL, x)
            feedback(MODEL, FeedbackItem(label=y, prediction_id=p.prediction_id))
            labels[i] = p.label
        elapsed = time.perf_counter() - t0
        applied = engine.runtime(MODEL).labels_applied
    if applied != len(events):
        raise RuntimeError(f"the engine applied {applied} labels, not {len(events)}")
    hits = sum(label == y for label, (_, y) in zip(labels, events, strict=True))
    return elapsed, hits / len(events)


def run_engine_batch(events: list, size: int) -> tuple[float, float]:
    from onlearn.engine import Engine, FeedbackItem

    labels: list[Any] = [None] * len(events)
    chunks = [events[i : i + size] for i in range(0, len(events), size)]
    with Engine.from_settings(settings()) as engine:
        predict, feedback = engine.predict_many, engine.feedback_many
        gc.collect()
        t0 = time.perf_counter()
        at = 0
        for chunk in chunks:
            predictions = predict(MODEL, [x for x, _ in chunk])
            feedback(
                MODEL,
                [
                    FeedbackItem(label=y, prediction_id=p.prediction_id)
                    for p, (_, y) in zip(predictions, chunk, strict=True)
                ],
            )
            for p in predictions:
                labels[at] = p.label
                at += 1
        elapsed = time.perf_counter() - t0
        applied = engine.runtime(MODEL).labels_applied
    if applied != len(events):
        raise RuntimeError(f"the engine applied {applied} labels, not {len(events)}")
    hits = sum(label == y for label, (_, y) in zip(labels, events, strict=True))
    return elapsed, hits / len(events)


def measure(n_events: int, repeats: int, batch: int = 100) -> dict[str, Any]:
    events = stream(n_events)
    run_bare(events[:1000])  # warm imports and caches
    run_engine(events[:1000])
    run_engine_batch(events[:1000], batch)
    bare, engine, batched = [], [], []
    for _ in range(repeats):
        bare.append(run_bare(events))
        engine.append(run_engine(events))
        batched.append(run_engine_batch(events, batch))
    best_bare = min(t for t, _ in bare)
    best_engine = min(t for t, _ in engine)
    best_batch = min(t for t, _ in batched)
    return {
        "events": n_events,
        "repeats": repeats,
        "bare_s": [t for t, _ in bare],
        "engine_s": [t for t, _ in engine],
        "bare_eps": n_events / best_bare,
        "engine_eps": n_events / best_engine,
        "bare_us_per_event": best_bare / n_events * 1e6,
        "engine_us_per_event": best_engine / n_events * 1e6,
        "bare_accuracy": bare[0][1],
        "engine_accuracy": engine[0][1],
        "batch_rows": batch,
        "batch_s": [t for t, _ in batched],
        "batch_eps": n_events / best_batch,
        "batch_us_per_event": best_batch / n_events * 1e6,
        "batch_accuracy": batched[0][1],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=100, help="rows per batch call")
    parser.add_argument("--cpu", type=int, help="pin this process to one CPU")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    json.dump(measure(args.events, args.repeats, args.batch), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
