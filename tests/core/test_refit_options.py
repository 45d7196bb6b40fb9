"""What a retrain request may ask: allow-lists and bounds (onlearn.refit_options).

The hostile bodies below were each seen to run code in the worker on main 8d6a9de (through
``POST /models/{name}/retrain``); here every one must be refused before anything is imported.
"""

from __future__ import annotations

import pytest

from onlearn.config import model_from_mapping
from onlearn.errors import ConfigError, SchemaViolation
from onlearn.models import CATALOG
from onlearn.refit_options import LIMITS, REQUEST_PARAMS, Candidate, resolve_options

FEATURES = {"x": {"type": "number"}, "c": {"type": "category", "values": ["a", "b"]}}


def config(task="classification", **refit):
    pipeline = "logistic_regression" if task == "classification" else "linear_regression"
    table = {"task": task, "features": FEATURES, "pipeline": {"name": pipeline}}
    if refit:
        table["refit"] = refit
    return model_from_mapping("m", table)


TRUSTED = config(
    candidates=[
        {
            "id": "sgd",
            "sklearn": "sklearn.linear_model:SGDClassifier",
            "params": {"loss": "log_loss"},
        },
        {"name": "hoeffding_tree", "grace_period": 50},
        {"factory": "tests.core.factories:turncoat", "flip_after": 10},
    ]
)

# Code named by a request, in every shape seen or thought of: factories, scikit-learn paths,
# builtins, importlib, dotted names, and code hidden in nested tables.
HOSTILE = [
    {"factory": "os:system", "command": "touch MARK"},
    {"factory": "subprocess:getoutput", "cmd": "touch MARK"},
    {"factory": "builtins:exec", "source": "open('MARK', 'w')"},
    {"factory": "builtins:eval", "source": "__import__('os').system('touch MARK')"},
    {"factory": "importlib:import_module", "name": "antigravity"},
    {"factory": "tests.core.factories:turncoat"},  # even code the config itself uses
    {"sklearn": "os:system", "params": {"command": "touch MARK"}},
    {"sklearn": "sklearn.linear_model:SGDClassifier", "params": {"loss": "log_loss"}},
    {"sklearn": "sklearn.utils:_joblib", "params": {}},
    {"name": "os:system"},
    {"name": "os.system"},
    {"name": "hoeffding_tree", "splitter": {"factory": "os:system", "command": "touch MARK"}},
    {"name": "hoeffding_tree", "params": {"factory": "os:system"}},
    {"name": "adaptive_random_forest", "n_models": {"factory": "os:system"}},
    {"name": "logistic_regression", "optimizer": "os:system"},
    {"name": "logistic_regression", "factory": "os:system"},
]


@pytest.mark.parametrize("candidate", HOSTILE, ids=lambda c: str(c)[:60])
def test_a_request_naming_code_is_refused_with_the_field(candidate):
    with pytest.raises(SchemaViolation) as caught:
        resolve_options({"candidates": [candidate]}, TRUSTED)
    (error,) = caught.value.errors
    assert error.loc[:2] == ("candidates", 0)
    if {"factory", "sklearn"} & set(candidate):
        assert "config declares" in error.msg  # says where code may come from


@pytest.mark.parametrize(
    "name", ["os:system", "builtins:exec", "sgd.x", "importlib:import_module", "SGDClassifier"]
)
def test_a_name_is_a_declared_id_or_a_catalog_pipeline_nothing_else(name):
    with pytest.raises(SchemaViolation) as caught:
        resolve_options({"candidates": [name]}, TRUSTED)
    assert caught.value.errors[0].loc == ("candidates", 0)


def test_the_config_declares_code_and_a_request_picks_it_by_id():
    options = resolve_options({"candidates": ["sgd", "turncoat", "hoeffding_tree"]}, TRUSTED)
    assert [c.id for c in options.candidates] == ["sgd", "turncoat", "hoeffding_tree"]
    assert options.candidates[0].table["sklearn"] == "sklearn.linear_model:SGDClassifier"
    assert options.candidates[2].table == {"name": "hoeffding_tree", "grace_period": 50}
    # a catalog name the config does not declare is a catalog pipeline with its defaults
    (forest,) = resolve_options({"candidates": ["adaptive_random_forest"]}, TRUSTED).candidates
    assert forest == Candidate("adaptive_random_forest", {"name": "adaptive_random_forest"})


def test_catalog_tables_take_bounded_parameters_only():
    (c,) = resolve_options(
        {"candidates": [{"name": "adaptive_random_forest", "n_models": 20, "seed": 7}]}, TRUSTED
    ).candidates
    assert c.table == {"name": "adaptive_random_forest", "n_models": 20, "seed": 7}
    (t,) = resolve_options(
        {"candidates": [{"name": "hoeffding_tree", "recover": True}]}, TRUSTED
    ).candidates
    assert t.table == {"name": "hoeffding_tree", "recover": True}
    for bad, field in [
        ({"name": "adaptive_random_forest", "n_models": 1_000_000}, "n_models"),
        ({"name": "adaptive_random_forest", "n_models": 2.5}, "n_models"),
        ({"name": "adaptive_random_forest", "n_models": True}, "n_models"),
        ({"name": "hoeffding_tree", "max_depth": 10_000}, "max_depth"),
        ({"name": "hoeffding_tree", "split_criterion": "os"}, "split_criterion"),
        ({"name": "hoeffding_tree", "recover": 1}, "recover"),
        ({"name": "hoeffding_tree", "recover": "true"}, "recover"),
        ({"name": "hoeffding_tree", "memory_estimate_period": 1}, "memory_estimate_period"),
        ({"name": "logistic_regression", "lr": float("inf")}, "lr"),
        ({"name": "linear_regression"}, "name"),  # a regression pipeline for a classifier
        ({"n_models": 3}, "name"),
    ]:
        with pytest.raises(SchemaViolation) as caught:
            resolve_options({"candidates": [bad]}, TRUSTED)
        assert caught.value.errors[0].loc == ("candidates", 0, field), bad


