"""Domain errors -> HTTP status codes, in one place. Bad input is a 4xx naming the field."""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from onlearn.errors import (
    MAX_LISTED_ERRORS,
    ActiveLearningOff,
    ArtifactRejected,
    ConfigError,
    FieldError,
    JobConflict,
    LabelConflict,
    LeaseConflict,
    OnlearnError,
    PredictionExpired,
    QueueItemGone,
    RoleConflict,
    SchemaViolation,
    StoreUnavailable,
    UnknownJob,
    UnknownModel,
    UnknownPrediction,
    UnknownQueueItem,
    UnknownVersion,
)

log = logging.getLogger(__name__)

STATUS = {
    UnknownModel: 404,
    ActiveLearningOff: 404,
    UnknownQueueItem: 404,
    QueueItemGone: 410,
    LeaseConflict: 409,
    LabelConflict: 409,
    UnknownVersion: 404,
    UnknownJob: 404,
    RoleConflict: 409,
    JobConflict: 409,
    UnknownPrediction: 404,
    PredictionExpired: 410,
    SchemaViolation: 422,
    ConfigError: 400,
    StoreUnavailable: 503,
    ArtifactRejected: 500,
}


def status_of(error: OnlearnError) -> int:
    for kind, status in STATUS.items():
        if isinstance(error, kind):
            return status
    return 400


# An error's message, and each part of its location, is cut at this many characters: both can
# echo the input (an unknown field's name is its location and is in its message), and a
# client's megabyte-long key must not come back twice per error.
MAX_ERROR_CHARS = 500
# Of an input that FastAPI's validation echoes, at most this much JSON is kept.
MAX_INPUT_CHARS = 200


def detail_of(error: OnlearnError):
    if isinstance(error, SchemaViolation):
        return field_errors([e.to_dict() for e in error.errors], error.omitted)
    if isinstance(error, LabelConflict):
        # The recorded label, for a client to show or to correct it: the label was not used.
        return printable({"msg": _cut(str(error)), "used": False, "recorded": error.recorded})
    return printable(str(error))


def field_errors(errors: list[dict], omitted: int = 0) -> list[dict]:
    """The ``detail`` of a 422: the first :data:`MAX_LISTED_ERRORS` errors, each cut to a
    bounded size, then, when some were left out, one more entry that counts them."""
    omitted += max(0, len(errors) - MAX_LISTED_ERRORS)
    detail = [_bounded(e) for e in errors[:MAX_LISTED_ERRORS]]
    if omitted:
        detail.append(
            {
                "loc": ["body"],
                "type": "too_many_errors",
                "msg": f"and {omitted} more errors, not listed: an answer lists the first "
                f"{MAX_LISTED_ERRORS}; fix these and send again",
                "omitted": omitted,
            }
        )
    return printable(detail)


def _bounded(error: dict) -> dict:
    out = dict(error)
    out["loc"] = [_cut(part) if isinstance(part, str) else part for part in error.get("loc", ())]
    if isinstance(error.get("msg"), str):
        out["msg"] = _cut(error["msg"])
    if "input" in error:
        text = json.dumps(error["input"], default=str)
        if len(text) > MAX_INPUT_CHARS:  # the rest of a long value says nothing more
            out["input"] = text[:MAX_INPUT_CHARS] + f"... ({len(text)} characters of JSON)"
    if "ctx" in error:
        out["ctx"] = {k: _cut(v) if isinstance(v, str) else v for k, v in error["ctx"].items()}
    return out


def _cut(text: str) -> str:
    if len(text) <= MAX_ERROR_CHARS:
        return text
    return text[:MAX_ERROR_CHARS] + f"... ({len(text)} characters)"


