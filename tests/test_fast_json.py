"""The hot routes read JSON with orjson and write it with orjson: the same values and the same
errors as with json alone, on a matrix of hostile bodies (json reads what orjson refuses)."""

from __future__ import annotations

import json
import math

import orjson
import pytest

from onlearn.errors import SchemaViolation
from serving import fast
from serving.responses import JSON

BODIES = [
    b'{"features": {"x": 1.5, "y": 2, "z": true, "c": "red"}}',
    b'{"features": {"x": NaN}}',
    b'{"features": {"x": Infinity, "y": -Infinity}}',
    b'{"features": {"x": 1e999}}',
    b'{"features": {"x": -0.0, "y": 5e-324, "z": 1.7976931348623157e308}}',
    b'{"features": {"x": 18446744073709551616}}',
    b'{"features": {"x": -9223372036854775809}}',
    b'{"features": {"x": 9223372036854775807, "y": -9223372036854775808}}',
    b'{"features": {"x": 123456789012345678901234567890}}',
    b'{"features": {"x": 0.1234567890123456789012345}}',
    b'{"features": {"id": "12345678901234567890"}}',
    b'{"a": 1, "a": 2}',
    b'{"s": "\\ud83d\\ude00 \\u00e9 \\u0000"}',
    b'{"s": "\\ud800"}',
    b'{"s": "\\udc00x"}',
    b'{"s": "\\uDFFF"}',
    '{"s": "\u00e9\u4e2d"}'.encode(),
    b'\xef\xbb\xbf{"a": 1}',
    '{"a": 1}'.encode("utf-16"),
    '{"a": 1}'.encode("utf-32-le"),
    b'{"a": "\xff"}',
    b"[" * 5000 + b"]" * 5000,
    b"[" * 400 + b"]" * 400,
    b"",
    b"   ",
    b"{",
    b'{"a": 1} x',
    b"null",
    b"[1, 2.0, true, null]",
    b'"text"',
    b"1e2",
    b'{"rows": [' + b",".join([b'{"features": {"x": 0.5}}'] * 300) + b"]}",
]


def exact(value):
    if isinstance(value, dict):
        return ("dict", [(exact(k), exact(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [exact(v) for v in value])
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    return (type(value).__name__, repr(value))


def outcome(body: bytes):
    try:
        return exact(fast.parse_json(body))
    except SchemaViolation as e:
        return [(x.loc, x.rule, x.msg) for x in e.errors]


@pytest.mark.parametrize("body", BODIES, ids=lambda b: repr(b[:40]))
def test_parse_json_equals_json_alone(body, monkeypatch):
    got = outcome(body)

    def refuse(_):
        raise orjson.JSONDecodeError("off", "", 0)

    monkeypatch.setattr(fast.orjson, "loads", refuse)
    assert got == outcome(body)


def test_orjson_reads_the_usual_body():
    body = b'{"rows": [{"features": {"x": 0.5, "n": 3}}]}'
    calls = []
    loads = fast.orjson.loads

    def spy(b):
        calls.append(b)
        return loads(b)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(fast.orjson, "loads", spy)
        assert fast.parse_json(body) == json.loads(body)
    assert calls == [body]


@pytest.mark.parametrize(
    "content",
    [
        {"prediction_id": "ab", "label": True, "proba": {True: 0.25, False: 0.75}, "u": 1e-07},
        {"proba": {1: 0.5, 2: 0.5}, "none": None, "nested": [{"a": [1, 2.5, "x"]}]},
        {"big": 2**70, "text": "\u00e9\u4e2d\U0001f600"},
        {"label": -0.0, "tiny": 5e-324, "huge": 1.7976931348623157e308},
    ],
)
def test_answers_read_back_as_json_writes_them(content):
    body = JSON(content).body
    expected = json.dumps(content, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    assert exact(json.loads(body)) == exact(json.loads(expected))


def test_predictions_are_written_as_their_to_dict():
    from onlearn.engine.predict import Prediction

    p = Prediction("a" * 32, "m", "v1", True, {True: 0.75, False: 0.25}, 0.25, False)
    q = Prediction("b" * 32, "m", "v1", 10**30, {10**30: 1.0}, 0.0, True)  # json's way
    for prediction in (p, q):
        body = JSON({"predictions": [prediction]}).body
        assert json.loads(body) == json.loads(json.dumps({"predictions": [prediction.to_dict()]}))
