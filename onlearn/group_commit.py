"""Group commit: many concurrent feedback calls share one durable append.

A durable append costs an fsync; one per request would cap feedback at the disk's sync rate.
Callers submit their events and get a future; one thread drains everything submitted meanwhile
and appends it per model in a single call, then resolves every future with its seqs.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import Future

from onlearn.records import Event
from onlearn.store.base import EventLog

log = logging.getLogger(__name__)

_STOP = object()


class GroupCommitter:
    """Appends submitted events in batches from one thread.

    ``on_commit(model)`` is called after each durable append, e.g. to wake the model's learner.
    """

    def __init__(
        self,
        event_log: EventLog,
        *,
        max_batch: int = 2048,
        on_commit: Callable[[str], None] | None = None,
    ) -> None:
        self.event_log = event_log
        self.max_batch = max_batch
        self.on_commit = on_commit
        self.batches = 0
        self.events = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="onlearn-group-commit", daemon=True)
        self._thread.start()

    def submit(self, model: str, events: Sequence[Event]) -> Future[list[int]]:
        future: Future[list[int]] = Future()
        self._queue.put((model, events, future))
        return future

    def close(self) -> None:
        """Commit what was submitted, then stop."""
        self._queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
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
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list) -> None:
        by_model: dict[str, list] = defaultdict(list)
        for item in batch:
            by_model[item[0]].append(item)
        for model, items in by_model.items():
            events = [e for _, evs, _ in items for e in evs]
            try:
                seqs = self.event_log.append(model, events)
            except BaseException as e:  # noqa: BLE001 - every waiter must learn the outcome
                for _, _, future in items:
                    future.set_exception(e)
                continue
            self.batches += 1
            self.events += len(events)
            at = 0
            for _, evs, future in items:
                future.set_result(seqs[at : at + len(evs)])
                at += len(evs)
            if self.on_commit is not None:
                self.on_commit(model)
