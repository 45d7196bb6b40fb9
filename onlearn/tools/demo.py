"""Stream a river dataset through a running server: predict, then feedback after a delay."""

from __future__ import annotations

import collections
import itertools
import time
from dataclasses import dataclass

from tqdm import tqdm

from onlearn.tools.client import Client

DATASETS = {
    "phishing": "Phishing",
    "bananas": "Bananas",
    "image_segments": "ImageSegments",
    "trump_approval": "TrumpApproval",
    "chick_weights": "ChickWeights",
}


def load_dataset(name: str):
    from river import datasets

    try:
        return getattr(datasets, DATASETS[name])()
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}") from None


@dataclass
class DemoSummary:
    rows: int
    labels: int
    accuracy: float | None
    mean_abs_error: float | None
    first_half: float | None
    second_half: float | None
    seconds: float

    def lines(self) -> list[str]:
        rate = self.rows / self.seconds if self.seconds else 0.0
        out = [f"rows predicted: {self.rows}   labels sent: {self.labels}   ({rate:.0f} rows/s)"]
        if self.accuracy is not None:
            out.append(f"prequential accuracy: {score(self.accuracy)}")
        if self.mean_abs_error is not None:
            out.append(f"mean absolute error: {score(self.mean_abs_error)}")
        if self.rows:  # the same measure on each half of the stream: did it learn?
            halves = (
                f"first half: {score(self.first_half)}   second half: {score(self.second_half)}"
            )
            out.append(halves)
        return out


def score(value: float | None) -> str:
    """Three decimals, or ``-`` when there is nothing to score (one row has no first half)."""
    return "-" if value is None else f"{value:.3f}"


def default_dataset(model: str) -> str:
    """The dataset a model is named after (as the examples' models are), else phishing."""
    return model if model in DATASETS else "phishing"


def run_demo(
    client: Client,
    model: str,
    dataset: str | None = None,
    *,
    limit: int | None = None,
    delay_rows: int = 0,
    delay_s: float = 0.0,
    progress: bool = True,
) -> DemoSummary:
    """Predict each row, then send its true label once ``delay_rows`` rows (and ``delay_s``
    seconds) have passed, as labels arrive late in production. Scores what the server said:
    accuracy for a classifier, mean absolute error for a regressor. ``dataset`` defaults to
    :func:`default_dataset`."""
    task = client.model(model)["task"]
    data = load_dataset(dataset or default_dataset(model))
    total = min(limit, data.n_samples) if limit else data.n_samples
    pending: collections.deque = collections.deque()
    hits: list[float] = []
    labels = 0
    started = time.perf_counter()

    def send_due(i: int, now: float, everything: bool = False) -> None:
        nonlocal labels
        while pending and (everything or (pending[0][0] <= i and pending[0][1] <= now)):
            _, _, prediction_id, y = pending.popleft()
            client.feedback(model, label=y, prediction_id=prediction_id)
            labels += 1

    desc = f"{dataset or default_dataset(model)} -> {model}"
    bar = tqdm(total=total, disable=not progress, unit="row", desc=desc)
    for i, (x, y) in enumerate(itertools.islice(data, total)):
        answer = client.predict(model, x)
        if task == "classification":
            hits.append(float(answer["label"] == y))
        else:
            hits.append(abs((answer["label"] or 0.0) - y))
        pending.append((i + delay_rows, time.monotonic() + delay_s, answer["prediction_id"], y))
        send_due(i, time.monotonic())
        bar.update()
        if i % 25 == 0:
            name = "accuracy" if task == "classification" else "mae"
            bar.set_postfix({name: f"{sum(hits) / len(hits):.3f}", "labels": labels})
    if delay_s:
        time.sleep(max(0.0, pending[-1][1] - time.monotonic()) if pending else 0.0)
    send_due(total, time.monotonic(), everything=True)
    bar.close()
    half = len(hits) // 2
    classification = task == "classification"
    return DemoSummary(
        rows=len(hits),
        labels=labels,
        accuracy=mean(hits) if classification else None,
        mean_abs_error=None if classification else mean(hits),
        first_half=mean(hits[:half]),
        second_half=mean(hits[half:]),
        seconds=time.perf_counter() - started,
    )


def mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None
