"""Column validation (``Schema.validate_columns``) against row validation (``Schema.validate``).

The oracle: on any batch, the column path either gives exactly what ``validate`` gives row for
row (values, their types, the order of the keys), or None; and None whenever a row is invalid,
so that the caller's row-by-row pass words the errors as before.
"""

from __future__ import annotations

import random
import types
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest

from onlearn.errors import SchemaViolation
from onlearn.schema import Schema

FEATURES = {
    "num": {"type": "number", "min": -1.5, "max": 100},
    "num_open": "number",
    "num_null": {"type": "number", "nullable": True},
    "num_int_bounds": {"type": "number", "min": 0, "max": 9007199254740993},
    "int": {"type": "integer", "min": 0, "max": 10},
    "int_open": "integer",
    "int_low": {"type": "integer", "min": -3},
    "int_null": {"type": "integer", "nullable": True, "max": 5.5},
    "flag": "boolean",
    "flag_null": {"type": "boolean", "nullable": True},
    "text": "string",
    "text_null": {"type": "string", "nullable": True},
    "cat": "category",
    "cat_values": {"type": "category", "values": ["red", "blue", 1, 2, True]},
    "cat_null": {"type": "category", "nullable": True, "values": ["a", 0]},
}


class Text(str):
    pass


HOSTILE = [
    0.0, -0.0, 1.0, 0.5, -1.5, 100.0, 100.5, -2.0, 1e308, -1e308, 5e-324, float("nan"),
    float("inf"), -float("inf"), 0, 1, 2, 3, 5, 6, 10, 11, -1, -3, -4, 2**53, 2**53 + 1,
    9007199254740993, 10**308, 10**400, -(10**400), True, False, None, "", "red", "blue", "a",
    "x" * 50, Text("red"), [], ["red"], {}, {"a": 1}, np.float64(0.5), np.int64(3),
    np.bool_(True), Decimal("1.5"), Fraction(1, 2), 1 + 0j, b"red", object(),
]  # fmt: skip


def _stable_id(value: object) -> str:
    """``repr``, without the memory address of a plain ``object()``: pytest-xdist workers must
    collect the same test ids."""
    return "object()" if type(value) is object else repr(value)


# Plain values each feature accepts as they come from JSON, to make valid rows often.
VALID = {
    "num": [0.0, 1, 2.5, -1.5, 100, 99.0],
    "num_open": [0.0, -1e300, 7, 3.25],
    "num_null": [None, 1.0, 2],
    "num_int_bounds": [0, 1.5, 9007199254740993, 9007199254740992.0],
    "int": [0, 3, 10],
    "int_open": [-(2**60), 0, 5],
    "int_low": [-3, 0, 1000],
    "int_null": [None, 5, -7],
    "flag": [True, False],
    "flag_null": [None, True],
    "text": ["", "hello"],
    "text_null": [None, "x"],
    "cat": ["a", 3, True],
    "cat_values": ["red", 1, 2, True],
    "cat_null": [None, "a", 0],
}


def shape(row: dict) -> list:
    """A row as (key, type, repr) triples, in order: 1, 1.0, True and -0.0 stay apart."""
    return [(k, type(v), repr(v)) for k, v in row.items()]


def rows_by_validate(schema: Schema, rows: list) -> list | None:
    try:
        return [schema.validate(r) for r in rows]
    except SchemaViolation:
        return None


def check(schema: Schema, rows: list) -> dict | None:
    columns = schema.validate_columns(rows)
    expected = rows_by_validate(schema, rows)
    if expected is None:
        assert columns is None, rows
        return None
    if columns is not None:
        assert list(columns) == list(schema.names)
        assert all(len(c) == len(rows) for c in columns.values())
        assert [shape(r) for r in schema.rows_of(columns)] == [shape(r) for r in expected], rows
    return columns


def random_row(rng: random.Random, hostile: float) -> object:
    row: dict = {}
    for name in FEATURES:
        r = rng.random()
        if r < hostile:
            row[name] = rng.choice(HOSTILE)
        elif r < hostile * 1.3:
            continue  # absent
        else:
            row[name] = rng.choice(VALID[name])
    if rng.random() < hostile / 3:
        row[rng.choice(["extra", "nm", 3, None])] = 1
    if rng.random() < 0.3:  # another key order
        items = list(row.items())
        rng.shuffle(items)
        row = dict(items)
    r = rng.random()
    if r < hostile / 10:
        return types.MappingProxyType(row)
    if r < hostile / 8:
        return rng.choice([None, [], "row", 3, list(row.items())])
    return row


@pytest.mark.parametrize("unknown_fields", ["reject", "drop"])
@pytest.mark.parametrize("hostile", [0.0, 0.01, 0.05, 0.3])
def test_columns_equal_rows_on_random_batches(unknown_fields, hostile):
    schema = Schema.from_config(FEATURES, unknown_fields)
    rng = random.Random(f"{unknown_fields}-{hostile}")
    fast = 0
    for _ in range(1500):
        rows = [random_row(rng, hostile) for _ in range(rng.randint(1, 6))]
        fast += check(schema, rows) is not None
    if hostile == 0.0:
        assert fast == 1500  # plain valid batches take the column path


@pytest.mark.parametrize("value", HOSTILE, ids=_stable_id)
@pytest.mark.parametrize("name", list(FEATURES))
def test_each_hostile_value_in_each_feature(name, value):
    schema = Schema.from_config(FEATURES)
    base = {n: VALID[n][-1] for n in FEATURES}
    for position in range(3):
        rows = [dict(base), dict(base), dict(base)]
        rows[position][name] = value
        check(schema, rows)
    rows = [dict(base)]
    del rows[0][name]
    check(schema, rows)


def test_an_invalid_row_keeps_its_error_wording():
    """The engine validates row by row when the columns refuse: the errors are validate's."""
    schema = Schema.from_config(FEATURES)
    good = {n: VALID[n][0] for n in FEATURES}
    bad = {**good, "num": float("nan"), "zzz": 1}
    assert schema.validate_columns([good, bad]) is None
    with pytest.raises(SchemaViolation) as info:
        schema.validate(bad)
    assert [(e.loc, e.rule) for e in info.value.errors] == [
        (("num",), "finite"),
        (("zzz",), "unknown"),
    ]


def test_phishing_like_batches_take_the_column_path_without_copies_of_values():
    schema = Schema.from_config({"a": "number", "b": {"type": "integer", "min": 0, "max": 1}})
    rows = [{"a": 0.5, "b": 1}, {"a": 1.0, "b": 0}]
    columns = schema.validate_columns(rows)
    assert columns == {"a": (0.5, 1.0), "b": (1, 0)}
    assert schema.rows_of(columns) == rows
    assert schema.rows_of(columns)[0] is not rows[0]  # fresh dicts: the caller's stay theirs


def test_empty_batch_and_one_feature():
    schema = Schema.from_config({"a": "number"})
    assert schema.validate_columns([]) == {"a": []}
    assert schema.rows_of(schema.validate_columns([])) == []
    assert schema.rows_of(schema.validate_columns([{"a": 1}, {"a": 2.0}])) == [
        {"a": 1.0},
        {"a": 2.0},
    ]
