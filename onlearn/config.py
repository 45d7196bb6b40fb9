"""Settings: a TOML file declares the models; environment variables and CLI flags override.

Precedence, lowest first: defaults, the TOML file, ``ONLEARN_*`` environment variables, explicit
overrides (the CLI's flags). Every mistake raises ConfigError naming the entry and the fix.
"""

from __future__ import annotations

import enum
import ipaddress
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from onlearn.access import ApiKey, keys_from_config, parse_env_keys, unique
from onlearn.drift.importance import ImportanceSettings
from onlearn.errors import ConfigError
from onlearn.models import PipelineSpec, build_pipeline
from onlearn.refit_options import (
    DEFAULT_MAX_ROWS,
    LIMITS,
    METRICS,
    Candidate,
    config_candidates,
)
from onlearn.rollout_policy import RolloutPolicy
from onlearn.schema import Schema

DEFAULT_STORE_URL = "sqlite:///.data/onlearn.db"
DEFAULT_PREDICTION_TTL_S = 7 * 24 * 3600.0


class Task(str, enum.Enum):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"


@dataclass(frozen=True)
class ActiveConfig:
    """Active learning of one model: the sampler's table, and how the labelling queue behaves."""

    sampler: Mapping[str, Any]
    queue_max_size: int = 10_000
    lease_s: float = 300.0
    max_lease_s: float = 3600.0
    max_skips: int = 3
    rerank_pool: int = 5  # a claim of n re-ranks the top n * rerank_pool queued items
    max_claim: int = 100
    keep_finished_s: float = 7 * 24 * 3600.0  # labelled/skipped items kept for idempotent retries

    QUEUE_KEYS = (
        "queue_max_size",
        "lease_s",
        "max_lease_s",
        "max_skips",
        "rerank_pool",
        "max_claim",
        "keep_finished_s",
    )


@dataclass(frozen=True)
class RefitConfig:
    """What a batch refit trains: candidates (catalog pipelines, factories, scikit-learn), each
    with an id a retrain request may pick, and how it compares them with the champion. No
    candidates: the model's own pipeline; no metric: the task's (accuracy, or MAE)."""

    candidates: tuple[Candidate, ...] = ()
    passes: int = 1
    holdout: float = 0.2
    metric: str | None = None
    max_rows: int = DEFAULT_MAX_ROWS


@dataclass(frozen=True)
class RetrainConfig:
    """When a retrain starts by itself. Count and schedule triggers need evidence that the data
    or the performance moved (an alarm, or recent accuracy below the long-run accuracy by
    ``performance_margin``); an alarm triggers by itself. ``cooldown_s`` between automatic ones."""

    every_labels: int = 0  # 0: off
    every_s: float = 0.0  # 0: off
    on_alarm: bool = True
    cooldown_s: float = 3600.0
    performance_margin: float = 0.02


DEFAULT_EVALUATION_RATE = 0.01  # an `active` table's evaluation_rate when it sets none


@dataclass(frozen=True)
class MonitorConfig:
    """How the monitor watches a model: windows of traffic against the training data's profile,
    a concept drift detector on each served version's errors, and where alarms go."""

    window: int = 500  # predictions per input-drift window
    alpha: float = 0.01  # per-feature level, after the correction over features
    correction: str = "bh"  # bh (false discovery rate), holm, bonferroni, none
    reference_size: int = 1000  # training rows in a reference profile built from the log
    # The input drift p-values hold given the reference at hand for this share of references
    # (onlearn/drift/input_drift.py); 0 gives the plain two-sample p-values, exact only on
    # average over references.
    reference_confidence: float = 0.99
    report_every: int = 250  # predictions between two reports
    # ...and at least this many seconds of traffic: a report tests every feature twice (the
    # window, the skew window) and costs ~20 ms; at thousands of predictions a second, one per
    # 250 would take more CPU than serving them.
    min_report_interval_s: float = 1.0
    detector: Mapping[str, Any] = field(default_factory=lambda: {"name": "adwin"})
    webhook: str | None = None  # each alarm is POSTed here as JSON
    # Signs each alarm's body (onlearn/webhook_signature.py); else ONLEARN_WEBHOOK_SECRET.
    webhook_secret: str | None = field(default=None, repr=False)
    timeline: int = 500  # points kept for the dashboard
    # Estimated accuracy from probabilities (onlearn/drift/performance_estimate.py): an alarm
    # when the window's estimate falls this far below the reference's; the estimate is compared
    # with the measured accuracy every estimate_window_labels labels of its calibration source;
    # the calibration learns from the last calibration_window of them.
    estimate_drop: float = 0.05
    estimate_window_labels: int = 100
    calibration_window: int = 5000
    # Feature importance drift, computed by the worker with its snapshots: on or off, its CPU
    # budget and its alarm's settings ([models.<name>.monitor.importance]).
    importance: ImportanceSettings = field(default_factory=ImportanceSettings)


