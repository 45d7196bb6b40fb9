"""Pipeline specs, the catalog, factories, and the determinism replicas and recovery rely on."""

from __future__ import annotations

import enum
import itertools
import json
import math
import os
import pickle
import random
import subprocess
import sys
from pathlib import Path

import pytest
from river import compose, datasets, forest, linear_model, multiclass, preprocessing, tree

import onlearn
from onlearn.errors import ConfigError
from onlearn.models import (
    CATALOG,
    DEFAULT_SEED,
    BinaryClassifier,
    PipelineSpec,
    SelectPresent,
    build_pipeline,
    catalog_names,
)

NUMERIC = ("size", "flag", "weight")  # "weight" is nullable: absent from 40% of the events
CATEGORICAL = ("colour",)
CLASSIFIERS = catalog_names("classification")
REGRESSORS = catalog_names("regression")


def synthetic(n: int, seed: int = 7) -> list[tuple[dict, str, float]]:
    """Events ``(x, label, target)``: numbers, a boolean, a category, a nullable feature that is
    often absent, and a feature outside the schema that pipelines must ignore."""
    rng = random.Random(seed)
    events = []
    for _ in range(n):
        x = {
            "size": rng.gauss(10, 3),
            "flag": rng.random() < 0.3,
            "colour": rng.choice(["red", "green", "blue"]),
            "note": "not in the schema",
        }
        if rng.random() < 0.6:
            x["weight"] = rng.gauss(0, 1)
        score = (
            0.4 * (x["size"] - 10)
            + (1.5 if x["colour"] == "red" else -0.5)
            + x.get("weight", 0.0)
            + 0.8 * x["flag"]
            + rng.gauss(0, 0.3)
        )
        label = "low" if score < -0.5 else "mid" if score < 1 else "high"
        events.append((x, label, score))
    return events


def small(name: str, params: dict | None = None) -> PipelineSpec:
    """The spec of a catalog pipeline, forests kept small so that tests stay fast."""
    return PipelineSpec(name, {"n_models": 3} if "forest" in name else dict(params or {}))


def build(name: str, numeric=NUMERIC, categorical=CATEGORICAL, classes=None):
    return build_pipeline(
        small(name),
        task=CATALOG[name].task,
        numeric=numeric,
        categorical=categorical,
        classes=classes,
    )


# Determinism cases: every catalog pipeline (no declared classes), logistic regression with
# two declared classes (a BinaryClassifier instead of one-vs-rest), fed two-class labels, and
# the tree that recovers from a concept change (its copy and hand-over are state too).
BINARY_CLASSES = ("pos", "neg")
CASES = {name: (name, None, {}) for name in CATALOG} | {
    "logistic_regression[binary]": ("logistic_regression", BINARY_CLASSES, {}),
    "hoeffding_tree[recover]": ("hoeffding_tree", None, {"recover": True}),
}


def build_case(case: str):
    name, classes, params = CASES[case]
    return build_pipeline(
        small(name, params),
        task=CATALOG[name].task,
        numeric=NUMERIC,
        categorical=CATEGORICAL,
        classes=classes,
    )


def case_events(case: str, n: int) -> list[tuple[dict, str, float]]:
    events = synthetic(n)
    if CASES[case][1] is None:
        return events
    return [(x, "pos" if label == "high" else "neg", target) for x, label, target in events]


def step(model, name: str, x: dict, label: str, target: float):
    """Predict then learn, as the serving path does; returns the prediction as exact data."""
    if CATALOG[name].task == "classification":
        out = list(model.predict_proba_one(x).items())
        model.learn_one(x, label)
    else:
        out = model.predict_one(x)
        model.learn_one(x, target)
    return out


@pytest.fixture(scope="module")
def phishing() -> list[tuple[dict, bool]]:
    return list(itertools.islice(datasets.Phishing(), 300))


# ---------------------------------------------------------------------------------------------
# every catalog pipeline learns


