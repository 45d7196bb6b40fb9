"""Group commit: many concurrent feedback calls share one durable append.

A durable append costs an fsync; one per request would cap feedback at the disk's sync rate.
Callers submit their events and get a future; one thread drains everything submitted meanwhile
and appends it per model in a single call, then resolves every future with its seqs.

Two details matter for throughput on few cores. While batches hold more than one request (there
is concurrency to gather), the thread lingers a moment before committing, so a batch gathers
more requests per fsync. And the futures of an event loop are resolved with one callback per
batch, not one wake-up of the loop per request.

The events waiting for their append are bounded (``max_pending``): when the store stalls, a
submission past the bound is refused at once with :class:`Overloaded` (HTTP 503) instead of
queueing in memory behind a store that does not answer.

A synchronous caller (the library's ``feedback_one``) that finds the committer idle appends its
events itself, from its own thread: the hop to the commit thread and back would cost more than
the append of one event on a local store. It is the same commit (the bound, the counters, the
work after commit); commits, whoever runs them, never overlap.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import Future

from onlearn.errors import Overloaded, StoreUnavailable
from onlearn.records import Event
from onlearn.store.base import AppendResult, EventLog

log = logging.getLogger(__name__)

_STOP = object()


class GroupCommitter:
    """Appends submitted events in batches from one thread.

    ``on_commit(model, events, result)`` runs in the commit thread after each durable append and
    before the submitters hear of it (the engine applies the events there when it can, so that an
    answer after commit is already read-your-writes). ``before_commit(model)`` runs in the same
    thread just before each append (the engine notes how far the model had applied, to tell a
    log that went back from its own events applied meanwhile by the follower).
    """

    def __init__(
        self,
        event_log: EventLog,
        *,
        max_batch: int = 2048,
        linger_s: float = 0.001,
        max_pending: int = 100_000,
        on_commit: Callable[[str, Sequence[Event], AppendResult], None] | None = None,
        before_commit: Callable[[str], None] | None = None,
    ) -> None:
        self.event_log = event_log
        self.before_commit = before_commit
        self.max_batch = max_batch
        self.linger_s = linger_s
        self.on_commit = on_commit
        self.max_pending = max_pending
        self.batches = 0
        self.events = 0
        self.refused = 0  # submissions refused because max_pending events were waiting
        self.pending = 0  # events submitted and not yet durable (or failed)
        self._pending_lock = threading.Lock()
        self._closed = False
        self._commit_lock = threading.Lock()  # held by whoever commits: one commit at a time
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="onlearn-group-commit", daemon=True)
        self._thread.start()

    def submit(self, model: str, events: Sequence[Event]) -> Future[list[int]]:
        """A concurrent future of the seqs (an :class:`AppendResult`), for threads."""
        self._admit(len(events))
        future: Future[list[int]] = Future()
        self._queue.put((model, events, future, None))
        return future

    def commit(self, model: str, events: Sequence[Event]) -> list[int]:
        """The seqs of ``events`` once they are durable, for a thread that waits for them: it
        commits them itself when nothing else is waiting or committing, else joins a batch."""
        self._admit(len(events))
        future: Future[list[int]] = Future()
        if self._queue.empty() and self._commit_lock.acquire(blocking=False):
            try:
                self._commit([(model, events, future, None)])
            finally:
                self._commit_lock.release()
        else:
            self._queue.put((model, events, future, None))
        return future.result()

    def submit_async(self, model: str, events: Sequence[Event]) -> asyncio.Future[list[int]]:
        """An asyncio future of the seqs, resolved on the running loop."""
        loop = asyncio.get_running_loop()
        self._admit(len(events))
        future = loop.create_future()
        self._queue.put((model, events, future, loop))
        return future

    def _admit(self, n: int) -> None:
        # A submission is admitted while fewer than max_pending events wait, whatever its own
        # size, so a batch larger than the bound still goes through on an idle committer.
        with self._pending_lock:
            if self._closed:
                # Nobody would commit it: the caller would wait on its future for ever.
                raise StoreUnavailable("label events cannot be appended: the engine is closed")
            if self.pending >= self.max_pending:
                self.refused += 1
                raise Overloaded(
                    f"{self.pending} label events are waiting for the store to make them durable "
                    f"([engine] max_pending_labels = {self.max_pending}): the store does not "
                    "keep up; retry shortly"
                )
            self.pending += n

    def close(self) -> None:
        """Commit what was submitted, then stop."""
        with self._pending_lock:
            self._closed = True
        self._queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        busy = False  # the last batch had several requests: worth waiting for more
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            if busy and self.linger_s:
                time.sleep(self.linger_s)
            batch, stop = [first], False
            n = len(first[1])
            while n < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
                n += len(item[1])
            busy = len(batch) > 1
            with self._commit_lock:
                self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list) -> None:
        by_model: dict[str, list] = defaultdict(list)
        for item in batch:
            by_model[item[0]].append(item)
        outcomes: list = []  # (future, loop, seqs or exception)
        for model, items in by_model.items():
            events = [e for _, evs, _, _ in items for e in evs]
            try:
                if self.before_commit is not None:
                    self.before_commit(model)
                result = self.event_log.append(model, events)
            except BaseException as e:  # noqa: BLE001 - every waiter must learn the outcome
                outcomes += [(future, loop, e) for _, _, future, loop in items]
                self._done(len(events))
                continue
            self._done(len(events))
            self.batches += 1
            self.events += len(events)
            if self.on_commit is not None:
                try:
                    self.on_commit(model, events, result)
                except Exception:
                    log.exception("model %r: work after a commit failed", model)
            at = 0
            for _, evs, future, loop in items:
                # With the new flags: a duplicate key is how a caller learns that its label
                # met an earlier one (onlearn/engine/feedback.py).
                end = at + len(evs)
                outcomes.append((future, loop, AppendResult(result[at:end], result.new[at:end])))
                at = end
        per_loop: dict = defaultdict(list)
        for future, loop, outcome in outcomes:
            if loop is None:
                _settle(future, outcome)
            else:
                per_loop[loop].append((future, outcome))
        for loop, settled in per_loop.items():
            try:
                loop.call_soon_threadsafe(_settle_all, settled)
            except RuntimeError:  # the loop closed meanwhile: nobody waits any more
                pass

    def _done(self, n: int) -> None:
        with self._pending_lock:
            self.pending -= n


def _settle(future, outcome) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _settle_all(settled: list) -> None:
    for future, outcome in settled:
        _settle(future, outcome)
