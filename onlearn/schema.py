"""Feature schema: declare the features a model takes, validate requests, infer from a sample.

A :class:`Schema` is declared in the config (``[models.<name>.features]``), checks every predict
and feedback request on the hot path, and says which features are numeric and which are
categorical so that a pipeline can be built for it. :func:`infer_schema_from_csv` drafts one from
a CSV file and :func:`schema_to_toml` prints it as a config snippet to review and paste.
"""

from __future__ import annotations

import csv
import difflib
import enum
import hashlib
import itertools
import json
import math
import numbers
import operator
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onlearn.errors import ConfigError, FieldError, SchemaViolation

__all__ = [
    "Feature",
    "FeatureType",
    "Schema",
    "UnknownFields",
    "infer_schema",
    "infer_schema_from_csv",
    "infer_task",
    "infer_task_from_csv",
    "schema_to_toml",
]


class FeatureType(str, enum.Enum):  # noqa: UP042 - the convention of records.py
    """The JSON value a feature takes, and how a pipeline treats it."""

    NUMBER = "number"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    CATEGORY = "category"
    STRING = "string"


class UnknownFields(str, enum.Enum):  # noqa: UP042
    """What validation does with a field the schema does not declare."""

    REJECT = "reject"
    DROP = "drop"


_NUMERIC = (FeatureType.NUMBER, FeatureType.INTEGER, FeatureType.BOOLEAN)
_CATEGORICAL = (FeatureType.CATEGORY, FeatureType.STRING)
_BOUNDED = (FeatureType.NUMBER, FeatureType.INTEGER)
_FEATURE_KEYS = ("type", "nullable", "min", "max", "values")
_TYPE_NAMES = ", ".join(t.value for t in FeatureType)
# Names people write from habit; only used to suggest the right one in an error.
_TYPE_ALIASES = {
    "int": "integer",
    "float": "number",
    "double": "number",
    "numeric": "number",
    "bool": "boolean",
    "str": "string",
    "text": "string",
    "categorical": "category",
    "enum": "category",
}