def test_catalog_names_by_task():
    assert CLASSIFIERS == (
        "logistic_regression",
        "hoeffding_tree",
        "adaptive_random_forest",
        "gaussian_naive_bayes",
    )
    assert REGRESSORS == (
        "linear_regression",
        "hoeffding_tree_regressor",
        "adaptive_random_forest_regressor",
    )
    assert set(CATALOG) == set(CLASSIFIERS) | set(REGRESSORS)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_learns_phishing(name, phishing):
    model = build(name, numeric=tuple(phishing[0][0]), categorical=())
    hits = 0
    for x, y in phishing:
        proba = model.predict_proba_one(x)
        if proba:
            assert math.isclose(sum(proba.values()), 1.0)
            hits += max(proba, key=proba.get) == y
        model.learn_one(x, y)
    assert hits / len(phishing) > 0.75


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_on_categorical_nullable_and_string_labels(name):
    model = build(name)
    events = synthetic(300)
    for x, label, _ in events:
        model.learn_one(x, label)
    for x, _, _ in events[:50]:
        proba = model.predict_proba_one(x)
        assert set(proba) == {"low", "mid", "high"}
        assert math.isclose(sum(proba.values()), 1.0)
        assert model.predict_one(x) in proba
    assert model.predict_proba_one({})  # every feature absent


@pytest.mark.parametrize("name", REGRESSORS)
def test_regressor_on_categorical_and_nullable(name):
    model = build(name)
    events = synthetic(300)
    errors = []
    for x, _, target in events:
        errors.append(abs(model.predict_one(x) - target))
        model.learn_one(x, target)
    assert all(math.isfinite(e) for e in errors)
    assert sum(errors[-100:]) < sum(errors[:100])  # it learns something
    assert math.isfinite(model.predict_one({}))


@pytest.mark.parametrize("name", list(CATALOG))
@pytest.mark.parametrize(
    ("numeric", "categorical"),
    [(NUMERIC, ()), ((), CATEGORICAL), ((), ())],
    ids=["numeric-only", "categorical-only", "no-features"],
)
def test_pipelines_without_numeric_or_categorical_features(name, numeric, categorical):
    model = build(name, numeric=numeric, categorical=categorical)
    for event in synthetic(60):
        step(model, name, *event)


def test_logistic_regression_shape_and_params():
    spec = PipelineSpec("logistic_regression", {"lr": 0.05, "l2": 0.001})
    model = build_pipeline(spec, task="classification", numeric=NUMERIC, categorical=CATEGORICAL)
    union, ovr = model.steps.values()
    assert isinstance(union, compose.TransformerUnion)
    numeric_branch, categorical_branch = union.transformers.values()
    assert [type(s) for s in numeric_branch.steps.values()] == [
        SelectPresent,
        preprocessing.StandardScaler,
    ]
    assert [type(s) for s in categorical_branch.steps.values()] == [
        SelectPresent,
        preprocessing.OneHotEncoder,
    ]
    lr = ovr.classifier
    assert isinstance(lr, linear_model.LogisticRegression)
    assert lr.l2 == 0.001
    assert lr.optimizer.learning_rate == 0.05


def test_default_learning_rate_is_rivers():
    model = build("logistic_regression")
    ovr = list(model.steps.values())[-1]
    default = linear_model.LogisticRegression().optimizer
    assert type(ovr.classifier.optimizer) is type(default)
    assert ovr.classifier.optimizer.learning_rate == default.learning_rate


# ---------------------------------------------------------------------------------------------
# two declared classes: one binary logistic regression instead of one-vs-rest


def test_two_declared_classes_make_one_binary_logistic_regression():
    spec = PipelineSpec("logistic_regression", {"lr": 0.05, "l2": 0.001})
    model = build_pipeline(
        spec, task="classification", numeric=NUMERIC, categorical=(), classes=["pos", "neg"]
    )
    select, scaler, binary = model.steps.values()
    assert isinstance(binary, BinaryClassifier)
    assert binary.classes == ("pos", "neg")
    assert type(binary.classifier) is linear_model.LogisticRegression
    assert binary.classifier.l2 == 0.001
    assert binary.classifier.optimizer.learning_rate == 0.05
    for classes in (None, ["a", "b", "c"], ["a"]):
        model = build("logistic_regression", classes=classes)
        assert isinstance(list(model.steps.values())[-1], multiclass.OneVsRestClassifier)


