"""scikit-learn adapters: river's interface, the user's labels, determinism, pickles, config."""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest
from river import base, datasets
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import SGDClassifier
from sklearn.naive_bayes import MultinomialNB

from onlearn.errors import ConfigError
from onlearn.learner import LearnerState
from onlearn.models import (
    DEFAULT_SEED,
    SklearnBatch,
    SklearnIncremental,
    dump_signed,
    load_signed,
    sklearn_from_spec,
)

STREAM = list(itertools.islice(datasets.Phishing(), 600))
FEATURES = tuple(STREAM[0][0])
CLASSES = (True, False)


def sgd(**params) -> SklearnIncremental:
    return SklearnIncremental(SGDClassifier(loss="log_loss", **params), FEATURES, CLASSES)


def prequential(model, stream) -> tuple[float, list[dict]]:
    correct, probas = 0, []
    for x, y in stream:
        proba = model.predict_proba_one(x)
        probas.append(proba)
        correct += bool(proba) and max(proba, key=proba.get) == y
        model.learn_one(x, y)
    return correct / len(stream), probas


# -- incremental ------------------------------------------------------------------------------


def test_incremental_is_a_river_classifier_that_learns():
    model = sgd()
    assert isinstance(model, base.Classifier)
    assert model.predict_proba_one(STREAM[0][0]) == {}
    assert model.predict_one(STREAM[0][0]) is None
    assert not model.fitted
    accuracy, probas = prequential(model, STREAM[:300])
    assert accuracy > 0.75  # unscaled features: SGD is no champion here, but it learns
    assert model.predict_one(STREAM[0][0]) in CLASSES
    for proba in probas[1:]:
        assert list(proba) == [True, False]  # the user's labels, in classes order
        assert sum(proba.values()) == pytest.approx(1.0)
        assert all(type(p) is float for p in proba.values())


def test_labels_can_be_any_hashable_in_declared_order():
    labels = {True: "phish", False: "ok"}
    model = SklearnIncremental(MultinomialNB(), FEATURES, ["ok", "phish", "unsure"])
    for x, y in STREAM[:100]:
        model.learn_one(x, labels[y])
    proba = model.predict_proba_one(STREAM[0][0])
    assert list(proba) == ["ok", "phish", "unsure"]
    assert model.predict_one(STREAM[0][0]) in ("ok", "phish")
    with pytest.raises(ValueError, match="'maybe' is not one of the model's classes"):
        model.learn_one(STREAM[0][0], "maybe")
    with pytest.raises(ValueError, match="not one of the model's classes"):
        model.learn_many([STREAM[0][0]], [["unhashable"]])


def test_learn_one_is_deterministic_and_seeded():
    prototype = SGDClassifier(loss="log_loss")  # random_state None
    a = SklearnIncremental(prototype, FEATURES, CLASSES)
    b = SklearnIncremental(prototype, FEATURES, CLASSES)
    assert prototype.random_state is None  # the user's estimator is not changed
    assert a._model.random_state == DEFAULT_SEED
    assert prequential(a, STREAM[:200]) == prequential(b, STREAM[:200])
    given = SklearnIncremental(SGDClassifier(loss="log_loss", random_state=7), FEATURES, CLASSES)
    assert given._model.random_state == 7


def test_learn_many_equals_partial_fit_on_the_same_batches():
    rows, labels = [x for x, _ in STREAM], [y for _, y in STREAM]
    model = SklearnIncremental(
        SGDClassifier(loss="log_loss", random_state=3), FEATURES, CLASSES, batch_size=128
    )
    model.learn_many(rows, labels)
    oracle = SGDClassifier(loss="log_loss", random_state=3)
    X = np.array([[float(x[f]) for f in FEATURES] for x in rows])
    y = np.array([CLASSES.index(label) for label in labels])
    for start in range(0, len(rows), 128):
        oracle.partial_fit(X[start : start + 128], y[start : start + 128], classes=[0, 1])
    expected = oracle.predict_proba(X)
    got = model.predict_proba_many(rows)
    assert [[p[True], p[False]] for p in got] == expected.tolist()
    # one row at a time the same numbers, up to the last bit (BLAS sums a matrix product in
    # another order than a single row's)
    for many, one in zip(got, [model.predict_proba_one(x) for x in rows], strict=True):
        assert list(many) == list(one)
        assert many[True] == pytest.approx(one[True], rel=1e-12, abs=1e-15)


