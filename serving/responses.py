"""Fast JSON answers: the engine already returns plain, finite values."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode()
