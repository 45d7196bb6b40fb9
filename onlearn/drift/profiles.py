"""Reference profiles: what the features looked like when a model version was trained.

A :class:`Profile` summarises a sample of feature rows (dicts, ``None`` for a missing value):

- a number gets quantile bins (``bins`` of about equal mass, open-ended at both ends), the
  counts of its reference sample in them, a bounded sample of its values (all of them, or a
  seeded reservoir) for the Kolmogorov-Smirnov test and the Wasserstein distance, and a summary;
- a category gets the counts of its ``top_k`` most frequent values plus one ``other`` count;
- every feature gets its missing count (absent, ``None``, NaN, infinity, or a value of the
  wrong kind).

Profiles are stored with model versions, so they are plain data: ``to_dict`` gives JSON types
only and ``Profile.from_dict(p.to_dict()) == p``.

>>> rows = [{"age": a, "city": c} for a, c in zip(range(100), "ab" * 45 + "c" * 10)]
>>> rows.append({"age": None, "city": "a"})
>>> profile = build_profile(rows, numeric=["age"], categorical=["city"], bins=4)
>>> age = profile["age"]
>>> age.count, age.missing, age.edges, age.bin_counts
(100, 1, (24.0, 49.0, 74.0), (25, 25, 25, 25))
>>> city = profile["city"]
>>> city.categories, city.category_counts, city.other
(('a', 'b', 'c'), (46, 45, 10), 0)
>>> Profile.from_dict(profile.to_dict()) == profile
True
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from onlearn.errors import ConfigError

__all__ = [
    "CategoricalProfile",
    "NumericProfile",
    "Profile",
    "ProfileBuilder",
    "build_profile",
    "category_key",
]

FORMAT = "onlearn.drift.profile/1"


def category_key(value: Hashable) -> tuple[bool, Hashable]:
    """The dict key of a category value: ``True`` and ``1`` are different JSON values, but
    equal (and equally hashed) in Python."""
    return (value.__class__ is bool, value)


def _number(value: Any) -> float | None:
    """A finite float, or None when the value is missing or not a number."""
    c = value.__class__
    if c is float or c is int:
        x = float(value)
    elif c is bool:
        x = 1.0 if value else 0.0
    elif value is None or isinstance(value, str | bytes):
        return None
    else:
        try:
            x = float(value)  # numpy scalars, Decimal
        except (TypeError, ValueError, OverflowError):
            return None
    return x if math.isfinite(x) else None


def _category(value: Any) -> Hashable | None:
    """A category value (str, int, bool or finite float), or None when missing or invalid."""
    c = value.__class__
    if c is str or c is int or c is bool:
        return value
    if c is float:
        return value if math.isfinite(value) else None
    if value is None:
        return None
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    return None


@dataclass(frozen=True)
class NumericProfile:
    """The reference of one numeric feature.

    ``edges`` are the inner cut points of the bins, sorted; bin ``i`` holds the values ``x`` with
    ``edges[i-1] < x <= edges[i]`` (see :meth:`bin_of`), so there are ``len(edges) + 1`` bins and
    the outer ones are open-ended. ``bin_counts`` counts ``sample`` in them; ``sample`` is sorted.
    """

    name: str
    count: int
    missing: int
    edges: tuple[float, ...]
    bin_counts: tuple[int, ...]
    sample: tuple[float, ...]
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    quartiles: tuple[float, float, float] | None

    kind = "numeric"

    @property
    def missing_rate(self) -> float:
        total = self.count + self.missing
        return self.missing / total if total else 0.0

    def bin_of(self, x: float) -> int:
        return bisect.bisect_left(self.edges, x)

    @property
    def scale(self) -> float:
        """What a Wasserstein distance is divided by: the reference's interquartile range, its
        standard deviation when that is 0 (more than half the values tied), else 1."""
        if self.quartiles is not None:
            iqr = self.quartiles[2] - self.quartiles[0]
            if iqr > 0:
                return iqr
        if self.std:
            return self.std
        return 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "count": self.count,
            "missing": self.missing,
            "edges": list(self.edges),
            "bin_counts": list(self.bin_counts),
            "sample": list(self.sample),
            "mean": self.mean,
            "std": self.std,
            "min": self.min,
            "max": self.max,
            "quartiles": None if self.quartiles is None else list(self.quartiles),
        }

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> NumericProfile:
        quartiles = data.get("quartiles")
        return cls(
            name=name,
            count=int(data["count"]),
            missing=int(data["missing"]),
            edges=tuple(float(e) for e in data["edges"]),
            bin_counts=tuple(int(c) for c in data["bin_counts"]),
            sample=tuple(float(x) for x in data["sample"]),
            mean=data.get("mean"),
            std=data.get("std"),
            min=data.get("min"),
            max=data.get("max"),
            quartiles=None if quartiles is None else tuple(float(q) for q in quartiles),
        )


@dataclass(frozen=True)
class CategoricalProfile:
    """The reference of one categorical feature: the counts of its ``top_k`` most frequent
    values (most frequent first, ties by first appearance) and of all the others together."""

    name: str
    count: int
    missing: int
    categories: tuple[Hashable, ...]
    category_counts: tuple[int, ...]
    other: int
    distinct: int

    kind = "categorical"

    @property
    def missing_rate(self) -> float:
        total = self.count + self.missing
        return self.missing / total if total else 0.0

    @property
    def bin_counts(self) -> tuple[int, ...]:
        """Counts per bin: one bin per category, then ``other``."""
        return self.category_counts + (self.other,)

    def index(self) -> dict[tuple[bool, Hashable], int]:
        """Bin index of each category, keyed by :func:`category_key`; unlisted values go to
        bin ``len(categories)``."""
        return {category_key(v): i for i, v in enumerate(self.categories)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "count": self.count,
            "missing": self.missing,
            # pairs, not an object: JSON object keys are strings, categories may be 1 or true
            "categories": [
                [v, c] for v, c in zip(self.categories, self.category_counts, strict=True)
            ],
            "other": self.other,
            "distinct": self.distinct,
        }

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> CategoricalProfile:
        pairs = data["categories"]
        return cls(
            name=name,
            count=int(data["count"]),
            missing=int(data["missing"]),
            categories=tuple(v for v, _ in pairs),
            category_counts=tuple(int(c) for _, c in pairs),
            other=int(data["other"]),
            distinct=int(data["distinct"]),
        )


FeatureProfile = NumericProfile | CategoricalProfile


@dataclass(frozen=True)
class Profile:
    """Reference profiles of the features of a sample of ``rows`` rows, in declaration order."""

    features: tuple[FeatureProfile, ...]
    rows: int
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "settings", dict(self.settings))

    def __getitem__(self, name: str) -> FeatureProfile:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return any(f.name == name for f in self.features)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def numeric(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features if f.kind == "numeric")

    @property
    def categorical(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features if f.kind == "categorical")

    def to_dict(self) -> dict[str, Any]:
        """JSON types only; ``Profile.from_dict(p.to_dict()) == p``."""
        return {
            "format": FORMAT,
            "rows": self.rows,
            "settings": dict(self.settings),
            # a list keeps the declaration order through any JSON store
            "features": [{"name": f.name, **f.to_dict()} for f in self.features],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise ConfigError(f"not a drift profile: expected format {FORMAT!r}, got {found!r}")
        features: list[FeatureProfile] = []
        for entry in data["features"]:
            kind = entry.get("kind")
            if kind == "numeric":
                features.append(NumericProfile.from_dict(entry["name"], entry))
            elif kind == "categorical":
                features.append(CategoricalProfile.from_dict(entry["name"], entry))
            else:
                raise ConfigError(f"feature {entry.get('name')!r}: unknown profile kind {kind!r}")
        return cls(tuple(features), int(data["rows"]), data.get("settings", {}))


class ProfileBuilder:
    """Builds a :class:`Profile` from a stream of rows: ``update(row)`` each, then ``profile()``.

    Parameters
    ----------
    numeric, categorical
        Names of the features to profile as numbers and as categories. A :class:`Schema`'s
        boolean features are categories here (see :meth:`from_schema`).
    bins
        Number of quantile bins of a number (fewer when values tie).
    top_k
        Number of categories kept by name; the rest are counted together as ``other``.
    sample_size
        Bound of the sample of each number kept for the KS test and the Wasserstein distance:
        the first ``sample_size`` values exactly, then a uniform reservoir (algorithm R).
    max_categories
        Bound of the distinct values counted exactly per category; values first seen after it is
        reached are counted as ``other``.
    seed
        Seed of the reservoirs: the same rows in the same order give the same profile.

    >>> builder = ProfileBuilder(numeric=["x"], sample_size=100, seed=1)
    >>> for i in range(1000):
    ...     builder.update({"x": float(i)})
    >>> p = builder.profile()["x"]
    >>> p.count, len(p.sample), sum(p.bin_counts)
    (1000, 100, 100)
    """

    def __init__(
        self,
        numeric: Iterable[str] = (),
        categorical: Iterable[str] = (),
        *,
        bins: int = 10,
        top_k: int = 20,
        sample_size: int = 10_000,
        max_categories: int = 10_000,
        seed: int = 42,
    ):
        self.numeric = tuple(numeric)
        self.categorical = tuple(categorical)
        self.bins = bins
        self.top_k = top_k
        self.sample_size = sample_size
        self.max_categories = max_categories
        self.seed = seed
        names = self.numeric + self.categorical
        if not names:
            raise ConfigError("a profile needs at least one numeric or categorical feature")
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"features listed twice (numeric and categorical?): {twice}")
        for key, low in (("bins", 2), ("top_k", 1), ("sample_size", 2), ("max_categories", 1)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{key} must be an integer >= {low}, got {value!r}")
        self._rows = 0
        self._rng = random.Random(seed)
        self._samples: dict[str, list[float]] = {n: [] for n in self.numeric}
        self._seen: dict[str, int] = {n: 0 for n in self.numeric}
        # Welford's running mean and sum of squared deviations: stable for large values
        self._moments: dict[str, list[float]] = {n: [0.0, 0.0] for n in self.numeric}
        self._extremes: dict[str, list[float]] = {n: [math.inf, -math.inf] for n in self.numeric}
        self._counts: dict[str, dict[tuple[bool, Hashable], list]] = {
            n: {} for n in self.categorical
        }
        self._overflow: dict[str, int] = {n: 0 for n in self.categorical}
        self._missing: dict[str, int] = {n: 0 for n in names}

    @classmethod
    def from_schema(cls, schema: Any, **kwargs: Any) -> ProfileBuilder:
        """A builder for the features of a :class:`onlearn.schema.Schema`: numbers and integers
        as numbers; categories, strings and booleans as categories (a two-valued feature is
        tested best by its two frequencies)."""
        from onlearn.schema import FeatureType  # a local import: profiles need no schema

        numbers = (FeatureType.NUMBER, FeatureType.INTEGER)
        numeric = [f.name for f in schema.features if f.type in numbers]
        categorical = [f.name for f in schema.features if f.type not in numbers]
        return cls(numeric, categorical, **kwargs)

    @property
    def rows(self) -> int:
        """Rows seen so far."""
        return self._rows

    def update(self, row: Mapping[str, Any]) -> None:
        self._rows += 1
        get = row.get
        for name in self.numeric:
            x = _number(get(name))
            if x is None:
                self._missing[name] += 1
                continue
            seen = self._seen[name] + 1
            self._seen[name] = seen
            moments = self._moments[name]
            delta = x - moments[0]
            moments[0] += delta / seen
            moments[1] += delta * (x - moments[0])
            extremes = self._extremes[name]
            if x < extremes[0]:
                extremes[0] = x
            if x > extremes[1]:
                extremes[1] = x
            sample = self._samples[name]
            if seen <= self.sample_size:
                sample.append(x)
            else:
                j = self._rng.randrange(seen)
                if j < self.sample_size:
                    sample[j] = x
        for name in self.categorical:
            v = _category(get(name))
            if v is None:
                self._missing[name] += 1
                continue
            counts = self._counts[name]
            entry = counts.get(category_key(v))
            if entry is not None:
                entry[1] += 1
            elif len(counts) < self.max_categories:
                counts[category_key(v)] = [v, 1]
            else:
                self._overflow[name] += 1

    def profile(self) -> Profile:
        features: list[FeatureProfile] = []
        order = {n: i for i, n in enumerate(self.numeric + self.categorical)}
        for name in sorted(order, key=order.get):
            if name in self._samples:
                features.append(self._numeric_profile(name))
            else:
                features.append(self._categorical_profile(name))
        settings = {
            "bins": self.bins,
            "top_k": self.top_k,
            "sample_size": self.sample_size,
            "seed": self.seed,
        }
        return Profile(tuple(features), self._rows, settings)

    def _numeric_profile(self, name: str) -> NumericProfile:
        count = self._seen[name]
        missing = self._missing[name]
        if count == 0:
            return NumericProfile(name, 0, missing, (), (0,), (), None, None, None, None, None)
        sample = np.sort(np.asarray(self._samples[name], dtype=float))
        edges = quantile_edges(sample, self.bins)
        idx = np.searchsorted(np.asarray(edges), sample, side="left")
        bin_counts = np.bincount(idx, minlength=len(edges) + 1)
        mean, m2 = self._moments[name]
        var = m2 / count  # of the whole stream, not of the sample
        q1, q2, q3 = (float(q) for q in np.quantile(sample, [0.25, 0.5, 0.75]))
        return NumericProfile(
            name=name,
            count=count,
            missing=missing,
            edges=edges,
            bin_counts=tuple(int(c) for c in bin_counts),
            sample=tuple(float(x) for x in sample),
            mean=mean,
            std=math.sqrt(var),
            min=self._extremes[name][0],
            max=self._extremes[name][1],
            quartiles=(q1, q2, q3),
        )

    def _categorical_profile(self, name: str) -> CategoricalProfile:
        counts = self._counts[name]
        # sorted() is stable: equal counts keep their order of first appearance
        ranked = sorted(counts.values(), key=lambda e: -e[1])
        top = ranked[: self.top_k]
        other = sum(c for _, c in ranked[self.top_k :]) + self._overflow[name]
        return CategoricalProfile(
            name=name,
            count=sum(c for _, c in ranked) + self._overflow[name],
            missing=self._missing[name],
            categories=tuple(v for v, _ in top),
            category_counts=tuple(c for _, c in top),
            other=other,
            distinct=len(counts),
        )


def quantile_edges(sorted_sample: np.ndarray, bins: int) -> tuple[float, ...]:
    """Inner cut points of ``bins`` bins of about equal mass of a sorted sample.

    The cut points are sample values (the lower quantiles at ``1/bins, ..., (bins-1)/bins``),
    deduplicated, so tied values stay in one bin and a constant column gets one bin for its
    value. When the lowest cut point is the sample minimum (a tie at the bottom), one more cut
    point just below it opens a bin for the values below the reference minimum, which would
    otherwise hide in the bin of the tie.
    """
    n = len(sorted_sample)
    if n == 0:
        return ()
    positions = [max(0, math.ceil(n * i / bins) - 1) for i in range(1, bins)]
    cuts = sorted({float(sorted_sample[p]) for p in positions})
    if cuts and cuts[0] == float(sorted_sample[0]):
        cuts.insert(0, math.nextafter(cuts[0], -math.inf))
    return tuple(cuts)


def build_profile(
    rows: Iterable[Mapping[str, Any]],
    schema: Any = None,
    *,
    numeric: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    **kwargs: Any,
) -> Profile:
    """The profile of ``rows``: of the features of ``schema`` (see
    :meth:`ProfileBuilder.from_schema`), or of the ``numeric`` and ``categorical`` names given.
    Keyword arguments go to :class:`ProfileBuilder`."""
    if schema is not None:
        if numeric is not None or categorical is not None:
            raise ConfigError("give a schema or numeric/categorical names, not both")
        builder = ProfileBuilder.from_schema(schema, **kwargs)
    else:
        builder = ProfileBuilder(numeric or (), categorical or (), **kwargs)
    for row in rows:
        builder.update(row)
    return builder.profile()
