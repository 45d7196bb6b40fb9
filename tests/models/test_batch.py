"""Batch predictions: the vectorised path answers what the per-row methods answer."""

from __future__ import annotations

import itertools
import math
import pickle
import random
import time

import numpy as np
import pytest
from river import compose, datasets, linear_model, optim, preprocessing, tree

from onlearn.models import (
    BinaryClassifier,
    PipelineSpec,
    SelectPresent,
    build_pipeline,
    predict_batch,
    predict_proba_batch,
)
from onlearn.models import batch as batch_module

NUMERIC = ("size", "flag", "weight", "count", "constant", "rare")
CATEGORICAL = ("colour", "shape")


@pytest.fixture(scope="module")
def phishing() -> list[tuple[dict, bool]]:
    return [(dict(x), bool(y)) for x, y in datasets.Phishing()]


def synthetic(n: int, seed: int = 3) -> list[tuple[dict, str, float]]:
    """``(x, label, target)``: floats, a bool, an int, a constant (its variance stays 0), a rare
    feature (seen once: variance 0 too), a nullable feature often absent or None, a categorical
    feature always there and one often absent, and a feature outside the schema."""
    rng = random.Random(seed)
    events = []
    for i in range(n):
        x = {
            "size": rng.gauss(10, 3),
            "flag": rng.random() < 0.3,
            "count": rng.randrange(0, 20),
            "constant": 2.5,
            "colour": rng.choice(["red", "green", "blue"]),
            "note": "not in the schema",
        }
        if rng.random() < 0.6:
            x["weight"] = rng.gauss(0, 1)
        elif rng.random() < 0.5:
            x["weight"] = None
        if rng.random() < 0.5:
            x["shape"] = rng.choice(["round", "square"])
        if i == 7:
            x["rare"] = 4.0
        score = (
            0.4 * (x["size"] - 10)
            + (1.5 if x["colour"] == "red" else -0.5)
            + (x.get("weight") or 0.0)
            + 0.8 * x["flag"]
            + rng.gauss(0, 0.3)
        )
        label = "low" if score < -0.5 else "mid" if score < 1 else "high"
        events.append((x, label, score))
    return events


def build(name="logistic_regression", classes=None, numeric=NUMERIC, categorical=CATEGORICAL):
    task = "regression" if name == "linear_regression" else "classification"
    return build_pipeline(
        PipelineSpec(name), task=task, numeric=numeric, categorical=categorical, classes=classes
    )


def same(a, b) -> bool:
    """Bit for bit (NaN equals NaN)."""
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


def assert_same_probas(model, rows):
    """The batch answer equals the per-row one: same keys in the same order, same value types,
    values bit for bit."""
    got = predict_proba_batch(model, rows)
    expected = [model.predict_proba_one(x) for x in rows]
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert list(g) == list(e)
        assert [type(v) for v in g.values()] == [type(v) for v in e.values()]
        assert all(same(g[k], e[k]) for k in e), (g, e)
    return got


def assert_same_predictions(model, rows):
    got = predict_batch(model, rows)
    expected = [model.predict_one(x) for x in rows]
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert type(g) is type(e)
        assert same(g, e), (g, e)
    return got


def is_vectorised(model) -> bool:
    return batch_module._plan(model) is not None


# ---------------------------------------------------------------------------------------------
# the catalog's linear pipelines, against the per-row methods


@pytest.mark.parametrize(
    "classes", [[True, False], [False, True], None], ids=["binary", "binary-swapped", "ovr"]
)
def test_phishing_cold_and_along_the_stream(phishing, classes):
    numeric = tuple(phishing[0][0])
    model = build(classes=classes, numeric=numeric, categorical=())
    assert is_vectorised(model)
    rows = [x for x, _ in phishing[:1000]]
    assert assert_same_probas(model, rows) == [{}] * len(rows)  # nothing learnt yet
    for i, (x, y) in enumerate(phishing):
        model.learn_one(x, y)
        if i in (0, 1, 10, 300, len(phishing) - 1):
            assert_same_probas(model, rows)
            assert_same_predictions(model, rows)


