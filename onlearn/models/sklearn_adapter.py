"""scikit-learn classifiers behind river's interface, for batch refits and as online models.

Two adapters, both river classifiers (``learn_one``, ``predict_proba_one``, ``predict_one``)
that pickle and are deterministic (every ``random_state`` left as None gets
:data:`~onlearn.models.DEFAULT_SEED`, on a clone: the estimator given stays as it was):

- :class:`SklearnIncremental` wraps an estimator with ``partial_fit`` (``SGDClassifier`` with
  ``loss="log_loss"``, ``MultinomialNB``, ...): it learns one label at a time online and in
  mini-batches (``learn_many``) in a refit.
- :class:`SklearnBatch` wraps a batch-only estimator (``HistGradientBoostingClassifier``,
  ``RandomForestClassifier``, ...): ``fit_many`` trains it once; online it is served as it is,
  and ``learn_one`` only counts the labels it could not use until the next refit.

Features become one row of floats in a fixed column order: first ``features`` (numbers; a
missing or None value is 0.0, a boolean 0.0 or 1.0), then one column per value of each
categorical feature's vocabulary, ``categories`` (one-hot; a value outside the vocabulary, or a
missing one, is all zeros). Features in neither are ignored. Zero is a choice, not an
imputation: give the schema a default or a ``min`` if zero means something for a feature.

Labels are the user's ``classes``; the estimator sees their indices, so answers are keyed by the
user's labels, in ``classes`` order, with every class present (0.0 for a class a batch
estimator never saw in training). Before any training the answer is ``{}``, as river's.

In a config, :func:`sklearn_from_spec` builds one from a table::

    { sklearn = "sklearn.linear_model:SGDClassifier", params = { loss = "log_loss" } }
    { sklearn = "sklearn.ensemble:HistGradientBoostingClassifier", incremental = false }

Only ``sklearn.*`` classes are accepted there; arbitrary code goes through a trusted
``factory`` (see :func:`onlearn.models.build_pipeline`).

>>> from sklearn.linear_model import SGDClassifier
>>> model = SklearnIncremental(
...     SGDClassifier(loss="log_loss"), features=["size"], classes=["small", "big"],
...     categories={"colour": ["red", "blue"]},
... )
>>> model.predict_proba_one({"size": 3.0})
{}
>>> model.learn_one({"size": 1.0, "colour": "blue"}, "small")
>>> model.learn_one({"size": 9.0, "colour": "red"}, "big")
>>> model.predict_one({"size": 10.0, "colour": "red"})
'big'
>>> list(model.predict_proba_one({"size": 1.0}))
['small', 'big']
"""

from __future__ import annotations

import importlib
import inspect
import math
import re
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from river import base

from onlearn.errors import ConfigError
from onlearn.models.catalog import DEFAULT_SEED

__all__ = ["SklearnBatch", "SklearnIncremental", "sklearn_from_spec"]

DEFAULT_BATCH_SIZE = 256

_SPEC_KEYS = ("sklearn", "params", "incremental", "batch_size")
_PATH_RE = re.compile(r"^sklearn(\.[A-Za-z]\w*)*:[A-Za-z]\w*$")


