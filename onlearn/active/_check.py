"""Hyperparameter checks shared by the constructors and the config factory.

Errors are ``ConfigError`` (a ``ValueError``) naming where the value came from and the rule.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from onlearn.errors import ConfigError


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_share(name: str, value: Any, where: str, *, zero: bool = True) -> float:
    """A number in ``[0, 1]``, or ``(0, 1]`` when ``zero`` is false."""
    if not (_is_number(value) and (0 <= value <= 1 if zero else 0 < value <= 1)):
        interval = "[0, 1]" if zero else "(0, 1]"
        raise ConfigError(f"{where}: {name!r} must be a number in {interval}, got {value!r}")
    return value


def check_step(name: str, value: Any, where: str) -> float:
    """A number strictly between 0 and 1."""
    if not (_is_number(value) and 0 < value < 1):
        raise ConfigError(f"{where}: {name!r} must be a number in (0, 1), got {value!r}")
    return value


def check_non_negative(name: str, value: Any, where: str) -> float:
    if not (_is_number(value) and math.isfinite(value) and value >= 0):
        raise ConfigError(f"{where}: {name!r} must be a finite number >= 0, got {value!r}")
    return value


def check_count(name: str, value: Any, where: str) -> int:
    """An integer >= 1."""
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise ConfigError(f"{where}: {name!r} must be an integer >= 1, got {value!r}")
    return value


def check_seed(name: str, value: Any, where: str) -> int:
    if not (isinstance(value, int) and not isinstance(value, bool)):
        raise ConfigError(f"{where}: {name!r} must be an integer, got {value!r}")
    return value


def check_choice(name: str, value: Any, where: str, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(
            f"{where}: {name!r} must be one of {', '.join(map(repr, choices))}, got {value!r}"
        )
    return value


def check_whole(name: str, value: Any, where: str) -> int:
    """An integer >= 0 (a number of labels)."""
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        raise ConfigError(f"{where}: {name!r} must be an integer >= 0, got {value!r}")
    return value


def check_bool(name: str, value: Any, where: str) -> bool:
    """``true`` or ``false``: not 0, 1 or a string."""
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: {name!r} must be true or false, got {value!r}")
    return value
