"""Pipeline specs and the catalog of river pipelines they name.

A model's config names its pipeline in one TOML table, either a catalog entry with its
parameters or a factory (trusted code) for anything the catalog does not offer::

    pipeline = { name = "logistic_regression", l2 = 0.001 }
    pipeline = { factory = "mypkg.models:build", depth = 3 }

Every catalog pipeline is deterministic: fed the same stream, two copies built from the same spec
give bit-identical predictions, in one process or in two (design section 3: a replica's model is
a replay of the log, and recovery is a snapshot plus a tail replay). Random components get a fixed
seed (``seed = 42`` unless the spec says otherwise), features reach the model in the order the
schema lists them, and nothing learns during ``predict_*``.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import inspect
import json
import math
import pickle
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from river import (
    base,
    compose,
    forest,
    linear_model,
    multiclass,
    naive_bayes,
    optim,
    preprocessing,
    tree,
)

from onlearn.errors import ConfigError
from onlearn.models.binary import BinaryClassifier
from onlearn.models.recovering import RecoveringClassifier
from onlearn.models.select import SelectPresent, SubsetRegressor

__all__ = [
    "CATALOG",
    "DEFAULT_SEED",
    "TASKS",
    "CatalogEntry",
    "PipelineSpec",
    "build_pipeline",
    "catalog_names",
]

TASKS = ("classification", "regression")

DEFAULT_SEED = 42
"""The seed of every random component whose spec gives none."""

_FACTORY_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_SPEC_KEYS = ("name", "factory")
_CONTEXT_KWARGS = ("task", "numeric", "categorical")


# ---------------------------------------------------------------------------------------------
# the spec


@dataclass(frozen=True)
class PipelineSpec:
    """What to build: a catalog pipeline by ``name`` or a ``factory``, with its parameters.

    Exactly one of ``name`` and ``factory`` is set. ``params`` are plain config values (strings,
    numbers, booleans, lists and tables of them) so that a spec round-trips through TOML and JSON.

    Examples
    --------

    >>> spec = PipelineSpec.from_config({"name": "logistic_regression", "l2": 0.001})
    >>> spec
    PipelineSpec(name='logistic_regression', params={'l2': 0.001}, factory=None)
    >>> spec.to_config()
    {'name': 'logistic_regression', 'l2': 0.001}
    >>> spec.fingerprint() == PipelineSpec.from_config(spec.to_config()).fingerprint()
    True

    """

    name: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    factory: str | None = None

    def __post_init__(self) -> None:
        if (self.name is None) == (self.factory is None):
            raise ConfigError(
                "pipeline needs exactly one of 'name' (a catalog pipeline, one of "
                f"{_all_names()}) or 'factory' ('module:function')"
            )
        if self.name is not None and (not isinstance(self.name, str) or not self.name):
            raise ConfigError(f"pipeline 'name' must be a non-empty string, got {self.name!r}")
        if self.factory is not None and (
            not isinstance(self.factory, str) or not _FACTORY_RE.match(self.factory)
        ):
            raise ConfigError(
                f"pipeline 'factory' must look like 'package.module:function', got {self.factory!r}"
            )
        if not isinstance(self.params, Mapping):
            raise ConfigError(f"pipeline params must be a table, got {type(self.params).__name__}")
        for key, value in self.params.items():
            if not isinstance(key, str):
                raise ConfigError(f"pipeline parameter names must be strings, got {key!r}")
            if key in _SPEC_KEYS:
                raise ConfigError(f"{key!r} is not a pipeline parameter")
            _check_config_value(key, value)
        # A private copy: the caller's dict may change later, the spec may not.
        object.__setattr__(self, "params", copy.deepcopy(dict(self.params)))

    def __hash__(self) -> int:
        # params is a dict; equal specs share name and factory, which is enough for a hash.
        return hash((self.name, self.factory))

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | str) -> PipelineSpec:
        """The spec of a config table; every key other than ``name``/``factory`` is a parameter.

        A bare string is taken as a catalog name: ``pipeline = "hoeffding_tree"``.
        """
        if isinstance(config, str):
            return cls(name=config)
        if not isinstance(config, Mapping):
            raise ConfigError(
                'pipeline must be a table such as { name = "logistic_regression" }, '
                f"got {type(config).__name__}"
            )
        params = {k: v for k, v in config.items() if k not in _SPEC_KEYS}
        return cls(name=config.get("name"), params=params, factory=config.get("factory"))

    def to_config(self) -> dict[str, Any]:
        """The config table of this spec; ``from_config`` turns it back into an equal spec."""
        head = {"name": self.name} if self.name is not None else {"factory": self.factory}
        return {**head, **copy.deepcopy(dict(self.params))}

    def fingerprint(self) -> str:
        """A short, stable hex digest of the spec (sha256 of its canonical JSON).

        Equal configs give equal fingerprints in every process and every run. It covers the spec
        only, not the schema or the task the pipeline is built for.
        """
        text = json.dumps(self.to_config(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _check_config_value(key: str, value: Any) -> None:
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"pipeline parameter {key!r} must be finite, got {value!r}")
        return
    if isinstance(value, list | tuple):
        for item in value:
            _check_config_value(key, item)
        return
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        for item in value.values():
            _check_config_value(key, item)
        return
    raise ConfigError(
        f"pipeline parameter {key!r} must be a config value (string, number, boolean, list or "
        f"table), got {type(value).__name__}; build objects in a factory instead"
    )


# ---------------------------------------------------------------------------------------------
# the catalog

# Constructor parameters the catalog does not take from a spec: objects that TOML cannot express
# (a factory can build them) and ``nominal_attributes``, which the schema decides.
_NOT_FROM_SPEC = frozenset(
    {
        "optimizer",
        "loss",
        "initializer",
        "splitter",
        "metric",
        "drift_detector",
        "warning_detector",
        "leaf_model",
        "nominal_attributes",
    }
)


@dataclass(frozen=True)
class CatalogEntry:
    """One named pipeline of the catalog.

    ``build(params, numeric, categorical, classes)`` makes the pipeline; ``classes`` is the
    model's declared labels, or None. ``estimator`` is the river class at the end of the
    pipeline: its constructor parameters,
    except those in ``_NOT_FROM_SPEC``, are the parameters a spec may give, plus ``extra``
    (parameters the builder interprets, with their defaults). ``choices`` lists the allowed
    string values of some parameters (river only prints a warning and falls back to a default).
    """

    task: str
    estimator: type
    build: Callable[
        [dict[str, Any], tuple[str, ...], tuple[str, ...], tuple | None], base.Estimator
    ]
    summary: str
    extra: Mapping[str, Any] = field(default_factory=dict)
    choices: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def defaults(self) -> dict[str, Any]:
        """The accepted parameters and their defaults."""
        return {name: default for name, (default, _) in self._parameters().items()}

    def _parameters(self) -> dict[str, tuple[Any, str]]:
        """The accepted parameters: their defaults and type annotations (as strings)."""
        out = {
            name: (p.default, p.annotation if isinstance(p.annotation, str) else "")
            for name, p in inspect.signature(self.estimator).parameters.items()
            if name not in _NOT_FROM_SPEC and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        }
        out.update({name: (default, "") for name, default in self.extra.items()})
        return out


def _features(
    numeric: tuple[str, ...], categorical: tuple[str, ...], *, scale: bool, one_hot_zeros: bool
) -> base.Transformer:
    """Numeric features (scaled or not) next to one-hot categorical ones; no empty branch."""
    branches = []
    if numeric:
        branches.append(
            SelectPresent(*numeric) | preprocessing.StandardScaler()
            if scale
            else SelectPresent(*numeric)
        )
    if categorical:
        branches.append(
            SelectPresent(*categorical) | preprocessing.OneHotEncoder(drop_zeros=not one_hot_zeros)
        )
    if not branches:
        return SelectPresent()
    if len(branches) == 1:
        return branches[0]
    return compose.TransformerUnion(*branches)


def _linear_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    kwargs = dict(params)
    lr = kwargs.pop("lr", None)
    if lr is not None:  # else river's default optimizer, SGD(0.01)
        kwargs["optimizer"] = optim.SGD(lr)
    return kwargs


def _nominal(categorical: tuple[str, ...]) -> list[str] | None:
    return list(categorical) or None


def _logistic_regression(params, numeric, categorical, classes):
    # river's LogisticRegression is binary with boolean targets. With two declared classes, a
    # BinaryClassifier maps them to True/False (one model); otherwise one-vs-rest makes it take any
    # labels (strings, ints, more than two, unknown in advance) at one model per class.
    lr = linear_model.LogisticRegression(**_linear_kwargs(params))
    if classes is not None and len(classes) == 2:
        model = BinaryClassifier(lr, classes=classes)
    else:
        model = multiclass.OneVsRestClassifier(lr)
    return _features(numeric, categorical, scale=True, one_hot_zeros=False) | model


def _gaussian_naive_bayes(params, numeric, categorical, classes):
    # Unscaled: a running scaler would shift the values the Gaussians were fitted on. One-hot
    # zeros are kept, so that "not this category" is evidence too.
    model = naive_bayes.GaussianNB(**params)
    return _features(numeric, categorical, scale=False, one_hot_zeros=True) | model


def _hoeffding_tree(params, numeric, categorical, classes):
    # Trees split on nominal values themselves; categorical features go in raw.
    kwargs = dict(params)
    recover = kwargs.pop("recover", False)
    model = tree.HoeffdingTreeClassifier(nominal_attributes=_nominal(categorical), **kwargs)
    if recover:
        model = RecoveringClassifier(model)
    return SelectPresent(*numeric, *categorical) | model


def _adaptive_random_forest(params, numeric, categorical, classes):
    model = forest.ARFClassifier(nominal_attributes=_nominal(categorical), **params)
    return SelectPresent(*numeric, *categorical) | model


def _linear_regression(params, numeric, categorical, classes):
    model = linear_model.LinearRegression(**_linear_kwargs(params))
    return _features(numeric, categorical, scale=True, one_hot_zeros=False) | model


def _leaf_model(numeric: tuple[str, ...]) -> SubsetRegressor:
    # The linear model in a regression tree's leaves sees the whole feature dict; kept to the
    # numeric features it does not choke on categorical strings.
    return SubsetRegressor(linear_model.LinearRegression(), keys=numeric)


def _hoeffding_tree_regressor(params, numeric, categorical, classes):
    model = tree.HoeffdingTreeRegressor(
        nominal_attributes=_nominal(categorical), leaf_model=_leaf_model(numeric), **params
    )
    return SelectPresent(*numeric, *categorical) | model


def _adaptive_random_forest_regressor(params, numeric, categorical, classes):
    model = forest.ARFRegressor(
        nominal_attributes=_nominal(categorical), leaf_model=_leaf_model(numeric), **params
    )
    return SelectPresent(*numeric, *categorical) | model


_CLF_TREE_CHOICES = {
    "split_criterion": tuple(tree.HoeffdingTreeClassifier._VALID_SPLIT_CRITERIA),
    "leaf_prediction": tuple(tree.HoeffdingTreeClassifier._VALID_LEAF_PREDICTION),
}
_REG_TREE_CHOICES = {"leaf_prediction": tuple(tree.HoeffdingTreeRegressor._VALID_LEAF_PREDICTION)}
_MAX_FEATURES = {"max_features": ("sqrt", "log2")}  # or a number: a count, or a share if < 1

CATALOG: Mapping[str, CatalogEntry] = MappingProxyType(
    {
        "logistic_regression": CatalogEntry(
            task="classification",
            estimator=linear_model.LogisticRegression,
            build=_logistic_regression,
            summary=(
                "scaled numeric + one-hot categorical -> logistic regression (SGD): one model for "
                "two declared classes, else one-vs-rest"
            ),
            extra={"lr": 0.01},
        ),
        "hoeffding_tree": CatalogEntry(
            task="classification",
            estimator=tree.HoeffdingTreeClassifier,
            build=_hoeffding_tree,
            summary=(
                "Hoeffding tree; categorical features split as nominal; recover = true: a fresh "
                "tree takes over after a concept change"
            ),
            extra={"recover": False},
            choices=_CLF_TREE_CHOICES,
        ),
        "adaptive_random_forest": CatalogEntry(
            task="classification",
            estimator=forest.ARFClassifier,
            build=_adaptive_random_forest,
            summary=f"adaptive random forest (seed {DEFAULT_SEED} unless given)",
            choices={**_CLF_TREE_CHOICES, **_MAX_FEATURES},
        ),
        "gaussian_naive_bayes": CatalogEntry(
            task="classification",
            estimator=naive_bayes.GaussianNB,
            build=_gaussian_naive_bayes,
            summary="numeric + one-hot categorical -> Gaussian naive Bayes",
        ),
        "linear_regression": CatalogEntry(
            task="regression",
            estimator=linear_model.LinearRegression,
            build=_linear_regression,
            summary="scaled numeric + one-hot categorical -> linear regression (SGD)",
            extra={"lr": 0.01},
        ),
        "hoeffding_tree_regressor": CatalogEntry(
            task="regression",
            estimator=tree.HoeffdingTreeRegressor,
            build=_hoeffding_tree_regressor,
            summary="Hoeffding tree regressor; linear models on the numeric features in leaves",
            choices=_REG_TREE_CHOICES,
        ),
        "adaptive_random_forest_regressor": CatalogEntry(
            task="regression",
            estimator=forest.ARFRegressor,
            build=_adaptive_random_forest_regressor,
            summary=f"adaptive random forest regressor (seed {DEFAULT_SEED} unless given)",
            choices={
                **_REG_TREE_CHOICES,
                **_MAX_FEATURES,
                "aggregation_method": tuple(forest.ARFRegressor._VALID_AGGREGATION_METHOD),
            },
        ),
    }
)
"""The named pipelines, by name. Names are unique across tasks."""


def catalog_names(task: str) -> tuple[str, ...]:
    """The names of the catalog pipelines for ``task``.

    >>> catalog_names("regression")
    ('linear_regression', 'hoeffding_tree_regressor', 'adaptive_random_forest_regressor')
    """
    task = _check_task(task)
    return tuple(name for name, entry in CATALOG.items() if entry.task == task)


def _all_names() -> str:
    return "; ".join(f"{task}: {', '.join(catalog_names(task))}" for task in TASKS)


def _check_task(task: str) -> str:
    """``task`` as a plain string (it may come as a ``str`` enum member)."""
    if task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(map(repr, TASKS))}, got {task!r}")
    return TASKS[TASKS.index(task)]


# ---------------------------------------------------------------------------------------------
# building


def build_pipeline(
    spec: PipelineSpec,
    *,
    task: str,
    numeric: Sequence[str],
    categorical: Sequence[str],
    classes: Sequence | None = None,
) -> base.Estimator:
    """A fresh, untrained river estimator for ``spec``, fed the schema's features.

    ``numeric`` names the number, integer and boolean features, ``categorical`` the category and
    string ones. Features outside both lists are ignored by catalog pipelines; nullable features
    with no value are absent from the feature dict and handled as missing.

    ``classes`` are the labels a classification model declares, if it does (None: any labels).
    With exactly two, ``logistic_regression`` is one binary model (``classes[0]`` learnt as the
    positive class) instead of one-vs-rest, at half the cost; its answers have both classes, in
    the order of ``classes`` (an empty ``proba`` until it has learnt a label, as before). Other
    catalog pipelines ignore ``classes``, and factories are not given them.

    A factory spec imports and calls ``module:function`` with the spec's params, plus ``task``,
    ``numeric`` and ``categorical`` for those of them the function names as parameters. **A
    factory is trusted code**: it runs in the serving process with its rights, so only the
    operator's config may name one, never a client request. It must return an estimator with
    ``learn_one`` and ``predict_one`` that pickles (snapshots are pickles) and, for replicas and
    recovery to agree, is deterministic: seed every random component.

    Examples
    --------

    >>> spec = PipelineSpec.from_config({"name": "logistic_regression", "l2": 0.001})
    >>> model = build_pipeline(spec, task="classification", numeric=["age"], categorical=["city"])
    >>> model.learn_one({"age": 30, "city": "Oslo"}, "yes")
    >>> model.predict_proba_one({"age": 41})
    {'yes': 1.0}
    >>> model = build_pipeline(
    ...     spec, task="classification", numeric=["age"], categorical=[], classes=["yes", "no"]
    ... )
    >>> model.predict_proba_one({"age": 41})
    {}
    >>> model.learn_one({"age": 30}, "yes")
    >>> list(model.predict_proba_one({"age": 41}))
    ['yes', 'no']

    """
    task = _check_task(task)
    numeric = _names("numeric", numeric)
    categorical = _names("categorical", categorical)
    if both := sorted(set(numeric) & set(categorical)):
        raise ConfigError(f"features {both} are listed as both numeric and categorical")
    classes = _check_classes(classes, task)
    if spec.factory is not None:
        return _build_from_factory(spec, task, numeric, categorical)
    return _build_from_catalog(spec, task, numeric, categorical, classes)


def _check_classes(classes: Sequence | None, task: str) -> tuple | None:
    if classes is None:
        return None
    if isinstance(classes, str | bytes) or not isinstance(classes, Sequence):
        raise TypeError(f"classes must be a sequence of labels, got {classes!r}")
    if task != "classification":
        raise ConfigError(f"classes are for classification models, not {task}")
    classes = tuple(classes)
    if not classes:
        raise ConfigError("classes must not be empty; leave them out to accept any label")
    if len(classes) == 2:
        first, second = classes
        try:
            hash(first), hash(second)
        except TypeError:
            raise ConfigError(
                f"classes must be labels (hashable values), got {classes!r}"
            ) from None
        if first == second:
            raise ConfigError(
                f"classes {first!r} and {second!r} are the same label to a model (equal as keys "
                "of a dict); declare two distinct classes"
            )
    return classes


def _names(what: str, names: Sequence[str]) -> tuple[str, ...]:
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise TypeError(f"{what} must be a sequence of feature names, got {names!r}")
    return tuple(dict.fromkeys(names))


def _build_from_catalog(
    spec: PipelineSpec,
    task: str,
    numeric: tuple[str, ...],
    categorical: tuple[str, ...],
    classes: tuple | None,
) -> base.Estimator:
    assert spec.name is not None
    entry = CATALOG.get(spec.name)
    if entry is None or entry.task != task:
        hint = f" ({spec.name!r} is a {entry.task} pipeline)" if entry is not None else ""
        raise ConfigError(
            f"unknown {task} pipeline {spec.name!r}{hint}; "
            f"choose one of: {', '.join(catalog_names(task))}"
        )
    params = _check_params(spec.name, entry, dict(spec.params))
    try:
        return entry.build(params, numeric, categorical, classes)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"pipeline {spec.name!r}: invalid parameters {params}: {exc}") from exc


def _check_params(name: str, entry: CatalogEntry, params: dict[str, Any]) -> dict[str, Any]:
    accepted = entry._parameters()
    for key, value in params.items():
        if key not in accepted:
            raise ConfigError(
                f"pipeline {name!r} has no parameter {key!r}; it accepts: "
                + (", ".join(sorted(accepted)) or "none")
                + (
                    " (objects such as optimizers are built in a factory)"
                    if key in _NOT_FROM_SPEC
                    else ""
                )
            )
        default, annotation = accepted[key]
        _check_param_value(name, key, value, default, annotation, entry.choices.get(key))
    if "seed" in accepted:
        # Replicas must build identical models: a forest without a seed is not reproducible.
        seed = params.setdefault("seed", DEFAULT_SEED)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ConfigError(f"pipeline {name!r}: 'seed' must be an integer, got {seed!r}")
    if "lr" in params and not (_is_number(params["lr"]) and params["lr"] > 0):
        raise ConfigError(
            f"pipeline {name!r}: 'lr' must be a positive number, got {params['lr']!r}"
        )
    return params


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# river annotations (strings, as river uses postponed evaluation) of numeric parameters
_NUMBER_ANNOTATIONS = frozenset({"int", "float", "int | None", "float | None"})


def _check_param_value(
    name: str, key: str, value: Any, default: Any, annotation: str, choices: tuple | None
) -> None:
    where = f"pipeline {name!r}: parameter {key!r}"
    if choices is not None:
        if not (value in choices or (key == "max_features" and _is_number(value))):
            raise ConfigError(
                f"{where} must be one of {', '.join(map(repr, choices))}, got {value!r}"
            )
    elif isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
    elif _is_number(default) or annotation in _NUMBER_ANNOTATIONS:
        if not (_is_number(value) or (value is None and default is None)):
            raise ConfigError(f"{where} must be a number, got {value!r}")


def _build_from_factory(
    spec: PipelineSpec, task: str, numeric: tuple[str, ...], categorical: tuple[str, ...]
) -> Any:
    ref = spec.factory
    assert ref is not None
    fn = _import_factory(ref)
    params = dict(spec.params)
    if reserved := sorted(set(params) & set(_CONTEXT_KWARGS)):
        raise ConfigError(
            f"factory {ref!r}: {reserved} are passed by onlearn from the model's schema and task; "
            "remove them from the spec"
        )
    context = {"task": task, "numeric": numeric, "categorical": categorical}
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins and C functions have none
        kwargs = params
    else:
        named = {
            name
            for name, p in signature.parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        }
        kwargs = {**params, **{k: v for k, v in context.items() if k in named}}
        try:
            signature.bind(**kwargs)
        except TypeError as exc:
            accepted = ", ".join(sorted(named - set(_CONTEXT_KWARGS))) or "none"
            raise ConfigError(
                f"factory {ref!r} cannot be called with parameters {sorted(params)}: {exc}; "
                f"it accepts: {accepted}"
            ) from exc
    try:
        model = fn(**kwargs)
    except Exception as exc:
        raise ConfigError(f"factory {ref!r} failed: {type(exc).__name__}: {exc}") from exc
    missing = [m for m in ("learn_one", "predict_one") if not callable(getattr(model, m, None))]
    if missing:
        raise ConfigError(
            f"factory {ref!r} returned {type(model).__name__}, which has no {' or '.join(missing)}; "
            "it must return a river estimator"
        )
    try:
        pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise ConfigError(
            f"factory {ref!r} returned a model that cannot be pickled ({exc}); snapshots pickle "
            "the model, so use module-level classes and functions, not lambdas or closures"
        ) from exc
    return model


def _import_factory(ref: str) -> Callable[..., Any]:
    module_name, _, attr_path = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"factory {ref!r}: cannot import module {module_name!r}: {exc}") from exc
    for attr in attr_path.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise ConfigError(
                f"factory {ref!r}: module {module_name!r} has no attribute {attr_path!r}"
            ) from None
    if not callable(obj):
        raise ConfigError(f"factory {ref!r} is a {type(obj).__name__}, not a function")
    return obj