@pytest.mark.parametrize("name", [n for n in CLASSIFIERS if n != "logistic_regression"])
def test_other_pipelines_ignore_classes(name):
    with_classes, without = build(name, classes=["pos", "neg"]), build(name)
    assert repr(with_classes) == repr(without)


def oracle_for(numeric, categorical):
    """river by hand: what the catalog's binary logistic regression must compute."""
    branches = []
    if numeric:
        branches.append(SelectPresent(*numeric) | preprocessing.StandardScaler())
    if categorical:
        branches.append(SelectPresent(*categorical) | preprocessing.OneHotEncoder(drop_zeros=True))
    features = branches[0] if len(branches) == 1 else compose.TransformerUnion(*branches)
    return features | linear_model.LogisticRegression()


def assert_matches_oracle(model, oracle, classes, events):
    """Same predictions, bit for bit, as the oracle learning ``y == classes[0]``; keys in the
    order of ``classes``. (Before the first label, the oracle answers 0.5 each, the model {}.)"""
    first, second = classes
    for i, (x, y) in enumerate(events):
        expected = oracle.predict_proba_one(x)
        assert list(model.predict_proba_one(x).items()) == (
            [(first, expected[True]), (second, expected[False])] if i else []
        )
        model.learn_one(x, y)
        oracle.learn_one(x, type(y) is type(first) and y == first)


@pytest.mark.parametrize(
    "classes", [[True, False], [False, True]], ids=["true-first", "false-first"]
)
def test_binary_logistic_regression_equals_river_on_phishing(phishing, classes):
    numeric = tuple(phishing[0][0])
    model = build("logistic_regression", numeric=numeric, categorical=(), classes=classes)
    assert_matches_oracle(model, oracle_for(numeric, ()), classes, phishing)


@pytest.mark.parametrize(
    "classes",
    [["pos", "neg"], ["neg", "pos"], [1, 0], [0, 1]],
    ids=["pos-neg", "neg-pos", "1-0", "0-1"],
)
def test_binary_logistic_regression_equals_river_on_categorical_and_nullable(classes):
    names = ["pos", "neg"] if isinstance(classes[0], str) else [1, 0]
    events = [(x, names[0] if label == "high" else names[1]) for x, label, _ in synthetic(300)]
    model = build("logistic_regression", classes=classes)
    assert_matches_oracle(model, oracle_for(NUMERIC, CATEGORICAL), classes, events)


def test_binary_answers_nothing_until_it_learns_a_label():
    """Like one-vs-rest (the engine answers no label for a fresh version), not river's 0.5."""
    model = build("logistic_regression", classes=["pos", "neg"])
    assert model.predict_proba_one({"size": 3.0}) == {}
    assert model.predict_one({}) is None
    with pytest.raises(ValueError):
        model.learn_one({"size": 1.0}, "mid")
    assert model.predict_proba_one({"size": 3.0}) == {}  # a refused label is not learnt
    model.learn_one({"size": 1.0}, "neg")
    proba = model.predict_proba_one({})
    assert list(proba) == ["pos", "neg"] and proba["neg"] > 0.5
    assert model.predict_one({}) == "neg"


@pytest.mark.parametrize(
    ("classes", "label"),
    [(["pos", "neg"], "mid"), ([1, 0], True), ([True, False], 1), ([1, 0], 1.0), ([1, 0], None)],
)
def test_binary_rejects_labels_outside_its_classes(classes, label):
    model = build("logistic_regression", classes=classes)
    with pytest.raises(ValueError, match="is not one of the model's classes"):
        model.learn_one({"size": 1.0}, label)
    lr = model.steps["BinaryClassifier"].classifier
    assert lr.weights == {} and lr.intercept == 0.0  # the model did not learn


