"""What a model takes as a label: a class label (a string, an integer or a boolean, one of its
declared classes if it declares them) for classification, a finite number for regression.

Checked before a label event is written (feedback, a queue label) and described to clients by
the OpenAPI document (serving/typed_openapi.py), so both say the same.
"""

from __future__ import annotations

import math
from typing import Any

from onlearn.config import ModelConfig, Task
from onlearn.errors import FieldError

__all__ = ["check_label"]


def _finite_number(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def check_label(config: ModelConfig, label: Any) -> list[FieldError]:
    """Why ``label`` is not a label of the model (the errors), or []."""
    if config.task is Task.CLASSIFICATION:
        if label is None or not isinstance(label, bool | int | str):
            return [
                FieldError(
                    ("label",), "type", "label must be a class label: a string, integer or boolean"
                )
            ]
        if config.classes is not None and not any(
            type(c) is type(label) and c == label for c in config.classes
        ):
            shown = ", ".join(map(repr, config.classes[:10]))
            return [
                FieldError(("label",), "allowed", f"label must be one of {shown}; got {label!r}")
            ]
        return []
    if isinstance(label, bool) or not isinstance(label, int | float) or not _finite_number(label):
        return [
            FieldError(("label",), "finite", "label must be a finite number for a regression model")
        ]
    return []