@dataclass(frozen=True)
class Feature:
    """One declared feature. ``min``/``max`` (inclusive) apply to numbers and integers only;
    ``values`` lists the allowed values of a category (any value is allowed when it is None).

    Invalid declarations raise :class:`ConfigError` naming the feature and the problem.
    """

    name: str
    type: FeatureType
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    values: tuple | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"feature names must be non-empty strings, got {self.name!r}")
        where = f"feature {self.name!r}"
        if not isinstance(self.type, FeatureType):
            try:
                object.__setattr__(self, "type", FeatureType(self.type))
            except ValueError:
                hint = _did_you_mean(self.type, [t.value for t in FeatureType], _TYPE_ALIASES)
                raise ConfigError(
                    f"{where}: unknown type {self.type!r}{hint}; use one of {_TYPE_NAMES}"
                ) from None
        if not isinstance(self.nullable, bool):
            raise ConfigError(f"{where}: nullable must be true or false, got {self.nullable!r}")
        for key in ("min", "max"):
            bound = getattr(self, key)
            if bound is None:
                continue
            if self.type not in _BOUNDED:
                raise ConfigError(
                    f"{where}: {key} applies to number and integer features only, "
                    f"not to a {self.type.value}"
                )
            if isinstance(bound, bool) or not isinstance(bound, int | float):
                raise ConfigError(f"{where}: {key} must be a number, got {bound!r}")
            if not math.isfinite(bound):
                raise ConfigError(f"{where}: {key} must be a finite number, got {bound!r}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ConfigError(f"{where}: min ({self.min}) must be <= max ({self.max})")
        if self.values is not None:
            if self.type is not FeatureType.CATEGORY:
                raise ConfigError(
                    f"{where}: values applies to category features only, not to a {self.type.value}"
                )
            if not isinstance(self.values, list | tuple):  # ordered: a set would vary by run
                raise ConfigError(f"{where}: values must be a list, got {self.values!r}")
            values = tuple(self.values)
            if not values:
                raise ConfigError(
                    f"{where}: values must list at least one value (leave it out to allow any)"
                )
            seen = set()
            for v in values:
                if not isinstance(v, str | int):  # bool is an int
                    raise ConfigError(
                        f"{where}: values must be strings, integers or booleans, got {v!r}"
                    )
                key = (type(v) is bool, v)  # true and 1 are different JSON values
                if key in seen:
                    raise ConfigError(f"{where}: value {v!r} is listed twice in values")
                seen.add(key)
            object.__setattr__(self, "values", values)

    def to_config(self) -> dict[str, Any]:
        """The table form of this feature, with only the keys that differ from the defaults."""
        out: dict[str, Any] = {"type": self.type.value}
        if self.nullable:
            out["nullable"] = True
        if self.min is not None:
            out["min"] = self.min
        if self.max is not None:
            out["max"] = self.max
        if self.values is not None:
            out["values"] = list(self.values)
        return out


@dataclass(frozen=True)
class Schema:
    """The features a model takes, checked on every request.

    ``validate`` returns the cleaned features or raises :class:`SchemaViolation` listing every
    broken rule, each as a :class:`FieldError` that names the field and the rule:

    >>> schema = Schema.from_config(
    ...     {
    ...         "age": {"type": "integer", "min": 0, "max": 130},
    ...         "income": {"type": "number", "nullable": True},
    ...         "color": {"type": "category", "values": ["red", "blue"]},
    ...     }
    ... )
    >>> clean = schema.validate({"age": 42.0, "color": "red"})
    >>> clean
    {'age': 42, 'income': None, 'color': 'red'}
    >>> schema.model_input(clean)
    {'age': 42, 'color': 'red'}
    >>> try:
    ...     schema.validate({"age": 200, "income": "high", "colour": "red"})
    ... except SchemaViolation as e:
    ...     for error in e.errors:
    ...         print(error.loc, error.rule, "|", error.msg)
    ('age',) max | age must be <= 130, got 200
    ('income',) type | income must be a number, got 'high' (a string)
    ('color',) missing | color is required but missing
    ('colour',) unknown | colour is not in the schema (did you mean color?); known fields: age, income, color
    >>> schema.numeric, schema.categorical
    (('age', 'income'), ('color',))
    """

    features: tuple[Feature, ...]
    unknown_fields: UnknownFields = UnknownFields.REJECT

    def __post_init__(self) -> None:
        features = tuple(self.features)
        if not features:
            raise ConfigError("a schema declares at least one feature")
        for f in features:
            if not isinstance(f, Feature):
                raise ConfigError(f"schema features must be Feature objects, got {f!r}")
        names = [f.name for f in features]
        for name in names:
            if names.count(name) > 1:
                raise ConfigError(f"feature {name!r} is declared twice")
        try:
            unknown_fields = UnknownFields(self.unknown_fields)
        except ValueError:
            raise ConfigError(
                f"unknown_fields must be 'reject' or 'drop', got {self.unknown_fields!r}"
            ) from None
        object.__setattr__(self, "features", features)
        object.__setattr__(self, "unknown_fields", unknown_fields)
        # Compiled once: the hot path is one closure call per feature (see validate).
        full = [_full_checker(f) for f in features]
        object.__setattr__(self, "_full", tuple(zip(names, full, strict=True)))
        checks = tuple((f.name, _compile(f, c)) for f, c in zip(features, full, strict=True))
        object.__setattr__(self, "_checks", checks)
        columns = tuple(_compile_column(f, c) for f, (_, c) in zip(features, checks, strict=True))
        object.__setattr__(self, "_columns", columns)
        object.__setattr__(self, "_row_getter", operator.itemgetter(*names))
        object.__setattr__(self, "_nullable", any(f.nullable for f in features))
        object.__setattr__(self, "_known", frozenset(names))
        object.__setattr__(self, "_names", tuple(names))
        # What an unknown-field error lists of the known fields: at most _SHOW of them.
        shown = ", ".join(names[:_SHOW])
        if len(names) > _SHOW:
            shown += f", ... ({len(names)} in all)"
        object.__setattr__(self, "_shown", shown)
        object.__setattr__(self, "_numeric", tuple(f.name for f in features if f.type in _NUMERIC))
        object.__setattr__(
            self, "_categorical", tuple(f.name for f in features if f.type in _CATEGORICAL)
        )

    def __reduce__(self):
        # The compiled closures do not pickle; rebuild them from the fields.
        return (self.__class__, (self.features, self.unknown_fields))

    # -- config ------------------------------------------------------------------------------

    @classmethod
    def from_config(
        cls, features: Mapping[str, Mapping | str], unknown_fields: str = "reject"
    ) -> Schema:
        """Build a schema from its config form, e.g. the ``[models.<name>.features]`` table.

        Each entry is a table (``{ type = "integer", min = 0, nullable = true }``) or just the
        type name (``"integer"``). Raises :class:`ConfigError` naming the feature and the problem.
        """
        if not isinstance(features, Mapping):
            raise ConfigError(
                f"features must be a table of feature name to type, got {_describe(features)}"
            )
        declared = []
        for name, spec in features.items():
            if not isinstance(name, str):
                raise ConfigError(f"feature names must be strings, got {name!r}")
            if isinstance(spec, str):
                spec = {"type": spec}
            elif not isinstance(spec, Mapping):
                raise ConfigError(
                    f'feature {name!r}: expected a type name like "number" or a table like '
                    f'{{ type = "number" }}, got {spec!r}'
                )
            for key in spec:
                if key not in _FEATURE_KEYS:
                    hint = _did_you_mean(key, _FEATURE_KEYS)
                    raise ConfigError(
                        f"feature {name!r}: unknown key {key!r}{hint}; "
                        f"allowed keys: {', '.join(_FEATURE_KEYS)}"
                    )
            if "type" not in spec:
                raise ConfigError(f"feature {name!r}: type is missing; use one of {_TYPE_NAMES}")
            kwargs = {k: v for k, v in spec.items() if k != "type"}
            declared.append(Feature(name, spec["type"], **kwargs))
        return cls(tuple(declared), unknown_fields)

    def to_config(self) -> dict[str, Any]:
        """The config form: ``Schema.from_config(**schema.to_config()) == schema``."""
        return {
            "features": {f.name: f.to_config() for f in self.features},
            "unknown_fields": self.unknown_fields.value,
        }

    def fingerprint(self) -> str:
        """A short, stable hash of the schema: equal schemas give equal fingerprints, in any
        process. Bounds are hashed as floats, so ``min = 0`` and ``min = 0.0`` agree."""
        canonical = {
            "format": "onlearn.schema/1",
            "features": [
                [
                    f.name,
                    f.type.value,
                    f.nullable,
                    None if f.min is None else float(f.min),
                    None if f.max is None else float(f.max),
                    None if f.values is None else list(f.values),
                ]
                for f in self.features
            ],
            "unknown_fields": self.unknown_fields.value,
        }
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    # -- views -------------------------------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        """Names of all features, in declaration order."""
        return self._names

    @property
    def numeric(self) -> tuple[str, ...]:
        """Names of number, integer and boolean features (what a scaler takes)."""
        return self._numeric

    @property
    def categorical(self) -> tuple[str, ...]:
        """Names of category and string features (what a one-hot encoder takes)."""
        return self._categorical

    def __getitem__(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return name in self._known

    # -- validation --------------------------------------------------------------------------

    def validate(self, features: object, *, hints: bool = True) -> dict[str, Any]:
        """The cleaned features (every declared feature, absent nullable ones as None, numbers
        as float, integral floats of integer features as int), or :class:`SchemaViolation`
        listing every broken rule.

        ``hints=False`` words an unknown field without a "did you mean" (a fuzzy match against
        every known name, by far the dearest part of an error): for rows whose errors are only
        counted, past the errors an answer lists."""
        if features.__class__ is not dict and not isinstance(features, Mapping):
            raise SchemaViolation(
                [
                    FieldError(
                        (),
                        "type",
                        "features must be a JSON object of feature name to value, "
                        f"got {_describe(features)}",
                    )
                ]
            )
        # Hot path: the checkers return clean values and raise _Invalid on the first broken
        # rule; only then is everything checked again, slowly, to report every error.
        get = features.get
        clean = {}
        try:
            for name, check in self._checks:
                clean[name] = check(get(name, _MISSING))
        except _Invalid:
            raise SchemaViolation(self._errors(features, hints)) from None
        # All declared features are present (none is None) and there are as many keys: there is
        # no other key. Otherwise look for unknown keys.
        if len(features) != len(clean) or (self._nullable and None in clean.values()):
            if not features.keys() <= self._known:
                errors = self._extra_fields(features, hints)
                if errors:
                    raise SchemaViolation(errors)
        return clean

    def validate_columns(self, rows: Sequence[Any]) -> dict[str, Sequence[Any]] | None:
        """The clean values of ``rows`` column by column (feature -> values in row order) when
        every row is valid, else None: the caller then validates row by row, which words the
        errors and counts them. The values are those :meth:`validate` gives, row for row:

        >>> schema = Schema.from_config({"x": "number", "n": {"type": "integer", "max": 9}})
        >>> schema.validate_columns([{"x": 1, "n": 2}, {"x": 0.5, "n": 3.0}])
        {'x': [1.0, 0.5], 'n': [2, 3]}
        >>> schema.validate_columns([{"x": 1, "n": 10}]) is None
        True

        A batch is checked a column at a time: the types of a column in one pass
        (``set(map(type, ...))``), its bounds with ``min`` and ``max``, so the common batch
        (JSON numbers in range, strings, booleans) costs a few C loops instead of a Python call
        per value. A column that is not that plain goes through the feature's per-value checker,
        the one :meth:`validate` runs.
        """
        n = len(rows)
        names = self._names
        if not n:
            return {name: [] for name in names}
        if set(map(type, rows)) != {dict}:
            return None  # other mappings, or not mappings at all: row by row
        try:
            table = list(map(self._row_getter, rows))
        except KeyError:  # a feature is absent from a row (fine if it is nullable)
            table = None
        if table is None:
            columns: list[Sequence[Any]] = [[r.get(name, _MISSING) for r in rows] for name in names]
            extra = True
        else:
            columns = list(zip(*table, strict=True)) if len(names) > 1 else [table]
            # Every declared feature is in every row: a row with as many keys has no other.
            extra = set(map(len, rows)) != {len(names)}
        if extra:
            known = self._known
            for row in rows:
                if not row.keys() <= known:
                    if self.unknown_fields is UnknownFields.REJECT or not all(
                        isinstance(k, str) for k in row.keys() - known
                    ):
                        return None
        try:
            return {
                name: check(column)
                for name, check, column in zip(names, self._columns, columns, strict=True)
            }
        except _Invalid:
            return None

    def rows_of(self, columns: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
        """The rows of :meth:`validate_columns`'s columns: ``validate(row)`` of each row.

        >>> schema = Schema.from_config({"x": "number", "c": "category"})
        >>> schema.rows_of({"x": [1.0, 2.0], "c": ["a", "b"]})
        [{'x': 1.0, 'c': 'a'}, {'x': 2.0, 'c': 'b'}]
        """
        names = self._names
        return [
            dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)
        ]

    def _errors(self, features: Mapping, hints: bool = True) -> list[FieldError]:
        get = features.get
        errors = []
        for name, full in self._full:
            value = full(get(name, _MISSING))
            if value.__class__ is FieldError:
                errors.append(value)
        return errors + self._extra_fields(features, hints)

    def model_input(self, clean: Mapping[str, Any]) -> dict[str, Any]:
        """What the river model sees: the cleaned features without the None values (river
        treats an absent feature as missing). Booleans stay booleans. Always a new dict."""
        if None not in clean.values():
            return dict(clean)
        return {k: v for k, v in clean.items() if v is not None}

    def _extra_fields(self, features: Mapping, hints: bool = True) -> list[FieldError]:
        errors = []
        for key in features:
            if key in self._known:
                continue
            if not isinstance(key, str):
                errors.append(FieldError((), "type", f"feature names must be strings, got {key!r}"))
            elif self.unknown_fields is UnknownFields.REJECT:
                hint = _did_you_mean(key, self._names) if hints else ""
                errors.append(
                    FieldError(
                        (key,),
                        "unknown",
                        f"{key} is not in the schema{hint}; known fields: {self._shown}",
                    )
                )
        return errors


# -- per-feature checkers --------------------------------------------------------------------

_MISSING: Any = object()  # the feature is absent from the request (unlike an explicit null)
_FMAX = sys.float_info.max
_SHOW = 10  # how many names or values an error message lists


class _Invalid(Exception):
    """A fast checker met a value that breaks a rule; the full checkers word the errors."""


def _compile(f: Feature, full: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """The fast checker of one feature: value (or ``_MISSING``) -> clean value, or _Invalid.

    It takes the common, valid value in a comparison or two and hands anything else to
    ``checked`` (the full checker, which returns a clean value or a FieldError).
    """

    def checked(v):
        value = full(v)
        if value.__class__ is FieldError:
            raise _Invalid
        return value

    t = f.type
    if t is FeatureType.NUMBER:
        # Float bounds inside the finite range: one chained comparison checks the bounds and
        # sends NaN (never comparable) and infinities to the full checker.
        lo = -_FMAX if f.min is None else max(float(f.min), -_FMAX)
        hi = _FMAX if f.max is None else min(float(f.max), _FMAX)

        def check_number(v):
            c = v.__class__
            if c is float:
                if lo <= v <= hi:
                    return v
            elif c is int and lo <= v <= hi:
                return float(v)
            return checked(v)

        return check_number

    if t is FeatureType.INTEGER:
        if f.min is None and f.max is None:

            def check_integer(v):
                if v.__class__ is int and -_MAX_INT_AS_FLOAT <= v <= _MAX_INT_AS_FLOAT:
                    return v
                return checked(v)

            return check_integer

        lo = -math.inf if f.min is None else f.min
        hi = math.inf if f.max is None else f.max

        lo, hi = max(lo, -_MAX_INT_AS_FLOAT), min(hi, _MAX_INT_AS_FLOAT)

        def check_bounded_integer(v):
            if v.__class__ is int and lo <= v <= hi:
                return v
            return checked(v)

        return check_bounded_integer

    if t is FeatureType.BOOLEAN:

        def check_boolean(v):
            if v is True or v is False:
                return v
            return checked(v)

        return check_boolean

    if t is FeatureType.STRING:

        def check_string(v):
            if v.__class__ is str:
                return v
            return checked(v)

        return check_string

    if f.values is None:

        def check_category(v):
            c = v.__class__
            if c is str or c is int or c is bool:
                return v
            return checked(v)

        return check_category

    # bools are kept apart: True == 1 in a set, but true and 1 are different JSON values.
    allowed = frozenset(v for v in f.values if type(v) is not bool)

    def check_allowed(v):
        c = v.__class__
        if (c is str or c is int) and v in allowed:
            return v
        return checked(v)

    return check_allowed


def _compile_column(f: Feature, check: Callable[[Any], Any]) -> Callable[[Sequence], Sequence]:
    """The column checker of one feature: values (``_MISSING`` where absent) -> clean values,
    or _Invalid. It accepts a column only when ``check`` (the fast checker) would accept each of
    its values and return it as it is (or, for a number, ``float`` of it); every other column
    goes through ``check`` value by value, so the clean values are always ``check``'s.
    """

    def each(column: Sequence) -> list:
        return [check(v) for v in column]

    t = f.type
    if t is FeatureType.NUMBER:
        # The bounds of check_number, compared with the values as they are (ints exactly).
        lo = -_FMAX if f.min is None else max(float(f.min), -_FMAX)
        hi = _FMAX if f.max is None else min(float(f.max), _FMAX)

        def number_column(column: Sequence) -> Sequence:
            types = set(map(type, column))
            if types <= _INT_FLOAT:
                try:
                    total = sum(column)
                except OverflowError:  # an integer no float holds, next to floats
                    return each(column)
                # A NaN or an infinity makes the sum NaN or infinite; then min and max of
                # finite values are the bounds of the column.
                if total - total == 0.0 and lo <= min(column) and max(column) <= hi:
                    return column if types == _FLOAT else list(map(float, column))
            return each(column)

        return number_column

    if t is FeatureType.INTEGER:
        lo = -_MAX_INT_AS_FLOAT if f.min is None else max(f.min, -_MAX_INT_AS_FLOAT)
        hi = _MAX_INT_AS_FLOAT if f.max is None else min(f.max, _MAX_INT_AS_FLOAT)

        def integer_column(column: Sequence) -> Sequence:
            if set(map(type, column)) == _INT and lo <= min(column) and max(column) <= hi:
                return column
            return each(column)

        return integer_column

    if t is FeatureType.BOOLEAN:
        plain = _BOOL
    elif t is FeatureType.STRING:
        plain = _STR
    elif f.values is None:
        plain = _CATEGORY
    else:
        allowed = frozenset(v for v in f.values if type(v) is not bool)

        def allowed_column(column: Sequence) -> Sequence:
            if set(map(type, column)) <= _STR_INT and allowed.issuperset(column):
                return column
            return each(column)

        return allowed_column

    def plain_column(column: Sequence) -> Sequence:
        return column if set(map(type, column)) <= plain else each(column)

    return plain_column


_INT_FLOAT = frozenset({int, float})
_FLOAT = {float}
_INT = {int}
_BOOL = frozenset({bool})
_STR = frozenset({str})
_STR_INT = frozenset({str, int})
_CATEGORY = frozenset({str, int, bool})


def _full_checker(f: Feature) -> Callable[[Any], Any]:
    """The full checker of one feature: value (or ``_MISSING``) -> clean value or a FieldError
    that names the field and the rule."""
    name = f.name
    loc = (name,)
    nullable = f.nullable

    def bounds(v: Any, shown: Any) -> Any:
        if f.min is not None and v < f.min:
            return FieldError(loc, "min", f"{name} must be >= {f.min}, got {shown}")
        if f.max is not None and v > f.max:
            return FieldError(loc, "max", f"{name} must be <= {f.max}, got {shown}")
        return v

    def absent(v: Any) -> Any:
        if nullable:
            return None
        if v is _MISSING:
            return FieldError(loc, "missing", f"{name} is required but missing")
        return FieldError(loc, "null", f"{name} must not be null")

    def wrong_type(v: Any, expected: str) -> FieldError:
        return FieldError(loc, "type", f"{name} must be {expected}, got {_describe(v)}")

    if f.type is FeatureType.NUMBER:

        def full_number(v):
            if v is None or v is _MISSING:
                return absent(v)
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                return wrong_type(v, "a number")
            try:
                x = float(v)
            except OverflowError:
                x = math.inf
            if not math.isfinite(x):
                return FieldError(loc, "finite", f"{name} must be a finite number, got {v!r}")
            return bounds(x, v)

        return full_number

    if f.type is FeatureType.INTEGER:

        def full_integer(v):
            if v is None or v is _MISSING:
                return absent(v)
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                return wrong_type(v, "an integer")
            if isinstance(v, numbers.Integral):
                if abs(int(v)) > _MAX_INT_AS_FLOAT:
                    # Models compute in floats: an integer no float can hold would overflow them.
                    return FieldError(
                        loc, "finite", f"{name} must fit in a finite float, got {_short(v)}"
                    )
                return bounds(int(v), v)
            x = float(v)
            if not math.isfinite(x):
                return FieldError(loc, "finite", f"{name} must be a finite number, got {v!r}")
            if not x.is_integer():
                return wrong_type(v, "an integer")
            return bounds(int(x), v)

        return full_integer

    if f.type is FeatureType.BOOLEAN:

        def full_boolean(v):
            if v is True or v is False:
                return v
            if v is None or v is _MISSING:
                return absent(v)
            return wrong_type(v, "true or false")

        return full_boolean

    if f.type is FeatureType.STRING:

        def full_string(v):
            if v is None or v is _MISSING:
                return absent(v)
            if isinstance(v, str):
                return str(v)
            return wrong_type(v, "a string")

        return full_string

    values = f.values
    if values is not None:
        shown = ", ".join(_short(v) for v in values[:_SHOW])
        if len(values) > _SHOW:
            shown += f", ... ({len(values)} in all)"
        allowed = {(type(v) is bool, v) for v in values}

    def full_category(v):
        if v is None or v is _MISSING:
            return absent(v)
        if isinstance(v, str):
            v = str(v)
        elif isinstance(v, numbers.Integral) and not isinstance(v, bool):
            v = int(v)  # numpy's integers, for callers in-process
        elif not isinstance(v, bool):
            return wrong_type(v, "a string, an integer or a boolean")
        if values is not None and (type(v) is bool, v) not in allowed:
            return FieldError(loc, "allowed", f"{name} must be one of {shown}, got {_short(v)}")
        return v

    return full_category


def _short(v: Any, limit: int = 40) -> str:
    """A value as it would appear in JSON-ish text, cut to ``limit`` characters."""
    if v is True or v is False:
        return "true" if v else "false"
    if v is None:
        return "null"
    text = repr(v)
    if len(text) > limit:
        text = text[: limit - 4] + "...'" if isinstance(v, str) else text[: limit - 3] + "..."
    return text


def _describe(v: Any) -> str:
    """A value and its JSON kind, for 'must be X, got Y' messages."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"{_short(v)} (a boolean)"
    if isinstance(v, str):
        return f"{_short(v)} (a string)"
    if isinstance(v, numbers.Real):
        return _short(v)
    if isinstance(v, Mapping):
        return "an object"
    if isinstance(v, list | tuple):
        return "an array"
    return f"a {type(v).__name__}"


def _did_you_mean(
    word: object, choices: Iterable[str], aliases: Mapping[str, str] | None = None
) -> str:
    if not isinstance(word, str):
        return ""
    if aliases and word.lower() in aliases:
        return f" (did you mean {aliases[word.lower()]}?)"
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


# -- inference -------------------------------------------------------------------------------

_MISSING_TEXT = frozenset({"", "na", "null", "none", "nan"})
_BOOLEAN_TEXT = frozenset({"true", "false", "yes", "no"})
# No leading zeros: "02139" is a code (a zip code, an id), not the number 2139.
_INT_RE = re.compile(r"[+-]?(?:0|[1-9][0-9]*)")
_FLOAT_RE = re.compile(r"[+-]?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class _Column:
    __slots__ = ("present", "ints", "numbers", "booleans", "counts", "overflow")

    def __init__(self) -> None:
        self.present = 0
        self.ints = self.numbers = self.booleans = True
        self.counts: dict[str, int] = {}
        self.overflow = False  # more distinct values than max_categories

    def add(self, raw: str, max_categories: int) -> None:
        # Surrounding spaces are noise of the file ("a, b"), not part of a value.
        text = raw.strip()
        low = text.lower()
        if low in _MISSING_TEXT:
            return
        self.present += 1
        if self.booleans and low not in _BOOLEAN_TEXT:
            self.booleans = False
        if self.ints and not _INT_RE.fullmatch(text):
            self.ints = False
        if self.numbers and not (
            _FLOAT_RE.fullmatch(text) and math.isfinite(float(text))  # 1e999 is not finite
        ):
            self.numbers = False
        if not self.overflow:
            self.counts[text] = self.counts.get(text, 0) + 1
            if len(self.counts) > max_categories:
                self.overflow = True
                self.counts = {}

    def feature(self, name: str, rows: int) -> Feature:
        nullable = self.present < rows
        if self.present == 0:
            return Feature(name, FeatureType.STRING, nullable=True)
        if self.booleans:
            return Feature(name, FeatureType.BOOLEAN, nullable=nullable)
        if self.ints:
            return Feature(name, FeatureType.INTEGER, nullable=nullable)
        if self.numbers:
            return Feature(name, FeatureType.NUMBER, nullable=nullable)
        # A category when its values repeat: seen twice each on average.
        if not self.overflow and 2 * len(self.counts) <= self.present:
            values = tuple(sorted(self.counts))
            return Feature(name, FeatureType.CATEGORY, nullable=nullable, values=values)
        return Feature(name, FeatureType.STRING, nullable=nullable)


def infer_schema(rows: Iterable[Mapping[str, str]], *, max_categories: int = 50) -> Schema:
    """Draft a schema from sample rows of strings, as a CSV file gives them.

    Empty strings and ``NA``, ``null``, ``None``, ``nan`` (any case) are missing values and make
    a feature nullable, as does a column absent from some rows. A column whose values are all
    integers is an ``integer``; integers or decimals, a ``number``; ``true``/``false``/``yes``/
    ``no`` (any case), a ``boolean``; at most ``max_categories`` distinct values, each seen twice
    on average, a ``category`` listing them (sorted, without surrounding spaces); anything else
    a ``string``. Integers with a leading zero (``007``) are codes, not numbers. No ``min`` or
    ``max`` is inferred: the range of a sample is not a rule. Review the draft before serving.

    >>> rows = [{"n": "1", "ok": "yes", "c": "a"}, {"n": "", "ok": "No", "c": "a"}]
    >>> [(f.name, f.type.value, f.nullable, f.values) for f in infer_schema(rows).features]
    [('n', 'integer', True, None), ('ok', 'boolean', False, None), ('c', 'category', False, ('a',))]
    """
    columns: dict[str, _Column] = {}
    n_rows = 0
    for row in rows:
        n_rows += 1
        for name, raw in row.items():
            if name is None:  # csv.DictReader puts the cells of over-long rows under None
                continue
            column = columns.get(name)
            if column is None:
                column = columns[name] = _Column()
            column.add("" if raw is None else str(raw), max_categories)
    if not columns:
        raise ConfigError("cannot infer a schema: the sample has no rows or no columns")
    return Schema(tuple(column.feature(name, n_rows) for name, column in columns.items()))


_MAX_INT_AS_FLOAT = int(sys.float_info.max)


def infer_schema_from_csv(
    path: str | Path, *, target: str | None = None, limit: int | None = None
) -> Schema:
    """Draft a schema from a CSV file with a header row, leaving out the ``target`` column.

    Reads the first ``limit`` rows (all when None). See :func:`infer_schema` for the rules.
    """
    try:
        file = open(path, newline="", encoding="utf-8-sig")  # noqa: SIM115 - closed below
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None
    with file:
        reader = csv.DictReader(file)
        header = reader.fieldnames
        if not header:
            raise ConfigError(f"{path}: no header row; the first line must name the columns")
        duplicated = sorted({name for name in header if header.count(name) > 1})
        if duplicated:
            raise ConfigError(f"{path}: duplicated column names: {', '.join(duplicated)}")
        if target is not None and target not in header:
            raise ConfigError(
                f"{path}: target column {target!r} is not in the header; "
                f"columns: {', '.join(header)}"
            )
        rows: Iterable[dict] = reader
        if limit is not None:
            rows = itertools.islice(rows, limit)
        if target is not None:
            rows = ({k: v for k, v in row.items() if k != target} for row in rows)
        return infer_schema(rows)


MAX_CLASSES = 20
"""At most this many distinct values, each seen twice on average, make a numeric target
classes; more make it a quantity to regress."""


def infer_task(values: Iterable[str], *, max_classes: int = MAX_CLASSES) -> tuple[str, str]:
    """Guess the task of a target column from its raw values (strings, as a CSV file gives
    them): ``(task, why)``, ``why`` a phrase for the user.

    Text or booleans are classes. Numbers are classes when they are few and repeat (at most
    ``max_classes`` distinct values, each seen twice on average: ``0``/``1``, star ratings);
    otherwise, as for many distinct values, fractional or not (prices, temperatures), a
    quantity: regression. Missing values (see :func:`infer_schema`) are left out.

    >>> infer_task(["12.5", "3.25", "7.0", "12.5", "8.75"])
    ('regression', '5 values, 4 distinct numbers')
    >>> infer_task(["1", "0", "0", "1", "1", "0"])
    ('classification', '6 values, 2 distinct numbers, each seen 3 times on average')
    >>> infer_task(["spam", "ham", "spam"])
    ('classification', 'text values (2 distinct)')
    """
    column = _Column()
    seen: set[float] = set()
    for raw in values:
        column.add(raw, max_categories=max_classes)
        text = raw.strip()
        if column.numbers and text.lower() not in _MISSING_TEXT:
            seen.add(float(text))
    if column.present == 0:
        return "classification", "no values to judge by"
    if column.booleans:
        return "classification", "true/false values"
    if not column.numbers:
        distinct = "more than " + str(max_classes) if column.overflow else str(len(column.counts))
        return "classification", f"text values ({distinct} distinct)"
    n, distinct = column.present, len(seen)
    if distinct <= max_classes and 2 * distinct <= n:
        return (
            "classification",
            f"{n} values, {distinct} distinct numbers, each seen {n / distinct:.3g} times on "
            "average",
        )
    return "regression", f"{n} values, {distinct} distinct numbers"


def infer_task_from_csv(
    path: str | Path, target: str, *, limit: int | None = None
) -> tuple[str, str]:
    """:func:`infer_task` of the ``target`` column of a CSV file (its first ``limit`` rows)."""
    try:
        file = open(path, newline="", encoding="utf-8-sig")  # noqa: SIM115 - closed below
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None
    with file:
        reader = csv.DictReader(file)
        if target not in (reader.fieldnames or ()):
            raise ConfigError(f"{path}: target column {target!r} is not in the header")
        rows: Iterable[dict] = reader
        if limit is not None:
            rows = itertools.islice(rows, limit)
        return infer_task(row.get(target) or "" for row in rows)


# -- TOML ------------------------------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n"}
_TOML_ESCAPES.update({"\f": "\\f", "\r": "\\r"})


def _toml_string(s: str) -> str:
    out = []
    for ch in s:
        if ch in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[ch])
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)  # finite floats only, validated by Feature; repr is valid TOML
    if isinstance(v, str):
        return _toml_string(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML form for {v!r}")


def schema_to_toml(
    schema: Schema,
    model: str = "my_model",
    target: str | None = None,
    *,
    task: str = "classification",
    pipeline: str | None = None,
    note: str | None = None,
) -> str:
    """A config snippet declaring ``model`` with ``schema`` as its features, one inline table per
    feature, with a task and a pipeline to start from (a regressor's for ``task =
    "regression"``; ``note``, a comment above the task, says why it was chosen), ready to paste
    into the config. The snippet parses with ``tomllib`` and gives back an equal schema:

    >>> import tomllib
    >>> schema = Schema.from_config({"age": {"type": "integer", "min": 0}, "city name": "string"})
    >>> print(schema_to_toml(schema, "churn", target="churned"))
    [models.churn]
    task = "classification"
    target = "churned"
    pipeline = { name = "hoeffding_tree" }
    <BLANKLINE>
    [models.churn.features]
    age = { type = "integer", min = 0 }
    "city name" = { type = "string" }
    <BLANKLINE>
    >>> table = tomllib.loads(schema_to_toml(schema, "churn"))["models"]["churn"]
    >>> Schema.from_config(table["features"]) == schema
    True
    """
    prefix = f"models.{_toml_key(model)}"
    # A Hoeffding tree takes numbers and categories as they are: a safe first pipeline.
    pipeline = pipeline or (
        "hoeffding_tree" if task == "classification" else "hoeffding_tree_regressor"
    )
    lines = [f"[{prefix}]"]
    if note is not None:  # why this task: a comment, so that the user can review it
        lines.append(f"# {' '.join(note.split())}")
    lines.append(f"task = {_toml_string(task)}")
    if target is not None:
        lines.append(f"target = {_toml_string(target)}")
    if schema.unknown_fields is not UnknownFields.REJECT:
        lines.append(f"unknown_fields = {_toml_string(schema.unknown_fields.value)}")
    lines += [f"pipeline = {{ name = {_toml_string(pipeline)} }}", ""]
    lines.append(f"[{prefix}.features]")
    for f in schema.features:
        items = ", ".join(f"{k} = {_toml_value(v)}" for k, v in f.to_config().items())
        lines.append(f"{_toml_key(f.name)} = {{ {items} }}")
    return "\n".join(lines) + "\n"
