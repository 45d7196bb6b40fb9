"""Prediction ids: time-ordered, so an unknown id can be told apart from an expired one."""

from __future__ import annotations

import os

ID_LENGTH = 32  # 12 hex digits of milliseconds since the epoch, then 20 random hex digits


def new_prediction_id(now: float) -> str:
    """A unique id that starts with its creation time.

    >>> pid = new_prediction_id(1700000000.0)
    >>> len(pid), prediction_time(pid)
    (32, 1700000000.0)
    """
    return f"{int(now * 1000):012x}{os.urandom(10).hex()}"


def prediction_time(prediction_id: str) -> float | None:
    """When the id was made, or None when it is not one of ours.

    >>> prediction_time("not-an-id") is None
    True
    """
    if len(prediction_id) != ID_LENGTH:
        return None
    try:
        int(prediction_id, 16)
        return int(prediction_id[:12], 16) / 1000
    except ValueError:
        return None
