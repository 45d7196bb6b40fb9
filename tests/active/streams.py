"""Seeded streams of class probabilities for the active learning tests."""

from __future__ import annotations

import random
from collections.abc import Callable

Proba = dict[object, float]


def dirichlet(rng: random.Random, k: int, alpha: float) -> list[float]:
    draws = [rng.gammavariate(alpha, 1.0) for _ in range(k)]
    total = sum(draws)
    return [d / total for d in draws] if total > 0 else [1.0 / k] * k


def random_probas(n: int, seed: int) -> list[Proba]:
    """Varied probability vectors: 2 to 10 classes, peaked or flat, with exact zeros, ties,
    and some not summing to 1 (scaled), keyed by mixed label types."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        k = rng.randint(2, 10)
        values = dirichlet(rng, k, rng.choice([0.05, 0.3, 1.0, 5.0, 50.0]))
        kind = i % 10
        if kind == 0:
            values[rng.randrange(k)] = 0.0
        elif kind == 1:
            values = [1.0 / k] * k  # all tied
        elif kind == 2:
            values[0] = values[1] = max(values)  # a tie at the top
        elif kind == 3:
            values = [v * rng.uniform(0.5, 2.0) for v in values]  # not normalised
        labels = [f"c{j}" if j % 2 else j for j in range(k)]
        rng.shuffle(labels)
        out.append(dict(zip(labels, values, strict=True)))
    return out


def binary(p: float) -> Proba:
    return {True: p, False: 1.0 - p}


def _stream(n: int, seed: int, draw: Callable[[random.Random, int], float]) -> list[Proba]:
    rng = random.Random(seed)
    return [binary(draw(rng, i)) for i in range(n)]


def uncertain(n: int, seed: int) -> list[Proba]:
    return _stream(n, seed, lambda rng, i: rng.uniform(0.35, 0.65))


def confident(n: int, seed: int) -> list[Proba]:
    return _stream(
        n, seed, lambda rng, i: rng.choice([rng.uniform(0.0, 0.03), rng.uniform(0.97, 1.0)])
    )


def mixed(n: int, seed: int) -> list[Proba]:
    def draw(rng: random.Random, i: int) -> float:
        if rng.random() < 0.2:
            return rng.uniform(0.35, 0.65)
        return rng.choice([rng.uniform(0.0, 0.1), rng.uniform(0.9, 1.0)])

    return _stream(n, seed, draw)


def drifting(n: int, seed: int) -> list[Proba]:
    """Sure of itself, then suddenly unsure (a drift), then slowly sure again."""

    def draw(rng: random.Random, i: int) -> float:
        if i < n // 3:
            return rng.uniform(0.97, 1.0)
        if i < n // 2:
            return rng.uniform(0.4, 0.6)
        spread = 0.1 + 0.4 * (i - n // 2) / (n - n // 2)
        return rng.uniform(0.5 + spread * 0.9, min(1.0, 0.5 + spread * 1.1))

    return _stream(n, seed, draw)


STREAMS = {"uncertain": uncertain, "confident": confident, "mixed": mixed, "drifting": drifting}