def test_binary_classifier_pickles_and_clones():
    model = build("logistic_regression", classes=[1, 0])
    for x, label, _ in synthetic(50):
        model.learn_one(x, int(label == "high"))
    restored = pickle.loads(pickle.dumps(model, protocol=5))
    probe = synthetic(5, seed=99)
    assert [restored.predict_proba_one(x) for x, _, _ in probe] == [
        model.predict_proba_one(x) for x, _, _ in probe
    ]
    binary = model.steps["BinaryClassifier"]
    fresh = binary.clone()
    assert fresh.classes == (1, 0) and fresh.classifier.weights == {}
    assert fresh.predict_proba_one({"size": 1.0}) == {}
    fresh.learn_one({}, 0)
    assert list(fresh.predict_proba_one({"size": 1.0})) == [1, 0]


class SubclassedLR(linear_model.LogisticRegression):
    """Not river's LogisticRegression itself: the wrapper goes through its predict_proba_one."""


def test_binary_classifier_wraps_other_boolean_classifiers_alike():
    fast = BinaryClassifier(linear_model.LogisticRegression(), classes=("pos", "neg"))
    generic = BinaryClassifier(SubclassedLR(), classes=("pos", "neg"))
    assert fast._logistic and not generic._logistic
    for x, label, _ in synthetic(100):
        x = {k: v for k, v in x.items() if k in ("size", "flag")}
        assert list(fast.predict_proba_one(x).items()) == list(generic.predict_proba_one(x).items())
        y = "pos" if label == "high" else "neg"
        fast.learn_one(x, y)
        generic.learn_one(x, y)


@pytest.mark.parametrize(
    ("classes", "error", "message"),
    [
        ([1, 1], ConfigError, "are the same label"),
        ([1, True], ConfigError, "are the same label"),
        ([[1], [2]], ConfigError, "hashable"),
        ([], ConfigError, "must not be empty"),
        ("ab", TypeError, "classes must be a sequence of labels"),
    ],
)
def test_classes_are_checked(classes, error, message):
    with pytest.raises(error, match=message):
        build("logistic_regression", classes=classes)


def test_classes_are_for_classification():
    with pytest.raises(ConfigError, match="classes are for classification models"):
        build("linear_regression", classes=[1, 0])


def test_binary_classifier_needs_two_distinct_hashable_classes():
    lr = linear_model.LogisticRegression()
    with pytest.raises(ValueError, match="needs two classes"):
        BinaryClassifier(lr, classes=("a", "b", "c"))
    with pytest.raises(ValueError, match="two distinct classes"):
        BinaryClassifier(lr, classes=(1, 1.0))
    with pytest.raises(TypeError):
        BinaryClassifier(lr, classes=([1], [2]))


def test_trees_treat_categorical_features_as_nominal():
    spec = PipelineSpec("hoeffding_tree", {"grace_period": 50, "max_depth": 4})
    model = build_pipeline(spec, task="classification", numeric=NUMERIC, categorical=CATEGORICAL)
    select, ht = model.steps.values()
    assert select.keys == NUMERIC + CATEGORICAL
    assert isinstance(ht, tree.HoeffdingTreeClassifier)
    assert ht.nominal_attributes == ["colour"]
    assert (ht.grace_period, ht.max_depth) == (50, 4)


@pytest.mark.parametrize("name", ["adaptive_random_forest", "adaptive_random_forest_regressor"])
def test_forests_are_seeded(name):
    model = build(name)
    arf = list(model.steps.values())[-1]
    assert isinstance(arf, forest.ARFClassifier | forest.ARFRegressor)
    assert arf.seed == DEFAULT_SEED
    spec = PipelineSpec(name, {"seed": 7})
    model = build_pipeline(spec, task=CATALOG[name].task, numeric=NUMERIC, categorical=())
    assert list(model.steps.values())[-1].seed == 7


