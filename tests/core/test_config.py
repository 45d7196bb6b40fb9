from __future__ import annotations

import pytest

from onlearn.config import Task, load_settings, settings_from_mapping
from onlearn.drift.importance import ImportanceBudget
from onlearn.errors import ConfigError

EXAMPLE = "examples/phishing.toml"


def test_example_config_loads():
    s = load_settings(EXAMPLE, environ={})
    (m,) = s.models
    assert (m.name, m.task, m.target, m.classes) == (
        "phishing",
        Task.CLASSIFICATION,
        "is_phishing",
        (True, False),
    )
    assert len(m.schema.features) == 9
    assert m.pipeline.name == "logistic_regression"


def test_environment_overrides_the_file_and_flags_override_both():
    env = {"ONLEARN_STORE_URL": "memory://", "ONLEARN_PORT": "9001", "ONLEARN_CONFIG": EXAMPLE}
    s = load_settings(None, environ=env)
    assert (s.store_url, s.port, s.config_path) == ("memory://", 9001, EXAMPLE)
    assert load_settings(None, environ=env, port=9002, store_url=None).port == 9002
    # A flag not given (the CLI passes None) leaves the environment's value, as in a container
    # configured by environment alone.
    flags = dict(store_url=None, host=None, run_worker=None, allow_no_auth=None)
    assert load_settings(None, environ=env, **flags).store_url == "memory://"
    env["ONLEARN_RUN_WORKER"] = "false"
    assert load_settings(None, environ=env, **flags).run_worker is False


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"nope": {}}, "unknown entry nope"),
        (
            {"models": {"m": {"pipeline": {"name": "hoeffding_tree"}}}},
            "has no features table; `onlearn schema infer",
        ),
        ({"models": {"m": {"features": {"x": "number"}}}}, "has no pipeline"),
        (
            {"models": {"m": {"task": "ranking", "pipeline": "x", "features": {"x": "number"}}}},
            "task must be",
        ),
        (
            {
                "models": {
                    "m": {
                        "prediction_ttl_s": -1,
                        "pipeline": "hoeffding_tree",
                        "features": {"x": "number"},
                    }
                }
            },
            "prediction_ttl_s must be a positive",
        ),
        (
            {
                "models": {
                    "m": {"classes": [], "pipeline": "hoeffding_tree", "features": {"x": "number"}}
                }
            },
            "classes must be a non-empty list",
        ),
        (
            {"models": {"bad name!": {"pipeline": "hoeffding_tree", "features": {"x": "number"}}}},
            "model names use",
        ),
        (
            {"engine": {"poll_interval_ms": "fast"}},
            "poll_interval_ms must be a non-negative number",
        ),
        ({"engine": {"monitor_cpu_share": 0}}, "monitor_cpu_share is a share of one CPU"),
        ({"engine": {"monitor_cpu_share": 1.5}}, "monitor_cpu_share is a share of one CPU"),
        (
            {
                "models": {
                    "m": {
                        "pipeline": "hoeffding_tree",
                        "features": {"x": "number"},
                        "monitor": {"min_report_interval_s": 7200},
                    }
                }
            },
            r"\[models.m.monitor\]: min_report_interval_s must be in \[0, 3600\]",
        ),
    ],
)
def test_config_errors_say_what_and_where(doc, message):
    with pytest.raises(ConfigError, match=message):
        settings_from_mapping(doc)


def test_bad_environment_value():
    with pytest.raises(ConfigError, match="ONLEARN_PORT='x' is not a valid int"):
        load_settings(None, environ={"ONLEARN_PORT": "x"})


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "none.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[models\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_settings(bad, environ={})


def test_an_active_table_on_a_regression_model_says_active_learning_is_classification_only():
    doc = {
        "models": {
            "price": {
                "task": "regression",
                "pipeline": {"name": "linear_regression"},
                "features": {"x": "number"},
                "active": {"budget": 0.1},
            }
        }
    }
    with pytest.raises(ConfigError) as e:
        settings_from_mapping(doc)
    message = str(e.value)
    assert message.startswith("[models.price].active: active learning is classification-only")
    assert "by design" in message and "remove the [models.price.active] table" in message


@pytest.mark.parametrize(
    "importance, rule",
    [
        ("on", r"importance must be a table"),
        ({"enabled": "yes"}, r"importance enabled must be true or false"),
        ({"top": 3}, r"importance: unknown key 'top' \(known: enabled, window"),
        ({"top_k": 0}, r"importance top_k must be an integer >= 1"),
        ({"window": 10.5}, r"importance window must be an integer >= 1"),
        ({"time_cap_s": "1s"}, r"importance time_cap_s must be a number"),
        ({"time_cap_s": 0}, r"importance time_cap_s must be > 0"),
        ({"threshold": 1.5}, r"importance threshold must be in \(0, 1\]"),
        ({"sample_size": 20}, r"importance min_rows \(50\) must be <= sample_size \(20\)"),
        ({"min_share": True}, r"importance min_share must be a number"),
    ],
)
def test_a_bad_importance_table_is_refused_naming_the_key_and_the_rule(importance, rule):
    doc = {
        "models": {
            "m": {
                "pipeline": "hoeffding_tree",
                "features": {"x": "number"},
                "monitor": {"importance": importance},
            }
        }
    }
    with pytest.raises(ConfigError, match=r"^\[models.m.monitor\]: " + rule):
        settings_from_mapping(doc)


def test_an_importance_table_sets_the_models_budget_and_alarm():
    doc = {
        "models": {
            "m": {
                "pipeline": "hoeffding_tree",
                "features": {"x": "number"},
                "monitor": {"importance": {"enabled": False, "time_cap_s": 0.25, "patience": 3}},
            }
        }
    }
    importance = settings_from_mapping(doc).model("m").monitor.importance
    assert importance.enabled is False
    assert importance.budget(ImportanceBudget(window=500)) == ImportanceBudget(
        window=500, time_cap_s=0.25
    )
    assert importance.drift().patience == 3 and importance.drift().top_k == 3