def test_pickle_round_trip_continues_identically():
    model = sgd()
    for x, y in STREAM[:100]:
        model.learn_one(x, y)
    clone = pickle.loads(pickle.dumps(model))
    assert prequential(clone, STREAM[100:250]) == prequential(model, STREAM[100:250])
    signed = load_signed(dump_signed(LearnerState("v1", "classification", model), b"k"), b"k")
    assert signed.estimator.predict_proba_one(STREAM[0][0]) == model.predict_proba_one(STREAM[0][0])


def test_river_clone_is_fresh_with_the_same_params():
    model = sgd()
    model.learn_one(*STREAM[0])
    fresh = model.clone()
    assert fresh.predict_proba_one(STREAM[0][0]) == {}
    assert fresh.features == model.features and fresh.classes == model.classes


def test_missing_and_none_features_are_zero():
    model = SklearnIncremental(SGDClassifier(loss="log_loss"), ["a", "b"], ["x", "y"])
    model.learn_many([{"a": 1.0, "b": 2.0}, {"a": -1.0, "b": 0.5}], ["x", "y"])
    zero = model.predict_proba_one({"a": 0.0, "b": 0.0})
    assert model.predict_proba_one({}) == zero
    assert model.predict_proba_one({"a": None, "b": None}) == zero
    assert model.predict_proba_one({"a": False, "b": 0, "other": "ignored"}) == zero
    assert model.predict_proba_one({"a": True}) == model.predict_proba_one({"a": 1.0})


def test_categories_are_one_hot_with_a_fixed_vocabulary():
    model = SklearnIncremental(
        SGDClassifier(loss="log_loss"),
        ["size"],
        ["s", "l"],
        categories={"colour": ["red", "blue"], "flag": [True, 1]},
    )
    assert model._matrix([{"size": 2, "colour": "blue", "flag": 1}]).tolist() == [
        [2.0, 0.0, 1.0, 0.0, 1.0]
    ]
    assert model._matrix([{"colour": "green", "flag": True}]).tolist() == [
        [0.0, 0.0, 0.0, 1.0, 0.0]
    ]
    assert model._matrix([{"colour": ["red"]}]).tolist() == [[0.0] * 5]  # unhashable: unknown
    for _ in range(20):
        model.learn_one({"size": 1, "colour": "red"}, "s")
        model.learn_one({"size": 1, "colour": "blue"}, "l")
    assert model.predict_one({"size": 1, "colour": "red"}) == "s"
    assert model.predict_one({"size": 1, "colour": "blue"}) == "l"
    unknown = model.predict_proba_one({"size": 1, "colour": "green"})
    assert unknown == model.predict_proba_one({"size": 1})


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"classes": ["only"]}, ConfigError, "at least two classes"),
        ({"classes": [1, True]}, ConfigError, "equal as dict keys"),
        ({"classes": "ab"}, TypeError, "sequence of labels"),
        ({"features": "a"}, TypeError, "feature names"),
        ({"features": [], "categories": {}}, ConfigError, "at least one feature"),
        ({"categories": {"a": ["x"]}}, ConfigError, "both as numeric and as categorical"),
        ({"batch_size": 0}, ConfigError, "batch_size"),
    ],
)
def test_bad_construction(kwargs, error, words):
    args = {"features": ["a"], "classes": [0, 1], **kwargs}
    with pytest.raises(error, match=words):
        SklearnIncremental(SGDClassifier(loss="log_loss"), **args)


