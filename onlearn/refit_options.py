"""What a retrain may be asked to do: the allow-list of candidates and the bounds of every option.

A retrain request arrives over HTTP, and a refit job waits in the store before a worker runs it:
neither may name code. Code comes from the operator's config file on disk only (a ``factory``, a
scikit-learn class); a request picks from two allow-lists:

- the candidates the config declares, by their ``id`` (``[models.NAME.refit] candidates``);
- catalog pipelines by name, with the few parameters listed in :data:`REQUEST_PARAMS`, each
  within its bounds (a forest of a million trees is a way to hold a worker forever).

:func:`resolve_options` checks a request's options against a model's config and returns the
:class:`RefitOptions` the refit runs with. The server calls it before it queues a job (a bad
option is a 422 and no job exists), and the worker calls it again when it claims the job (a job
stored by an earlier onlearn, or written into the store by hand, gets no more trust than a
request). The numbers of :data:`LIMITS` are listed in docs/operations.md (limits table).

>>> from onlearn.config import model_from_mapping
>>> config = model_from_mapping("m", {
...     "features": {"x": {"type": "number"}},
...     "pipeline": {"name": "logistic_regression"},
...     "refit": {"candidates": [{"id": "tree", "name": "hoeffding_tree", "grace_period": 50}]},
... })
>>> options = resolve_options({"candidates": ["tree", {"name": "adaptive_random_forest",
...                                                     "n_models": 5}]}, config)
>>> [c.id for c in options.candidates], options.metric, options.max_rows
(['tree', 'adaptive_random_forest(n_models=5)'], 'accuracy', 100000)
>>> resolve_options({"candidates": [{"factory": "os:system"}]}, config)
Traceback (most recent call last):
...
onlearn.errors.SchemaViolation: candidates.0.factory: a request cannot name code ('factory'); pick a candidate the config declares (tree) or a catalog pipeline by name
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from onlearn.errors import ConfigError, FieldError, SchemaViolation
from onlearn.models.catalog import CATALOG, catalog_names

if TYPE_CHECKING:
    from onlearn.config import ModelConfig

__all__ = [
    "DEFAULT_MAX_ROWS",
    "LIMITS",
    "METRICS",
    "REQUEST_PARAMS",
    "Candidate",
    "RefitOptions",
    "candidate_id",
    "declared_candidates",
    "default_metric",
    "resolve_options",
]

MIN_LABELS = 50
"""Fewer label events than this and a refit refuses to run."""

DEFAULT_MAX_ROWS = 100_000
"""A refit trains and evaluates on at most this many of the newest label events by default."""

# option -> (lowest, highest), inclusive; the same bounds for the config file and for requests.
LIMITS: Mapping[str, tuple[float, float]] = {
    "candidates": (1, 8),
    "passes": (1, 20),
    "holdout": (0.05, 0.5),
    "max_rows": (MIN_LABELS, 1_000_000),
}

# metric -> (task, higher is better)
METRICS: Mapping[str, tuple[str, bool]] = {
    "accuracy": ("classification", True),
    "log_loss": ("classification", False),
    "macro_f1": ("classification", True),
    "mae": ("regression", False),
    "rmse": ("regression", False),
}

_DEFAULT_METRIC = {"classification": "accuracy", "regression": "mae"}


def default_metric(task: str) -> str:
    """The metric a refit of a ``task`` model picks its best candidate by, unless told.

    >>> default_metric("classification"), default_metric("regression")
    ('accuracy', 'mae')
    """
    return _DEFAULT_METRIC[str(getattr(task, "value", task))]


@dataclass(frozen=True)
class Bound:
    """The values a request may give one catalog parameter: a whole number or a number within
    ``[low, high]``, and/or one of ``choices``; or true or false."""

    kind: str  # "int", "number", "choice", "bool"
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()

    def check(self, value: Any) -> str | None:
        """Why ``value`` is refused, or None."""
        if self.kind == "bool":
            return None if isinstance(value, bool) else "must be true or false"
        if self.choices and isinstance(value, str):
            return None if value in self.choices else f"must be one of {list(self.choices)}"
        if self.kind == "choice":
            return f"must be one of {list(self.choices)}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"must be a {'whole number' if self.kind == 'int' else 'number'}"
        if self.kind == "int" and not (isinstance(value, int) or float(value).is_integer()):
            return "must be a whole number"
        if not math.isfinite(value) or not (self.low <= value <= self.high):
            return f"must be in [{_num(self.low)}, {_num(self.high)}]"
        return None


def _num(x: float | None) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


_TREE = {
    "grace_period": Bound("int", 10, 10_000),
    "max_depth": Bound("int", 1, 50),
    "delta": Bound("number", 1e-12, 0.5),
    "tau": Bound("number", 0.0, 1.0),
}
_FOREST = {
    "n_models": Bound("int", 1, 50),
    "max_features": Bound("number", 0.01, 100, choices=("sqrt", "log2")),
    "lambda_value": Bound("int", 1, 10),
    "grace_period": Bound("int", 10, 10_000),
    "max_depth": Bound("int", 1, 50),
    "seed": Bound("int", 0, 2**31 - 1),
}
_LINEAR = {
    "l2": Bound("number", 0.0, 10.0),
    "l1": Bound("number", 0.0, 10.0),
    "lr": Bound("number", 1e-6, 10.0),
}


def _choices(name: str, key: str) -> Bound:
    return Bound("choice", choices=tuple(CATALOG[name].choices[key]))


REQUEST_PARAMS: Mapping[str, Mapping[str, Bound]] = {
    "logistic_regression": _LINEAR,
    "gaussian_naive_bayes": {},
    "hoeffding_tree": {
        **_TREE,
        "recover": Bound("bool"),  # a second tree at most: a bounded cost
        "split_criterion": _choices("hoeffding_tree", "split_criterion"),
        "leaf_prediction": _choices("hoeffding_tree", "leaf_prediction"),
    },
    "adaptive_random_forest": {
        **_FOREST,
        "split_criterion": _choices("adaptive_random_forest", "split_criterion"),
        "leaf_prediction": _choices("adaptive_random_forest", "leaf_prediction"),
    },
    "linear_regression": _LINEAR,
    "hoeffding_tree_regressor": {
        **_TREE,
        "leaf_prediction": _choices("hoeffding_tree_regressor", "leaf_prediction"),
    },
    "adaptive_random_forest_regressor": {
        **_FOREST,
        "leaf_prediction": _choices("adaptive_random_forest_regressor", "leaf_prediction"),
        "aggregation_method": _choices("adaptive_random_forest_regressor", "aggregation_method"),
    },
}
"""The catalog parameters a request may set, with their bounds; the config file may set any."""

# Keys that name code. A request naming one is refused before anything is imported.
_CODE_KEYS = ("factory", "sklearn")

_OPTION_KEYS = ("candidates", "passes", "holdout", "metric", "max_rows", "register_anyway")


@dataclass(frozen=True)
class Candidate:
    """A pipeline a refit trains: its ``id`` (how requests and results name it) and its table
    (a catalog pipeline, a factory or a scikit-learn estimator, as in the config)."""

    id: str
    table: Mapping[str, Any]


@dataclass(frozen=True)
class RefitOptions:
    """The options a refit runs with, every one checked."""

    candidates: tuple[Candidate, ...]
    passes: int
    holdout: float
    metric: str
    max_rows: int
    register_anyway: bool = False


def candidate_id(table: Mapping[str, Any] | str) -> str:
    """The id of a config candidate without an explicit ``id``: its catalog name, its factory's
    function or its scikit-learn class.

    >>> candidate_id({"name": "hoeffding_tree"}), candidate_id({"factory": "pkg.mod:build"})
    ('hoeffding_tree', 'build')
    >>> candidate_id({"sklearn": "sklearn.linear_model:SGDClassifier"})
    'SGDClassifier'
    """
    if isinstance(table, str):
        return table
    if "id" in table:
        return str(table["id"])
    for key in ("name", "factory", "sklearn"):
        if isinstance(table.get(key), str):
            return table[key].rpartition(":")[2].rpartition(".")[2] if key != "name" else table[key]
    raise ConfigError(f"candidate {dict(table)!r} has no name, factory or sklearn entry")


def config_candidates(value: Any, where: str) -> tuple[Candidate, ...]:
    """The candidates of a config's ``[refit]`` table, with unique ids (the config is trusted:
    its tables may name code)."""
    low, high = LIMITS["candidates"]
    if not isinstance(value, list) or not low <= len(value) <= high:
        raise ConfigError(f"{where}: candidates must be a list of {low} to {high} pipeline tables")
    out: list[Candidate] = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, Mapping):
            raise ConfigError(f"{where}: candidates[{i}] must be a table or a catalog name")
        ident = candidate_id(item)
        if not isinstance(ident, str) or not ident.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(
                f"{where}: candidates[{i}] id {ident!r}: use letters, digits, '_' and '-'"
            )
        if any(c.id == ident for c in out):
            raise ConfigError(
                f'{where}: two candidates are named {ident!r}; give each an id = "..."'
            )
        table = {k: v for k, v in item.items() if k != "id"}
        out.append(Candidate(ident, table))
    return tuple(out)


def declared_candidates(config: ModelConfig) -> tuple[Candidate, ...]:
    """The candidates ``config`` declares; none declared: the model's own pipeline."""
    if config.refit.candidates:
        return tuple(config.refit.candidates)
    table = config.pipeline.to_config()
    return (Candidate(candidate_id(table), table),)


