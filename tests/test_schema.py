import copy
import math
import pickle
import subprocess
import sys
import tomllib
from fractions import Fraction
from pathlib import Path

import pytest

from onlearn.errors import (
    MAX_LISTED_ERRORS,
    ConfigError,
    FieldError,
    SchemaViolation,
    Violations,
)
from onlearn.schema import (
    Feature,
    FeatureType,
    Schema,
    UnknownFields,
    infer_schema,
    infer_schema_from_csv,
    infer_task,
    infer_task_from_csv,
    schema_to_toml,
)

ROOT = Path(__file__).resolve().parents[1]

PHISHING_ROW = {
    "empty_server_form_handler": 0.0,
    "popup_window": 0.0,
    "https": 0.0,
    "request_from_other_domain": 0.0,
    "anchor_from_other_domain": 0.0,
    "is_popular": 0.5,
    "long_url": 1.0,
    "age_of_domain": 1,
    "ip_in_url": 1,
}


def one(type_, **kwargs) -> Schema:
    """A schema of one feature named x."""
    return Schema((Feature("x", FeatureType(type_), **kwargs),))


def errors_of(schema: Schema, features: object) -> list[FieldError]:
    with pytest.raises(SchemaViolation) as info:
        schema.validate(features)
    return info.value.errors


def error_of(schema: Schema, features: object) -> FieldError:
    (error,) = errors_of(schema, features)
    return error


@pytest.fixture
def person() -> Schema:
    return Schema.from_config(
        {
            "age": {"type": "integer", "min": 0, "max": 130},
            "income": {"type": "number", "nullable": True},
            "member": "boolean",
            "color": {"type": "category", "values": ["red", "blue"]},
            "city": "string",
        }
    )


# -- the input as a whole --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("features", "got"),
    [([1, 2], "an array"), (None, "null"), ("x", "'x' (a string)"), (3, "3")],
)
def test_features_must_be_an_object(person, features, got):
    assert errors_of(person, features) == [
        FieldError(
            (), "type", f"features must be a JSON object of feature name to value, got {got}"
        )
    ]


def test_feature_names_must_be_strings():
    schema = one("number")
    assert errors_of(schema, {"x": 1.0, 3: 1.0}) == [
        FieldError((), "type", "feature names must be strings, got 3")
    ]
    drop = Schema(schema.features, UnknownFields.DROP)
    assert errors_of(drop, {"x": 1.0, 3: 1.0}) == [
        FieldError((), "type", "feature names must be strings, got 3")
    ]


def test_any_mapping_is_accepted():
    from types import MappingProxyType

    assert one("number").validate(MappingProxyType({"x": 1})) == {"x": 1.0}


# -- missing and null ------------------------------------------------------------------------


def test_missing_feature_is_an_error():
    assert error_of(one("number"), {}) == FieldError(("x",), "missing", "x is required but missing")


def test_null_for_non_nullable_is_an_error():
    assert error_of(one("string"), {"x": None}) == FieldError(("x",), "null", "x must not be null")


@pytest.mark.parametrize("type_", list(FeatureType))
def test_nullable_feature_missing_or_null_is_none(type_):
    schema = one(type_, nullable=True)
    assert schema.validate({}) == {"x": None}
    assert schema.validate({"x": None}) == {"x": None}


@pytest.mark.parametrize("type_", list(FeatureType))
def test_every_type_reports_missing_and_null(type_):
    schema = one(type_)
    assert error_of(schema, {}).rule == "missing"
    assert error_of(schema, {"x": None}).rule == "null"


# -- number ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "clean"), [(1, 1.0), (2.5, 2.5), (-0.0, 0.0), (Fraction(1, 4), 0.25)]
)
def test_number_accepts_ints_and_floats_as_float(value, clean):
    out = one("number").validate({"x": value})
    assert out == {"x": clean} and type(out["x"]) is float


@pytest.mark.parametrize(
    ("value", "msg"),
    [
        (True, "x must be a number, got true (a boolean)"),
        ("1.5", "x must be a number, got '1.5' (a string)"),
        ([1], "x must be a number, got an array"),
        ({"a": 1}, "x must be a number, got an object"),
    ],
)
def test_number_rejects_other_types(value, msg):
    assert error_of(one("number"), {"x": value}) == FieldError(("x",), "type", msg)