@pytest.mark.parametrize(
    ("classes", "relabel"),
    [
        (None, None),
        (["high", "mid", "low"], None),
        (["pos", "neg"], lambda label: "pos" if label == "high" else "neg"),
        ([1, 0], lambda label: int(label == "high")),
    ],
    ids=["ovr-3", "ovr-declared", "binary-strings", "binary-ints"],
)
def test_synthetic_categorical_nullable_and_constant_features(classes, relabel):
    model = build(classes=classes)
    assert is_vectorised(model)
    events = synthetic(400)
    rows = [x for x, _, _ in events[:200]] + [{}, {"colour": "purple"}, {"weight": None}]
    assert_same_probas(model, rows)
    for i, (x, label, _) in enumerate(events):
        model.learn_one(x, relabel(label) if relabel else label)
        if i in (0, 1, 8, 50, 399):
            assert_same_probas(model, rows)
            assert_same_predictions(model, rows)


def test_linear_regression():
    model = build("linear_regression")
    assert is_vectorised(model)
    events = synthetic(400)
    rows = [x for x, _, _ in events[:200]] + [{}, {"shape": "hexagon"}]
    assert_same_predictions(model, rows)
    for i, (x, _, target) in enumerate(events):
        model.learn_one(x, target)
        if i in (0, 5, 399):
            assert_same_predictions(model, rows)


@pytest.mark.parametrize(
    ("numeric", "categorical"),
    [(NUMERIC, ()), ((), CATEGORICAL), ((), ()), (("size",), ())],
    ids=["numeric-only", "categorical-only", "no-features", "one-feature"],
)
@pytest.mark.parametrize("classes", [None, ["high", "low"]], ids=["ovr", "binary"])
def test_pipeline_shapes(numeric, categorical, classes):
    model = build(classes=classes, numeric=numeric, categorical=categorical)
    assert is_vectorised(model)
    events = synthetic(100)
    rows = [x for x, _, _ in events]
    for x, label, _ in events:
        model.learn_one(x, "high" if label == "high" else "low")
    assert_same_probas(model, rows)


@pytest.mark.parametrize("data", ["phishing", "synthetic"])
def test_scores_are_rivers_bit_for_bit(phishing, data):
    """river's VectorDict.dot sums w[k] * x[k] in the order of x, with no fused multiply-add;
    so does the batch, so its scores (before the exp) are river's floats, on any platform."""
    if data == "phishing":
        model = build(classes=[True, False], numeric=tuple(phishing[0][0]), categorical=())
        events = phishing
    else:
        model = build()  # one-vs-rest on a union of scaled numbers and one-hot categories
        events = [(x, label) for x, label, _ in synthetic(400)]
    for x, y in events:
        model.learn_one(x, y)
    rows = [x for x, _ in events]
    plan = batch_module._plan(model)
    inputs = [model._transform_one(x)[0] for x in rows]  # what the final step sees
    expected = [[m._raw_dot_one(x) for m in plan.models] for x in inputs]
    assert batch_module._scores(plan, rows).tolist() == expected


def test_saturated_sigmoid_answers_rivers_ints():
    """river's sigmoid is exactly 0 below -30 and 1 above 30, as the ints 0 and 1."""
    model = build(classes=["pos", "neg"], numeric=("size",), categorical=())
    rows = [{"size": 1.0}, {"size": -1.0}, {}]
    model.learn_one({"size": 0.0}, "pos")
    model.learn_one({"size": 2.0}, "neg")
    lr = model.steps["BinaryClassifier"].classifier
    for intercept, empty in [(50.0, {"pos": 1, "neg": 0.0}), (-50.0, {"pos": 0, "neg": 1.0})]:
        lr.intercept = intercept
        got = assert_same_probas(model, rows)  # value types included
        assert got[2] == empty and type(got[2]["pos"]) is int
    lr.intercept = 30.0  # the bound itself is not saturated
    assert type(assert_same_probas(model, rows)[2]["pos"]) is float
    ovr = build(numeric=("size",), categorical=())
    for x, y in [({"size": 0.0}, "a"), ({"size": 1.0}, "b"), ({"size": 2.0}, "c")]:
        ovr.learn_one(x, y)
    for clf in ovr.steps["OneVsRestClassifier"].classifiers.values():
        clf.intercept = -60.0  # every class saturates to 0: river answers 1/3 each
    assert assert_same_probas(ovr, rows)[0] == {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}