def resolve_options(raw: Mapping[str, Any] | None, config: ModelConfig) -> RefitOptions:
    """The options of a retrain request (or of a stored job) for ``config``'s model, each checked
    against the allow-lists and :data:`LIMITS`; absent ones come from the config.

    Raises :class:`~onlearn.errors.SchemaViolation` naming every option that breaks a rule.
    """
    raw = dict(raw or {})
    errors: list[FieldError] = []
    task = config.task.value
    refit = config.refit
    for key in raw:
        if key not in _OPTION_KEYS:
            errors.append(
                FieldError((key,), "extra_forbidden", f"unknown option; options: {_OPTION_KEYS}")
            )

    candidates = declared_candidates(config)
    if raw.get("candidates") is not None:
        candidates = _request_candidates(raw["candidates"], config, errors)

    passes = raw.get("passes", refit.passes)
    if (why := _in_range(passes, "passes", whole=True)) is not None:
        errors.append(FieldError(("passes",), "range", f"passes {why}"))
    holdout = raw.get("holdout", refit.holdout)
    if (why := _in_range(holdout, "holdout", whole=False)) is not None:
        errors.append(FieldError(("holdout",), "range", f"holdout {why}"))
    max_rows = raw.get("max_rows", refit.max_rows)
    if (why := _in_range(max_rows, "max_rows", whole=True)) is not None:
        errors.append(FieldError(("max_rows",), "range", f"max_rows {why}"))
    metric = raw.get("metric") or refit.metric or default_metric(task)
    if metric not in METRICS or METRICS[metric][0] != task:
        names = [m for m, (t, _) in METRICS.items() if t == task]
        errors.append(
            FieldError(("metric",), "enum", f"metric of a {task} model must be one of {names}")
        )
    register_anyway = raw.get("register_anyway", False)
    if not isinstance(register_anyway, bool):
        errors.append(FieldError(("register_anyway",), "bool", "must be true or false"))
    if errors:
        raise SchemaViolation(errors)
    return RefitOptions(
        candidates=tuple(candidates),
        passes=int(passes),
        holdout=float(holdout),
        metric=metric,
        max_rows=int(max_rows),
        register_anyway=register_anyway,
    )