@dataclass(frozen=True)
class ModelConfig:
    """A named learning task: schema, target, pipeline and policies."""

    name: str
    task: Task
    schema: Schema
    pipeline: PipelineSpec
    target: str | None = None
    classes: tuple | None = None
    prediction_ttl_s: float = DEFAULT_PREDICTION_TTL_S
    active: ActiveConfig | None = None
    rollout: RolloutPolicy = field(default_factory=RolloutPolicy)
    refit: RefitConfig = field(default_factory=RefitConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    # The label depends on the answer served (a refused loan never shows a default): versions
    # are compared as an A/B test, each on the labels of what it answered (onlearn/two_sample.py).
    labels_follow_answer: bool = False

    def spec(self) -> dict:
        """What defines a version's behaviour; a change of it means a new version."""
        return {
            "task": self.task.value,
            "pipeline": self.pipeline.to_config(),
            "schema": self.schema.to_config(),
            "classes": list(self.classes) if self.classes is not None else None,
        }


@dataclass(frozen=True)
class EngineSettings:
    """Knobs of the engine's background work. Defaults suit one machine."""

    prediction_flush_ms: float = 20.0
    # Prediction records not yet written; past this, predict answers 503 (nothing dropped).
    max_pending_predictions: int = 100_000
    # Label events waiting for their durable append; past this, feedback answers 503.
    max_pending_labels: int = 100_000
    poll_interval_ms: float = 50.0
    # Threads that learn, time-slicing every model of the process (not one per model).
    learner_threads: int = 2
    # Label events of a model appended and not yet learned by this process; past this, its
    # feedback answers 503 with Retry-After. Bounds the replay after a crash (with the
    # snapshot interval) and the memory a burst holds. 0: no bound.
    max_learn_lag: int = 20_000
    apply_timeout_s: float = 10.0
    snapshot_every_events: int = 10_000
    snapshot_every_s: float = 3600.0
    snapshot_check_s: float = 5.0
    job_lease_s: float = 120.0
    worker_poll_s: float = 1.0
    keep_snapshots: int = 3  # newest snapshots kept per served version
    # Full states the worker process keeps between two snapshots of their model (the newest
    # snapshotted first); the others are unpickled from their newest snapshot when next due.
    worker_cached_states: int = 8
    retain_events: int = 1_000_000  # log events kept before the oldest snapshot still needed
    # The monitor inside `onlearn serve` shares the process (and its GIL) with predict: it may
    # use this share of one CPU, and falls behind rather than slow the answers down.
    monitor_cpu_share: float = 0.1
    # Prediction records older than this when the monitor reaches them are skipped (and counted):
    # a monitor that fell behind watches the present traffic, not a backlog.
    monitor_max_lag_s: float = 60.0


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server, and how long it may take. Each is answered with
    a 4xx or 5xx that names it when exceeded (the table in docs/operations.md)."""

    max_body_bytes: int = 4 * 1024 * 1024  # 413
    max_batch_rows: int = 10_000  # rows of predict/batch, items of feedback/batch: 422
    # A request still unanswered after this long gets 504 (408 while its body is still
    # arriving) instead of holding its client and a connection. 0 turns it off.
    request_timeout_s: float = 30.0
    # A connection with no request under way (before its first, between two, or stalled in a
    # request's headers) is closed after this long: 24,000 idle sockets once made /healthz fail
    # until their clients left.
    keep_alive_timeout_s: float = 5.0
    # Connections served at once; a request on a connection past it gets 503 (see
    # serving/connections.py), so a flood of sockets is refused at once instead of queueing.
    max_connections: int = 1000
    # On a stop, requests under way get this long to finish before their connections close.
    graceful_shutdown_s: float = 10.0

    def __post_init__(self) -> None:
        for key in ("max_body_bytes", "max_batch_rows", "max_connections"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"[limits]: {key} must be a whole number of at least 1")
        t = self.request_timeout_s
        if isinstance(t, bool) or not isinstance(t, int | float) or not 0 <= t < math.inf:
            raise ConfigError(
                "[limits]: request_timeout_s must be a number of seconds (0 turns it off)"
            )
        for key in ("keep_alive_timeout_s", "graceful_shutdown_s"):
            t = getattr(self, key)
            if isinstance(t, bool) or not isinstance(t, int | float) or not 0 < t < math.inf:
                raise ConfigError(f"[limits]: {key} must be a number of seconds above 0")


@dataclass(frozen=True)
class OpenAPISettings:
    """The ``[openapi]`` table: how much of each model the main OpenAPI document types."""

    # Models typed in /openapi.json (each with its own operations and feature schema); past
    # this, the main document keeps the generic `{name}` operations and each model's typed
    # document is at /models/{name}/openapi.json. 50 models keep it under a few hundred kB,
    # what code generators and /docs still handle well.
    max_models: int = 50

    def __post_init__(self) -> None:
        m = self.max_models
        if isinstance(m, bool) or not isinstance(m, int) or m < 0:
            raise ConfigError(
                f"[openapi]: max_models must be a whole number of at least 0 (0: no model "
                f"typed in /openapi.json), got {m!r}"
            )


@dataclass(frozen=True)
class Settings:
    store_url: str = DEFAULT_STORE_URL
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    secret_key: str | None = None
    api_keys: tuple[ApiKey, ...] = ()  # none: access control is off (see onlearn.access)
    allow_no_auth: bool = False  # serve on a non-loopback address with no keys anyway
    models: tuple[ModelConfig, ...] = ()
    engine: EngineSettings = field(default_factory=EngineSettings)
    limits: Limits = field(default_factory=Limits)
    openapi: OpenAPISettings = field(default_factory=OpenAPISettings)
    config_path: str | None = None
    run_worker: bool | None = None  # None: yes with the embedded store, no with a shared one
    run_monitor: bool | None = None  # the same, for the monitor

    def model(self, name: str) -> ModelConfig | None:
        return next((m for m in self.models if m.name == name), None)


def boolean(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


# Environment variable -> Settings field, with the type to parse it as.
ENVIRONMENT = {
    "ONLEARN_CONFIG": ("config_path", str),
    "ONLEARN_STORE_URL": ("store_url", str),
    "ONLEARN_HOST": ("host", str),
    "ONLEARN_PORT": ("port", int),
    "ONLEARN_WORKERS": ("workers", int),
    "ONLEARN_SECRET_KEY": ("secret_key", str),
    "ONLEARN_RUN_WORKER": ("run_worker", boolean),
    "ONLEARN_RUN_MONITOR": ("run_monitor", boolean),
    "ONLEARN_ALLOW_NO_AUTH": ("allow_no_auth", boolean),
}

# Environment variable -> Limits field (the [limits] table), with the type to parse it as.
LIMITS_ENVIRONMENT = {
    "ONLEARN_MAX_BODY_BYTES": ("max_body_bytes", int),
    "ONLEARN_MAX_BATCH_ROWS": ("max_batch_rows", int),
    "ONLEARN_REQUEST_TIMEOUT_S": ("request_timeout_s", float),
    "ONLEARN_KEEP_ALIVE_TIMEOUT_S": ("keep_alive_timeout_s", float),
    "ONLEARN_MAX_CONNECTIONS": ("max_connections", int),
    "ONLEARN_GRACEFUL_SHUTDOWN_S": ("graceful_shutdown_s", float),
}


def load_settings(
    path: str | os.PathLike | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build Settings from a TOML file (or ``$ONLEARN_CONFIG``), the environment and overrides.

    >>> s = load_settings(None, environ={"ONLEARN_STORE_URL": "memory://"}, port=9000)
    >>> (s.store_url, s.port, s.models)
    ('memory://', 9000, ())
    """
    environ = os.environ if environ is None else environ
    from_env: dict[str, Any] = {}
    for var, (name, kind) in ENVIRONMENT.items():
        if environ.get(var):
            try:
                from_env[name] = kind(environ[var])
            except ValueError:
                raise ConfigError(
                    f"{var}={environ[var]!r} is not a valid {kind.__name__}"
                ) from None
    path = path or overrides.get("config_path") or from_env.get("config_path")
    settings = settings_from_toml(path) if path else Settings()
    # An override of None is a flag not given (the CLI passes every flag): it must not hide the
    # environment's value, so it is dropped before the merge, not after.
    given = {**from_env, **{k: v for k, v in overrides.items() if v is not None}}
    given.pop("config_path", None)
    # Keys from the environment add to the config's (both are sources of keys: hashed ones in
    # the file, plain deployment secrets in the environment), unlike the scalar overrides.
    if environ.get("ONLEARN_API_KEYS"):
        from_environ = parse_env_keys(environ["ONLEARN_API_KEYS"])
        given["api_keys"] = unique(
            (*settings.api_keys, *from_environ), "[security] api_keys and ONLEARN_API_KEYS"
        )
    if "limits" not in given:
        given["limits"] = _limits_from_env(settings.limits, environ)
    settings = replace(settings, **given)
    return with_webhook_secrets(settings, environ.get("ONLEARN_WEBHOOK_SECRET") or None)


def with_webhook_secrets(settings: Settings, secret: str | None) -> Settings:
    """Each model's alarm webhook with its secret: its own, else ``secret`` (from
    ``ONLEARN_WEBHOOK_SECRET``). A webhook over plain http to another machine needs one: anyone
    on the path could read and forge its alarms otherwise."""
    models = []
    for model in settings.models:
        monitor = model.monitor
        if monitor.webhook and monitor.webhook_secret is None and secret:
            monitor = replace(monitor, webhook_secret=secret)
        url = urlsplit(monitor.webhook or "")
        if url.scheme == "http" and not _loopback(url.hostname) and not monitor.webhook_secret:
            raise ConfigError(
                f"[models.{model.name}.monitor]: webhook {url.scheme}://{url.netloc} is plain "
                f"http to another machine: set webhook_secret there or ONLEARN_WEBHOOK_SECRET, "
                f"so the receiver can check that alarms come from onlearn (or use https)"
            )
        models.append(replace(model, monitor=monitor) if monitor is not model.monitor else model)
    return replace(settings, models=tuple(models))


def _http_url(text: Any) -> bool:
    """An http(s) URL a request can be sent to: a host, a valid port, no blanks or control
    characters (found at startup rather than by the first alarm's delivery).

    >>> [_http_url(u) for u in ("https://h/x", "https://", "http://[::1", "https://h:99999")]
    [True, False, False, False]
    """
    if not isinstance(text, str) or not text.startswith(("http://", "https://")):
        return False
    if any(c.isspace() or not c.isprintable() for c in text):
        return False
    try:
        url = urlsplit(text)
        url.port  # noqa: B018 -- raises ValueError past 65535
    except ValueError:
        return False
    return bool(url.hostname)


def _loopback(host: str | None) -> bool:
    """As ``onlearn serve`` decides (onlearn/tools/cli.py): a name other than localhost is not
    resolved, so it counts as another machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def _limits_from_env(limits: Limits, environ: Mapping[str, str]) -> Limits:
    values: dict[str, Any] = {}
    for var, (name, kind) in LIMITS_ENVIRONMENT.items():
        if environ.get(var):
            try:
                values[name] = kind(environ[var])
            except ValueError:
                raise ConfigError(
                    f"{var}={environ[var]!r} is not a valid {kind.__name__}"
                ) from None
    try:
        return replace(limits, **values)
    except ConfigError as e:
        raise ConfigError(f"{e} (from {', '.join(sorted(LIMITS_ENVIRONMENT))})") from None


def settings_from_toml(path: str | os.PathLike) -> Settings:
    p = Path(path)
    try:
        with p.open("rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(p)!r} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {str(p)!r} is not valid TOML: {e}") from None
    return settings_from_mapping(doc, config_path=str(p))


def settings_from_mapping(doc: Mapping[str, Any], *, config_path: str | None = None) -> Settings:
    _only(
        doc, {"server", "store", "engine", "limits", "models", "security", "openapi"}, "the config"
    )
    server = _table(doc, "server")
    _only(server, {"host", "port", "workers"}, "[server]")
    store = _table(doc, "store")
    _only(store, {"url"}, "[store]")
    security = _table(doc, "security")
    _only(security, {"secret_key", "api_keys"}, "[security]")
    models = tuple(model_from_mapping(name, table) for name, table in _table(doc, "models").items())
    return Settings(
        store_url=store.get("url", DEFAULT_STORE_URL),
        host=server.get("host", "127.0.0.1"),
        port=int(server.get("port", 8000)),
        workers=int(server.get("workers", 1)),
        secret_key=security.get("secret_key"),
        api_keys=keys_from_config(security.get("api_keys", [])),
        models=models,
        engine=_engine_settings(_table(doc, "engine")),
        limits=_dataclass_from(Limits, _table(doc, "limits"), "[limits]"),
        openapi=_openapi_settings(_table(doc, "openapi")),
        config_path=config_path,
    )


def _openapi_settings(table: Mapping[str, Any]) -> OpenAPISettings:
    _only(table, {"max_models"}, "[openapi]")
    return OpenAPISettings(**table)


def model_from_mapping(name: str, table: Any) -> ModelConfig:
    where = f"[models.{name}]"
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table")
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"{where}: model names use letters, digits, '_' and '-' only")
    _only(
        table,
        {
            "task",
            "target",
            "classes",
            "prediction_ttl_s",
            "unknown_fields",
            "pipeline",
            "features",
            "active",
            "rollout",
            "refit",
            "retrain",
            "monitor",
            "labels_follow_answer",
        },
        where,
    )
    try:
        task = Task(table.get("task", "classification"))
    except ValueError:
        raise ConfigError(f"{where}: task must be 'classification' or 'regression'") from None
    if "features" not in table:
        raise ConfigError(
            f"{where} has no features table; `onlearn schema infer FILE.csv` prints one"
        )
    if "pipeline" not in table:
        raise ConfigError(f'{where} has no pipeline, e.g. pipeline = {{ name = "hoeffding_tree" }}')
    schema = Schema.from_config(table["features"], table.get("unknown_fields", "reject"))
    pipeline = PipelineSpec.from_config(table["pipeline"])
    ttl = table.get("prediction_ttl_s", DEFAULT_PREDICTION_TTL_S)
    if not isinstance(ttl, int | float) or not math.isfinite(ttl) or ttl <= 0:
        raise ConfigError(f"{where}: prediction_ttl_s must be a positive number of seconds")
    classes = table.get("classes")
    if classes is not None:
        if task is not Task.CLASSIFICATION or not isinstance(classes, list) or not classes:
            raise ConfigError(f"{where}: classes must be a non-empty list, for classification only")
        classes = tuple(classes)
    # Build it once now, so that a wrong name or parameter stops the config from loading at all
    # instead of failing later in a server process.
    try:
        build_pipeline(
            pipeline,
            task=task.value,
            numeric=schema.numeric,
            categorical=schema.categorical,
            classes=classes,
        )
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    active = None
    if "active" in table:
        if task is not Task.CLASSIFICATION:
            raise ConfigError(
                f"{where}.active: active learning is classification-only by design: its "
                "samplers ask for labels where the class probabilities are uncertain, and a "
                f"regression model has none; remove the [models.{name}.active] table"
            )
        active = active_from_mapping(table["active"], f"[models.{name}.active]")
    try:
        rollout = RolloutPolicy.from_config(table.get("rollout"))
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    labels_follow_answer = table.get("labels_follow_answer", False)
    if not isinstance(labels_follow_answer, bool):
        raise ConfigError(
            f"{where}: labels_follow_answer must be true or false (true: the label depends on "
            f"the answer served, versions are compared as an A/B test), got {labels_follow_answer!r}"
        )
    monitor = monitor_from_mapping(table.get("monitor", {}), f"[models.{name}.monitor]")
    if task is Task.REGRESSION:
        _check_regression_detector(monitor.detector, f"[models.{name}.monitor]")
    return ModelConfig(
        name=name,
        task=task,
        schema=schema,
        pipeline=pipeline,
        target=table.get("target"),
        classes=classes,
        prediction_ttl_s=float(ttl),
        active=active,
        rollout=rollout,
        refit=refit_from_mapping(
            table.get("refit", {}), f"[models.{name}.refit]", pipeline, task.value
        ),
        retrain=retrain_from_mapping(table.get("retrain", {}), f"[models.{name}.retrain]"),
        monitor=monitor,
        labels_follow_answer=labels_follow_answer,
    )


def _check_regression_detector(detector: Mapping[str, Any], where: str) -> None:
    """A regression model's detector watches its absolute errors: it must take numbers."""
    from onlearn.drift import detector_from_config
    from onlearn.drift.detectors import REAL_VALUED

    name = detector_from_config(detector).name
    if name not in REAL_VALUED:
        raise ConfigError(
            f"{where}: detector {name!r} watches right and wrong answers, but a regression "
            f"model's errors are numbers (its absolute errors): use one of "
            f"{', '.join(REAL_VALUED)}"
        )


def monitor_from_mapping(table: Any, where: str) -> MonitorConfig:
    from onlearn.drift import detector_from_config

    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table")
    detector = table.get("detector", {"name": "adwin"})
    try:
        detector_from_config(detector)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    if isinstance(detector, str):
        detector = {"name": detector}
    webhook = table.get("webhook")
    if webhook is not None and not _http_url(webhook):
        raise ConfigError(
            f"{where}: webhook must be an http(s) URL with a host, like "
            f"https://alerts.example.com/onlearn, got {webhook!r}"
        )
    webhook_secret = table.get("webhook_secret")
    if webhook_secret is not None and not (isinstance(webhook_secret, str) and webhook_secret):
        raise ConfigError(f"{where}: webhook_secret must be a non-empty string")
    correction = table.get("correction", "bh")
    if correction not in ("bh", "holm", "bonferroni", "none"):
        raise ConfigError(f"{where}: correction must be bh, holm, bonferroni or none")
    try:
        importance = ImportanceSettings.from_config(table.get("importance", {}))
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    texts = ("detector", "webhook", "webhook_secret", "correction", "importance")
    numbers = {k: v for k, v in table.items() if k not in texts}
    config = _dataclass_from(
        MonitorConfig,
        numbers,
        where,
        exclude=set(texts),
        detector=dict(detector),
        webhook=webhook,
        webhook_secret=webhook_secret,
        correction=correction,
        importance=importance,
    )
    if not 0 < config.alpha < 1:
        raise ConfigError(f"{where}: alpha must be in (0, 1)")
    for key in ("window", "reference_size", "report_every", "timeline"):
        if getattr(config, key) < 2:
            raise ConfigError(f"{where}: {key} must be at least 2")
    if not 0 <= config.min_report_interval_s <= 3600:
        raise ConfigError(f"{where}: min_report_interval_s must be in [0, 3600]")
    if not (
        isinstance(config.reference_confidence, float | int)
        and 0 <= config.reference_confidence < 1
    ):
        raise ConfigError(
            f"{where}: reference_confidence must be in [0, 1) (0 for plain two-sample p-values)"
        )
    if not 0 < config.estimate_drop < 1:
        raise ConfigError(f"{where}: estimate_drop must be in (0, 1) (a share of accuracy)")
    for key in ("estimate_window_labels", "calibration_window"):
        if getattr(config, key) < 1:
            raise ConfigError(f"{where}: {key} must be at least 1")
    return config


def refit_from_mapping(
    table: Any, where: str, pipeline: PipelineSpec, task: str = "classification"
) -> RefitConfig:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table")
    _only(table, {"candidates", "passes", "holdout", "metric", "max_rows"}, where)
    candidates = config_candidates(table.get("candidates", [pipeline.to_config()]), where)
    passes, holdout = table.get("passes", 1), table.get("holdout", 0.2)
    max_rows = table.get("max_rows", DEFAULT_MAX_ROWS)
    for key, value, whole in (
        ("passes", passes, True),
        ("holdout", holdout, False),
        ("max_rows", max_rows, True),
    ):
        low, high = LIMITS[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, int if whole else int | float)
            or not low <= value <= high
        ):
            kind = "an integer" if whole else "a number"
            raise ConfigError(f"{where}: {key} must be {kind} in [{low:g}, {high:g}]")
    metric = table.get("metric")
    if metric is not None and (metric not in METRICS or METRICS[metric][0] != task):
        names = [m for m, (t, _) in METRICS.items() if t == task]
        raise ConfigError(f"{where}: metric of a {task} model must be one of {', '.join(names)}")
    return RefitConfig(candidates, passes, float(holdout), metric, max_rows)


