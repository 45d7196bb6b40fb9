"""Configs of the servers the end-to-end tests share.

CONFIG is the server of the API tests: one model per group of tests, so that the counters and
metrics a test checks are its own.
"""

from __future__ import annotations

from tests.e2e.helpers import XY_FEATURES, xy_model

MAX_BODY_BYTES = 4096
MAX_BATCH_ROWS = 8

# Every feature type and rule: the model the validation tests talk to.
SHAPES_FEATURES = """
weight = { type = "number", min = 0, max = 100 }
legs = { type = "integer", min = 0, max = 4 }
color = { type = "category", values = ["black", "white", "ginger"] }
indoor = { type = "boolean" }
name = { type = "string", nullable = true }
age = { type = "number", nullable = true }
"""

CONFIG = f"""
[limits]
max_body_bytes = {MAX_BODY_BYTES}
max_batch_rows = {MAX_BATCH_ROWS}

[models.shapes]
task = "classification"
classes = ["cat", "dog"]
unknown_fields = "reject"
pipeline = {{ name = "logistic_regression" }}
[models.shapes.features]
{SHAPES_FEATURES}

[models.loose]
task = "classification"
unknown_fields = "drop"
pipeline = {{ name = "logistic_regression" }}
[models.loose.features]
{SHAPES_FEATURES}

[models.reg]
task = "regression"
pipeline = {{ name = "linear_regression" }}
[models.reg.features]
x = {{ type = "number" }}

[models.huge]
task = "regression"
pipeline = {{ name = "linear_regression" }}
[models.huge.features]
k = {{ type = "integer" }}

{xy_model("learns")}
{xy_model("fb")}
{xy_model("scored")}
{xy_model("observed")}
{xy_model("dup")}
{xy_model("fbatch")}
{xy_model("nowait")}
{xy_model("inline")}
{xy_model("short", prediction_ttl_s=1)}
"""

MODELS = {
    "shapes",
    "loose",
    "reg",
    "huge",
    "learns",
    "fb",
    "scored",
    "observed",
    "dup",
    "fbatch",
    "nowait",
    "inline",
    "short",
}

# A valid row of the shapes model.
CAT = {"weight": 4.5, "legs": 4, "color": "ginger", "indoor": True, "name": "Tom", "age": 3.0}


# test_workers.py: one server, two processes.
WORKERS_CONFIG = xy_model("shared") + "\n" + xy_model("joined")

# test_restart.py: a linear model and a seeded forest (randomness must replay identically).
RESTART_CONFIG = f"""
{xy_model("lin")}

[models.forest]
task = "classification"
classes = ["pos", "neg"]
pipeline = {{ name = "adaptive_random_forest", n_models = 3 }}
[models.forest.features]
{XY_FEATURES}
"""
RESTART_MODELS = ("lin", "forest")


def _active_model(name: str, **active) -> str:
    table = ", ".join(
        f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"' for k, v in active.items()
    )
    return f"""
[models.{name}]
task = "classification"
classes = ["pos", "neg"]
pipeline = {{ name = "logistic_regression", lr = 0.5 }}
active = {{ {table} }}
[models.{name}.features]
{XY_FEATURES}
"""


# The labelling-queue server: one model per test module, every prediction asked for (the random
# strategy at budget 1 asks with probability 1; an uncertainty strategy would not: its threshold
# tightens after each ask) so the tests know what is queued.
_EVERY = {"strategy": "random", "budget": 1.0, "window": 50}
QUEUE_CONFIG = (
    _active_model("al", **_EVERY, evaluation_rate=0.2, lease_s=30, max_skips=2)
    + _active_model("ui", **_EVERY, lease_s=60)
    + _active_model("term", **_EVERY, lease_s=60)
    + xy_model("passive")
)


# The rollout server: the embedded worker runs refits; quick polling.
ROLLOUT_CONFIG = f"""
[engine]
worker_poll_s = 0.1

{xy_model("ro")}
"""


# The dashboard server: a model the test drives into drift (monitored in small windows, reports
# often), and one with no traffic (no report yet), listed first. The embedded worker runs refits.
DASHBOARD_MODEL = "dash"
DASHBOARD_CONFIG = f"""
[engine]
worker_poll_s = 0.1

{xy_model("quiet")}

[models.{DASHBOARD_MODEL}]
task = "classification"
classes = ["pos", "neg"]
pipeline = {{ name = "logistic_regression", lr = 0.5 }}
[models.{DASHBOARD_MODEL}.monitor]
window = 100
reference_size = 200
report_every = 50
[models.{DASHBOARD_MODEL}.features]
a = {{ type = "number" }}
b = {{ type = "number" }}
c = {{ type = "number" }}
color = {{ type = "category", values = ["red", "green", "blue"] }}
"""


# The access-control server: one key per role (plain keys here, their hashes in the config),
# and a model with a labelling queue (every prediction asked for).
AUTH_KEYS = {
    "app": ("predict", "onl_test-predict-key"),
    "labeller": ("label", "onl_test-label-key"),
    "ops": ("admin", "onl_test-admin-key"),
}


def _auth_config() -> str:
    from onlearn.access import toml_entry

    entries = ",\n  ".join(toml_entry(name, key, [role]) for name, (role, key) in AUTH_KEYS.items())
    return f"""
[security]
api_keys = [
  {entries},
]
{_active_model("guarded", budget=1.0, window=50, lease_s=60)}
{_active_model(AUTH_SECRET_MODEL, budget=1.0, window=50, lease_s=60)}
"""


