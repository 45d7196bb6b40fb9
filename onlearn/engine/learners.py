"""A fixed pool of learner threads that time-slices the models of a process.

A model with events to apply is *scheduled*; a learner thread takes it, applies its events for at
most one slice (``SLICE_S``, or until it has none), and puts it back at the end of the queue if
some are left. So the threads do not grow with the number of models, one heavy model (a forest
learning a burst) delays only itself and the models behind it by one slice, and a model is
applied by one learner at a time, in seq order.

Between two slices the model's ``apply_lock`` is free: a snapshot writer or a synchronous caller
waiting for it gets it first (the learner takes it with ``after_waiters``).
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable

from onlearn.runtime import ModelRuntime

log = logging.getLogger(__name__)

# A slice of one model's learning. Short enough that the models queued behind a heavy one wait
# little; long enough that switching (a lock, a queue hop) is a small part of it.
SLICE_S = 0.01
# After a slice failed (the store unavailable), the model waits this long before its next one.
RETRY_S = 0.5


class LearnerPool:
    """``threads`` learners running ``run_slice(rt) -> more`` for the scheduled models.

    ``run_slice`` returns True when the model has more to apply; it raises to say the slice
    failed (the model is tried again after ``RETRY_S``).
    """

    def __init__(self, threads: int, run_slice: Callable[[ModelRuntime], bool]) -> None:
        self._run_slice = run_slice
        self._cond = threading.Condition()
        self._queue: collections.deque[ModelRuntime] = collections.deque()
        # A model is in at most one of these at a time: queued, or being applied by a learner.
        self._queued: set[str] = set()
        self._running: set[str] = set()
        self._again: set[str] = set()  # scheduled while running: queued again when its slice ends
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._run, name=f"onlearn-learner-{i}", daemon=True)
            for i in range(max(1, threads))
        ]
        for thread in self._threads:
            thread.start()

    def schedule(self, rt: ModelRuntime) -> None:
        with self._cond:
            name = rt.name
            if name in self._queued or self._stopping:
                return
            if name in self._running:
                self._again.add(name)
                return
            self._queued.add(name)
            self._queue.append(rt)
            self._cond.notify()

    def schedule_later(self, rt: ModelRuntime, delay: float) -> None:
        timer = threading.Timer(delay, self.schedule, (rt,))
        timer.daemon = True
        timer.start()

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                rt = self._queue.popleft()
                self._queued.discard(rt.name)
                self._running.add(rt.name)
            more = False
            failed = False
            try:
                more = self._run_slice(rt)
            except Exception:
                failed = True
                log.exception("model %r: learning failed; trying again in %g s", rt.name, RETRY_S)
            with self._cond:
                self._running.discard(rt.name)
                again = rt.name in self._again
                self._again.discard(rt.name)
                if (more or again) and not failed and not self._stopping:
                    self._queued.add(rt.name)
                    self._queue.append(rt)
                    self._cond.notify()
            if failed:
                self.schedule_later(rt, RETRY_S)
