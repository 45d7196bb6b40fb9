"""A model lock the learner hands to waiting readers between two events.

CPython's ``threading.Lock`` is not fair: a thread that releases it and asks again at once
(the learner going from one event of a batch to the next) nearly always gets it back, so a
predict that arrives during a batch of 500 labels waits for the whole batch. :class:`HandoffLock`
is used like a ``Lock`` (``with lock:``) by every reader and writer; the learner takes it with
:meth:`HandoffLock.after_waiters` instead, which first lets every thread that was already waiting
when it asked take the lock once, then takes it. Threads that come after the learner asked wait
for it: the learner is never starved, and a predict waits for at most one event's learning.

Uncontended, ``with lock:`` is one non-blocking acquire of the inner lock (no condition, no
bookkeeping); the tickets and conditions are only for threads that find it taken.

>>> lock = HandoffLock()
>>> with lock:
...     lock.locked()
True
>>> with lock.after_waiters():  # nobody waits: taken at once
...     lock.locked()
True
>>> lock.locked()
False
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class HandoffLock:
    """A mutual-exclusion lock with a hand-off for one learner (see the module docstring).

    Only one thread at a time may be in :meth:`after_waiters` (a model's applier, under its
    ``apply_lock``); a second one waits for the first.
    """

    __slots__ = (
        "_lock",
        "_state",
        "_served",
        "_opened",
        "_learner",
        "_issued",
        "_waiting",
        "_gate",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the lock proper
        self._state = threading.Lock()  # guards the fields below
        self._served = threading.Condition(self._state)  # a waiter got the lock (for the learner)
        self._opened = threading.Condition(self._state)  # the learner got the lock (for the gated)
        self._learner = threading.Lock()  # one hand-off at a time
        self._issued = 0  # tickets given to threads that found the lock taken
        self._waiting: dict[int, None] = {}  # tickets not yet served, oldest first
        self._gate: int | None = None  # tickets from here wait until the learner has the lock

    def acquire(self) -> bool:
        # The gate is read without the state lock: a thread that slips past it as the learner
        # closes it is one more reader served first, never a lost wake-up.
        if self._gate is None and self._lock.acquire(False):
            return True
        with self._state:
            ticket = self._issued
            self._issued += 1
            self._waiting[ticket] = None
            while self._gate is not None and ticket >= self._gate:
                self._opened.wait()
        self._lock.acquire()
        with self._state:
            del self._waiting[ticket]
            if self._gate is not None and ticket < self._gate:
                self._served.notify()
        return True

    def release(self) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self._lock.release()

    @contextmanager
    def after_waiters(self) -> Iterator[None]:
        """Hold the lock, after every thread already waiting for it has had it once."""
        with self._learner:
            gated = bool(self._waiting)  # read unlocked: a later waiter is served next time
            if gated:
                with self._state:
                    gate = self._gate = self._issued
                    while self._waiting and next(iter(self._waiting)) < gate:
                        self._served.wait()
            self._lock.acquire()
            if gated:
                with self._state:
                    self._gate = None
                    self._opened.notify_all()
        try:
            yield
        finally:
            self._lock.release()