# A name no page or open route may reveal to a caller without a key.
AUTH_SECRET_MODEL = "okapi_payroll_fraud"
AUTH_CONFIG = _auth_config()


# The fuzzed server (test_fuzz.py): every feature type, a classification model with a labelling
# queue (so the queue routes reach the engine) and a regression model (no queue), on the same
# features so that one body schema fits both.
FUZZ_MODELS = ("fuzz", "fuzzreg")
FUZZ_CONFIG = f"""
[models.fuzz]
task = "classification"
classes = ["cat", "dog"]
pipeline = {{ name = "logistic_regression" }}
active = {{ budget = 1.0, window = 50, lease_s = 30 }}
[models.fuzz.features]
{SHAPES_FEATURES}

[models.fuzzreg]
task = "regression"
pipeline = {{ name = "linear_regression" }}
[models.fuzzreg.features]
{SHAPES_FEATURES}
"""


# The limits server (test_limits.py): small limits, so each can be reached in a test. A model
# per test, so that counters and logs a test reads are its own.
LIMITS = {"max_body_bytes": 2048, "max_batch_rows": 4, "request_timeout_s": 1.0}
LIMITS_MAX_PENDING_PREDICTIONS = 50
LIMITS_QUEUE_MAX_SIZE = 3
LIMITS_MAX_CLAIM = 2
LIMITS_CONFIG = f"""
[limits]
max_body_bytes = {LIMITS["max_body_bytes"]}
max_batch_rows = {LIMITS["max_batch_rows"]}
request_timeout_s = {LIMITS["request_timeout_s"]}

[engine]
max_pending_predictions = {LIMITS_MAX_PENDING_PREDICTIONS}
max_pending_labels = 1

{xy_model("lim")}
{xy_model("slow")}
{xy_model("busy")}
{xy_model("buf")}
{
    _active_model(
        "q", budget=1.0, window=50, queue_max_size=LIMITS_QUEUE_MAX_SIZE, max_claim=LIMITS_MAX_CLAIM
    )
}
"""


# The bounded-answers server (test_bounded_errors.py): the default limits (a batch of thousands of
# rows fits), and a model with many features, so that an error's list of known fields is cut.
WIDE_FEATURES = ["color", *(f"feature_{i:02d}" for i in range(29))]
BOUNDS_CONFIG = f"""
[models.wide]
task = "classification"
classes = ["pos", "neg"]
pipeline = {{ name = "logistic_regression" }}
[models.wide.features]
{chr(10).join(f'{name} = {{ type = "number" }}' for name in WIDE_FEATURES)}
"""


# The connections server (test_connections.py): a short keep-alive and a small connection cap,
# so that a test can reach both in seconds.
CONNECTIONS = {"keep_alive_timeout_s": 1.0, "max_connections": 20}
CONNECTIONS_CONFIG = f"""
[limits]
keep_alive_timeout_s = {CONNECTIONS["keep_alive_timeout_s"]}
max_connections = {CONNECTIONS["max_connections"]}

{xy_model("conn")}
"""


# test_observability.py: RED metrics, lags and ages, the dashboard's and alert rules' metrics.
# Every prediction queued (so the queue has an oldest item); snapshots every 5 labels, checked
# often; a small body limit (a 413 to count). The monitor's windows are small, so that its
# metrics appear.
OBS_MODEL = "obs"
OBS_MAX_BODY_BYTES = 2048
OBSERVABILITY_CONFIG = f"""
[engine]
worker_poll_s = 0.1
snapshot_every_events = 5
snapshot_check_s = 0.2

[limits]
max_body_bytes = {OBS_MAX_BODY_BYTES}
{_active_model(OBS_MODEL, **_EVERY)}
[models.{OBS_MODEL}.monitor]
window = 20
reference_size = 20
report_every = 10
"""

# The Label Studio backend server (test_label_studio.py): keys as Label Studio and an application
# hold them, a model with numeric features (CSV strings read by the schema) and one per test
# that counts what it learned, and a regression model (refused).
LS_KEYS = {
    "label-studio": ("label", "onl_test-ls-label-key"),
    "app": ("predict", "onl_test-ls-predict-key"),
}


def _label_studio_config() -> str:
    from onlearn.access import toml_entry

    entries = ",\n  ".join(toml_entry(name, key, [role]) for name, (role, key) in LS_KEYS.items())
    return f"""
[security]
api_keys = [
  {entries},
]

{xy_model("ls")}
{xy_model("lsdup")}
{xy_model("lsfix")}
{xy_model("lsdel")}
{xy_model("lscsv")}
{xy_model("lsbulk")}

[models.lsflags]
task = "classification"
classes = [true, false]
pipeline = {{ name = "logistic_regression" }}
[models.lsflags.features]
n = {{ type = "integer", nullable = true }}
ok = {{ type = "boolean" }}
color = {{ type = "category", values = ["red", "blue"] }}

[models.lsreg]
task = "regression"
pipeline = {{ name = "linear_regression" }}
[models.lsreg.features]
x = {{ type = "number" }}
"""


LABEL_STUDIO_CONFIG = _label_studio_config()
