"""Domain records: what the stores persist, and the feedback item a label arrives as. Frozen
dataclasses; they do not save themselves."""

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
    PROMOTE = "promote"  # roles change: payload {"changes": {role: version | None}, ...}
    ROLLBACK = "rollback"  # the same, undoing a promotion
    RESET = "reset"
    ALARM = "alarm"  # a drift or performance alarm; learners skip it, retrain triggers read it
    # A label withdrawn (a Label Studio annotation deleted): payload {"retracts": seq, "chain":
    # key, ...}. Learners skip it (an online model cannot unlearn); refits leave the chain out.
    RETRACT = "retract"


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
class FeedbackItem:
    """A true label, for a prediction id (joined with its record) or for inline features.

    When both are given, the stored record wins and the inline features are the fallback for a
    record that expired. ``event_id`` makes inline feedback idempotent too.

    A label that differs from the one recorded for the same prediction (or event id) is refused
    (:class:`~onlearn.errors.LabelConflict`) unless ``correction`` is set, or the recorded
    label's source is one of ``overrides`` (a person's label through the queue overrides
    ``app`` and ``weak`` labels without asking): then it is recorded as a correction.
    """

    label: Any
    prediction_id: str | None = None
    features: Mapping[str, Any] | None = None
    source: str = "app"
    labeller: str | None = None
    event_id: str | None = None
    correction: bool = False
    overrides: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class PredictionRecord:
    """What was asked and answered, kept for a TTL so that a late label can be joined to it.

    ``outputs`` maps each version that predicted (the one that answered, and shadows) to its
    answer: ``{"label": ..., "proba": [[label, p], ...] | None}``; JSON-safe like event payloads.

    Slotted: one is made per prediction and a store may keep it in memory for its TTL (a third
    of the memory of an instance with a ``__dict__``); the predict path builds it through its
    slots (onlearn/engine/predict.py).
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
    reason: str | None = None  # why a label was asked: "uncertain", "random" (the eval slice)
    # The probability it was asked for, when the sampler keeps importance weights
    # (onlearn/weights.py); None otherwise. Its label event copies it as ``sample_p``.
    sample_p: float | None = None


@dataclass(frozen=True)
class VersionInfo:
    """An immutable, numbered state of a model and where it came from."""

    model: str
    version: str
    created_at: float
    spec: Mapping[str, Any]
    meta: Mapping[str, Any] = field(default_factory=dict)
    # An HMAC of the spec, computed by the core: a spec edited in the store no longer matches
    # it and is refused. The store keeps the string and never checks it. None: not signed
    # (a version stored by an earlier onlearn).
    spec_signature: str | None = None


@dataclass(frozen=True)
class Snapshot:
    """A serialised learner state of one version, including every event up to ``seq``."""

    model: str
    version: str
    seq: int
    at: float
    artifact: bytes


class QueueState(str, enum.Enum):
    """Where a labelling queue item is in its life."""

    QUEUED = "queued"  # waiting for a labeller
    CLAIMED = "claimed"  # leased to a labeller until lease_expires_at
    DONE = "done"  # labelled; result holds what the label produced
    SKIPPED = "skipped"  # skipped too many times; no longer offered
    EVICTED = "evicted"  # pushed out by higher-priority items when the queue was full


@dataclass(frozen=True)
class QueueItem:
    """A prediction waiting for a human label.

    ``priority``: higher is labelled first (the sampler's uncertainty, re-ranked at claim time).
    ``dedupe_key``: items with equal keys (identical feature vectors) are queued once.
    ``reason``: ``"uncertain"`` (the sampler asked) or ``"random"`` (the unbiased evaluation
    slice). ``claim_id`` identifies the current (or last) claim; ``attempts`` counts claims.
    ``result`` is what labelling produced (e.g. ``{"seq": 12, "version": "v1"}``), kept so that
    labelling an item twice answers the same thing. ``skipped_by``: the labeller who skipped it
    last; claims by that labeller pass it over (others still get it).
    """

    item_id: str
    model: str
    features: Mapping[str, Any]
    priority: float
    enqueued_at: float
    prediction_id: str | None = None
    dedupe_key: str | None = None
    proba: list | None = None
    uncertainty: float | None = None
    reason: str = "uncertain"
    state: QueueState = QueueState.QUEUED
    attempts: int = 0
    skips: int = 0
    labeller: str | None = None
    claim_id: str | None = None
    lease_expires_at: float | None = None
    finished_at: float | None = None
    result: Mapping[str, Any] | None = None
    skipped_by: str | None = None


class JobState(str, enum.Enum):
    QUEUED = "queued"  # waiting (possibly until run_after, after a failure)
    RUNNING = "running"  # leased to a worker until lease_expires_at
    DONE = "done"
    FAILED = "failed"  # failed max_attempts times, or an error that cannot go away; error says why
    CANCELLED = "cancelled"  # cancelled before it committed anything; error holds the reason


@dataclass(frozen=True)
class Job:
    """A unit of work for the training worker: refit, evaluate, snapshot.

    ``key`` is an idempotency key: enqueueing a job whose key exists returns the existing job.
    ``committed``: the worker has started writing the job's effects (a version, a role change);
    from then on the job can no longer be cancelled, and it keeps the flag when it is released
    or reclaimed after its worker died, so that whoever runs it next knows effects may exist.
    """

    job_id: str
    kind: str
    model: str
    params: Mapping[str, Any]
    created_at: float
    key: str | None = None
    state: JobState = JobState.QUEUED
    attempts: int = 0
    max_attempts: int = 3
    run_after: float = 0.0
    worker: str | None = None
    lease_expires_at: float | None = None
    updated_at: float | None = None
    result: Mapping[str, Any] | None = None
    error: str | None = None
    committed: bool = False