def test_select_present_keeps_listed_present_features_in_listed_order():
    select = SelectPresent("b", "a", "b", "z")
    assert select.keys == ("b", "a", "z")
    assert list(select.transform_one({"z": 1, "a": 2, "c": 3, "b": None})) == ["a", "z"]
    assert pickle.loads(pickle.dumps(select)).keys == select.keys
    assert select.clone().keys == select.keys


# ---------------------------------------------------------------------------------------------
# determinism (design section 3): same spec + same stream = same predictions, bit for bit


@pytest.mark.parametrize("case", list(CASES))
def test_golden_same_spec_same_stream_same_predictions(case):
    name, events = CASES[case][0], case_events(case, 300)
    first, second = build_case(case), build_case(case)
    assert [step(first, name, *e) for e in events] == [step(second, name, *e) for e in events]


@pytest.mark.parametrize("case", list(CASES))
def test_snapshot_plus_tail_replay_equals_full_replay(case):
    name, events = CASES[case][0], case_events(case, 300)
    live, replayed = build_case(case), build_case(case)
    expected = [step(live, name, *e) for e in events]

    # A replay only learns: predictions made on the way must not have changed the state.
    task = CATALOG[name].task
    for x, label, target in events[:150]:
        replayed.learn_one(x, label if task == "classification" else target)
    restored = pickle.loads(pickle.dumps(replayed, protocol=5))
    assert [step(restored, name, *e) for e in events[150:]] == expected[150:]


_CHILD = """
import json, pickle, sys
from onlearn.models import CATALOG, PipelineSpec, build_pipeline

data = json.loads(open(sys.stdin.readline().strip()).read())  # sent once river is imported
half, out = data["half"], {"hash": hash("onlearn")}

def step(model, task, x, label, target):
    if task == "classification":
        answer = list(model.predict_proba_one(x).items())
        model.learn_one(x, label)
        return answer
    answer = model.predict_one(x)
    model.learn_one(x, target)
    return answer

for case, c in data["cases"].items():
    task, events = CATALOG[c["name"]].task, c["events"]
    spec = PipelineSpec.from_config(c["spec"])
    model = build_pipeline(
        spec,
        task=task,
        numeric=data["numeric"],
        categorical=data["categorical"],
        classes=c["classes"],
    )
    fresh = [step(model, task, *e) for e in events][half:]
    with open(c["snapshot"], "rb") as f:
        restored = pickle.load(f)
    tail = [step(restored, task, *e) for e in events[half:]]
    out[case] = {"fresh": fresh, "restored": tail}
print(json.dumps(out))
"""


