"""Following the log: each model applies its events in seq order, never out of order, never
twice, on a fixed pool of learner threads (:mod:`onlearn.engine.learners`).

Events this process appended are handed over from memory after their commit (no read back);
events of other processes are read by one follower thread for all the models of the process:
one query for all of them on SQLite, one blocking ``XREAD`` over all their streams on Redis. So
neither the threads nor the idle cost grow with the number of models.

The commit thread only hands events over: learning happens on the learners, so a heavy model
delays only itself, never the durability of another model's labels.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace

from onlearn.config import Settings
from onlearn.engine.learners import SLICE_S, LearnerPool
from onlearn.errors import StoreReplaced, StoreUnavailable
from onlearn.records import Event
from onlearn.runtime import ModelRuntime
from onlearn.store.base import Store

log = logging.getLogger(__name__)

# Events read from the log per model and call.
READ_LIMIT = 1000
# A model this far behind its log is not read ahead by the follower any more: its learner reads
# the log itself, page by page, so a backlog is not held in memory twice.
FOLLOW_AHEAD = 10_000
# How long the follower waits in one blocking read (Redis): also how late it sees a stop.
BLOCK_S = 0.5


class Follower:
    """Catches the models of an engine up with their logs.

    ``runtimes`` is the engine's own mapping (filled when it starts); ``stopping`` ends the loop.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        runtimes: Mapping[str, ModelRuntime],
        stopping: threading.Event,
    ) -> None:
        self.settings = settings
        self.store = store
        self.runtimes = runtimes
        self._stopping = stopping
        self._pool: LearnerPool | None = None
        self._here = threading.local()  # set while a synchronous caller applies its own events
        # model -> its applied seq just before the append in progress (the commit thread's)
        self._applied_before: dict[str, int] = {}

    # Life cycle (the engine's start and close)

    def start(self) -> list[threading.Thread]:
        """Start the learners and, on a store other processes append to, the follower thread."""
        self._pool = LearnerPool(self.settings.engine.learner_threads, self.run_slice)
        if not self.store.shared:
            return []  # a memory store has only this process: every event is handed over
        thread = threading.Thread(target=self.follow, name="onlearn-follower", daemon=True)
        thread.start()
        return [thread]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()

    # The synchronous path: a caller applies up to its own events in its thread

    def catch_up(self, rt: ModelRuntime, upto: int | None = None) -> None:
        """Apply the events after ``rt.seq`` in order: those this process appended from memory,
        the rest from the log. With ``upto``, stop reading the log once it is applied (events of
        other processes beyond it are the learners')."""
        with rt.apply_lock:
            self._catch_up_locked(rt, upto)

    def _catch_up_locked(self, rt: ModelRuntime, upto: int | None) -> None:
        generation = self.store.generation
        while upto is None or rt.seq < upto:
            generation.refuse()  # a store found changed: nothing more is applied
            events = rt.take_offered() or self._read(rt)
            if not events:
                break
            for event in events:
                if event.seq > rt.seq:
                    rt.apply(event)
            rt.note_head(events[-1].seq)
            rt.notify_applied()

    def _read(self, rt: ModelRuntime) -> list[Event]:
        """The events after ``rt.seq`` from the log, once the store is known to be the one this
        process opened (a changed store raises StoreReplaced: nothing read is applied)."""
        events = self.store.log.read(rt.name, after=rt.seq, limit=READ_LIMIT)
        if events:
            self.store.generation.check()
        return events

    def apply_now(self, rt: ModelRuntime, seq: int) -> bool:
        self.catch_up(rt, upto=seq)
        return rt.seq >= seq

    @contextmanager
    def applying_here(self):
        """Around a synchronous commit whose caller applies the events itself right after: the
        learners are not woken for them (they would only contend for the model's lock)."""
        self._here.on = True
        try:
            yield
        finally:
            self._here.on = False

    # Events appended here: handed over after their commit

    def before_commit(self, model: str) -> None:
        """Just before an append (in the commit thread): note how far the model had applied.
        A new seq at or below it means the store's log went back; one above it but applied by
        now is only this append's own event, read back by the follower meanwhile."""
        rt = self.runtimes.get(model)
        self._applied_before[model] = rt.seq if rt is not None else 0

    def committed(self, model: str, events: Sequence[Event], result) -> None:
        """After a durable append (in the thread that committed): hand the new events over and
        schedule their learning. No learning here: the commit thread serves every model."""
        rt = self.runtimes.get(model)
        if rt is None:
            return
        fresh = [seq for seq, new in zip(result, result.new, strict=True) if new]
        before = self._applied_before.pop(model, 0)
        if fresh and min(fresh) <= before:
            # The store gave a seq this process had applied already: its log went back (an
            # older copy, or lost writes). Nothing of it is applied; readiness fails, and the
            # callers waiting for these events get the error (onlearn.store.generation).
            self.store.generation.went_back(model, before, min(fresh) - 1)
            rt.notify_applied()
            return
        rt.offer(
            [
                replace(event, seq=seq)
                for event, seq, new in zip(events, result, result.new, strict=True)
                if new
            ]
        )
        rt.note_head(max(result))
        if not getattr(self._here, "on", False):
            self.schedule(rt)

    def schedule(self, rt: ModelRuntime) -> None:
        if self._pool is not None:
            self._pool.schedule(rt)

    # The learners' work

    def run_slice(self, rt: ModelRuntime) -> bool:
        """Apply ``rt``'s pending events for at most one slice; True if some are left."""
        with rt.apply_lock.after_waiters():
            deadline = time.monotonic() + SLICE_S
            generation = self.store.generation
            try:
                while True:
                    if generation.lost is not None:
                        return False  # a store found changed: nothing more is applied
                    events = rt.take_offered()
                    if not events:
                        if rt.seq >= rt.known_head:
                            return False
                        try:
                            events = self._read(rt)
                        except StoreReplaced:
                            return False
                        if not events:
                            return False  # the log ends before what was known: nothing to do
                        rt.note_head(events[-1].seq)
                    for i, event in enumerate(events):
                        if event.seq <= rt.seq:
                            continue
                        rt.apply(event)
                        if time.monotonic() >= deadline:
                            rt.offer(events[i + 1 :])  # the rest waits for the next slice
                            return True
            finally:
                rt.notify_applied()

    # Events appended by other processes: one follower thread for all the models

    def follow(self) -> None:
        interval = self.settings.engine.poll_interval_ms / 1000
        blocks = getattr(self.store.log, "follow_blocks", False)
        backoff = 0.05
        generation = self.store.generation
        while not self._stopping.is_set():
            if generation.lost is not None:  # a store found changed: nothing more is applied
                self._stopping.wait(BLOCK_S)
                continue
            try:
                found = self.store.log.follow(
                    self._positions(), block_s=BLOCK_S if blocks else 0.0, limit=READ_LIMIT
                )
                if found:
                    # Before anything read is handed over: an emptied or replaced store (the
                    # events of its new life under seqs this process applied) stops here.
                    generation.check()
                backoff = 0.05
            except StoreReplaced:
                continue
            except StoreUnavailable as e:
                log.warning("cannot read the log (%s); retrying", e)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            except Exception:
                log.exception("the follower failed; retrying")
                self._stopping.wait(1.0)
                continue
            for model, events in found.items():
                rt = self.runtimes.get(model)
                if rt is not None:
                    rt.offer(events)
                    self.schedule(rt)
            if not blocks and not any(len(events) == READ_LIMIT for events in found.values()):
                self._stopping.wait(interval)

    def _positions(self) -> dict[str, int]:
        return {
            name: rt.read_position()
            for name, rt in self.runtimes.items()
            if rt.backlog < FOLLOW_AHEAD
        }
