from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest

from onlearn.drift.profiles import (
    Profile,
    ProfileBuilder,
    build_profile,
    quantile_edges,
)
from onlearn.errors import ConfigError
from onlearn.schema import Schema


def rows_of(**columns):
    n = len(next(iter(columns.values())))
    return [{k: v[i] for k, v in columns.items()} for i in range(n)]


def test_numeric_bins_have_about_equal_mass_and_open_outer_bins():
    rng = np.random.default_rng(0)
    values = rng.normal(size=10_000)
    p = build_profile(rows_of(x=list(values)), numeric=["x"])["x"]
    assert len(p.edges) == 9 and sum(p.bin_counts) == 10_000
    assert all(abs(c - 1000) <= 1 for c in p.bin_counts)
    # open-ended: anything below or above the sample lands in the first or last bin
    assert p.bin_of(-1e9) == 0 and p.bin_of(1e9) == 9
    # a value equal to an edge belongs to the bin it closes
    assert p.bin_of(p.edges[3]) == 3
    assert p.mean == pytest.approx(values.mean()) and p.std == pytest.approx(values.std())
    assert p.quartiles == pytest.approx(tuple(np.quantile(values, [0.25, 0.5, 0.75])))
    assert p.scale == pytest.approx(p.quartiles[2] - p.quartiles[0])


def test_ties_stay_in_one_bin_and_a_bin_opens_below_a_tied_minimum():
    values = [0.0] * 600 + [float(i) for i in range(1, 401)]
    p = build_profile(rows_of(n=values), numeric=["n"])["n"]
    assert p.edges[0] < 0.0 == p.edges[1]  # just below 0, then 0
    assert p.bin_counts[0] == 0 and p.bin_counts[1] == 600
    assert p.bin_of(-1.0) == 0 and p.bin_of(0.0) == 1 and p.bin_of(0.5) == 2
    assert len(set(p.edges)) == len(p.edges)


def test_constant_column_gets_a_bin_for_its_value_and_one_on_each_side():
    p = build_profile(rows_of(c=[3.0] * 50), numeric=["c"])["c"]
    assert [p.bin_of(x) for x in (2.0, 3.0, 4.0)] == [0, 1, 2]
    assert p.bin_counts == (0, 50, 0)
    assert p.std == 0.0 and p.scale == 1.0


def test_quantile_edges_of_tiny_and_empty_samples():
    assert quantile_edges(np.array([]), 10) == ()
    below = math.nextafter(1.0, -math.inf)
    assert quantile_edges(np.array([1.0, 2.0]), 10) == (below, 1.0, 2.0)


def test_missing_values_are_counted_not_binned():
    values = [1.0, None, float("nan"), "abc", 2.0, float("inf"), True]
    rows = [{"x": v} for v in values] + [{}]
    p = build_profile(rows, numeric=["x"])
    x = p["x"]
    assert (x.count, x.missing, p.rows) == (3, 5, 8)  # a boolean is a number here: 1.0
    assert x.missing_rate == pytest.approx(5 / 8)


def test_categories_top_k_and_other_and_missing():
    values = ["a"] * 5 + ["b"] * 3 + ["c"] * 3 + ["d"] * 1 + [None] * 2
    p = build_profile(rows_of(c=values), categorical=["c"], top_k=2)["c"]
    assert p.categories == ("a", "b")  # c ties with b but came later
    assert p.category_counts == (5, 3) and p.other == 4 and p.missing == 2
    assert p.bin_counts == (5, 3, 4) and p.distinct == 4


def test_true_and_1_are_different_categories_and_survive_json():
    p = build_profile(rows_of(c=[True, 1, 1, "1", False]), categorical=["c"])
    c = p["c"]
    assert c.categories == (1, True, "1", False) and c.category_counts == (2, 1, 1, 1)
    again = Profile.from_dict(json.loads(json.dumps(p.to_dict())))
    assert [type(v) for v in again["c"].categories] == [int, bool, str, bool]
    assert again == p


def test_round_trip_through_json_keeps_everything():
    rng = np.random.default_rng(3)
    rows = [
        {"x": float(v), "k": int(k), "c": str(c)}
        for v, k, c in zip(
            rng.normal(size=300), rng.integers(0, 3, 300), rng.choice(list("xyz"), 300), strict=True
        )
    ]
    rows += [{"x": None, "c": None}]
    p = build_profile(rows, numeric=["x", "k"], categorical=["c"], sample_size=100)
    text = json.dumps(p.to_dict())
    assert Profile.from_dict(json.loads(text)) == p
    assert p.names == ("x", "k", "c") and p.numeric == ("x", "k") and p.categorical == ("c",)
    assert pickle.loads(pickle.dumps(p)) == p


def test_from_dict_refuses_other_documents():
    with pytest.raises(ConfigError, match="not a drift profile"):
        Profile.from_dict({"format": "something/1"})


def test_reservoir_is_bounded_uniform_and_seeded():
    rows = [{"x": float(i)} for i in range(20_000)]
    a = build_profile(rows, numeric=["x"], sample_size=1000, seed=5)["x"]
    b = build_profile(rows, numeric=["x"], sample_size=1000, seed=5)["x"]
    c = build_profile(rows, numeric=["x"], sample_size=1000, seed=6)["x"]
    assert a == b and a.sample != c.sample
    assert len(a.sample) == 1000 and a.count == 20_000
    assert list(a.sample) == sorted(a.sample)
    # uniform over the stream: about half the sample from each half of the stream
    assert 430 < sum(x < 10_000 for x in a.sample) < 570
    # summaries are of the whole stream, not of the sample
    assert (a.min, a.max, a.mean) == (0.0, 19_999.0, pytest.approx(9999.5))


def test_small_streams_keep_every_value():
    p = build_profile([{"x": float(v)} for v in (3, 1, 2)], numeric=["x"])["x"]
    assert p.sample == (1.0, 2.0, 3.0)


def test_streaming_builder_equals_one_call():
    rows = [{"x": float(i % 17), "c": "abc"[i % 3]} for i in range(500)]
    builder = ProfileBuilder(numeric=["x"], categorical=["c"], sample_size=50, seed=1)
    for row in rows:
        builder.update(row)
    one_call = build_profile(rows, numeric=["x"], categorical=["c"], sample_size=50, seed=1)
    assert builder.profile() == one_call


def test_from_schema_treats_booleans_and_strings_as_categories():
    schema = Schema.from_config(
        {"age": "integer", "income": "number", "vip": "boolean", "city": "string", "c": "category"}
    )
    builder = ProfileBuilder.from_schema(schema)
    assert builder.numeric == ("age", "income")
    assert builder.categorical == ("vip", "city", "c")
    p = build_profile([{"age": 3, "income": 1.5, "vip": True, "city": "x", "c": "y"}], schema)
    assert p.names == schema.names


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "at least one"),
        ({"numeric": ["a"], "categorical": ["a"]}, "listed twice"),
        ({"numeric": ["a"], "bins": 1}, "bins must be an integer >= 2"),
        ({"numeric": ["a"], "top_k": 0}, "top_k"),
        ({"numeric": ["a"], "sample_size": True}, "sample_size"),
    ],
)
def test_builder_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ProfileBuilder(**kwargs)