def test_replicas_in_other_processes_agree_bit_for_bit(tmp_path: Path):
    """Another process (other hash seed) builds the same models, and resumes this one's pickles.

    Set and dict orders of strings change with ``PYTHONHASHSEED``; a model whose float sums follow
    such an order would drift between replicas by the last bits.
    """
    hash_seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
    root = str(Path(onlearn.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": root}
    # Started first: the child imports river (seconds) while this process computes its side.
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        half = 100
        expected, cases = {}, {}
        for case, (name, classes, params) in CASES.items():
            events = [list(e) for e in case_events(case, 200)]
            model = build_case(case)
            snapshot = str(tmp_path / f"{case}.pkl")
            answers = []
            for i, event in enumerate(events):
                if i == half:
                    Path(snapshot).write_bytes(pickle.dumps(model, protocol=5))
                answers.append(step(model, name, *event))
            # JSON turns tuples into lists; compare like with like.
            expected[case] = json.loads(json.dumps(answers[half:]))
            cases[case] = {
                "name": name,
                "spec": small(name, params).to_config(),
                "classes": classes,
                "events": events,
                "snapshot": snapshot,
            }
        data = {"half": half, "numeric": NUMERIC, "categorical": CATEGORICAL, "cases": cases}
        (tmp_path / "data.json").write_text(json.dumps(data))
        stdout, stderr = child.communicate(str(tmp_path / "data.json") + "\n", timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, stderr
    got = json.loads(stdout)
    assert got.pop("hash") != hash("onlearn"), "the child process must use another hash seed"
    for case in CASES:
        assert got[case]["fresh"] == expected[case], case
        assert got[case]["restored"] == expected[case], case


# ---------------------------------------------------------------------------------------------
# PipelineSpec


def test_spec_from_config_name_and_params():
    spec = PipelineSpec.from_config({"name": "logistic_regression", "l2": 0.001, "lr": 0.1})
    assert spec == PipelineSpec("logistic_regression", {"l2": 0.001, "lr": 0.1})
    assert spec.factory is None
    assert spec.to_config() == {"name": "logistic_regression", "l2": 0.001, "lr": 0.1}
    assert PipelineSpec.from_config(spec.to_config()) == spec


def test_spec_from_config_factory_and_bare_name():
    spec = PipelineSpec.from_config({"factory": "mypkg.models:build", "any": "param"})
    assert (spec.name, spec.factory, dict(spec.params)) == (
        None,
        "mypkg.models:build",
        {"any": "param"},
    )
    assert PipelineSpec.from_config(spec.to_config()) == spec
    assert PipelineSpec.from_config("hoeffding_tree") == PipelineSpec("hoeffding_tree")


def test_specs_are_hashable():
    specs = {PipelineSpec("hoeffding_tree", {"max_depth": 3}), PipelineSpec("hoeffding_tree")}
    assert PipelineSpec("hoeffding_tree", {"max_depth": 3}) in specs
    assert len(specs) == 2


def test_spec_copies_its_params():
    params = {"max_depth": 3, "nested": [1, 2]}
    spec = PipelineSpec("hoeffding_tree", params)
    params["max_depth"] = 9
    params["nested"].append(3)
    spec.to_config()["nested"].append(4)
    assert spec.params == {"max_depth": 3, "nested": [1, 2]}


def test_fingerprint_is_stable_and_tracks_content():
    spec = PipelineSpec.from_config({"name": "logistic_regression", "l2": 0.001, "lr": 0.1})
    reordered = PipelineSpec.from_config({"lr": 0.1, "l2": 0.001, "name": "logistic_regression"})
    assert spec.fingerprint() == reordered.fingerprint()
    assert spec.fingerprint() == "cf5aa269c86ec3c7"  # golden: the same in every process and run
    assert len(spec.fingerprint()) == 16
    assert spec.fingerprint() != PipelineSpec("logistic_regression", {"l2": 0.01}).fingerprint()
    assert PipelineSpec("x_y").fingerprint() != PipelineSpec(factory="x:y").fingerprint()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"l2": 0.1}, "exactly one of 'name'"),
        ({"name": "hoeffding_tree", "factory": "a:b"}, "exactly one of 'name'"),
        ({}, "classification: logistic_regression, hoeffding_tree"),
        ({"name": ""}, "'name' must be a non-empty string"),
        ({"name": 3}, "'name' must be a non-empty string"),
        ({"factory": "mypkg.models.build"}, "must look like 'package.module:function'"),
        ({"factory": "mypkg:"}, "must look like 'package.module:function'"),
        ({"name": "hoeffding_tree", "x": float("nan")}, "'x' must be finite"),
        ({"name": "hoeffding_tree", "x": object()}, "'x' must be a config value"),
        ({"name": "hoeffding_tree", "x": [1, {2}]}, "'x' must be a config value"),
        ({"name": "hoeffding_tree", 3: 1}, "parameter names must be strings"),
        (["name", "hoeffding_tree"], "pipeline must be a table"),
    ],
)
def test_spec_from_config_errors(config, message):
    with pytest.raises(ConfigError, match=message):
        PipelineSpec.from_config(config)


def test_spec_rejects_reserved_param_names():
    with pytest.raises(ConfigError, match="'factory' is not a pipeline parameter"):
        PipelineSpec("hoeffding_tree", {"factory": "a:b"})


# ---------------------------------------------------------------------------------------------
# build_pipeline errors


