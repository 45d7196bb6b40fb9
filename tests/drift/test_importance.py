"""Feature importance drift: an oracle (known weights), a swap of the informative feature that
must alarm, stable streams that must not, and the CPU budget of permutation importance."""

from __future__ import annotations

import random
import time

import pytest

from onlearn.drift.importance import (
    FeatureImportance,
    ImportanceBudget,
    ImportanceDrift,
    average_overlap,
    feature_importance,
    linear_importance,
)
from onlearn.errors import ConfigError
from onlearn.models.catalog import PipelineSpec, build_pipeline

FEATURES = ["x1", "x2", "x3", "x4"]


def pipeline(name: str, *, numeric=FEATURES, categorical=(), classes=(True, False)):
    return build_pipeline(
        PipelineSpec.from_config(name),
        task="classification",
        numeric=list(numeric),
        categorical=list(categorical),
        classes=list(classes) if classes else None,
    )


def linear_models(model):
    from onlearn.drift.importance import _linear_models

    return _linear_models(model)


def test_linear_importances_are_the_known_weights():
    model = pipeline("logistic_regression", numeric=["a", "b", "c"], categorical=["k"])
    model.learn_one({"a": 1.0, "b": 2.0, "c": 3.0, "k": "x"}, True)
    (lr,) = linear_models(model)
    lr._weights.clear()
    lr._weights.update({"a": 2.0, "b": -1.0, "c": 0.5, "k_x": 0.3, "k_y": -0.7})
    got = linear_importance(model, ["a", "b", "c", "k"])
    # a category counts its largest one-hot weight
    assert got == pytest.approx({"a": 2 / 4.2, "b": 1 / 4.2, "c": 0.5 / 4.2, "k": 0.7 / 4.2})
    result = feature_importance(model, ["a", "b", "c", "k"])
    assert result.method == "weights" and result.ranking == ["a", "b", "k", "c"]


def test_one_vs_rest_averages_the_classes_models():
    model = pipeline("logistic_regression", numeric=["a", "b"], classes=None)
    for y in ("p", "q", "r"):
        model.learn_one({"a": 1.0, "b": 1.0}, y)
    models = linear_models(model)
    assert len(models) == 3
    for lr, (wa, wb) in zip(models, [(1.0, 0.0), (0.0, 1.0), (2.0, 0.0)], strict=True):
        lr._weights.clear()
        lr._weights.update({"a": wa, "b": wb})
    assert linear_importance(model, ["a", "b"]) == pytest.approx({"a": 0.75, "b": 0.25})


def test_a_tree_is_not_linear_and_gets_permutation_importance():
    model = pipeline("hoeffding_tree")
    assert linear_importance(model, FEATURES) is None
    result = feature_importance(model, FEATURES, [], [])
    assert result.method == "permutation" and result.importances == {}
    assert "labelled rows" in result.detail


def stream(seed: int, swap_at: int | None):
    """y depends on x1 (and a little x2); from ``swap_at`` on x3 and x4 take their place."""
    rng = random.Random(seed)
    t = 0
    while True:
        x = {f: rng.gauss(0, 1) for f in FEATURES}
        a, b = ("x1", "x2") if swap_at is None or t < swap_at else ("x3", "x4")
        yield x, x[a] + 0.5 * x[b] + rng.gauss(0, 0.3) > 0
        t += 1


def alarms(name: str, seed: int, swap_at: int | None, n: int = 6000, every: int = 500):
    """Learn the stream; every ``every`` labels, importances over the last 1000 and the drift."""
    model = pipeline(name)
    drift = ImportanceDrift()
    window: list = []
    out = []
    for t, (x, y) in enumerate(stream(seed, swap_at)):
        if t >= n:
            break
        model.learn_one(x, y)
        window.append((x, y))
        del window[:-1000]
        if (t + 1) % every == 0:
            rows, labels = zip(*window, strict=True)
            result = feature_importance(model, FEATURES, rows, labels, seed=t)
            drift.update(result.importances)
            if drift.drift_detected:
                out.append(t + 1)
    return out, result