@pytest.mark.parametrize(
    ("value", "shown"),
    [(math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf"), (10**400, str(10**400))],
)
def test_number_must_be_finite(value, shown):
    assert error_of(one("number"), {"x": value}) == FieldError(
        ("x",), "finite", f"x must be a finite number, got {shown}"
    )


def test_number_finite_with_bounds():
    schema = one("number", min=0, max=1)
    assert error_of(schema, {"x": math.nan}).rule == "finite"
    assert error_of(schema, {"x": math.inf}).rule == "finite"


def test_number_bounds_are_inclusive():
    schema = one("number", min=0, max=1.5)
    assert schema.validate({"x": 0}) == {"x": 0.0}
    assert schema.validate({"x": 1.5}) == {"x": 1.5}
    assert error_of(schema, {"x": -0.1}) == FieldError(("x",), "min", "x must be >= 0, got -0.1")
    assert error_of(schema, {"x": 2}) == FieldError(("x",), "max", "x must be <= 1.5, got 2")


def test_number_with_float_max_near_the_float_limit():
    assert one("number", max=sys.float_info.max).validate({"x": 1e308}) == {"x": 1e308}


# -- integer ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "clean"), [(3, 3), (3.0, 3), (-2.0, -2), (10**30, 10**30)])
def test_integer_accepts_ints_and_integral_floats_as_int(value, clean):
    out = one("integer").validate({"x": value})
    assert out == {"x": clean} and type(out["x"]) is int


@pytest.mark.parametrize(
    ("value", "msg"),
    [
        (3.5, "x must be an integer, got 3.5"),
        (True, "x must be an integer, got true (a boolean)"),
        ("3", "x must be an integer, got '3' (a string)"),
    ],
)
def test_integer_rejects_other_values(value, msg):
    assert error_of(one("integer"), {"x": value}) == FieldError(("x",), "type", msg)


@pytest.mark.parametrize(("value", "shown"), [(math.nan, "nan"), (-math.inf, "-inf")])
def test_integer_must_be_finite(value, shown):
    assert error_of(one("integer"), {"x": value}) == FieldError(
        ("x",), "finite", f"x must be a finite number, got {shown}"
    )


def test_integer_bounds_are_inclusive():
    schema = one("integer", min=0, max=130)
    assert schema.validate({"x": 0}) == {"x": 0}
    assert schema.validate({"x": 130.0}) == {"x": 130}
    assert error_of(schema, {"x": -1}) == FieldError(("x",), "min", "x must be >= 0, got -1")
    assert error_of(schema, {"x": 200}) == FieldError(("x",), "max", "x must be <= 130, got 200")
    assert error_of(schema, {"x": 131.0}) == FieldError(
        ("x",), "max", "x must be <= 130, got 131.0"
    )


def test_integer_with_only_one_bound():
    assert error_of(one("integer", min=1), {"x": 0}).rule == "min"
    assert one("integer", min=1).validate({"x": 10**20}) == {"x": 10**20}
    assert error_of(one("integer", max=1), {"x": 2}).rule == "max"


# -- boolean ---------------------------------------------------------------------------------


def test_boolean_accepts_only_true_and_false():
    schema = one("boolean")
    assert schema.validate({"x": True}) == {"x": True}
    assert schema.validate({"x": False}) == {"x": False}
    assert error_of(schema, {"x": 1}) == FieldError(
        ("x",), "type", "x must be true or false, got 1"
    )
    assert error_of(schema, {"x": "true"}) == FieldError(
        ("x",), "type", "x must be true or false, got 'true' (a string)"
    )


# -- category --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["red", 3, True, ""])
def test_category_accepts_json_scalars(value):
    out = one("category").validate({"x": value})
    assert out == {"x": value} and type(out["x"]) is type(value)


@pytest.mark.parametrize(
    ("value", "got"), [(1.5, "1.5"), ([1], "an array"), ({"a": 1}, "an object")]
)
def test_category_rejects_other_values(value, got):
    assert error_of(one("category"), {"x": value}) == FieldError(
        ("x",), "type", f"x must be a string, an integer or a boolean, got {got}"
    )


def test_category_checks_allowed_values():
    schema = one("category", values=("red", "blue", 3))
    assert schema.validate({"x": "blue"}) == {"x": "blue"}
    assert schema.validate({"x": 3}) == {"x": 3}
    assert error_of(schema, {"x": "green"}) == FieldError(
        ("x",), "allowed", "x must be one of 'red', 'blue', 3, got 'green'"
    )


def test_category_true_is_not_1():
    ints = one("category", values=(0, 1))
    assert error_of(ints, {"x": True}) == FieldError(
        ("x",), "allowed", "x must be one of 0, 1, got true"
    )
    bools = one("category", values=(True, False))
    assert bools.validate({"x": True}) == {"x": True}
    assert error_of(bools, {"x": 1}) == FieldError(
        ("x",), "allowed", "x must be one of true, false, got 1"
    )


def test_category_message_lists_a_few_values():
    schema = one("category", values=tuple(f"v{i}" for i in range(30)))
    shown = ", ".join(f"'v{i}'" for i in range(10))
    assert error_of(schema, {"x": "w"}) == FieldError(
        ("x",), "allowed", f"x must be one of {shown}, ... (30 in all), got 'w'"
    )


def test_long_values_are_cut_in_messages():
    error = error_of(one("category", values=("a",)), {"x": "y" * 1000})
    assert error.msg == "x must be one of 'a', got '" + "y" * 35 + "...'"


# -- string ----------------------------------------------------------------------------------


def test_string_accepts_only_strings():
    schema = one("string")
    assert schema.validate({"x": "hello"}) == {"x": "hello"}
    assert error_of(schema, {"x": 1}) == FieldError(("x",), "type", "x must be a string, got 1")
    assert error_of(schema, {"x": False}) == FieldError(
        ("x",), "type", "x must be a string, got false (a boolean)"
    )


# -- unknown fields --------------------------------------------------------------------------


def test_unknown_fields_are_rejected(person):
    row = {"age": 3, "member": True, "color": "red", "city": "Oslo"}
    assert errors_of(person, {**row, "colour": "red", "zzz": 1}) == [
        FieldError(
            ("colour",),
            "unknown",
            "colour is not in the schema (did you mean color?); "
            "known fields: age, income, member, color, city",
        ),
        FieldError(
            ("zzz",),
            "unknown",
            "zzz is not in the schema; known fields: age, income, member, color, city",
        ),
    ]


def test_unknown_fields_message_truncates_the_known_names():
    schema = Schema.from_config({f"f{i}": "number" for i in range(12)})
    row = {f"f{i}": 1.0 for i in range(12)}
    known = ", ".join(f"f{i}" for i in range(10))
    assert error_of(schema, {**row, "other": 1}) == FieldError(
        ("other",), "unknown", f"other is not in the schema; known fields: {known}, ... (12 in all)"
    )


def test_without_hints_an_unknown_field_is_worded_without_a_guess():
    schema = Schema.from_config({"color": "string"})
    with pytest.raises(SchemaViolation) as hinted:
        schema.validate({"color": "red", "colour": "red"})
    with pytest.raises(SchemaViolation) as plain:
        schema.validate({"color": "red", "colour": "red"}, hints=False)
    assert "did you mean color?" in hinted.value.errors[0].msg
    assert plain.value.errors == [
        FieldError(("colour",), "unknown", "colour is not in the schema; known fields: color")
    ]


def test_a_violation_lists_the_first_errors_and_counts_the_rest():
    errors = [FieldError((f"f{i}",), "unknown", f"f{i} is unknown") for i in range(50)]
    violation = SchemaViolation(errors, omitted=7)
    assert violation.errors == errors[:MAX_LISTED_ERRORS]
    assert violation.omitted == 50 - MAX_LISTED_ERRORS + 7
    assert str(violation).endswith(f"f{MAX_LISTED_ERRORS - 1} is unknown; and 37 more")
    moved = violation.at("body", 3)
    assert moved.errors[0].loc == ("body", 3, "f0") and moved.omitted == violation.omitted
    # The rows of a batch: listed until full, then only counted.
    gathered = Violations()
    for _ in range(3):
        assert not gathered.full
        gathered.add(SchemaViolation(errors[:8], omitted=1))
    assert gathered.full and len(gathered.errors) == MAX_LISTED_ERRORS
    assert gathered.violation().omitted == 3 * 9 - MAX_LISTED_ERRORS


def test_unknown_field_in_place_of_an_absent_nullable_one(person):
    # As many keys as features and no error: the shortcut must still find the stranger.
    row = {"age": 3, "member": True, "color": "red", "city": "Oslo", "incme": 1.0}
    assert [(e.loc, e.rule) for e in errors_of(person, row)] == [(("incme",), "unknown")]


def test_unknown_fields_are_dropped():
    schema = Schema((Feature("x", FeatureType.NUMBER),), UnknownFields.DROP)
    assert schema.validate({"x": 1, "y": 2, "z": None}) == {"x": 1.0}
    assert error_of(schema, {"y": 2}).rule == "missing"


# -- all together ----------------------------------------------------------------------------


def test_every_violation_is_reported_together_in_schema_order(person):
    bad = {
        "city": 7,
        "extra": 1,
        "color": "green",
        "income": math.nan,
        "age": 200,
        "member": None,
    }
    assert errors_of(person, bad) == [
        FieldError(("age",), "max", "age must be <= 130, got 200"),
        FieldError(("income",), "finite", "income must be a finite number, got nan"),
        FieldError(("member",), "null", "member must not be null"),
        FieldError(("color",), "allowed", "color must be one of 'red', 'blue', got 'green'"),
        FieldError(("city",), "type", "city must be a string, got 7"),
        FieldError(
            ("extra",),
            "unknown",
            "extra is not in the schema; known fields: age, income, member, color, city",
        ),
    ]


VALID = [
    ("number", 1.5),
    ("number", 2),
    ("number", -0.0),
    ("integer", 3),
    ("integer", 3.0),
    ("boolean", True),
    ("boolean", False),
    ("category", "a"),
    ("category", 1),
    ("category", False),
    ("string", ""),
]


@pytest.mark.parametrize(("type_", "value"), VALID)
@pytest.mark.parametrize("nullable", [False, True])
def test_valid_values_stay_valid_when_another_field_is_broken(type_, value, nullable):
    # A broken field sends validation down the path that collects every error; the valid
    # fields must pass there exactly as on the fast path.
    schema = Schema(
        (Feature("x", FeatureType(type_), nullable=nullable), Feature("bad", FeatureType.NUMBER))
    )
    assert schema.validate({"x": value, "bad": 1.0})["x"] == value
    assert [e.loc for e in errors_of(schema, {"x": value, "bad": "oops"})] == [("bad",)]
    assert [e.loc for e in errors_of(schema, {"x": value})] == [("bad",)]
    assert [e.loc for e in errors_of(schema, {"x": value, "bad": 1.0, "y": 0})] == [("y",)]


def test_violation_can_be_placed_under_the_request_body(person):
    with pytest.raises(SchemaViolation) as info:
        person.validate({"age": -1, "member": True, "color": "red", "city": "x"})
    moved = info.value.at("features")
    assert [e.to_dict() for e in moved.errors] == [
        {"loc": ["features", "age"], "type": "min", "msg": "age must be >= 0, got -1"}
    ]
    assert str(info.value) == "age: age must be >= 0, got -1"


def test_clean_output_types_and_order(person):
    clean = person.validate(
        {"city": "Oslo", "color": "blue", "member": False, "income": 10, "age": 42.0}
    )
    assert clean == {"age": 42, "income": 10.0, "member": False, "color": "blue", "city": "Oslo"}
    assert list(clean) == ["age", "income", "member", "color", "city"]
    assert [type(v) for v in clean.values()] == [int, float, bool, str, str]


def test_validate_does_not_change_its_input(person):
    row = {"age": 42.0, "member": False, "color": "blue", "city": "Oslo"}
    before = dict(row)
    person.validate(row)
    assert row == before


def test_phishing_row():
    schema = Schema.from_config(
        {
            **{k: {"type": "number", "min": 0, "max": 1} for k in list(PHISHING_ROW)[:7]},
            "age_of_domain": "integer",
            "ip_in_url": {"type": "integer", "min": 0, "max": 1},
        }
    )
    clean = schema.validate(PHISHING_ROW)
    assert clean == PHISHING_ROW
    assert schema.model_input(clean) == PHISHING_ROW
    assert schema.numeric == tuple(PHISHING_ROW) and schema.categorical == ()


# -- model input -----------------------------------------------------------------------------


def test_model_input_drops_none_and_keeps_bools(person):
    clean = person.validate({"age": 1, "member": True, "color": "red", "city": "x"})
    x = person.model_input(clean)
    assert x == {"age": 1, "member": True, "color": "red", "city": "x"}
    assert x["member"] is True


def test_model_input_is_a_new_dict(person):
    clean = person.validate({"age": 1, "income": 2, "member": True, "color": "red", "city": "x"})
    x = person.model_input(clean)
    assert x == clean and x is not clean


# -- declaring -------------------------------------------------------------------------------


def test_numeric_and_categorical(person):
    assert person.numeric == ("age", "income", "member")
    assert person.categorical == ("color", "city")
    assert person.names == ("age", "income", "member", "color", "city")
    assert person["age"] == Feature("age", FeatureType.INTEGER, min=0, max=130)
    assert "age" in person and "agee" not in person
    with pytest.raises(KeyError):
        person["agee"]


def test_short_form_equals_table_form():
    assert Schema.from_config({"age": "integer"}) == Schema.from_config(
        {"age": {"type": "integer"}}
    )


def test_feature_accepts_type_names_and_value_lists():
    f = Feature("c", "category", values=["a", "b"])
    assert f.type is FeatureType.CATEGORY and f.values == ("a", "b")


@pytest.mark.parametrize(
    ("features", "msg"),
    [
        ({"age": "int"}, "feature 'age': unknown type 'int' (did you mean integer?); use one of"),
        ({"age": "nmber"}, "feature 'age': unknown type 'nmber' (did you mean number?)"),
        ({"age": {"type": "interger"}}, "unknown type 'interger' (did you mean integer?)"),
        ({"age": {"min": 0}}, "feature 'age': type is missing; use one of number, integer, "),
        ({"age": {"type": "integer", "maximum": 3}}, "feature 'age': unknown key 'maximum'"),
        ({"c": {"type": "category", "min": 0}}, "feature 'c': min applies to number and integer"),
        ({"c": {"type": "string", "max": 0}}, "feature 'c': max applies to number and integer"),
        ({"b": {"type": "boolean", "min": 0}}, "feature 'b': min applies to number and integer"),
        (
            {"age": {"type": "integer", "min": 5, "max": 1}},
            "feature 'age': min (5) must be <= max (1)",
        ),
        ({"age": {"type": "integer", "min": "0"}}, "feature 'age': min must be a number, got '0'"),
        (
            {"age": {"type": "integer", "min": True}},
            "feature 'age': min must be a number, got True",
        ),
        (
            {"age": {"type": "number", "max": math.inf}},
            "feature 'age': max must be a finite number",
        ),
        ({"age": {"type": "number", "values": [1]}}, "feature 'age': values applies to category"),
        ({"c": {"type": "category", "values": []}}, "feature 'c': values must list at least one"),
        ({"c": {"type": "category", "values": "abc"}}, "feature 'c': values must be a list"),
        ({"c": {"type": "category", "values": {"a", "b"}}}, "feature 'c': values must be a list"),
        ({"age": ["integer"]}, "feature 'age': expected a type name like"),
        ({"age": {"type": ["integer"]}}, "feature 'age': unknown type ['integer']; use one of"),
        ({"c": {"type": "category", "values": [1.5]}}, "feature 'c': values must be strings,"),
        ({"c": {"type": "category", "values": [None]}}, "feature 'c': values must be strings,"),
        (
            {"c": {"type": "category", "values": ["a", "a"]}},
            "feature 'c': value 'a' is listed twice",
        ),
        (
            {"n": {"type": "number", "nullable": "yes"}},
            "feature 'n': nullable must be true or false",
        ),
        ({"n": 3}, "feature 'n': expected a type name like \"number\" or a table"),
        ({"": "number"}, "feature names must be non-empty strings"),
        ({}, "a schema declares at least one feature"),
    ],
)
def test_from_config_errors(features, msg):
    with pytest.raises(ConfigError) as info:
        Schema.from_config(features)
    assert msg in str(info.value)


def test_from_config_error_lists_the_allowed_keys():
    with pytest.raises(ConfigError) as info:
        Schema.from_config({"age": {"type": "integer", "maximum": 3}})
    assert str(info.value) == (
        "feature 'age': unknown key 'maximum' (did you mean max?); "
        "allowed keys: type, nullable, min, max, values"
    )


def test_true_and_1_are_different_category_values():
    assert Feature("c", FeatureType.CATEGORY, values=(1, True)).values == (1, True)


def test_from_config_rejects_a_bad_unknown_fields():
    with pytest.raises(ConfigError, match="unknown_fields must be 'reject' or 'drop', got 'keep'"):
        Schema.from_config({"a": "number"}, "keep")


def test_from_config_rejects_non_tables():
    with pytest.raises(ConfigError, match="features must be a table"):
        Schema.from_config(["a"])


def test_duplicate_names_are_refused():
    with pytest.raises(ConfigError, match="feature 'a' is declared twice"):
        Schema((Feature("a", FeatureType.NUMBER), Feature("a", FeatureType.STRING)))


# -- round trips and fingerprints ------------------------------------------------------------


def test_config_round_trip(person):
    config = person.to_config()
    assert config == {
        "features": {
            "age": {"type": "integer", "min": 0, "max": 130},
            "income": {"type": "number", "nullable": True},
            "member": {"type": "boolean"},
            "color": {"type": "category", "values": ["red", "blue"]},
            "city": {"type": "string"},
        },
        "unknown_fields": "reject",
    }
    assert Schema.from_config(**config) == person
    drop = Schema(person.features, UnknownFields.DROP)
    assert Schema.from_config(**drop.to_config()) == drop


def test_pickle_and_copy_keep_a_working_schema(person):
    row = {"age": 3.0, "member": True, "color": "red", "city": "x"}
    for clone in (pickle.loads(pickle.dumps(person)), copy.deepcopy(person), copy.copy(person)):
        assert clone == person
        assert clone.validate(row) == person.validate(row)
        assert error_of(clone, {**row, "age": -1}).rule == "min"


def test_fingerprint_is_stable_and_sensitive(person):
    assert len(person.fingerprint()) == 16
    assert person.fingerprint() == Schema.from_config(**person.to_config()).fingerprint()
    same_bounds_as_floats = Schema.from_config(
        {**person.to_config()["features"], "age": {"type": "integer", "min": 0.0, "max": 130.0}}
    )
    assert same_bounds_as_floats == person
    assert same_bounds_as_floats.fingerprint() == person.fingerprint()
    variants = [
        Schema(person.features, UnknownFields.DROP),
        Schema(person.features[::-1]),
        Schema.from_config({**person.to_config()["features"], "city": "category"}),
        Schema.from_config({**person.to_config()["features"], "extra": "number"}),
        Schema.from_config(
            {**person.to_config()["features"], "age": {"type": "integer", "min": 0, "max": 120}}
        ),
    ]
    prints = {person.fingerprint(), *(v.fingerprint() for v in variants)}
    assert len(prints) == 1 + len(variants)


def test_fingerprint_is_the_same_in_another_process(person):
    code = (
        "from onlearn.schema import Schema; import sys, json; "
        "print(Schema.from_config(**json.loads(sys.argv[1])).fingerprint())"
    )
    import json

    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(person.to_config())],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={"PYTHONHASHSEED": "123", "PYTHONPATH": str(ROOT)},
    )
    assert out.stdout.strip() == person.fingerprint()


