"""How challengers are promoted and new champions rolled back, as the config says
(``[models.NAME.rollout]``): what the worker's decisions (:mod:`onlearn.background.promotion`)
follow. Part of the config, so in the core."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from onlearn.errors import ConfigError

__all__ = ["POLICIES", "RolloutPolicy"]

POLICIES = ("manual", "auto")


@dataclass(frozen=True)
class RolloutPolicy:
    """How challengers are promoted and new champions rolled back.

    ``policy``: ``"manual"`` (a person promotes; decisions only advise) or ``"auto"``.
    ``min_labels``: paired labels (events both versions answered) needed before any verdict.
    ``alpha``: the significance level of the paired test (McNemar's for classification,
    Wilcoxon's signed-rank for regression). ``margin``: how much accuracy a new version may
    lose against the one it replaces and still be promoted or kept; for regression, the share
    by which its mean absolute error may exceed the other's.

    >>> RolloutPolicy.from_config({"policy": "auto", "min_labels": 500}).to_config()
    {'policy': 'auto', 'min_labels': 500, 'alpha': 0.05, 'margin': 0.01}
    """

    policy: str = "manual"
    min_labels: int = 200
    alpha: float = 0.05
    margin: float = 0.01

    def __post_init__(self) -> None:
        where = "rollout"
        if self.policy not in POLICIES:
            raise ConfigError(
                f"{where}.policy must be one of {', '.join(map(repr, POLICIES))}, "
                f"got {self.policy!r}"
            )
        object.__setattr__(self, "policy", str(self.policy))
        if isinstance(self.min_labels, bool) or not isinstance(self.min_labels, int):
            raise ConfigError(f"{where}.min_labels must be an integer, got {self.min_labels!r}")
        if self.min_labels < 1:
            raise ConfigError(f"{where}.min_labels must be at least 1, got {self.min_labels}")
        if not _is_number(self.alpha) or not 0 < self.alpha < 1:
            raise ConfigError(
                f"{where}.alpha must be a number strictly between 0 and 1, got {self.alpha!r}"
            )
        if not _is_number(self.margin) or not 0 <= self.margin < 1:
            raise ConfigError(
                f"{where}.margin must be a number >= 0 and < 1 (an accuracy difference), "
                f"got {self.margin!r}"
            )

    @classmethod
    def from_config(cls, table: Mapping[str, Any] | None) -> RolloutPolicy:
        """The policy of a config table; missing keys take their defaults, unknown keys fail."""
        if table is None:
            return cls()
        if not isinstance(table, Mapping):
            raise ConfigError(
                'rollout must be a table such as { policy = "auto", min_labels = 200 }, '
                f"got {type(table).__name__}"
            )
        known = ("policy", "min_labels", "alpha", "margin")
        if unknown := sorted(set(table) - set(known)):
            raise ConfigError(f"rollout has no key {unknown[0]!r}; it accepts: {', '.join(known)}")
        return cls(**dict(table))

    def to_config(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "min_labels": self.min_labels,
            "alpha": self.alpha,
            "margin": self.margin,
        }


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
