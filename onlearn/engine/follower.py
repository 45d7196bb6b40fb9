"""Following the log: each model applies its events in seq order, never out of order, never
twice. Events this process appended are offered from memory after their commit (no read back);
events of other processes are read from the log by a follower thread per model."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace

from onlearn.config import Settings
from onlearn.errors import StoreUnavailable
from onlearn.records import Event
from onlearn.runtime import ModelRuntime
from onlearn.store.base import Store

log = logging.getLogger(__name__)


class Follower:
    """Catches the models of an engine up with their logs.

    ``runtimes`` is the engine's own mapping (filled when it starts); ``stopping`` ends the loops.
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

    def catch_up(self, rt: ModelRuntime, upto: int | None = None) -> None:
        """Apply the events after ``rt.seq`` in order: those this process appended from memory,
        the rest from the log. With ``upto``, stop reading the log once it is applied (events of
        other processes beyond it are the follower's)."""
        with rt.apply_lock:
            self._catch_up_locked(rt, upto)

    def _catch_up_locked(self, rt: ModelRuntime, upto: int | None) -> None:
        while upto is None or rt.seq < upto:
            events = rt.take_offered() or self.store.log.read(rt.name, after=rt.seq, limit=1000)
            if not events:
                break
            for event in events:
                rt.apply(event)
            rt.notify_applied()

    def apply_now(self, rt: ModelRuntime, seq: int) -> bool:
        self.catch_up(rt, upto=seq)
        return rt.seq >= seq

    def committed(self, model: str, events: Sequence[Event], result) -> None:
        """After a durable append (in the commit thread): hand the new events to the learner and
        apply them right here when no one else is applying, saving a thread hop per request."""
        rt = self.runtimes.get(model)
        if rt is None:
            return
        self.offer(rt, events, result)
        if rt.apply_lock.acquire(blocking=False):
            try:
                self._catch_up_locked(rt, upto=max(result))
            except Exception:
                log.exception("model %r: applying after commit failed; the follower retries", model)
                rt.wake.set()
            finally:
                rt.apply_lock.release()
        else:
            rt.wake.set()

    @staticmethod
    def offer(rt: ModelRuntime, events: Sequence[Event], result) -> None:
        rt.offer(
            [
                replace(event, seq=seq)
                for event, seq, new in zip(events, result, result.new, strict=True)
                if new
            ]
        )

    def follow(self, rt: ModelRuntime) -> None:
        # Other processes append to a shared store: poll it. A memory store has only us.
        interval = self.settings.engine.poll_interval_ms / 1000 if self.store.shared else None
        backoff = 0.05
        while not self._stopping.is_set():
            rt.wake.wait(interval)
            rt.wake.clear()
            if self._stopping.is_set():
                return
            try:
                self.catch_up(rt)
                backoff = 0.05
            except StoreUnavailable as e:
                log.warning("model %r: cannot read the log (%s); retrying", rt.name, e)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 2.0)
            except Exception:
                log.exception("model %r: the follower failed; retrying", rt.name)
                self._stopping.wait(1.0)