def test_fingerprint_golden():
    # Pinned: a change of this value invalidates every stored fingerprint.
    schema = Schema.from_config({"age": {"type": "integer", "min": 0}, "c": "category"})
    assert schema.fingerprint() == "1ccc82b5045900d4"


# -- TOML ------------------------------------------------------------------------------------


def parse_features(snippet: str, model: str = "my_model") -> Schema:
    table = tomllib.loads(snippet)["models"][model]
    return Schema.from_config(table["features"], table.get("unknown_fields", "reject"))


def test_toml_snippet(person):
    assert schema_to_toml(person, "people") == (
        "[models.people]\n"
        'task = "classification"\n'
        'pipeline = { name = "hoeffding_tree" }\n'
        "\n"
        "[models.people.features]\n"
        'age = { type = "integer", min = 0, max = 130 }\n'
        'income = { type = "number", nullable = true }\n'
        'member = { type = "boolean" }\n'
        'color = { type = "category", values = ["red", "blue"] }\n'
        'city = { type = "string" }\n'
    )
    assert parse_features(schema_to_toml(person, "people"), "people") == person


def test_toml_round_trip_with_awkward_names_and_values():
    schema = Schema(
        (
            Feature("plain_name-1", FeatureType.NUMBER, min=-1.5e-07, max=1e20),
            Feature("with space.and dot", FeatureType.INTEGER, nullable=True, min=-3),
            Feature('quote " and \\ back', FeatureType.BOOLEAN),
            Feature("naïve ключ", FeatureType.STRING),
            Feature(
                "c",
                FeatureType.CATEGORY,
                values=('say "hi"', "tab\there", "line\nbreak", "\x7f\x00", "é😀", 7, True),
            ),
        ),
        UnknownFields.DROP,
    )
    snippet = schema_to_toml(schema, target="label")
    assert tomllib.loads(snippet)["models"]["my_model"]["target"] == "label"
    assert parse_features(snippet) == schema


