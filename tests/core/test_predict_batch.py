"""The engine's batch predict answers and records what its single predict does, bit for bit.

``Engine.predict_many`` validates a batch a column at a time and predicts it vectorised where the
pipeline allows (onlearn.models.batch); ``predict_one`` goes row by row. Two engines taught the
same labels get the same rows, one batch against one row at a time: every answer and every
prediction record must be equal, floats compared by their repr (so 0 and 0.0, or -0.0, differ),
for each task and head the vectorised path covers, and for a pipeline it does not.
"""

from __future__ import annotations

import itertools
import math
import random

import pytest
from river import datasets

from onlearn.config import settings_from_mapping
from onlearn.engine import Engine, FeedbackItem
from onlearn.engine import predict as predict_module
from onlearn.records import PredictionRecord
from tests.core.conftest import PHISHING_FEATURES


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def settings(model: dict):
    return settings_from_mapping(
        {
            "store": {"url": "memory://"},
            "security": {"secret_key": "test"},
            "models": {"m": model},
        }
    )


def phishing(n):
    return [(dict(x), bool(y)) for x, y in itertools.islice(datasets.Phishing(), n)]


def segments(n):
    return [(dict(x), y) for x, y in itertools.islice(datasets.ImageSegments(), n)]


SEGMENT_CLASSES = ["brickface", "cement", "foliage", "grass", "path", "sky", "window"]


def segment_features():
    x, _ = next(iter(datasets.ImageSegments()))
    return {name: "number" for name in x}


def trump(n):
    return [(dict(x), float(y)) for x, y in itertools.islice(datasets.TrumpApproval(), n)]


def trump_features():
    x, _ = next(iter(datasets.TrumpApproval()))
    return {name: "number" for name in x}