@pytest.mark.parametrize("name", ["logistic_regression", "hoeffding_tree"])
def test_a_swap_of_the_informative_feature_raises_the_alarm(name):
    found, last = alarms(name, seed=0, swap_at=3000)
    assert found and 3000 < found[0] <= 5000, found
    assert last.ranking[0] == "x3"
    assert last.method == ("weights" if name == "logistic_regression" else "permutation")


@pytest.mark.parametrize("name", ["logistic_regression", "hoeffding_tree"])
def test_no_alarm_without_drift_over_seeds(name):
    for seed in range(3):
        found, last = alarms(name, seed=seed, swap_at=None, n=4000)
        assert found == [], (seed, found)
        assert last.ranking[0] == "x1"


class Slow:
    """A model that takes 2 ms of CPU a prediction (the budget counts the thread's CPU)."""

    def predict_one(self, x):
        end = time.thread_time() + 0.002
        while time.thread_time() < end:
            pass
        return x["x1"] > 0


def test_permutation_stays_within_its_time_cap():
    rng = random.Random(1)
    rows = [{f: rng.gauss(0, 1) for f in FEATURES} for _ in range(1000)]
    labels = [r["x1"] > 0 for r in rows]
    budget = ImportanceBudget(sample_size=300, time_cap_s=0.5, min_rows=20)
    result = feature_importance(Slow(), FEATURES, rows, labels, budget=budget)
    # 2 ms x 5 passes a row: some 50 rows fit in 0.5 s, not 300
    assert result.detail is None and 20 <= result.rows < 60, result
    assert result.seconds < 2 * budget.time_cap_s + 0.1
    assert result.ranking[0] == "x1"
    tight = feature_importance(
        Slow(), FEATURES, rows, labels, budget=ImportanceBudget(time_cap_s=0.05, min_rows=20)
    )
    assert tight.importances == {} and tight.detail.startswith("over budget")


def test_overlap_and_bad_settings():
    assert average_overlap(["a", "b", "c"], ["c", "b", "a"], 3) == pytest.approx((0 + 0.5 + 1) / 3)
    drift = ImportanceDrift(patience=2, threshold=0.5)
    drift.update({"a": 0.6, "b": 0.3, "c": 0.1, "d": 0.0})
    moved = {"d": 0.5, "c": 0.3, "b": 0.15, "a": 0.05}
    drift.update(moved)
    assert drift.overlap == 0.222 and not drift.drift_detected  # once is not enough
    drift.update(moved)
    assert drift.drift_detected and drift.reference == ["d", "c", "b"]
    assert FeatureImportance("weights", {"a": 0.5, "b": 0.5}).to_dict()["ranking"] == ["a", "b"]
    for bad in ({"top_k": 0}, {"threshold": 1.5}, {"patience": 0}, {"min_share": 1.0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            ImportanceDrift(**bad)
    with pytest.raises(ConfigError, match="min_rows"):
        ImportanceBudget(sample_size=10, min_rows=20)


def test_a_restored_detector_goes_on_where_it_stopped():
    """A restarted worker takes up the detector from its document: the comparison already below
    the threshold counts, and a saved state of another shape is ignored."""
    first = ImportanceDrift(patience=2, threshold=0.5)
    first.update({"a": 0.6, "b": 0.3, "c": 0.1, "d": 0.0})
    moved = {"d": 0.5, "c": 0.3, "b": 0.15, "a": 0.05}
    first.update(moved)
    assert first.to_dict()["below"] == 1
    restored, fresh = ImportanceDrift(patience=2, threshold=0.5), ImportanceDrift(patience=2)
    restored.restore(first.to_dict())
    assert (restored.reference, restored.overlap) == (["a", "b", "c"], 0.222)
    restored.update(moved)
    fresh.update(moved)
    assert restored.drift_detected and not fresh.drift_detected
    for saved in (
        None,
        {"reference": "abc"},
        {"reference": ["a", 1]},
        {"reference": ["a", "b", "c", "d"]},
        {"reference": []},
    ):
        ignored = ImportanceDrift(patience=2)
        ignored.restore(saved)
        assert ignored.reference is None, saved
    odd = ImportanceDrift(patience=2)
    odd.restore({"reference": ["a"], "overlap": 7, "below": True})
    assert (odd.reference, odd.overlap, odd.to_dict()["below"]) == (["a"], None, 0)