def test_toml_snippet_with_target_and_drop():
    schema = Schema((Feature("a", FeatureType.NUMBER),), UnknownFields.DROP)
    assert schema_to_toml(schema, "m", target="y") == (
        "[models.m]\n"
        'task = "classification"\n'
        'target = "y"\n'
        'unknown_fields = "drop"\n'
        'pipeline = { name = "hoeffding_tree" }\n'
        "\n"
        "[models.m.features]\n"
        'a = { type = "number" }\n'
    )


# -- inference -------------------------------------------------------------------------------

CSV = """\
id,age,height,smoker,color,zip,note,empty,label
1,34,1.80,yes,red,02139,first visit,,1
2,,1.65,No,blue,10001,,NA,0
3,51,2,TRUE,red,02139,back pain,null,1
4,27,1.7e0,false,blue,94105,checkup,,0
5,40,NaN,no,red,10001,flu,None,1
6,63,1.75,Yes,green,02139,flu shot,nan,0
"""


def test_infer_schema_from_csv_golden(tmp_path):
    path = tmp_path / "people.csv"
    path.write_text(CSV, encoding="utf-8")
    schema = infer_schema_from_csv(path, target="label")
    assert schema == Schema(
        (
            Feature("id", FeatureType.INTEGER),
            Feature("age", FeatureType.INTEGER, nullable=True),
            Feature("height", FeatureType.NUMBER, nullable=True),
            Feature("smoker", FeatureType.BOOLEAN),
            Feature("color", FeatureType.CATEGORY, values=("blue", "green", "red")),
            Feature("zip", FeatureType.CATEGORY, values=("02139", "10001", "94105")),
            Feature("note", FeatureType.STRING, nullable=True),
            Feature("empty", FeatureType.STRING, nullable=True),
        )
    )
    assert schema_to_toml(schema, "people", target="label") == (
        "[models.people]\n"
        'task = "classification"\n'
        'target = "label"\n'
        'pipeline = { name = "hoeffding_tree" }\n'
        "\n"
        "[models.people.features]\n"
        'id = { type = "integer" }\n'
        'age = { type = "integer", nullable = true }\n'
        'height = { type = "number", nullable = true }\n'
        'smoker = { type = "boolean" }\n'
        'color = { type = "category", values = ["blue", "green", "red"] }\n'
        'zip = { type = "category", values = ["02139", "10001", "94105"] }\n'
        'note = { type = "string", nullable = true }\n'
        'empty = { type = "string", nullable = true }\n'
    )
    assert parse_features(schema_to_toml(schema, target="label")) == schema