def mixed(n, seed=5):
    """Numbers given as ints, a nullable number often absent or null, categories (one with
    allowed values, one nullable), a boolean: what JSON clients send."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        x = {
            "size": rng.choice([rng.gauss(10, 3), rng.randrange(0, 20)]),
            "flag": rng.random() < 0.3,
            "colour": rng.choice(["red", "green", "blue"]),
        }
        r = rng.random()
        if r < 0.5:
            x["weight"] = rng.gauss(0, 1)
        elif r < 0.75:
            x["weight"] = None
        if rng.random() < 0.6:
            x["shape"] = rng.choice(["round", "square"])
        score = 0.4 * (x["size"] - 10) + (1.5 if x["colour"] == "red" else -0.5)
        score += (x.get("weight") or 0.0) + rng.gauss(0, 0.5)
        out.append((x, "low" if score < -0.5 else "mid" if score < 1 else "high"))
    return out


MIXED_FEATURES = {
    "size": "number",
    "flag": "boolean",
    "weight": {"type": "number", "nullable": True},
    "colour": {"type": "category", "values": ["red", "green", "blue"]},
    "shape": {"type": "category", "nullable": True},
}

CASES = {
    # BinaryClassifier(LogisticRegression): the configured classes
    "binary": (
        {"classes": [True, False], "features": PHISHING_FEATURES},
        phishing,
    ),
    # river's LogisticRegression itself: {False: ..., True: ...}
    "boolean": ({"features": PHISHING_FEATURES}, phishing),
    # one-vs-rest over 7 classes, with a sampler that decides row by row
    "multiclass": (
        {
            "classes": SEGMENT_CLASSES,
            "features": segment_features(),
            "active": {"strategy": "variable_uncertainty", "measure": "margin", "budget": 0.3},
        },
        segments,
    ),
    "regression": (
        {
            "task": "regression",
            "pipeline": {"name": "linear_regression"},
            "features": trump_features(),
        },
        trump,
    ),
    "categorical": ({"classes": ["low", "mid", "high"], "features": MIXED_FEATURES}, mixed),
    # not vectorised: the batch goes row by row through the tree
    "tree": (
        {
            "classes": ["low", "mid", "high"],
            "pipeline": {"name": "hoeffding_tree"},
            "features": MIXED_FEATURES,
        },
        mixed,
    ),
}


def exact(value):
    """A value with its float bits and types spelled out."""
    if isinstance(value, dict):
        return [(exact(k), exact(v)) for k, v in value.items()]
    if isinstance(value, list | tuple):
        return [exact(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return ("nan",)
    return (type(value).__name__, repr(value))


def answer(p) -> list:
    d = p.to_dict()
    del d["prediction_id"]
    return exact(d)


def record(engine, pid) -> list:
    r: PredictionRecord = engine._records.get(pid) or engine.store.predictions.get(pid)
    return exact(
        [r.model, r.at, r.features, r.version, r.outputs, r.uncertainty, r.queued]
        + [r.expires_at, r.reason]
    )


def engines(model: dict, train):
    model = {"pipeline": {"name": "logistic_regression"}, **model}
    pair = []
    for _ in range(2):
        engine = Engine.from_settings(settings(model))
        engine.clock = Clock()
        engine.start()
        engine._predictor.clock = engine.clock
        engine._feedback.clock = engine.clock
        if train:
            items = [FeedbackItem(label=y, features=x) for x, y in train]
            engine.feedback_many("m", items)
        pair.append(engine)
    return pair


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("trained", [0, 1, 300])
def test_batch_predict_equals_single_predicts(case, trained):
    model, data = CASES[case]
    events = data(trained + 200)
    batch, single = engines(model, events[:trained])
    try:
        rows = [x for x, _ in events[trained:]]
        for chunk in (rows[:1], rows[1:100], rows[100:]):
            many = batch.predict_many("m", chunk)
            ones = [single.predict_one("m", x) for x in chunk]
            assert [answer(p) for p in many] == [answer(p) for p in ones]
            assert [record(batch, p.prediction_id) for p in many] == [
                record(single, p.prediction_id) for p in ones
            ]
            assert len({p.prediction_id for p in many}) == len(many)
        assert batch.runtime("m").predictions == single.runtime("m").predictions == len(rows)
    finally:
        batch.close()
        single.close()


def test_the_vectorised_path_is_taken_for_linear_pipelines(monkeypatch):
    """The oracle above would pass with no vectorised path at all: make sure it runs."""
    calls = []
    original = predict_module.Predictor._predict_table

    def spy(self, rt, clean, columns):
        result = original(self, rt, clean, columns)
        calls.append(result is not None)
        return result

    monkeypatch.setattr(predict_module.Predictor, "_predict_table", spy)
    for case in ("binary", "multiclass", "regression", "categorical"):
        model, data = CASES[case]
        events = data(120)
        engine, other = engines(model, events[:100])
        other.close()
        try:
            engine.predict_many("m", [x for x, _ in events[100:]])
        finally:
            engine.close()
    assert calls == [True, True, True, True]


def test_built_predictions_and_records_equal_constructed_ones():
    """The predict path builds its Prediction and PredictionRecord through their slots: the
    same objects as the constructors make, field by field, frozen and pickled alike."""
    import dataclasses
    import pickle

    prediction = dict(
        prediction_id="a" * 32,
        model="m",
        version="v1",
        label=True,
        proba={True: 0.5, False: 0.5},
        uncertainty=0.5,
        queued=True,
    )
    record = dict(
        id="a" * 32,
        model="m",
        at=1.5,
        features={"x": 1.0},
        version="v1",
        outputs={"v1": {"label": True, "proba": [[True, 0.5], [False, 0.5]]}},
        uncertainty=0.5,
        queued=True,
        expires_at=2.5,
        reason="uncertain",
        sample_p=0.25,
    )
    for cls, build, fields in (
        (predict_module.Prediction, predict_module._build_prediction, prediction),
        (PredictionRecord, predict_module._build_record, record),
    ):
        # A field added, removed or moved must be added to the builder too.
        assert [f.name for f in dataclasses.fields(cls)] == list(fields)
        built, made = build(*fields.values()), cls(**fields)
        assert type(built) is cls
        assert built == made and hash(repr(built)) == hash(repr(made))
        assert all(getattr(built, k) is v for k, v in fields.items())
        assert pickle.loads(pickle.dumps(built)) == made
        with pytest.raises(dataclasses.FrozenInstanceError):
            built.model = "other"


def test_an_invalid_row_in_a_batch_gets_the_row_by_row_errors():
    model, data = CASES["binary"]
    batch, single = engines(model, data(50))
    try:
        rows = [x for x, _ in data(5)]
        rows[3] = {**rows[3], "https": 2.0, "extra": 1}
        with pytest.raises(Exception) as info:
            batch.predict_many("m", rows)
        errors = [(e.loc, e.rule) for e in info.value.errors]
        assert errors == [((3, "https"), "max"), ((3, "extra"), "unknown")]
        assert batch.runtime("m").violations == {("https", "max"): 1, ("extra", "unknown"): 1}
    finally:
        batch.close()
        single.close()