def test_every_request_parameter_builds():
    """The allow-list names parameters the catalog really takes, at both ends of their bounds."""
    from onlearn.models import PipelineSpec, build_pipeline

    for name, bounds in REQUEST_PARAMS.items():
        task = CATALOG[name].task
        for key, bound in bounds.items():
            values = list(bound.choices) or (
                [True, False] if bound.kind == "bool" else [bound.low, bound.high]
            )
            for value in values:
                if bound.kind == "int" and not isinstance(value, str):
                    value = int(value)
                build_pipeline(
                    PipelineSpec.from_config({"name": name, key: value}),
                    task=task,
                    numeric=["x"],
                    categorical=["c"],
                )


@pytest.mark.parametrize("option", ["passes", "holdout", "max_rows"])
def test_numeric_options_are_bounded_and_the_error_names_the_limit(option):
    low, high = LIMITS[option]
    assert resolve_options({option: low}, TRUSTED) and resolve_options({option: high}, TRUSTED)
    for bad in (high * 10, low / 10 if option == "holdout" else low - 1, "1", None, True, 1e309):
        if bad is None:
            continue
        with pytest.raises(SchemaViolation) as caught:
            resolve_options({option: bad}, TRUSTED)
        (error,) = caught.value.errors
        assert error.loc == (option,) and str(high) in error.msg, (bad, error)


def test_the_passes_seen_holding_a_worker_forever_are_refused():
    with pytest.raises(SchemaViolation, match=r"passes must be in \[1, 20\]"):
        resolve_options({"passes": 1_000_000_000}, TRUSTED)


def test_too_many_candidates_and_unknown_options_are_refused():
    with pytest.raises(SchemaViolation, match="1 to 8 candidates"):
        resolve_options({"candidates": ["hoeffding_tree"] * 9}, TRUSTED)
    with pytest.raises(SchemaViolation) as caught:
        resolve_options({"factory": "os:system"}, TRUSTED)
    assert caught.value.errors[0].loc == ("factory",)


def test_the_same_candidate_twice_is_trained_once():
    twice = ["hoeffding_tree", {"name": "hoeffding_tree"}, {"name": "hoeffding_tree"}]
    options = resolve_options({"candidates": twice}, TRUSTED)
    assert [c.id for c in options.candidates] == ["hoeffding_tree"]
    forest = [{"name": "adaptive_random_forest", "n_models": n} for n in (5, 5.0, 6)]
    options = resolve_options({"candidates": forest}, TRUSTED)
    assert [c.id for c in options.candidates] == [
        "adaptive_random_forest(n_models=5)",
        "adaptive_random_forest(n_models=6)",
    ]


def test_a_linear_candidate_takes_one_penalty():
    both = {"name": "logistic_regression", "l1": 0.1, "l2": 0.1}
    with pytest.raises(SchemaViolation, match="l1 and l2 cannot both be above 0") as caught:
        resolve_options({"candidates": [both]}, TRUSTED)
    assert caught.value.errors[0].rule == "exclusive"
    one = resolve_options({"candidates": [{**both, "l2": 0}]}, TRUSTED)
    assert one.candidates[0].table["l1"] == 0.1


def test_the_metric_follows_the_task():
    assert resolve_options({}, config()).metric == "accuracy"
    assert resolve_options({}, config("regression")).metric == "mae"
    assert resolve_options({"metric": "rmse"}, config("regression")).metric == "rmse"
    with pytest.raises(SchemaViolation, match=r"regression model must be one of \['mae', 'rmse'\]"):
        resolve_options({"metric": "accuracy"}, config("regression"))
    with pytest.raises(SchemaViolation, match="classification model"):
        resolve_options({"metric": "mae"}, config())
    # a regression request picks regression pipelines only
    (c,) = resolve_options(
        {"candidates": ["hoeffding_tree_regressor"]}, config("regression")
    ).candidates
    assert c.id == "hoeffding_tree_regressor"


def test_config_candidates_get_ids_and_must_be_unique_and_bounded():
    assert [c.id for c in TRUSTED.refit.candidates] == ["sgd", "hoeffding_tree", "turncoat"]
    assert [c.id for c in config().refit.candidates] == ["logistic_regression"]
    with pytest.raises(ConfigError, match="give each an id"):
        config(candidates=[{"name": "hoeffding_tree"}, {"name": "hoeffding_tree", "max_depth": 3}])
    with pytest.raises(ConfigError, match="passes must be an integer in"):
        config(passes=1000)
    with pytest.raises(ConfigError, match="max_rows"):
        config(max_rows=10)
    with pytest.raises(ConfigError, match="regression model must be one of mae, rmse"):
        config("regression", metric="accuracy")