def test_infer_keeps_the_target_without_target(tmp_path):
    path = tmp_path / "people.csv"
    path.write_text(CSV, encoding="utf-8")
    schema = infer_schema_from_csv(path)
    assert schema.names[-1] == "label" and schema["label"].type is FeatureType.INTEGER


def test_infer_limit_reads_the_first_rows(tmp_path):
    path = tmp_path / "people.csv"
    path.write_text(CSV, encoding="utf-8")
    schema = infer_schema_from_csv(path, target="label", limit=1)
    assert schema["age"] == Feature("age", FeatureType.INTEGER)  # the empty age is in row 2
    assert schema["color"].type is FeatureType.STRING  # one value, seen once


def test_infer_from_csv_errors(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="target column 'y' is not in the header; columns: a, b"):
        infer_schema_from_csv(path, target="y")
    path.write_text("a,a\n1,2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="duplicated column names: a"):
        infer_schema_from_csv(path)
    path.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="no header row"):
        infer_schema_from_csv(path)
    path.write_text("a,b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="the sample has no rows"):
        infer_schema_from_csv(path)


def test_infer_reads_a_utf8_bom_and_short_rows(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("\ufeffa,b\n1,2\n3\n", encoding="utf-8")
    assert infer_schema_from_csv(path) == Schema(
        (Feature("a", FeatureType.INTEGER), Feature("b", FeatureType.INTEGER, nullable=True))
    )


@pytest.mark.parametrize(
    ("values", "type_"),
    [
        (["1", "-2", "+3", " 4 "], FeatureType.INTEGER),
        (["1", "2.5", "-.5", "1e3", "7."], FeatureType.NUMBER),
        (["1", "1e999"], FeatureType.STRING),  # overflows: not a finite number
        (["inf", "-inf"], FeatureType.STRING),
        (["007", "007"], FeatureType.CATEGORY),  # a code, not the number 7
        (["1_000", "1_000"], FeatureType.CATEGORY),
        (["yes", "NO", "True", "false"], FeatureType.BOOLEAN),
        (["yes", "no", "maybe", "maybe", "no", "yes"], FeatureType.CATEGORY),
        (["0", "1", "1"], FeatureType.INTEGER),
        (["t", "f", "t", "f"], FeatureType.CATEGORY),
        (["a", "b", "c"], FeatureType.STRING),  # seen once each: not repeated
        (["a", "b", "a", "b"], FeatureType.CATEGORY),
        (["", "", "", ""], FeatureType.STRING),
    ],
)
def test_infer_types(values, type_):
    schema = infer_schema({"x": v} for v in values)
    assert schema["x"].type is type_
    assert schema["x"].nullable is (values[0] == "")


def test_infer_strips_category_values():
    schema = infer_schema({"x": v} for v in ["a", " a", "b ", "b", " "])
    assert schema["x"] == Feature("x", FeatureType.CATEGORY, nullable=True, values=("a", "b"))


@pytest.mark.parametrize("missing", ["", "NA", "na", "null", "NULL", "None", "nan", "NaN", "  "])
def test_infer_missing_values_make_a_feature_nullable(missing):
    schema = infer_schema([{"x": "1"}, {"x": missing}])
    assert schema["x"] == Feature("x", FeatureType.INTEGER, nullable=True)


def test_infer_a_column_absent_from_some_rows_is_nullable():
    schema = infer_schema([{"a": "1"}, {"a": "2", "b": "x"}, {"a": "3", "b": None}])
    assert schema == Schema(
        (Feature("a", FeatureType.INTEGER), Feature("b", FeatureType.STRING, nullable=True))
    )


def test_infer_max_categories():
    rows = [{"x": f"v{i % 5}"} for i in range(20)]
    assert infer_schema(rows, max_categories=5)["x"].values == tuple(f"v{i}" for i in range(5))
    assert infer_schema(rows, max_categories=4)["x"] == Feature("x", FeatureType.STRING)


def test_infer_never_infers_bounds():
    schema = infer_schema([{"x": "1"}, {"x": "100"}, {"y": "0.5"}])
    assert all(f.min is None and f.max is None for f in schema.features)


def test_infer_from_nothing_is_an_error():
    with pytest.raises(ConfigError, match="no rows or no columns"):
        infer_schema([])


def test_inferred_schema_validates_typed_rows(tmp_path):
    path = tmp_path / "people.csv"
    path.write_text(CSV, encoding="utf-8")
    schema = infer_schema_from_csv(path, target="label")
    row = {
        "id": 7,
        "age": None,
        "height": 1.7,
        "smoker": False,
        "color": "red",
        "zip": "10001",
        "note": "x",
    }
    assert schema.validate(row) == {**row, "height": 1.7, "empty": None}


@pytest.mark.parametrize(
    ("values", "task"),
    [
        (["spam", "ham"] * 10, "classification"),  # text
        (["yes", "no", "Yes", ""] * 5, "classification"),  # booleans, some missing
        (["0", "1", "1", "2"] * 5, "classification"),  # a few repeated numbers
        (["0.0", "1.0"] * 10, "classification"),  # the same, written as decimals
        ([str(i * 1.5) for i in range(20)], "regression"),  # every value distinct
        ([str(1000 + 37 * i) for i in range(40)], "regression"),  # many whole numbers
        ([f"{i / 7:.3f}" for i in range(200)] + ["NA"] * 3, "regression"),  # a measurement
        ([str(i % 30) for i in range(300)], "regression"),  # more distinct than classes
        ([], "classification"),  # nothing to judge by
    ],
)
def test_infer_task_from_a_csv_target_column(tmp_path, values, task):
    path = tmp_path / "data.csv"
    path.write_text("x,target\n" + "".join(f"{i},{v}\n" for i, v in enumerate(values)))
    assert infer_task_from_csv(path, "target")[0] == task
    assert infer_task(values)[0] == task
    with pytest.raises(ConfigError, match="'nope' is not in the header"):
        infer_task_from_csv(path, "nope")


def test_schema_to_toml_of_a_regression_model_with_a_note():
    schema = Schema.from_config({"sqft": {"type": "integer"}})
    snippet = schema_to_toml(schema, "houses", "price", task="regression", note="a\nreason")
    assert snippet.splitlines()[:5] == [
        "[models.houses]",
        "# a reason",
        'task = "regression"',
        'target = "price"',
        'pipeline = { name = "hoeffding_tree_regressor" }',
    ]
