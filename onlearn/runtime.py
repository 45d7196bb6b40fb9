"""One served model inside one process: its versions' states, the lock, and the log position.

river models are not thread-safe: ``lock`` guards every read (predict) and write (learn) of the
estimators; the learner takes it per event and hands it to the threads waiting for it first
(:mod:`onlearn.handoff_lock`). ``apply_lock`` makes one applier at a time take events strictly in
seq order, so an event is applied exactly once whoever (a learner thread of the pool or a
synchronous caller) gets there; learners take it with ``after_waiters()`` too, so that a snapshot
writer or a synchronous caller gets in between two slices of a long catch-up.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import zlib
from collections.abc import Callable
from typing import Any

from onlearn.config import ModelConfig
from onlearn.handoff_lock import HandoffLock
from onlearn.learner import LearnerState
from onlearn.records import Event, EventKind
from onlearn.registry import CANARY, CHAMPION

log = logging.getLogger(__name__)

# Seqs of labels the champion could not learn, remembered for the answers (a few hundred bytes).
UNLEARNED_KEPT = 100


class ModelRuntime:
    def __init__(
        self,
        config: ModelConfig,
        states: dict[str, LearnerState],
        roles: dict[str, str],
        seq: int,
        *,
        canary_share: float = 0.0,
        loader: Callable[[str, int], LearnerState] | None = None,
        alarms: list | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.schema = config.schema
        self.states = states
        self.roles = roles
        self.canary_share = canary_share
        # Builds a version's state at a seq (newest snapshot + replay) when a control event
        # gives a role to a version this process does not hold yet.
        self.loader = loader
        self.alarms: list[dict] = alarms if alarms is not None else []  # newest last, bounded
        self.seq = seq
        # Readers and writers take it with ``with lock:``; the learner with ``after_waiters()``,
        # so a predict waits for at most one event's learning, whatever the batch size.
        self.lock = HandoffLock()
        self.apply_lock = HandoffLock()
        # The highest seq known to be in the log (appended here, or seen by the follower):
        # ``known_head - seq`` is this process's backlog, bounded by ``[engine] max_learn_lag``.
        self.known_head = seq
        self.lag_refused = 0  # feedback calls answered 503 because the backlog was too long
        # Labels refused (409) because they differed from the one recorded and were not sent
        # as corrections: never in the log, so counted by the process that refused them.
        self.label_conflicts = 0
        self.predictions = 0
        self.labels_applied = 0
        # (field, rule) -> rows refused for it here: the validation statistics of the inputs
        # that never reach a model (counted only on errors, off the happy path).
        self.violations: collections.Counter[tuple[str, str]] = collections.Counter()
        self.snapshot_seq = 0
        # Whether a newer snapshot appeared while this process ran (a worker writes them): only
        # then does the distance to the newest snapshot bound the labels taken (max_learn_lag).
        self.snapshots_advance = False
        self.snapshot_checked_at = 0.0  # monotonic time of the last look at the store for it
        self.restored: dict[str, Any] = {}
        # Seqs of label events the champion could not learn (its learn_one raised; skipped, see
        # ``apply``), the newest UNLEARNED_KEPT: an answer says ``applied`` only for a label
        # the model learned (``learned``).
        self.unlearned: collections.deque[int] = collections.deque(maxlen=UNLEARNED_KEPT)
        # Which predictions to ask labels for. Per process, not replayed: a budget is spent by
        # the traffic each process sees, and replicas split the traffic.
        self.sampler = None
        if config.active is not None:
            from onlearn.active import sampler_from_config

            self.sampler = sampler_from_config(config.active.sampler)
        self._applied = threading.Condition()
        self._sync_waiters = 0
        self._async_waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future]] = []
        # Events this process appended, by seq, handed over so that applying them needs no read
        # of the log. Only what follows ``seq`` without a gap is taken from here.
        self._offered: dict[int, Event] = {}
        self._offered_top = 0  # the seq of the last event offered
        self._offered_lock = threading.Lock()

    def count_violations(self, violation) -> None:
        for error in violation.errors:
            field = str(error.loc[0]) if error.loc else "(row)"
            self.violations[(field, error.rule)] += 1

    def learned(self, seq: int) -> bool:
        """Whether the model learned the label event at ``seq`` here: applied, and not one the
        champion skipped (as far as ``unlearned`` remembers)."""
        return self.seq >= seq and (not self.unlearned or seq not in self.unlearned)

    @property
    def learns(self) -> bool:
        """Whether this process's states learn (a server), or are scorecards (the worker)."""
        return any(state.learns for state in self.states.values())

    @property
    def champion(self) -> LearnerState:
        return self.states[self.roles[CHAMPION]]

    def answering(self, key: str | None) -> str:
        """The version that answers a request: the canary for its share of the keys (sticky: a
        key always lands on the same side for a given share), else the champion."""
        canary = self.roles.get(CANARY)
        if canary is not None and self.canary_share > 0 and key is not None:
            if zlib.crc32(key.encode()) < self.canary_share * 4294967296:
                return canary
        return self.roles[CHAMPION]

    def apply(self, event: Event) -> None:
        """Apply one event; the caller holds ``apply_lock`` and passes events in seq order."""
        if event.seq != self.seq + 1:
            raise RuntimeError(
                f"model {self.name!r}: event seq {event.seq} does not follow applied seq {self.seq}"
            )
        if event.kind is EventKind.LABEL:
            # Scorecards (the worker's states) read the stored answers, not the features.
            x = self.schema.model_input(event.payload["features"]) if self.learns else None
            with self.lock.after_waiters():
                for state in self.states.values():
                    try:
                        state.learn(event, x)
                    except Exception:
                        # The same event fails the same way on every replica, so skipping it keeps
                        # replicas identical; it is counted and logged, never retried.
                        log.exception(
                            "model %r version %s could not learn event %d; skipped",
                            self.name,
                            state.version,
                            event.seq,
                        )
                        state.skip(event)
                        if state.version == self.roles.get(CHAMPION):
                            self.unlearned.append(event.seq)
                if self.sampler is not None and self.learns:
                    # Bought labels steer the sampler's budget (a drift opens its credit line).
                    self.sampler.learn_label(event.payload)
            self.labels_applied += 1
        else:
            if event.kind in (EventKind.PROMOTE, EventKind.ROLLBACK):
                self._change_roles(event)
            elif event.kind is EventKind.ALARM:
                self.alarms.append({"seq": event.seq, "at": event.at, **event.payload})
                del self.alarms[:-100]
                if self.sampler is not None and self.learns:
                    with self.lock.after_waiters():  # decide() reads the sampler under it
                        self.sampler.on_drift(event.payload)
            with self.lock.after_waiters():
                for state in self.states.values():
                    state.seq = event.seq
        self.seq = event.seq

    def _change_roles(self, event: Event) -> None:
        """Switch roles at this event's seq, as every follower of the log does."""
        roles = dict(self.roles)
        for role, version in event.payload["changes"].items():
            if version is None:
                roles.pop(role, None)
            else:
                roles[role] = version
        states = {}
        for version in sorted(set(roles.values())):
            if version in self.states:
                states[version] = self.states[version]
            else:  # its state just before this event: the newest snapshot and a replay
                states[version] = self.loader(version, event.seq - 1)
        with self.lock:
            self.roles = roles
            self.states = states
            for state in states.values():
                state.paired = {}  # a new comparison starts with the new roles
                state.ab = {}
            share = event.payload.get("canary_share")
            if share is not None:
                self.canary_share = share
        log.info("model %r: roles at seq %d: %s", self.name, event.seq, roles)

    # Events handed over by the appender

    MAX_OFFERED = 100_000

    def offer(self, events: list[Event]) -> None:
        with self._offered_lock:
            offered = self._offered
            for event in events:
                if event.seq > self.seq:
                    offered[event.seq] = event
            if events:
                self._offered_top = events[-1].seq
                if events[-1].seq > self.known_head:
                    self.known_head = events[-1].seq
            if len(offered) > self.MAX_OFFERED:  # a stuck learner must not grow memory
                offered.clear()  # what was offered is read back from the log

    def note_snapshot(self, seq: int) -> None:
        """The newest snapshot of the champion is at ``seq`` (read from the store, or written)."""
        if seq > self.snapshot_seq:
            self.snapshot_seq = seq
            self.snapshots_advance = True

    def note_head(self, seq: int) -> None:
        """The log holds events up to ``seq`` (one that was not offered is read from it)."""
        with self._offered_lock:
            if seq > self.known_head:
                self.known_head = seq

    @property
    def backlog(self) -> int:
        """Events known to be in the log and not yet applied here."""
        return max(self.known_head - self.seq, 0)

    def read_position(self) -> int:
        """Where the follower reads on: after what was applied or handed over already."""
        # The newest offered (not a max over a backlog), read without the lock: the follower
        # asks every model at every poll. A position too low only reads some events twice (an
        # offer dedupes them by seq); one too high leaves a gap the learner reads from the log.
        return max(self.seq, self._offered_top)

    def take_offered(self) -> list[Event]:
        """The offered events that follow ``seq`` without a gap, in order."""
        with self._offered_lock:
            offered = self._offered
            if not offered:
                return []
            events = []
            nxt = self.seq + 1
            while nxt in offered:
                events.append(offered.pop(nxt))
                nxt += 1
            if not events and len(offered) > 0 and min(offered) <= self.seq:
                for seq in [s for s in offered if s <= self.seq]:
                    del offered[seq]  # applied from a read of the log meanwhile
            return events

    # Waiting for an event to be applied: read-your-writes for feedback calls.

    def notify_applied(self) -> None:
        with self._applied:
            if self._sync_waiters:
                self._applied.notify_all()
            ready = [w for w in self._async_waiters if w[0] <= self.seq]
            if not ready:
                return
            self._async_waiters = [w for w in self._async_waiters if w[0] > self.seq]
        per_loop: dict = {}
        for _, loop, future in ready:
            per_loop.setdefault(loop, []).append(future)
        for loop, futures in per_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve_all, futures)
            except RuntimeError:  # that loop is closed: nobody waits any more
                pass

    def wait_applied(self, seq: int, timeout: float) -> bool:
        with self._applied:
            self._sync_waiters += 1
            try:
                return self._applied.wait_for(lambda: self.seq >= seq, timeout)
            finally:
                self._sync_waiters -= 1

    async def wait_applied_async(self, seq: int, timeout: float) -> bool:
        if self.seq >= seq:
            return True
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._applied:
            if self.seq >= seq:
                return True
            self._async_waiters.append((seq, loop, future))
        try:
            await asyncio.wait_for(future, timeout)
            return True
        except TimeoutError:
            return self.seq >= seq

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task": self.config.task.value,
            "target": self.config.target,
            "classes": list(self.config.classes) if self.config.classes else None,
            "schema": self.schema.to_config(),
            "unknown_fields": self.schema.unknown_fields.value,
            "pipeline": self.config.pipeline.to_config(),
            "prediction_ttl_s": self.config.prediction_ttl_s,
            "roles": dict(self.roles),
            "canary_share": self.canary_share,
            "applied_seq": self.seq,
            "restored": self.restored,
            "counters": {
                "predictions": self.predictions,
                "labels_applied": self.labels_applied,
            },
        }


def _resolve_all(futures: list[asyncio.Future]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)