def test_nan_and_inf_values_follow_river():
    model = build(classes=["a", "b"], numeric=("size", "weight"), categorical=())
    for x, y in [({"size": 1.0, "weight": 2.0}, "a"), ({"size": 3.0, "weight": 1.0}, "b")] * 3:
        model.learn_one(x, y)
    rows = [{"size": math.nan, "weight": 1.0}, {"size": math.inf}, {"size": 2.0, "weight": None}]
    assert_same_probas(model, rows)


def test_categories_of_other_types_keep_their_keys_apart():
    """1 and True are equal dict keys, but river's one-hot keys are "c_1" and "c_True"."""
    model = build(classes=["a", "b"], numeric=(), categorical=("c",))
    for x, y in [({"c": 1}, "a"), ({"c": True}, "b"), ({"c": "1"}, "b")] * 5:
        model.learn_one(x, y)
    rows = [{"c": 1}, {"c": True}, {"c": "1"}, {"c": 2}, {}, {"c": False}, {"c": 0}]
    assert is_vectorised(model)
    got = assert_same_probas(model, rows)
    assert got[0] != got[1]


# ---------------------------------------------------------------------------------------------
# other estimators, other shapes and odd rows go row by row, with the per-row answer or error


LR = linear_model.LogisticRegression


def plain_logistic(with_std=True):
    return (
        SelectPresent("size", "weight")
        | preprocessing.StandardScaler(with_std=with_std)
        | (linear_model.LogisticRegression())
    )


def test_a_bare_river_logistic_regression_pipeline_is_vectorised_too():
    model = plain_logistic()
    assert is_vectorised(model)
    for x, label, _ in synthetic(200):
        model.learn_one(x, label == "high")
    assert_same_probas(model, [x for x, _, _ in synthetic(100, seed=9)])
    model.steps["LogisticRegression"].intercept = 40.0
    assert_same_probas(model, [{"size": 3.0}, {}])


def test_scaler_without_std():
    model = (
        SelectPresent("size", "weight")
        | preprocessing.StandardScaler(with_std=False)
        | (linear_model.LinearRegression())
    )
    assert is_vectorised(model)
    for x, _, target in synthetic(200):
        model.learn_one(x, target)
    assert_same_predictions(model, [x for x, _, _ in synthetic(100, seed=9)])


@pytest.mark.parametrize(
    ("make", "boolean"),
    [
        (lambda: build("hoeffding_tree"), False),
        (lambda: build("gaussian_naive_bayes"), False),
        (lambda: SelectPresent("size") | preprocessing.MinMaxScaler() | LR(), True),
        (lambda: SelectPresent("size") | preprocessing.StandardScaler(window_size=10) | LR(), True),
        (lambda: preprocessing.StandardScaler() | LR(), True),  # no SelectPresent
        (lambda: LR(), True),
        (lambda: SelectPresent("size") | LR(loss=optim.losses.Hinge()), True),  # same link: ok
        (lambda: BinaryClassifier(tree.HoeffdingTreeClassifier(), classes=("high", "low")), False),
    ],
    ids=["tree", "nb", "minmax", "rolling-scaler", "no-select", "bare-lr", "hinge", "wrapped-tree"],
)
def test_other_estimators_go_row_by_row(make, boolean):
    model = make()
    events = synthetic(100)
    rows = [{"size": x["size"], "count": x["count"]} for x, _, _ in events]
    for x, (_, label, _) in zip(rows, events, strict=True):
        model.learn_one(x, label == "high" if boolean else "high" if label == "high" else "low")
    if is_vectorised(model):
        assert_same_probas(model, rows)
    else:
        assert predict_proba_batch(model, rows) == [model.predict_proba_one(x) for x in rows]
    assert_same_predictions(model, rows)


