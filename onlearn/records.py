"""Domain records: what the stores persist. Frozen dataclasses; they do not save themselves."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Label = bool | int | str | float
"""A target value: a class label (bool, int or str) or, for regression, a number."""


class EventKind(str, enum.Enum):
    """What a log entry is. Label events teach; control events switch versions in log order."""

    LABEL = "label"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    RESET = "reset"


class LabelSource(str, enum.Enum):
    """Who gave a label: the calling application, a person, or a weak labelling rule."""

    APP = "app"
    HUMAN = "human"
    WEAK = "weak"


@dataclass(frozen=True)
class Event:
    """One entry of a model's append-only log.

    ``seq`` is None until the log assigns it. ``key`` is an idempotency key: appending an event
    whose key is already in the log returns the existing event's seq and appends nothing.
    ``payload`` is JSON-safe by contract (stores serialise it with ``json``), so labels that are
    dictionary keys elsewhere travel here as ``[label, value]`` pairs.
    """

    kind: EventKind
    payload: Mapping[str, Any]
    at: float
    seq: int | None = None
    key: str | None = None


@dataclass(frozen=True)
class PredictionRecord:
    """What was asked and answered, kept for a TTL so that a late label can be joined to it.

    ``outputs`` maps each version that predicted (the one that answered, and shadows) to its
    answer: ``{"label": ..., "proba": [[label, p], ...] | None}``; JSON-safe like event payloads.
    """

    id: str
    model: str
    at: float
    features: Mapping[str, Any]
    version: str
    outputs: Mapping[str, Mapping[str, Any]]
    uncertainty: float | None = None
    queued: bool = False
    expires_at: float = 0.0


@dataclass(frozen=True)
class VersionInfo:
    """An immutable, numbered state of a model and where it came from."""

    model: str
    version: str
    created_at: float
    spec: Mapping[str, Any]
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    """A serialised learner state of one version, including every event up to ``seq``."""

    model: str
    version: str
    seq: int
    at: float
    artifact: bytes
