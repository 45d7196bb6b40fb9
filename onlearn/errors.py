"""Domain errors. The HTTP layer maps each to one status code in ``serving/errors.py``."""

from __future__ import annotations

from dataclasses import dataclass


class OnlearnError(Exception):
    """Base class of every error onlearn raises on purpose."""


class ConfigError(OnlearnError, ValueError):
    """The configuration is wrong; the message says which entry and how to fix it."""


@dataclass(frozen=True)
class FieldError:
    """One rule broken by one field. ``loc`` is the path to the field, e.g. ``("features", "age")``."""

    loc: tuple[str | int, ...]
    rule: str
    msg: str

    def to_dict(self) -> dict:
        return {"loc": list(self.loc), "type": self.rule, "msg": self.msg}


class SchemaViolation(OnlearnError, ValueError):
    """Input does not satisfy the model's schema (HTTP 422)."""

    def __init__(self, errors: list[FieldError]):
        self.errors = errors
        super().__init__("; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in errors))

    def at(self, *prefix: str | int) -> SchemaViolation:
        """The same violation with ``prefix`` put in front of every location."""
        return SchemaViolation([FieldError(prefix + e.loc, e.rule, e.msg) for e in self.errors])


class UnknownModel(OnlearnError, LookupError):
    """No model of that name is served (HTTP 404)."""


class UnknownPrediction(OnlearnError, LookupError):
    """No prediction record with that id (HTTP 404)."""


class PredictionExpired(OnlearnError, LookupError):
    """The prediction record outlived its TTL (HTTP 410); send the label with inline features."""


class ArtifactRejected(OnlearnError):
    """A model artifact's signature is missing or does not match; it is not loaded."""


class StoreUnavailable(OnlearnError, RuntimeError):
    """The store cannot be reached now (disk, lock or network) (HTTP 503); retry later."""


class Overloaded(StoreUnavailable):
    """A bounded buffer is full: the store does not keep up (HTTP 503); retry later."""


class ActiveLearningOff(OnlearnError, LookupError):
    """The model has no labelling queue (HTTP 404): its config has no ``active`` table."""


class UnknownQueueItem(OnlearnError, LookupError):
    """No labelling queue item with that id (HTTP 404)."""


class QueueItemGone(OnlearnError, LookupError):
    """The item was skipped out or evicted from the queue (HTTP 410)."""


class LeaseConflict(OnlearnError):
    """Another labeller holds the item now: its lease ran out and it was claimed again (409)."""


class UnknownVersion(OnlearnError, LookupError):
    """No version of that name for the model (HTTP 404)."""


class RoleConflict(OnlearnError):
    """A change of roles that cannot be made now (HTTP 409): e.g. no previous champion to roll
    back to, or a version whose schema is not the model's."""


class UnknownJob(OnlearnError, LookupError):
    """No job with that id (HTTP 404)."""


class Interrupted(OnlearnError):
    """Long work stopped before its end because it was asked to: its job was cancelled, or the
    process is shutting down. Nothing it would have produced was written."""


class JobConflict(OnlearnError):
    """A job cannot change as asked (HTTP 409): e.g. cancelling one that already registered its
    version, or that finished."""
