"""Values to and from Redis, shared by the ports: replies read as text or hashes, and floats
written as the exact text Redis parses back to the same double."""

from __future__ import annotations

from typing import Any

__all__ = ["decode", "float_text", "hash_reply", "optional"]


def decode(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def float_text(value: float) -> str:
    """A float as the exact text Redis parses back to the same double (scores, stored fields)."""
    return repr(float(value))


def hash_reply(reply: Any) -> dict[str, bytes]:
    """A hash from HGETALL: redis-py's dict, or a script's flat list of fields and values."""
    if isinstance(reply, dict):
        return {decode(k): v for k, v in reply.items()}
    return {decode(reply[i]): reply[i + 1] for i in range(0, len(reply), 2)}


def optional(fields: dict[str, bytes], name: str) -> str | None:
    value = fields.get(name)
    return None if value is None else value.decode("utf-8")
