"""Fast JSON answers: the engine already returns plain, finite values."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import orjson
from starlette.responses import Response


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        # orjson writes an answer five times faster than json, non-string keys (a label True)
        # as json does ("true"). An integer beyond 64 bits, or a type orjson does not know,
        # goes to json, as every answer did before.
        # Dataclasses (a Prediction) are written as objects of their fields by both.
        try:
            return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:
            return json.dumps(
                content,
                separators=(",", ":"),
                ensure_ascii=False,
                allow_nan=False,
                default=_fields,
            ).encode()


def _fields(obj: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")