def test_colliding_one_hot_keys_go_row_by_row():
    # "colour" = "red" one-hot encodes to "colour_red", which is also a numeric feature's name.
    model = build(classes=["a", "b"], numeric=("colour_red", "size"), categorical=("colour",))
    assert not is_vectorised(model)
    model = build(classes=["a", "b"], numeric=("size",), categorical=("a", "a_b"))
    assert not is_vectorised(model)
    model = build(classes=["a", "b"], numeric=("colour", "size"), categorical=("shape",))
    assert is_vectorised(model)
    rows = [{"colour_red": 1.0, "colour": "red", "size": 2.0}, {"colour": "red"}]
    model = build(classes=["a", "b"], numeric=("colour_red", "size"), categorical=("colour",))
    for x in rows * 3:
        model.learn_one(x, "a" if "size" in x else "b")
    assert_same_probas(model, rows)


@pytest.mark.parametrize(
    "row",
    [
        {"size": "3.5"},  # a string in a numeric feature: river fails, so must the batch
        {"size": [1.0, 2.0]},
        {"size": np.float32(1.5), "weight": None},
    ],
    ids=["string", "list", "numpy-scalar-and-none"],
)
def test_odd_numeric_values_give_the_per_row_answer_or_error(row):
    model = build(classes=["a", "b"], numeric=("size", "weight"), categorical=())
    model.learn_one({"size": 1.0, "weight": 2.0}, "a")
    rows = [{"size": 1.0, "weight": 2.0}, row]
    try:
        expected = [model.predict_proba_one(x) for x in rows]
    except Exception as exc:
        with pytest.raises(type(exc)):
            predict_proba_batch(model, rows)
    else:
        assert predict_proba_batch(model, rows) == expected


def test_list_valued_categories_go_row_by_row():
    model = build(classes=["a", "b"], numeric=(), categorical=("tags",))
    for x, y in [({"tags": ["x", "y"]}, "a"), ({"tags": "z"}, "b")] * 3:
        model.learn_one(x, y)
    rows = [{"tags": ["x", "y"]}, {"tags": "z"}, {"tags": {"y"}}]
    assert predict_proba_batch(model, rows) == [model.predict_proba_one(x) for x in rows]


def test_learn_during_predict_and_empty_pipelines_go_row_by_row():
    model = build(classes=["a", "b"])
    with compose.learn_during_predict():
        assert not is_vectorised(model)
    assert is_vectorised(model)
    assert not is_vectorised(compose.Pipeline())


def test_empty_batches_and_iterables():
    model = build(classes=["a", "b"])
    assert predict_proba_batch(model, []) == []
    assert predict_batch(model, []) == []
    rows = [x for x, _, _ in synthetic(5)]
    assert predict_proba_batch(model, iter(rows)) == [model.predict_proba_one(x) for x in rows]
    assert predict_batch(build("hoeffding_tree"), iter(rows)) == [None] * 5


def test_the_batch_leaves_the_model_as_it_was():
    model = build(classes=["pos", "neg"])
    for x, label, _ in synthetic(50):
        model.learn_one(x, "pos" if label == "high" else "neg")
    rows = [x for x, _, _ in synthetic(50, seed=11)] + [{"unknown_colour": "x", "rare": 1.0}]
    before = pickle.dumps(model)
    predict_proba_batch(model, rows)
    predict_batch(model, rows)
    assert pickle.dumps(model) == before


@pytest.mark.parametrize("classes", [["a", "b"], None])
def test_answers_are_fresh_dicts(classes):
    model = build(classes=classes)
    got = predict_proba_batch(model, [{}, {}])
    got[0]["a"] = 7
    assert got[1] == {}
    model.learn_one({}, "a")
    got = predict_proba_batch(model, [{}, {}])
    got[0]["a"] = 7
    assert got[1]["a"] != 7


def test_batch_is_faster_than_row_by_row(phishing):
    """Not a benchmark, a guard: the vectorised path must not regress to a loop."""
    model = build(classes=[True, False], numeric=tuple(phishing[0][0]), categorical=())
    for x, y in itertools.islice(itertools.cycle(phishing), 2000):
        model.learn_one(x, y)
    rows = [x for x, _ in phishing[:1000]]

    def best(fn, repeat=7):
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    batch = best(lambda: predict_proba_batch(model, rows))
    loop = best(lambda: [model.predict_proba_one(x) for x in rows])
    assert batch < loop / 2