def _in_range(value: Any, option: str, *, whole: bool) -> str | None:
    low, high = LIMITS[option]
    kind = "a whole number" if whole else "a number"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return f"must be {kind} in [{_num(low)}, {_num(high)}]"
    if whole and not float(value).is_integer():
        return f"must be {kind} in [{_num(low)}, {_num(high)}]"
    if not low <= value <= high:
        return f"must be in [{_num(low)}, {_num(high)}], got {value!r} (limit: docs/operations.md#limits)"
    return None


def _request_candidates(
    value: Any, config: ModelConfig, errors: list[FieldError]
) -> list[Candidate]:
    task = config.task.value
    declared = {c.id: c for c in declared_candidates(config)}
    hint = (
        f"pick a candidate the config declares ({', '.join(declared) or 'none'}) or a catalog "
        "pipeline by name"
    )
    low, high = LIMITS["candidates"]
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        errors.append(FieldError(("candidates",), "list", f"must be a list; {hint}"))
        return []
    if not low <= len(value) <= high:
        errors.append(
            FieldError(
                ("candidates",),
                "range",
                f"a retrain takes {low} to {high} candidates, got {len(value)}",
            )
        )
        return []
    out: list[Candidate] = []
    for i, item in enumerate(value):
        loc: tuple[str | int, ...] = ("candidates", i)
        if isinstance(item, str):
            if item in declared:
                out.append(declared[item])
            elif item in REQUEST_PARAMS and CATALOG[item].task == task:
                out.append(Candidate(item, {"name": item}))
            else:
                errors.append(
                    FieldError(
                        loc,
                        "enum",
                        f"{item!r} is neither a candidate of the config nor a {task} catalog "
                        f"pipeline ({', '.join(catalog_names(task))}); {hint}",
                    )
                )
            continue
        if not isinstance(item, Mapping):
            errors.append(FieldError(loc, "type", f"must be a name or a table; {hint}"))
            continue
        code = [k for k in _CODE_KEYS if k in item]
        if code:
            errors.append(
                FieldError(
                    (*loc, code[0]),
                    "code_forbidden",
                    f"a request cannot name code ({code[0]!r}); {hint}",
                )
            )
            continue
        candidate = _catalog_candidate(item, task, loc, hint, errors)
        if candidate is not None:
            out.append(candidate)
    # The same candidate twice (a name and its bare table, 5 and 5.0) is trained once: what
    # the OpenAPI document allows (a JSON Schema cannot say when two forms are one candidate).
    return list({c.id: c for c in out}.values())