def build_error(config, task="classification", numeric=NUMERIC, categorical=CATEGORICAL) -> str:
    with pytest.raises(ConfigError) as info:
        build_pipeline(
            PipelineSpec.from_config(config), task=task, numeric=numeric, categorical=categorical
        )
    return str(info.value)


def test_unknown_pipeline_lists_the_names_of_the_task():
    message = build_error({"name": "svm"})
    assert message == (
        "unknown classification pipeline 'svm'; choose one of: logistic_regression, "
        "hoeffding_tree, adaptive_random_forest, gaussian_naive_bayes"
    )


def test_pipeline_of_the_other_task_says_so():
    message = build_error({"name": "linear_regression"})
    assert "('linear_regression' is a regression pipeline)" in message
    assert "choose one of: logistic_regression" in message


def test_task_may_be_a_str_enum():
    class Task(str, enum.Enum):
        CLASSIFICATION = "classification"

    spec = PipelineSpec(factory=ref("make_model"))
    model = build_pipeline(spec, task=Task.CLASSIFICATION, numeric=["size"], categorical=())
    assert list(model.steps.values())[0].keys == ("size",)  # make_model asserted a plain str


def test_unknown_task():
    assert "task must be one of 'classification', 'regression', got 'ranking'" in build_error(
        {"name": "hoeffding_tree"}, task="ranking"
    )
    with pytest.raises(ConfigError, match="task must be"):
        catalog_names("ranking")


def test_unknown_param_names_the_param_the_pipeline_and_the_accepted_ones():
    message = build_error({"name": "hoeffding_tree", "max_dept": 3})
    assert message.startswith("pipeline 'hoeffding_tree' has no parameter 'max_dept'; it accepts: ")
    assert "grace_period" in message and "max_depth" in message
    assert "nominal_attributes" not in message  # the schema decides that one


def test_object_params_point_to_factories():
    message = build_error({"name": "logistic_regression", "optimizer": "adam"})
    assert "has no parameter 'optimizer'" in message
    assert "lr" in message and "l2" in message
    assert "built in a factory" in message


def test_naive_bayes_accepts_no_params():
    message = build_error({"name": "gaussian_naive_bayes", "var_smoothing": 1e-9})
    assert message == (
        "pipeline 'gaussian_naive_bayes' has no parameter 'var_smoothing'; it accepts: none"
    )


@pytest.mark.parametrize(
    ("config", "task", "message"),
    [
        (
            {"name": "hoeffding_tree", "grace_period": "200"},
            "classification",
            "pipeline 'hoeffding_tree': parameter 'grace_period' must be a number, got '200'",
        ),
        (
            {"name": "hoeffding_tree", "binary_split": 1},
            "classification",
            "parameter 'binary_split' must be true or false, got 1",
        ),
        (
            {"name": "hoeffding_tree", "split_criterion": "entropy"},
            "classification",
            "parameter 'split_criterion' must be one of 'gini', 'info_gain', 'hellinger', "
            "got 'entropy'",
        ),
        (
            {"name": "adaptive_random_forest", "max_features": "half"},
            "classification",
            "parameter 'max_features' must be one of 'sqrt', 'log2', got 'half'",
        ),
        (
            {"name": "adaptive_random_forest_regressor", "aggregation_method": "max"},
            "regression",
            "parameter 'aggregation_method' must be one of 'mean', 'median', got 'max'",
        ),
        (
            {"name": "adaptive_random_forest", "seed": 1.5},
            "classification",
            "pipeline 'adaptive_random_forest': 'seed' must be an integer, got 1.5",
        ),
        (
            {"name": "linear_regression", "lr": -0.1},
            "regression",
            "pipeline 'linear_regression': 'lr' must be a positive number, got -0.1",
        ),
    ],
)
def test_invalid_param_values(config, task, message):
    assert message in build_error(config, task=task)


def test_none_default_numeric_params_are_checked_against_rivers_annotation():
    message = build_error({"name": "hoeffding_tree", "max_depth": "3"})
    assert "parameter 'max_depth' must be a number, got '3'" in message