def retrain_from_mapping(table: Any, where: str) -> RetrainConfig:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table")
    on_alarm = table.get("on_alarm", True)
    if not isinstance(on_alarm, bool):
        raise ConfigError(f"{where}: on_alarm must be true or false")
    rest = {k: v for k, v in table.items() if k != "on_alarm"}
    return _dataclass_from(RetrainConfig, rest, where, exclude={"on_alarm"}, on_alarm=on_alarm)


def active_from_mapping(table: Any, where: str) -> ActiveConfig:
    from onlearn.active import sampler_from_config

    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table")
    queue = {k: table[k] for k in ActiveConfig.QUEUE_KEYS if k in table}
    sampler = {k: v for k, v in table.items() if k not in ActiveConfig.QUEUE_KEYS}
    # A model that buys its labels gets a small random slice by default: the only labels that
    # measure its accuracy without the sampler's bias, and the monitor's calibration source.
    sampler.setdefault("evaluation_rate", DEFAULT_EVALUATION_RATE)
    sampler_from_config(sampler, where=where)  # refuse a bad sampler now, not at serve time
    config = _dataclass_from(ActiveConfig, queue, where, exclude={"sampler"}, sampler=dict(sampler))
    for key in ("queue_max_size", "max_claim", "rerank_pool"):
        if getattr(config, key) < 1:
            raise ConfigError(f"{where}: {key} must be at least 1")
    if not 0 < config.lease_s <= config.max_lease_s:
        raise ConfigError(f"{where}: lease_s must be in (0, max_lease_s]")
    return config


def _table(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"[{key}] must be a table")
    return value


def _only(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown entr{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


def _engine_settings(table: Mapping[str, Any]) -> EngineSettings:
    engine = _dataclass_from(EngineSettings, table, "[engine]")
    if engine.learner_threads < 1:
        raise ConfigError("[engine]: learner_threads must be at least 1")
    if not 0 < engine.monitor_cpu_share <= 1:
        raise ConfigError(
            "[engine]: monitor_cpu_share is a share of one CPU, more than 0 and at most 1"
        )
    return engine


def _dataclass_from(cls, table: Mapping[str, Any], where: str, exclude=frozenset(), **given):
    names = {f.name: f for f in fields(cls) if f.name not in exclude}
    _only(table, set(names), where)
    values = {}
    for key, value in table.items():
        kind = type(names[key].default)
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{where}: {key} must be a non-negative number")
        values[key] = kind(value)
    return cls(**values, **given)