def _catalog_candidate(
    item: Mapping[str, Any],
    task: str,
    loc: tuple[str | int, ...],
    hint: str,
    errors: list[FieldError],
) -> Candidate | None:
    name = item.get("name")
    if not isinstance(name, str) or name not in REQUEST_PARAMS or CATALOG[name].task != task:
        errors.append(
            FieldError(
                (*loc, "name"),
                "enum",
                f"must be a {task} catalog pipeline ({', '.join(catalog_names(task))}); {hint}",
            )
        )
        return None
    allowed = REQUEST_PARAMS[name]
    params: dict[str, Any] = {}
    ok = True
    for key, value in item.items():
        if key == "name":
            continue
        bound = allowed.get(key)
        if bound is None:
            errors.append(
                FieldError(
                    (*loc, key),
                    "extra_forbidden",
                    f"{name!r} takes from a request only {sorted(allowed) or 'no parameters'}; "
                    "declare other settings as a candidate in the config's [refit] table",
                )
            )
            ok = False
            continue
        if (why := bound.check(value)) is not None:
            errors.append(FieldError((*loc, key), "range", f"{key} {why}"))
            ok = False
            continue
        params[key] = int(value) if bound.kind == "int" and not isinstance(value, str) else value
    if params.get("l1") and params.get("l2"):
        # river's linear models refuse it when built: the job would fail in the worker.
        errors.append(
            FieldError(loc, "exclusive", "l1 and l2 cannot both be above 0: pick one penalty")
        )
        ok = False
    if not ok:
        return None
    suffix = ",".join(f"{k}={params[k]}" for k in sorted(params))
    return Candidate(f"{name}({suffix})" if suffix else name, {"name": name, **params})
