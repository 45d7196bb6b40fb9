"""The pure-Python measures equal modAL's on the same probabilities (oracle tests)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from modAL.uncertainty import (
    classifier_entropy,
    classifier_margin,
    classifier_uncertainty,
    entropy_sampling,
    margin_sampling,
    uncertainty_sampling,
)

from onlearn.active import (
    MEASURES,
    entropy,
    least_confident,
    margin,
    rank_by_uncertainty,
    uncertainty_many,
)
from tests.active.streams import dirichlet, random_probas

PROBAS = random_probas(10_000, seed=11)
TOL = dict(rel=1e-12, abs=1e-12)


class Fitted:
    """The smallest thing modAL's classifier measures accept: a fitted ``predict_proba``."""

    def __init__(self, rows: np.ndarray) -> None:
        self.rows = rows

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.rows[X]


def modal(fn, probas: list[dict]) -> list[float]:
    """modAL's ``fn`` on rows of as many classes each, normalised as the measures here do."""
    rows = np.array([list(p.values()) for p in probas], dtype=float)
    rows /= rows.sum(axis=1, keepdims=True)
    return fn(Fitted(rows), np.arange(len(rows))).tolist()


def test_each_measure_equals_modal_on_random_probabilities():
    by_size: dict[int, list[dict]] = {}
    for proba in PROBAS:
        by_size.setdefault(len(proba), []).append(proba)
    for k, probas in by_size.items():
        for proba, lc, mg, raw in zip(
            probas,
            modal(classifier_uncertainty, probas),
            modal(classifier_margin, probas),
            modal(classifier_entropy, probas),
            strict=True,
        ):
            assert least_confident(proba) == pytest.approx(lc, **TOL), proba
            assert margin(proba) == pytest.approx(1.0 - mg, **TOL), proba
            assert entropy(proba, normalize=False) == pytest.approx(raw, **TOL), proba
            assert entropy(proba) == pytest.approx(raw / math.log(k), **TOL), proba


@pytest.mark.parametrize("measure", list(MEASURES))
def test_the_modal_batch_equals_the_fast_path_row_by_row(measure):
    fast = np.array([MEASURES[measure](p) for p in PROBAS])
    batch = uncertainty_many(PROBAS, measure)
    np.testing.assert_allclose(batch, fast, rtol=1e-12, atol=1e-12)
    if measure != "entropy":  # the same operations in the same order: the same bits
        assert batch.tolist() == fast.tolist()


@pytest.mark.parametrize("measure", list(MEASURES))
def test_measures_lie_in_the_unit_interval(measure):
    values = [MEASURES[measure](p) for p in PROBAS]
    assert min(values) >= 0.0 and max(values) <= 1.0


@pytest.mark.parametrize("measure", list(MEASURES))
def test_a_model_that_knows_nothing_or_one_class_is_maximally_uncertain(measure):
    fn = MEASURES[measure]
    broken = [{"a": math.nan, "b": 0.5}, {"a": None, "b": 0.5}]  # the engine turns NaN into None
    for proba in ({}, {"a": 1.0}, {True: 0.3}, {"a": 0.0, "b": 0.0}, *broken):
        assert fn(proba) == 1.0
    rows = [{}, {"a": 1.0}, {"a": 0.0, "b": 0.0}, *broken]
    assert uncertainty_many(rows, measure).tolist() == [1.0] * 5
    assert uncertainty_many([], measure).tolist() == []


def test_known_values():
    assert least_confident({"a": 0.5, "b": 0.5}) == 0.5
    assert least_confident({"a": 1.0, "b": 0.0}) == 0.0
    assert margin({"a": 0.5, "b": 0.5}) == 1.0
    assert margin({"a": 0.6, "b": 0.3, "c": 0.1}) == pytest.approx(0.7)
    assert entropy({c: 0.25 for c in "abcd"}) == pytest.approx(1.0)
    assert entropy({"a": 1.0, "b": 0.0, "c": 0.0}) == 0.0
    # Probabilities are normalised first: scaling changes nothing.
    assert entropy({"a": 2.0, "b": 6.0}) == pytest.approx(entropy({"a": 0.25, "b": 0.75}))
    assert least_confident({"a": 2.0, "b": 6.0}) == pytest.approx(0.25)


def test_ranking_agrees_with_modals_query_strategies_on_a_pool():
    """modAL's own query functions pick the same most uncertain rows from a 3-class pool."""
    rng = random.Random(5)
    pool = [dict(zip("abc", dirichlet(rng, 3, 1.0), strict=True)) for _ in range(300)]
    rows = np.array([list(p.values()) for p in pool])
    rows /= rows.sum(axis=1, keepdims=True)
    for measure, query in (
        ("least_confident", uncertainty_sampling),
        ("margin", margin_sampling),
        ("entropy", entropy_sampling),
    ):
        ours = rank_by_uncertainty(pool, measure, limit=10)
        picked, _ = query(Fitted(rows), np.arange(len(pool)), n_instances=10)
        assert sorted(ours) == sorted(picked.tolist())
        everything = rank_by_uncertainty(pool, measure)
        values = uncertainty_many(pool, measure)[everything]
        assert sorted(everything) == list(range(len(pool))) and all(np.diff(values) <= 0)


def test_unknown_measure():
    with pytest.raises(ValueError, match="unknown measure 'loudness'"):
        uncertainty_many([{"a": 0.5, "b": 0.5}], "loudness")
