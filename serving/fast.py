"""The hot routes (predict, predict/batch, feedback) as plain Starlette endpoints.

FastAPI's per-request parameter machinery cost about as much as everything onlearn does for a
prediction (~90 us of ~300 us, measured). These endpoints parse the JSON and check its shape
themselves, with the same error format as FastAPI's (``{"detail": [{"loc", "type", "msg"}]}``).

Each route is declared once, by its FastAPI route in ``serving/routes/`` (path, body model,
answers: what the OpenAPI document shows), marked ``@fast.serves(handler)``; :func:`install`
serves that path with the handler, ahead of FastAPI. The handler's checks are derived from the
same request models (:func:`checks_of`), so the document and the checks cannot drift apart.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Callable
from typing import Any

import orjson
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.requests import Request
from starlette.routing import Route

from onlearn.engine import FeedbackItem
from onlearn.errors import FieldError, SchemaViolation
from serving.errors import detail_of, not_utf8, status_of
from serving.responses import JSON
from serving.schemas import (
    FeedbackBatchRequest,
    FeedbackRequest,
    PredictBatchRequest,
    PredictRequest,
)

# field -> (check, pydantic error type, message); None means any JSON value.
_Check = tuple[Callable[[Any], bool], str, str] | None
DICT: _Check = (lambda v: isinstance(v, dict), "dict_type", "Input should be a valid dictionary")
LIST: _Check = (lambda v: isinstance(v, list), "list_type", "Input should be a valid list")
STRING: _Check = (lambda v: isinstance(v, str), "string_type", "Input should be a valid string")
BOOL: _Check = (lambda v: isinstance(v, bool), "bool_type", "Input should be a valid boolean")
ANY: _Check = None
_BY_TYPE = {dict: DICT, list: LIST, str: STRING, bool: BOOL}
Checks = tuple[dict[str, _Check], dict[str, _Check]]


def checks_of(model: type[BaseModel]) -> Checks:
    """``(required, optional)`` field checks of a request model: each field's JSON type, null
    allowed for an optional one (its default then applies). Only the shape is checked here;
    what a value means (a label, a feature) is the engine's to judge.

    >>> checks_of(PredictRequest) == ({"features": DICT}, {"key": STRING})
    True
    """
    required: dict[str, _Check] = {}
    optional: dict[str, _Check] = {}
    for name, field in model.model_fields.items():
        (required if field.is_required() else optional)[name] = _check_of(field.annotation)
    return required, optional


def _check_of(annotation: Any) -> _Check:
    if annotation is Any:
        return ANY
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
    check = _BY_TYPE.get(typing.get_origin(annotation) or annotation)
    if check is None:  # a request model grew a field of a type the fast path cannot check
        raise TypeError(f"no fast check for a field of type {annotation!r}")
    return check


PREDICT = checks_of(PredictRequest)
PREDICT_BATCH = checks_of(PredictBatchRequest)
FEEDBACK = checks_of(FeedbackRequest)
FEEDBACK_BATCH = checks_of(FeedbackBatchRequest)


# orjson reads integers beyond 64 bits as floats, where json keeps them exact: a body with a run
# of 19 digits (the longest 64-bit integer) is read by json. Found by mapping every digit to 0
# and looking for 19 zeros: a tenth of the time of a regular expression.
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 19


def parse_json(body: bytes) -> Any:
    """The JSON value of a request body, or a SchemaViolation (422) that says what is wrong.

    orjson reads a body three to four times faster than json. What it refuses (NaN and
    Infinity, a BOM or UTF-16, lone surrogates, bad UTF-8, nesting deeper than 1024) is read
    again by json, whose answer (a value, or the errors below) is the one given before orjson
    came, as for any body with a long number in it.
    """
    if _LONG_RUN not in body.translate(_DIGITS_TO_ZERO):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    try:
        data = json.loads(body)
    except UnicodeDecodeError as e:
        raise SchemaViolation([not_utf8(e)]) from None
    except ValueError as e:
        pos = getattr(e, "pos", 0)
        raise SchemaViolation(
            [FieldError(("body", pos), "json_invalid", f"JSON decode error: {e}")]
        ) from None
    except RecursionError:
        # Arrays or objects nested thousands deep (a few kB of "[[[["): the decoder recurses
        # once per level. No valid body nests more than a few levels.
        raise SchemaViolation(
            [FieldError(("body",), "json_invalid", "JSON decode error: nested too deeply")]
        ) from None
    if b"\\ud" in body or b"\\uD" in body:  # rare: only escapes can make a lone surrogate
        refuse_lone_surrogates(data, ("body",))
    return data


def refuse_lone_surrogates(data: Any, loc: tuple) -> None:
    """A ``\\ud800``-``\\udfff`` escape outside a surrogate pair decodes to a string that is not
    Unicode: it cannot be stored, logged or echoed in an answer (each would fail with a 500, and
    a label event in a group commit would fail the commit of everyone in its batch)."""
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise SchemaViolation(
            [
                FieldError(
                    loc,
                    "string_unicode",
                    "a string holds a \\uD800-\\uDFFF escape outside a surrogate pair, "
                    "which is not valid Unicode; send UTF-8 text",
                )
            ]
        ) from None


def check_object(
    data: Any,
    loc: tuple,
    required: dict[str, _Check],
    optional: dict[str, _Check],
    errors: list[FieldError],
) -> dict | None:
    """``data`` as an object with these fields (null allowed for optional ones), or None with
    the errors appended."""
    if not isinstance(data, dict):
        errors.append(FieldError(loc, "dict_type", "Input should be a valid dictionary"))
        return None
    before = len(errors)
    for name, check in required.items():
        if name not in data:
            errors.append(FieldError((*loc, name), "missing", "Field required"))
        elif check is not None and not check[0](data[name]):
            errors.append(FieldError((*loc, name), check[1], check[2]))
    for name, check in optional.items():
        value = data.get(name)
        if value is not None and check is not None and not check[0](value):
            errors.append(FieldError((*loc, name), check[1], check[2]))
    for name in data:
        if name not in required and name not in optional:
            errors.append(
                FieldError((*loc, name), "extra_forbidden", "Extra inputs are not permitted")
            )
    return data if len(errors) == before else None


def _raise(errors: list[FieldError]) -> None:
    if errors:
        raise SchemaViolation(errors)


async def predict(request: Request) -> JSON:
    data = parse_json(await request.body())
    errors: list[FieldError] = []
    check_object(data, ("body",), *PREDICT, errors)
    _raise(errors)
    engine = request.app.state.engine
    try:
        prediction = engine.predict_one(
            request.path_params["name"], data["features"], key=data.get("key")
        )
    except SchemaViolation as e:
        raise e.at("body", "features") from None
    return JSON(prediction.to_dict())


async def predict_batch(request: Request) -> JSON:
    data = parse_json(await request.body())
    errors: list[FieldError] = []
    body = check_object(data, ("body",), *PREDICT_BATCH, errors)
    if body is not None:
        limit = request.app.state.settings.limits.max_batch_rows
        if len(body["rows"]) > limit:
            errors.append(
                FieldError(
                    ("body", "rows"),
                    "max_items",
                    f"rows must hold at most {limit} items, got {len(body['rows'])}",
                )
            )
        elif not _plain_rows(body["rows"]):
            for i, row in enumerate(body["rows"]):
                check_object(row, ("body", "rows", i), *PREDICT, errors)
    _raise(errors)
    engine = request.app.state.engine
    rows = data["rows"]
    keys = [r.get("key") for r in rows] if any("key" in r for r in rows) else None
    try:
        predictions = engine.predict_many(
            request.path_params["name"], [r["features"] for r in rows], keys=keys
        )
    except SchemaViolation as e:
        raise SchemaViolation(
            [
                FieldError(("body", "rows", f.loc[0], "features", *f.loc[1:]), f.rule, f.msg)
                for f in e.errors
            ],
            e.omitted,
        ) from None
    # orjson writes each Prediction (a dataclass) as its to_dict() would be written.
    return JSON({"predictions": predictions})


def _plain_rows(rows: list) -> bool:
    """Whether every row is ``{"features": {...}}``, the usual batch, which ``check_object``
    passes; a row of any other shape goes through it (which words the errors)."""
    for row in rows:
        if row.__class__ is not dict or len(row) != 1 or row.get("features").__class__ is not dict:
            return False
    return True


TRUE, FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def _wait(request: Request) -> bool:
    if not request.scope["query_string"]:  # the usual call: parsing nothing cost 9% of a label
        return True
    value = request.query_params.get("wait", "true").lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise SchemaViolation(
        [
            FieldError(
                ("query", "wait"),
                "bool_parsing",
                "Input should be a valid boolean, unable to interpret input",
            )
        ]
    )


def feedback_item(data: dict) -> FeedbackItem:
    return FeedbackItem(
        label=data["label"],
        prediction_id=data.get("prediction_id"),
        features=data.get("features"),
        source=data.get("source") or "app",
        labeller=data.get("labeller"),
        event_id=data.get("event_id"),
        correction=data.get("correction") is True,
    )


async def feedback(request: Request) -> JSON:
    wait = _wait(request)
    data = parse_json(await request.body())
    errors: list[FieldError] = []
    check_object(data, ("body",), *FEEDBACK, errors)
    _raise(errors)
    engine = request.app.state.engine
    try:
        result = await engine.feedback_one_async(
            request.path_params["name"], feedback_item(data), wait=wait
        )
    except SchemaViolation as e:
        raise e.at("body") from None
    return JSON(result.to_dict())


async def feedback_batch(request: Request) -> JSON:
    asked = _wait(request)  # ?wait= as on the single call; a ``wait`` in the body wins
    data = parse_json(await request.body())
    errors: list[FieldError] = []
    body = check_object(data, ("body",), *FEEDBACK_BATCH, errors)
    if body is not None:
        limit = request.app.state.settings.limits.max_batch_rows
        if len(body["items"]) > limit:
            errors.append(
                FieldError(
                    ("body", "items"),
                    "max_items",
                    f"items must hold at most {limit} items, got {len(body['items'])}",
                )
            )
        else:
            for i, item in enumerate(body["items"]):
                check_object(item, ("body", "items", i), *FEEDBACK, errors)
    _raise(errors)
    engine = request.app.state.engine
    wait = data.get("wait")
    try:
        results = await engine.feedback_many_async(
            request.path_params["name"],
            [feedback_item(i) for i in data["items"]],
            wait=asked if wait is None else wait,
        )
    except SchemaViolation as e:
        raise e.at("body", "items") from None
    return JSON(
        {
            "results": [
                r.to_dict()
                if r.error is None
                else {"error": {"status": status_of(r.error), "detail": detail_of(r.error)}}
                for r in results
            ]
        }
    )


def serves(handler: Callable) -> Callable[[Callable], Callable]:
    """Mark a documented FastAPI route as served by ``handler`` (see :func:`install`)."""

    def mark(endpoint: Callable) -> Callable:
        endpoint.fast_handler = handler  # type: ignore[attr-defined]
        return endpoint

    return mark


def install(app, routers: list) -> None:
    """Serve each route of ``routers`` marked :func:`serves` with its handler, ahead of the
    FastAPI routes: same path and methods, taken from the one declaration. (The routers, not
    the app's table: FastAPI keeps included routes in its own wrappers.)"""
    fast = [
        Route(route.path, route.endpoint.fast_handler, methods=sorted(route.methods))
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute) and hasattr(route.endpoint, "fast_handler")
    ]
    app.router.routes[:0] = fast
