"""Prediction ids: time-ordered, so an unknown id can be told apart from an expired one.

An id is 12 hex digits of milliseconds since the epoch, then 10 hex digits chosen at random once
per process, then a 10-digit counter: unique across processes without a system call per id
(``os.urandom`` per id released the GIL on the predict path and showed in profiles).
"""

from __future__ import annotations

import itertools
import os

ID_LENGTH = 32

_process = os.urandom(5).hex()
_counter = itertools.count(int.from_bytes(os.urandom(4), "big"))


# The time and process part of the ids of the current millisecond, formatted once for all of
# them: (milliseconds, prefix), replaced as a whole (one assignment: threads see either).
_prefix: tuple[int, str] = (-1, "")


def _reseed() -> None:
    # A forked child must not repeat its parent's prefix and counter.
    global _process, _counter, _prefix
    _process = os.urandom(5).hex()
    _counter = itertools.count(int.from_bytes(os.urandom(4), "big"))
    _prefix = (-1, "")


os.register_at_fork(after_in_child=_reseed)


def new_prediction_id(now: float) -> str:
    """A unique id that starts with its creation time.

    >>> pid = new_prediction_id(1700000000.0)
    >>> len(pid), prediction_time(pid)
    (32, 1700000000.0)
    >>> new_prediction_id(1700000000.0) != pid
    True
    """
    global _prefix
    ms = int(now * 1000)
    cached = _prefix
    if cached[0] != ms:
        cached = _prefix = (ms, f"{ms:012x}{_process}")
    return f"{cached[1]}{next(_counter) & 0xFFFFFFFFFF:010x}"


def new_prediction_ids(now: float, n: int) -> list[str]:
    """``n`` ids made at ``now``, as ``n`` calls of :func:`new_prediction_id` would make them.

    >>> a, b = new_prediction_ids(1700000000.0, 2)
    >>> a != b and a[:22] == b[:22] == new_prediction_id(1700000000.0)[:22]
    True
    """
    prefix = f"{int(now * 1000):012x}{_process}"
    counter = _counter
    return [f"{prefix}{next(counter) & 0xFFFFFFFFFF:010x}" for _ in range(n)]


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