def test_estimators_must_fit_the_adapter():
    with pytest.raises(TypeError, match="no partial_fit"):
        SklearnIncremental(RandomForestClassifier(), ["a"], [0, 1])
    with pytest.raises(TypeError, match="no predict_proba"):
        SklearnIncremental(SGDClassifier(), ["a"], [0, 1])  # hinge loss
    with pytest.raises(TypeError, match="scikit-learn estimator instance"):
        SklearnBatch(RandomForestClassifier, ["a"], [0, 1])


# -- batch ------------------------------------------------------------------------------------


def test_batch_fits_once_and_counts_the_labels_it_ignores():
    model = SklearnBatch(HistGradientBoostingClassifier(max_iter=20), FEATURES, CLASSES)
    assert model.predict_proba_one(STREAM[0][0]) == {}
    assert model.predict_proba_many([STREAM[0][0]]) == [{}]
    model.fit_many([x for x, _ in STREAM[:400]], [y for _, y in STREAM[:400]])
    before = model.predict_proba_many([x for x, _ in STREAM[400:]])
    for x, y in STREAM[400:]:
        model.learn_one(x, y)
    assert model.ignored_labels == 200
    after = [model.predict_proba_one(x) for x, _ in STREAM[400:]]
    assert before == after  # served as it is
    accuracy = np.mean(
        [max(p, key=p.get) == y for p, (_, y) in zip(after, STREAM[400:], strict=True)]
    )
    assert accuracy > 0.85
    model.fit_many([x for x, _ in STREAM], [y for _, y in STREAM])
    assert model.ignored_labels == 0


def test_batch_is_deterministic_and_equals_scikit_learn_seeded():
    rows, labels = [x for x, _ in STREAM[:300]], [y for _, y in STREAM[:300]]
    a = SklearnBatch(RandomForestClassifier(n_estimators=10), FEATURES, CLASSES)
    b = pickle.loads(pickle.dumps(a))
    a.fit_many(rows, labels)
    b.fit_many(rows, labels)
    test = [x for x, _ in STREAM[300:]]
    assert a.predict_proba_many(test) == b.predict_proba_many(test)
    oracle = RandomForestClassifier(n_estimators=10, random_state=DEFAULT_SEED)
    X = np.array([[float(x[f]) for f in FEATURES] for x in rows])
    oracle.fit(X, [CLASSES.index(y) for y in labels])
    X_test = np.array([[float(x[f]) for f in FEATURES] for x in test])
    expected = oracle.predict_proba(X_test)
    assert [[p[True], p[False]] for p in a.predict_proba_many(test)] == expected.tolist()
    restored = pickle.loads(pickle.dumps(a))
    assert restored.predict_proba_many(test) == a.predict_proba_many(test)


def test_batch_answers_every_class_even_unseen_ones():
    model = SklearnBatch(RandomForestClassifier(n_estimators=5), ["a"], ["x", "y", "z"])
    model.fit_many([{"a": 0.0}, {"a": 1.0}], ["z", "x"])
    proba = model.predict_proba_one({"a": 1.0})
    assert list(proba) == ["x", "y", "z"]
    assert proba["y"] == 0.0
    assert model.predict_one({"a": 1.0}) == "x"
    with pytest.raises(ValueError, match="at least one row"):
        model.fit_many([], [])


# -- from a config table ----------------------------------------------------------------------


