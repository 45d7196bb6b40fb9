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


MAX_LISTED_ERRORS = 20
"""A violation lists at most this many field errors and counts the rest. A 1.7 MB batch whose
rows each broke a rule made a 39 MB answer (every error worded, rendered and sent, the event
loop busy for seconds meanwhile); the first errors say what is wrong with the others too."""


class SchemaViolation(OnlearnError, ValueError):
    """Input does not satisfy the model's schema (HTTP 422).

    ``errors`` lists the first :data:`MAX_LISTED_ERRORS` broken rules; ``omitted`` counts the
    ones left out.
    """

    def __init__(self, errors: list[FieldError], omitted: int = 0):
        self.errors = errors[:MAX_LISTED_ERRORS]
        self.omitted = omitted + len(errors) - len(self.errors)
        text = "; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in self.errors)
        if self.omitted:
            text += f"; and {self.omitted} more"
        super().__init__(text)

    def at(self, *prefix: str | int) -> SchemaViolation:
        """The same violation with ``prefix`` put in front of every location."""
        return SchemaViolation(
            [FieldError(prefix + e.loc, e.rule, e.msg) for e in self.errors], self.omitted
        )


class Violations:
    """Gathers the violations of the rows of one request into one, listing no more than a
    violation lists: past that only counts, so that a caller can stop wording errors (see
    ``Schema.validate``'s ``hints``)."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []
        self.omitted = 0

    @property
    def full(self) -> bool:
        return len(self.errors) >= MAX_LISTED_ERRORS

    def add(self, violation: SchemaViolation) -> None:
        room = MAX_LISTED_ERRORS - len(self.errors)
        self.errors += violation.errors[:room]
        self.omitted += violation.omitted + max(0, len(violation.errors) - room)

    def __bool__(self) -> bool:
        return bool(self.errors)

    def violation(self) -> SchemaViolation:
        return SchemaViolation(self.errors, self.omitted)


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


class StoreReplaced(StoreUnavailable):
    """The store is not the one this process opened (HTTP 503): its generation id changed (it
    was emptied or replaced) or its log went back below what this process applied (an older
    copy). Retrying does not help: restart the process against the right store, or restore the
    store (see :mod:`onlearn.store.generation`)."""


class ActiveLearningOff(OnlearnError, LookupError):
    """The model has no labelling queue (HTTP 404): its config has no ``active`` table."""


class UnknownQueueItem(OnlearnError, LookupError):
    """No labelling queue item with that id (HTTP 404)."""


class QueueItemGone(OnlearnError, LookupError):
    """The item was skipped out or evicted from the queue (HTTP 410)."""


class LeaseConflict(OnlearnError):
    """Another labeller holds the item now: its lease ran out and it was claimed again (409)."""


class LabelConflict(OnlearnError):
    """A label that differs from the one recorded for the same prediction or event, and was not
    sent as a correction (HTTP 409): it was not used. ``recorded`` is the recorded label event's
    label, source, labeller and seq."""

    def __init__(self, message: str, recorded: dict):
        super().__init__(message)
        self.recorded = recorded


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