def printable(value: Any) -> Any:
    """``value`` with what JSON cannot carry made visible instead: a message that echoes the
    input (NaN, a lone surrogate) must not turn a 4xx into a 500 while being rendered."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {printable(k): printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [printable(v) for v in value]
    return value


def not_utf8(error: UnicodeDecodeError) -> FieldError:
    """The field error of a JSON body that is not UTF-8 text."""
    return FieldError(
        ("body", error.start),
        "json_invalid",
        f"JSON decode error: the body is not UTF-8 text ({error.reason} at byte {error.start}); "
        "send JSON encoded as UTF-8",
    )


def at(violation: SchemaViolation, *prefix) -> SchemaViolation:
    """Locations as FastAPI gives them: starting at ``body``."""
    return violation.at("body", *prefix)


class ThrottledLog:
    """One warning per kind of error and path every ``every_s`` seconds, with the count of those
    left out since: under back-pressure every refused request is a 503, and a line for each
    (thousands a second) would flood the log and cost the CPU the server is short of."""

    def __init__(self, every_s: float = 10.0, clock=time.monotonic) -> None:
        self.every_s = every_s
        self.clock = clock
        self._last: dict[tuple[str, str], tuple[float, int]] = {}  # -> (logged at, left out)

    def warning(self, path: str, method: str, error: Exception) -> bool:
        """Log ``error`` unless one of its kind was logged for ``path`` lately; True if logged."""
        key = (path, type(error).__name__)
        now = self.clock()
        logged_at, left_out = self._last.get(key, (-math.inf, 0))
        if now - logged_at < self.every_s:
            self._last[key] = (logged_at, left_out + 1)
            return False
        if len(self._last) > 1000:  # paths are client-chosen: keep the table bounded
            self._last.clear()
        self._last[key] = (now, 0)
        more = f" ({left_out} more like it in the last {self.every_s:g} s)" if left_out else ""
        log.warning("%s %s: %s%s", method, path, error, more)
        return True


def install(app: FastAPI) -> None:
    throttled = ThrottledLog()

    async def onlearn_error(request: Request, error: OnlearnError) -> JSONResponse:
        status = status_of(error)
        if status >= 500:
            throttled.warning(request.url.path, request.method, error)
        headers = {"Retry-After": "1"} if status == 503 else None
        return JSONResponse({"detail": detail_of(error)}, status_code=status, headers=headers)

    app.add_exception_handler(OnlearnError, onlearn_error)

    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes the input and decodes bytes as UTF-8: a body that is not
        # JSON and not UTF-8 (a pickle, say) made it answer 500 instead of 422.
        # As bounded as the engine's: at most MAX_LISTED_ERRORS errors (a body of thousands of
        # unknown fields breaks thousands of rules), each with a short echo of its input.
        errors = error.errors()
        detail = jsonable_encoder(
            errors[:MAX_LISTED_ERRORS],
            custom_encoder={bytes: lambda b: b.decode("utf-8", "replace")},
        )
        detail = printable(detail)  # NaN or a lone surrogate in the echoed input
        detail = field_errors(detail, len(errors) - len(detail))
        return JSONResponse({"detail": detail}, status_code=422)

    app.add_exception_handler(RequestValidationError, validation_error)

    async def http_error(request: Request, error: HTTPException):
        # FastAPI answers a JSON body that is not UTF-8 with a bare 400 "There was an error
        # parsing the body"; the fast routes (and FastAPI itself for malformed JSON) answer 422
        # json_invalid at the body. One answer for one mistake, whichever route gets it.
        if error.status_code == 400 and isinstance(error.__cause__, UnicodeDecodeError):
            detail = [not_utf8(error.__cause__).to_dict()]
            return JSONResponse({"detail": detail}, status_code=422)
        if error.status_code == 400 and isinstance(error.__cause__, RecursionError):
            deep = FieldError(("body",), "json_invalid", "JSON decode error: nested too deeply")
            return JSONResponse({"detail": [deep.to_dict()]}, status_code=422)
        return await http_exception_handler(request, error)

    app.add_exception_handler(HTTPException, http_error)
