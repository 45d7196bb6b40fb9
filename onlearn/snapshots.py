"""Restore a version's state (newest snapshot, then replay the tail) and write snapshots.

Snapshots are built by replay from the previous snapshot, not by pickling the live model, so
writing one never holds the serving lock; determinism (seeded pipelines, ordered log) makes the
two the same state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from onlearn.errors import ArtifactRejected
from onlearn.learner import LearnerState
from onlearn.models import (
    PipelineSpec,
    build_pipeline,
    check_spec_signature,
    dump_signed,
    load_signed,
)
from onlearn.records import Event, EventKind, Snapshot, VersionInfo
from onlearn.schema import Schema
from onlearn.store.base import Store

REPLAY_PAGE = 2000

log = logging.getLogger(__name__)


class LogTrimmed(RuntimeError):
    """The events needed to rebuild a state were trimmed from the log."""


def check_spec(info: VersionInfo, secret: bytes) -> None:
    """Refuse (:class:`~onlearn.errors.ArtifactRejected`) a version whose spec is not the one the
    engine signed: the spec names code to import, and the store is not trusted with that."""
    check_spec_signature(info.model, info.version, info.spec, info.spec_signature, secret)


def fresh_state(info: VersionInfo, secret: bytes) -> LearnerState:
    """A version's untrained state, built from the spec it was registered with (checked first)."""
    check_spec(info, secret)
    schema = Schema.from_config(**info.spec["schema"])
    estimator = build_pipeline(
        PipelineSpec.from_config(info.spec["pipeline"]),
        task=info.spec["task"],
        numeric=schema.numeric,
        categorical=schema.categorical,
        classes=info.spec.get("classes"),
    )
    return LearnerState(info.version, info.spec["task"], estimator)


def load_state(snapshot: Snapshot, secret: bytes) -> LearnerState:
    try:
        state = load_signed(snapshot.artifact, secret)
    except ArtifactRejected as e:
        raise ArtifactRejected(
            f"snapshot of {snapshot.model} {snapshot.version} at seq {snapshot.seq}: {e}. "
            "If the secret changed, set the one the snapshots were written with "
            "(ONLEARN_SECRET_KEY or [security] secret_key); if the store was tampered with, "
            "restore it from a backup"
        ) from None
    if not isinstance(state, LearnerState) or state.seq != snapshot.seq:
        raise ArtifactRejected(
            f"snapshot of {snapshot.model} {snapshot.version} at seq {snapshot.seq} "
            "does not hold a learner state at that seq"
        )
    return state


def replay(
    store: Store,
    model: str,
    schema: Schema,
    state: LearnerState,
    upto: int | None = None,
    on_event: Callable[[int], None] | None = None,
    rewrite: Callable[[Event], Event | None] | None = None,
) -> LearnerState:
    """Fold the log's label events after ``state.seq`` (up to ``upto``) into ``state``.

    ``rewrite``: each label event goes through it first; None skips the event (a refit's
    training labels with corrections applied, :class:`onlearn.corrections.TrainingLabels`).
    Without it, the fold is exactly what a live model did: a replica's replay equals it."""
    while upto is None or state.seq < upto:
        events = store.log.read(model, after=state.seq, limit=REPLAY_PAGE)
        if not events:
            break
        if events[0].seq != state.seq + 1:
            raise LogTrimmed(
                f"model {model!r}: the log starts at seq {events[0].seq} but version "
                f"{state.version} needs the events after seq {state.seq}"
            )
        for event in events:
            if upto is not None and event.seq > upto:
                return state
            learned = event
            if event.kind is EventKind.LABEL and rewrite is not None:
                learned = rewrite(event)
            if learned is not None and learned.kind is EventKind.LABEL:
                try:
                    x = schema.model_input(learned.payload["features"]) if state.learns else None
                    state.learn(learned, x)
                except Exception:
                    state.skip(event)
            else:
                state.seq = event.seq
            if on_event is not None:
                on_event(event.seq)
    return state


def restore(
    store: Store,
    info: VersionInfo,
    secret: bytes,
    upto: int | None = None,
    *,
    scorecard: bool = False,
) -> LearnerState:
    """The state of ``info``'s version at ``upto`` (default: the head of the log).

    The spec is checked even when a snapshot holds the state: the replay reads the spec's schema.
    ``scorecard``: drop the estimator once restored (see :meth:`LearnerState.scorecard`). Not
    before the replay: events the version has no stored answer for (those before it held a role)
    are scored by asking the model, and a scorecard must start from the same metrics as a live
    state.
    """
    check_spec(info, secret)
    snapshot = store.registry.latest_snapshot(info.model, info.version, max_seq=upto)
    if snapshot is None and info.meta.get("base_seq") is not None:
        raise LogTrimmed(
            f"model {info.model!r}: version {info.version} was trained in batch up to seq "
            f"{info.meta['base_seq']}; its state starts at that snapshot, and there is none at "
            f"or before seq {upto}"
        )
    state = load_state(snapshot, secret) if snapshot else fresh_state(info, secret)
    start = state.seq
    state = replay(store, info.model, Schema.from_config(**info.spec["schema"]), state, upto)
    if scorecard:
        state.scorecard()
    log.info(
        "model %r: %s %s from %s, then %d events replayed",
        info.model,
        info.version,
        "scorecard restored" if scorecard else "restored",
        f"the snapshot at seq {start}" if snapshot else "nothing",
        state.seq - start,
    )
    return state


def check_snapshot_target(store: Store, model: str, seq: int) -> None:
    """Raise StoreReplaced unless ``store`` may take a snapshot of ``model`` at ``seq``: it is
    the store this process opened, and its log reaches ``seq``."""
    store.generation.check()
    head = store.log.head(model)
    if head < seq:
        raise store.generation.went_back(model, seq, head)


def save_snapshot(store: Store, model: str, state: LearnerState, secret: bytes) -> Snapshot:
    """Write ``state`` as the snapshot of its version at its seq. Refused (StoreReplaced) when
    the store is not the one this process opened, or its log ends below the state's seq: the
    state then holds events the store does not have (onlearn.store.generation), and a snapshot
    would carry them into every process that restores from it."""
    check_snapshot_target(store, model, state.seq)
    snapshot = Snapshot(model, state.version, state.seq, time.time(), dump_signed(state, secret))
    store.registry.put_snapshot(snapshot)
    return snapshot


def advance_snapshot(
    store: Store, info: VersionInfo, secret: bytes, min_new_events: int = 1
) -> Snapshot | None:
    """Write a new snapshot of ``info``'s version at the head when enough events arrived."""
    previous = store.registry.latest_snapshot(info.model, info.version)
    head = store.log.head(info.model)
    if head - (previous.seq if previous else 0) < min_new_events:
        return None
    state = restore(store, info, secret, upto=head)
    return save_snapshot(store, info.model, state, secret)