def test_constructor_errors_become_config_errors(monkeypatch):
    def refuse(**params):
        raise ValueError("grace_period must be positive")

    monkeypatch.setattr(tree, "HoeffdingTreeClassifier", refuse)
    message = build_error({"name": "hoeffding_tree", "grace_period": -1})
    assert message == (
        "pipeline 'hoeffding_tree': invalid parameters {'grace_period': -1}: "
        "grace_period must be positive"
    )


def test_feature_lists_are_checked():
    assert "listed as both numeric and categorical" in build_error(
        {"name": "hoeffding_tree"}, categorical=("colour", "size")
    )
    with pytest.raises(TypeError, match="numeric must be a sequence of feature names"):
        build_pipeline(
            PipelineSpec("hoeffding_tree"), task="classification", numeric="size", categorical=()
        )


# ---------------------------------------------------------------------------------------------
# factories (trusted code)


def make_model(task, numeric, l2=0.0):
    """A factory that asks for the task and the numeric features, not the categorical ones."""
    assert type(task) is str and task == "classification"
    model = linear_model.LogisticRegression(l2=l2)
    return SelectPresent(*numeric) | preprocessing.StandardScaler() | model


def make_plain(depth):
    return tree.HoeffdingTreeClassifier(max_depth=depth)


def make_with_kwargs(**kwargs):
    return tree.HoeffdingTreeClassifier(**kwargs)


def make_not_a_model():
    return {"learn_one": "no"}


def make_unpicklable():
    return compose.FuncTransformer(lambda x: x) | linear_model.LogisticRegression()


def make_failing():
    raise RuntimeError("no GPU here")


NOT_A_FUNCTION = 42


def ref(function_name: str) -> str:
    return f"{__name__}:{function_name}"


def test_factory_receives_params_and_the_context_it_asks_for():
    spec = PipelineSpec(factory=ref("make_model"), params={"l2": 0.01})
    model = build_pipeline(spec, task="classification", numeric=["size"], categorical=["colour"])
    assert list(model.steps.values())[-1].l2 == 0.01
    assert list(model.steps.values())[0].keys == ("size",)
    model.learn_one({"size": 1.0, "colour": "red"}, True)
    assert model.predict_proba_one({"size": 1.0})[True] > 0.5


def test_factory_without_context_params():
    spec = PipelineSpec.from_config({"factory": ref("make_plain"), "depth": 2})
    model = build_pipeline(spec, task="classification", numeric=NUMERIC, categorical=())
    assert model.max_depth == 2


def test_factory_with_var_kwargs_gets_only_the_spec_params():
    spec = PipelineSpec(factory=ref("make_with_kwargs"), params={"grace_period": 10})
    model = build_pipeline(spec, task="classification", numeric=NUMERIC, categorical=())
    assert model.grace_period == 10


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"factory": "no_such_pkg.models:build"},
            "factory 'no_such_pkg.models:build': cannot import module 'no_such_pkg.models'",
        ),
        (
            {"factory": ref("missing")},
            f"factory '{ref('missing')}': module '{__name__}' has no attribute 'missing'",
        ),
        ({"factory": ref("NOT_A_FUNCTION")}, "is a int, not a function"),
        (
            {"factory": ref("make_plain"), "depth": 2, "width": 3},
            f"factory '{ref('make_plain')}' cannot be called with parameters ['depth', 'width']",
        ),
        ({"factory": ref("make_plain")}, "it accepts: depth"),
        (
            {"factory": ref("make_model"), "task": "regression"},
            "['task'] are passed by onlearn from the model's schema and task",
        ),
        (
            {"factory": ref("make_not_a_model")},
            "returned dict, which has no learn_one or predict_one",
        ),
        ({"factory": ref("make_unpicklable")}, "returned a model that cannot be pickled"),
        ({"factory": ref("make_failing")}, "failed: RuntimeError: no GPU here"),
    ],
)
def test_factory_errors(config, message):
    assert message in build_error(config)
