"""The benchmark data: river's bundled Phishing stream, as rows and as request bodies."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

MODEL = "phishing"
CONFIG = "examples/phishing.toml"


@cache
def phishing() -> tuple[tuple[dict[str, Any], bool], ...]:
    """The 1250 (features, is_phishing) pairs of river's Phishing dataset, in stream order."""
    from river import datasets

    return tuple((dict(x), bool(y)) for x, y in datasets.Phishing())


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def stream(n: int) -> list[tuple[dict[str, Any], bool]]:
    """The first ``n`` events of the Phishing stream repeated as often as needed."""
    return list(itertools.islice(itertools.cycle(phishing()), n))


def write_lines(path: Path, bodies: Iterable[str]) -> Path:
    with path.open("w") as f:
        for body in bodies:
            f.write(body)
            f.write("\n")
    return path


def predict_bodies() -> list[str]:
    """One ``{"features": {...}}`` body per row of the stream."""
    return [dumps({"features": x}) for x, _ in phishing()]


def batch_bodies(rows_per_request: int, n_bodies: int = 5) -> list[str]:
    """``{"rows": [...]}`` bodies of ``rows_per_request`` rows each, going through the stream."""
    rows = itertools.cycle(phishing())
    return [
        dumps({"rows": [{"features": next(rows)[0]} for _ in range(rows_per_request)]})
        for _ in range(n_bodies)
    ]


def training_body() -> str:
    """The whole stream as inline-feature feedback, to train the served model before measuring
    (an untrained model answers an empty ``proba``: a shorter answer than in production)."""
    return dumps({"items": [{"features": x, "label": y} for x, y in phishing()], "wait": True})