class _SklearnClassifier(base.Classifier):
    """What both adapters share: the row encoding, the label indices, the answers."""

    def __init__(
        self,
        estimator: Any,
        features: Sequence[str],
        classes: Sequence[Hashable],
        categories: Mapping[str, Sequence[Hashable]] | None = None,
    ) -> None:
        _check_estimator(estimator)
        self.estimator = estimator
        self.features = _feature_names(features)
        self.classes = _classes(classes)
        self.categories = _categories(categories, self.features)
        if not self.features and not self.categories:
            raise ConfigError("a scikit-learn model needs at least one feature")
        self._class_index = {label: i for i, label in enumerate(self.classes)}
        # one-hot columns after the numeric ones, in the order of ``categories``
        keys = [(n, _category_key(v)) for n, values in self.categories.items() for v in values]
        self._columns = {key: len(self.features) + j for j, key in enumerate(keys)}
        self._width = len(self.features) + len(keys)
        self._model = _seeded_clone(estimator)
        self._fitted = False

    # -- rows and labels ---------------------------------------------------------------------

    def _matrix(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        X = np.zeros((len(rows), self._width), dtype=np.float64)
        columns = self._columns
        for i, x in enumerate(rows):
            for j, name in enumerate(self.features):
                value = x.get(name)
                if value is not None:
                    X[i, j] = float(value)
            for name in self.categories:
                value = x.get(name)
                if value is None:
                    continue
                try:
                    j = columns.get((name, _category_key(value)))
                except TypeError:  # unhashable (a list): not in the vocabulary
                    continue
                if j is not None:
                    X[i, j] = 1.0
        return X

    def _label_indices(self, labels: Sequence[Hashable]) -> np.ndarray:
        index = self._class_index
        try:
            return np.fromiter((index[y] for y in labels), dtype=np.int64, count=len(labels))
        except (KeyError, TypeError):
            unknown = next(y for y in labels if not _hashable(y) or y not in index)
            raise ValueError(
                f"label {unknown!r} is not one of the model's classes {list(self.classes)}"
            ) from None

    # -- answers -----------------------------------------------------------------------------

    def predict_proba_one(self, x: Mapping[str, Any], **kwargs: Any) -> dict[Hashable, float]:
        if not self._fitted:
            return {}
        return self._answers(self._model.predict_proba(self._matrix([x])))[0]

    def predict_proba_many(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[Hashable, float]]:
        """``[predict_proba_one(x) for x in rows]`` in one call to the estimator.

        The same numbers up to the last bit: a matrix product may sum in another order than one
        row's. Much faster for forests, whose one-row predictions cost milliseconds.
        """
        rows = list(rows)
        if not self._fitted:
            return [{} for _ in rows]
        if not rows:
            return []
        return self._answers(self._model.predict_proba(self._matrix(rows)))

    def _answers(self, probas: np.ndarray) -> list[dict[Hashable, float]]:
        classes = self.classes
        present = [classes[int(i)] for i in self._model.classes_]
        if len(present) == len(classes):
            return [dict(zip(present, map(float, p), strict=True)) for p in probas]
        out = []
        for p in probas:
            answer = dict.fromkeys(classes, 0.0)
            answer.update(zip(present, map(float, p), strict=True))
            out.append(answer)
        return out

    @property
    def fitted(self) -> bool:
        """Whether the estimator has learnt anything (before that, answers are ``{}``)."""
        return self._fitted

    @property
    def _multiclass(self) -> bool:
        return len(self.classes) > 2


class SklearnIncremental(_SklearnClassifier):
    """A scikit-learn classifier with ``partial_fit``, learning one label or a batch at a time.

    ``batch_size`` is the size of the mini-batches of ``learn_many``. Equal calls give equal
    models: ``learn_many`` over the same rows in the same order, or ``learn_one`` row by row,
    each deterministic (the two differ from each other, as mini-batch and online SGD do).
    """

    def __init__(
        self,
        estimator: Any,
        features: Sequence[str],
        classes: Sequence[Hashable],
        categories: Mapping[str, Sequence[Hashable]] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        if not callable(getattr(estimator, "partial_fit", None)):
            raise TypeError(
                f"{type(estimator).__name__} has no partial_fit; wrap a batch-only estimator "
                "in SklearnBatch"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        super().__init__(estimator, features, classes, categories)
        self.batch_size = batch_size
        self._all_classes = np.arange(len(self.classes))

    def learn_one(self, x: Mapping[str, Any], y: Hashable) -> None:
        self._partial_fit(self._matrix([x]), self._label_indices([y]))

    def learn_many(
        self,
        rows: Sequence[Mapping[str, Any]],
        labels: Sequence[Hashable],
        weights: Sequence[float] | None = None,
    ) -> None:
        """Learn from ``rows`` and their ``labels`` in mini-batches of ``batch_size``, in order.

        ``weights``: importance weights (onlearn/weights.py), given to ``partial_fit`` as
        ``sample_weight`` when it takes one; ignored when all are 1 or it does not."""
        rows, labels = list(rows), list(labels)
        if len(rows) != len(labels):
            raise ValueError(f"{len(rows)} rows but {len(labels)} labels")
        y = self._label_indices(labels)
        w = _sample_weight(self._model, "partial_fit", weights, len(rows))
        for start in range(0, len(rows), self.batch_size):
            stop = start + self.batch_size
            chunk = None if w is None else w[start:stop]
            self._partial_fit(self._matrix(rows[start:stop]), y[start:stop], chunk)

    def _partial_fit(self, X: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> None:
        kwargs = {} if w is None else {"sample_weight": w}
        if self._fitted:
            self._model.partial_fit(X, y, **kwargs)
        else:
            self._model.partial_fit(X, y, classes=self._all_classes, **kwargs)
            self._fitted = True


class SklearnBatch(_SklearnClassifier):
    """A batch-only scikit-learn classifier: trained by ``fit_many``, served as it is.

    ``learn_one`` learns nothing (the log keeps the label for the next refit) and counts the
    labels so left, ``ignored_labels``.
    """

    def __init__(
        self,
        estimator: Any,
        features: Sequence[str],
        classes: Sequence[Hashable],
        categories: Mapping[str, Sequence[Hashable]] | None = None,
    ) -> None:
        super().__init__(estimator, features, classes, categories)
        self._ignored = 0

    def fit_many(
        self,
        rows: Sequence[Mapping[str, Any]],
        labels: Sequence[Hashable],
        weights: Sequence[float] | None = None,
    ) -> None:
        """Train from scratch on ``rows`` and ``labels``; what was learnt before is forgotten.

        ``weights``: importance weights, passed as ``sample_weight`` when ``fit`` takes one
        (ignored when all are 1 or it does not)."""
        rows, labels = list(rows), list(labels)
        if len(rows) != len(labels):
            raise ValueError(f"{len(rows)} rows but {len(labels)} labels")
        if not rows:
            raise ValueError("fit_many needs at least one row")
        model = _seeded_clone(self.estimator)
        w = _sample_weight(model, "fit", weights, len(rows))
        kwargs = {} if w is None else {"sample_weight": w}
        model.fit(self._matrix(rows), self._label_indices(labels), **kwargs)
        self._model = model
        self._fitted = True
        self._ignored = 0

    def learn_one(self, x: Mapping[str, Any], y: Hashable) -> None:
        self._ignored += 1

    @property
    def ignored_labels(self) -> int:
        """Labels seen by ``learn_one`` since the last ``fit_many``, waiting for a refit."""
        return self._ignored


# ---------------------------------------------------------------------------------------------
# from a config table


def sklearn_from_spec(
    spec: Mapping[str, Any],
    features: Sequence[str],
    classes: Sequence[Hashable],
    categories: Mapping[str, Sequence[Hashable]] | None = None,
) -> SklearnIncremental | SklearnBatch:
    """The adapter a config table describes.

    ``sklearn`` names the class as ``"sklearn.module:Class"``; ``params`` are its constructor
    parameters (config values only); ``incremental`` says which adapter (default: whether the
    class has ``partial_fit``); ``batch_size`` is for incremental ones. Every mistake raises
    :class:`~onlearn.errors.ConfigError` naming the entry.

    >>> model = sklearn_from_spec(
    ...     {"sklearn": "sklearn.naive_bayes:MultinomialNB", "params": {"alpha": 0.5}},
    ...     features=["a", "b"], classes=[True, False],
    ... )
    >>> type(model).__name__, model.estimator
    ('SklearnIncremental', MultinomialNB(alpha=0.5))
    >>> sklearn_from_spec({"sklearn": "sklearn.svm:SVC"}, features=["a"], classes=[0, 1])
    Traceback (most recent call last):
    ...
    onlearn.errors.ConfigError: sklearn estimator 'sklearn.svm:SVC' has no predict_proba with these params; onlearn serves class probabilities (SGDClassifier needs loss = "log_loss" or "modified_huber", SVC probability = true)
    """
    if not isinstance(spec, Mapping):
        raise ConfigError(
            'a scikit-learn model is a table such as { sklearn = "sklearn.linear_model:'
            f'SGDClassifier", params = {{ loss = "log_loss" }} }}, got {type(spec).__name__}'
        )
    path = spec.get("sklearn")
    if not isinstance(path, str) or not _PATH_RE.match(path):
        raise ConfigError(
            f"'sklearn' must name a scikit-learn class as 'sklearn.module:Class' (public names "
            f"only), got {path!r}; other code goes in a trusted 'factory' pipeline"
        )
    where = f"sklearn estimator {path!r}"
    if unknown := sorted(set(spec) - set(_SPEC_KEYS)):
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; a table takes {_SPEC_KEYS}")
    params = spec.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
        raise ConfigError(f"{where}: 'params' must be a table of parameter names, got {params!r}")
    for key, value in params.items():
        _check_config_value(where, key, value)
    cls = _import_estimator(path, where)
    try:
        estimator = cls(**dict(params))
    except TypeError as exc:
        accepted = ", ".join(sorted(cls._get_param_names())) or "none"
        raise ConfigError(
            f"{where}: invalid params {dict(params)}: {exc}; it accepts: {accepted}"
        ) from exc
    validate = getattr(estimator, "_validate_params", None)
    if callable(validate):  # scikit-learn checks values only at fit; check them now
        try:
            validate()
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: invalid params: {exc}") from exc
    if not callable(getattr(estimator, "predict_proba", None)):
        raise ConfigError(
            f"{where} has no predict_proba with these params; onlearn serves class "
            'probabilities (SGDClassifier needs loss = "log_loss" or "modified_huber", SVC '
            "probability = true)"
        )
    has_partial_fit = callable(getattr(estimator, "partial_fit", None))
    incremental = spec.get("incremental", has_partial_fit)
    if not isinstance(incremental, bool):
        raise ConfigError(f"{where}: 'incremental' must be true or false, got {incremental!r}")
    if incremental and not has_partial_fit:
        raise ConfigError(
            f"{where} has no partial_fit, so it cannot learn incrementally; "
            "set incremental = false to refit it in batch"
        )
    batch_size = spec.get("batch_size", DEFAULT_BATCH_SIZE)
    if not incremental and "batch_size" in spec:
        raise ConfigError(f"{where}: 'batch_size' is for incremental estimators only")
    try:
        if incremental:
            return SklearnIncremental(estimator, features, classes, categories, batch_size)
        return SklearnBatch(estimator, features, classes, categories)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _import_estimator(path: str, where: str) -> type:
    from sklearn.base import BaseEstimator, ClassifierMixin

    module_name, _, name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{where}: cannot import module {module_name!r}: {exc}") from exc
    cls = getattr(module, name, None)
    if cls is None:
        raise ConfigError(f"{where}: module {module_name!r} has no attribute {name!r}")
    if not isinstance(cls, type) or not issubclass(cls, BaseEstimator):
        raise ConfigError(f"{where} is not a scikit-learn estimator class")
    if not issubclass(cls, ClassifierMixin):
        raise ConfigError(f"{where} is not a classifier; onlearn's scikit-learn models classify")
    return cls


def _check_config_value(where: str, key: str, value: Any) -> None:
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{where}: parameter {key!r} must be finite, got {value!r}")
        return
    if isinstance(value, list | tuple):
        for item in value:
            _check_config_value(where, key, item)
        return
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        for item in value.values():
            _check_config_value(where, key, item)
        return
    raise ConfigError(
        f"{where}: parameter {key!r} must be a config value (string, number, boolean, list or "
        f"table), got {type(value).__name__}; build objects in a factory instead"
    )


# ---------------------------------------------------------------------------------------------
# helpers


def _check_estimator(estimator: Any) -> None:
    if not callable(getattr(estimator, "get_params", None)) or isinstance(estimator, type):
        raise TypeError(f"expected a scikit-learn estimator instance, got {estimator!r}")
    if not callable(getattr(estimator, "predict_proba", None)):
        raise TypeError(
            f"{type(estimator).__name__} (with these params) has no predict_proba; onlearn "
            "serves class probabilities"
        )


def _sample_weight(
    model: Any, method: str, weights: Sequence[float] | None, n: int
) -> np.ndarray | None:
    """``weights`` as scikit-learn's ``sample_weight`` for ``model.method``, or None: no
    weights, all 1 (the unweighted call, bit for bit), or a method without ``sample_weight``."""
    if weights is None:
        return None
    w = np.asarray(list(weights), dtype=float)
    if len(w) != n:
        raise ValueError(f"{n} rows but {len(w)} weights")
    if (w == 1.0).all():
        return None
    try:
        takes = "sample_weight" in inspect.signature(getattr(model, method)).parameters
    except (TypeError, ValueError):
        takes = False
    return w if takes else None


def _seeded_clone(estimator: Any) -> Any:
    """An unfitted copy of ``estimator`` with every unset ``random_state`` fixed."""
    from sklearn.base import clone

    model = clone(estimator)
    seeds = {
        key: DEFAULT_SEED
        for key, value in model.get_params(deep=True).items()
        if value is None and (key == "random_state" or key.endswith("__random_state"))
    }
    if seeds:
        model.set_params(**seeds)
    return model


def _feature_names(features: Sequence[str]) -> tuple[str, ...]:
    if isinstance(features, str) or not all(isinstance(f, str) for f in features):
        raise TypeError(f"features must be a sequence of feature names, got {features!r}")
    return tuple(dict.fromkeys(features))


def _classes(classes: Sequence[Hashable]) -> tuple:
    if isinstance(classes, str | bytes) or not isinstance(classes, Sequence):
        raise TypeError(f"classes must be a sequence of labels, got {classes!r}")
    classes = tuple(classes)
    if len(classes) < 2:
        raise ConfigError(f"a classifier needs at least two classes, got {list(classes)}")
    if not all(map(_hashable, classes)):
        raise ConfigError(f"classes must be labels (hashable values), got {list(classes)}")
    if len(set(classes)) != len(classes):
        raise ConfigError(
            f"classes {list(classes)} hold labels that are equal as dict keys (such as 1 and "
            "true); declare distinct classes"
        )
    return classes


def _categories(
    categories: Mapping[str, Sequence[Hashable]] | None, features: tuple[str, ...]
) -> dict[str, tuple]:
    if categories is None:
        return {}
    if not isinstance(categories, Mapping):
        raise TypeError(f"categories must map feature names to values, got {categories!r}")
    out = {}
    for name, values in categories.items():
        if not isinstance(name, str):
            raise TypeError(f"categorical feature names must be strings, got {name!r}")
        if name in features:
            raise ConfigError(f"feature {name!r} is given both as numeric and as categorical")
        if isinstance(values, str | bytes) or not isinstance(values, Sequence):
            raise TypeError(f"the categories of {name!r} must be a sequence, got {values!r}")
        if not all(map(_hashable, values)):
            raise ConfigError(f"the categories of {name!r} must be hashable values")
        keys: dict[tuple[bool, Hashable], Hashable] = {}
        for value in values:
            keys.setdefault(_category_key(value), value)
        out[name] = tuple(keys.values())
    return out


def _category_key(value: Hashable) -> tuple[bool, Hashable]:
    # true and 1 are different category values (as in the schema), though equal as dict keys
    return (value.__class__ is bool, value)


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True