def test_from_spec_builds_both_kinds():
    incremental = sklearn_from_spec(
        {
            "sklearn": "sklearn.linear_model:SGDClassifier",
            "params": {"loss": "log_loss", "alpha": 0.001},
            "batch_size": 64,
        },
        FEATURES,
        CLASSES,
    )
    assert type(incremental) is SklearnIncremental
    assert incremental.batch_size == 64 and incremental.estimator.alpha == 0.001
    batch = sklearn_from_spec(
        {"sklearn": "sklearn.ensemble:RandomForestClassifier", "params": {"n_estimators": 5}},
        FEATURES,
        CLASSES,
    )
    assert type(batch) is SklearnBatch  # no partial_fit: batch by default
    forced = sklearn_from_spec(
        {"sklearn": "sklearn.naive_bayes:MultinomialNB", "incremental": False},
        ["a"],
        [0, 1],
        categories={"c": ["u", "v"]},
    )
    assert type(forced) is SklearnBatch and forced.categories == {"c": ("u", "v")}


def test_from_spec_is_deterministic():
    spec = {"sklearn": "sklearn.linear_model:SGDClassifier", "params": {"loss": "log_loss"}}
    a, b = sklearn_from_spec(spec, FEATURES, CLASSES), sklearn_from_spec(spec, FEATURES, CLASSES)
    assert prequential(a, STREAM[:200]) == prequential(b, STREAM[:200])


SGD = "sklearn.linear_model:SGDClassifier"


@pytest.mark.parametrize(
    "spec, words",
    [
        ({"sklearn": "os:system"}, "'sklearn.module:Class'"),
        ({"sklearn": "numpy:array"}, "'sklearn.module:Class'"),
        ({"sklearn": "sklearn.linear_model.SGDClassifier"}, "'sklearn.module:Class'"),
        ({"sklearn": "sklearn.utils._testing:MinimalClassifier"}, "public names only"),
        ({"sklearn": "sklearn.nope:Thing"}, "'sklearn.nope:Thing': cannot import module"),
        ({"sklearn": "sklearn.linear_model:Nope"}, "has no attribute 'Nope'"),
        ({"sklearn": "sklearn.utils:Bunch"}, "'sklearn.utils:Bunch' is not a scikit-learn"),
        ({"sklearn": "sklearn.linear_model:LinearRegression"}, "is not a classifier"),
        ({"sklearn": "sklearn.svm:SVC"}, "'sklearn.svm:SVC' has no predict_proba"),
        ({"sklearn": SGD}, "has no predict_proba"),
        ({"sklearn": SGD, "params": {"loss": "bogus"}}, "invalid params: The 'loss' parameter"),
        ({"sklearn": SGD, "params": {"los": "log_loss"}}, "invalid params.*accepts: alpha"),
        ({"sklearn": SGD, "params": {"alpha": float("nan")}}, "'alpha' must be finite"),
        ({"sklearn": SGD, "params": {"alpha": object()}}, "must be a config value"),
        ({"sklearn": SGD, "params": ["log_loss"]}, "'params' must be a table"),
        ({"sklearn": SGD, "param": {}}, "unknown key 'param'"),
        (
            {"sklearn": SGD, "params": {"loss": "log_loss"}, "incremental": "yes"},
            "'incremental' must be true or false",
        ),
        (
            {"sklearn": "sklearn.ensemble:RandomForestClassifier", "incremental": True},
            "RandomForestClassifier' has no partial_fit",
        ),
        (
            {"sklearn": "sklearn.ensemble:RandomForestClassifier", "batch_size": 10},
            "'batch_size' is for incremental",
        ),
        (
            {"sklearn": SGD, "params": {"loss": "log_loss"}, "batch_size": 0},
            "SGDClassifier': batch_size must be a positive integer",
        ),
        ({"sklearn": 3}, "'sklearn' must name"),
        ({"name": "hoeffding_tree"}, "'sklearn' must name"),
    ],
)
def test_from_spec_errors_name_the_entry(spec, words):
    with pytest.raises(ConfigError, match=words):
        sklearn_from_spec(spec, ["a"], [0, 1])


def test_from_spec_needs_a_table():
    with pytest.raises(ConfigError, match="a table"):
        sklearn_from_spec("sklearn.linear_model:SGDClassifier", ["a"], [0, 1])
