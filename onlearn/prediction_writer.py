"""Prediction records are written in small batches off the request path.

Losing the last few milliseconds of records on a crash only loses a join (the client can still
send the label with inline features), so predict never waits for storage. The buffer is
bounded: when the store is down long enough to fill it, the oldest records are dropped and
counted, rather than the process growing until it dies. A record the store refuses for what it
holds (not because the store is away) is dropped and counted as unwritable, so one bad record
cannot hold back every record after it.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time

from onlearn.errors import StoreUnavailable
from onlearn.records import PredictionRecord
from onlearn.store.base import PredictionStore

log = logging.getLogger(__name__)


class PredictionWriter:
    """Buffers records and flushes them every ``flush_interval_s`` from one thread.

    When the buffer holds ``help_at`` records (the thread fell behind: predictions come faster
    than it writes them), the caller that puts more writes the buffer itself, if no flush is
    running and the last one reached the store. That is the back-pressure of a busy server:
    without it, batch predicts at 40k rows/s outran the thread (it waits for the GIL each time
    its SQLite calls release it) and the bound dropped records of a store that was up. A store
    that is down leaves the callers alone: the bound applies as before.
    """

    def __init__(
        self,
        store: PredictionStore,
        *,
        flush_interval_s: float = 0.02,
        max_pending: int = 100_000,
        purge_interval_s: float = 60.0,
        clock=time.time,
        after_write=None,
        help_at: int = 2000,
    ) -> None:
        self.store = store
        self.flush_interval_s = flush_interval_s
        self.max_pending = max_pending
        self.purge_interval_s = purge_interval_s
        self.clock = clock
        # Called from the writer thread with each batch once written: work that must follow a
        # prediction but not delay it (queueing the cases the sampler picked for labelling).
        self.after_write = after_write
        # At most half the bound: a bound of a few records (tests) keeps its drop-oldest rule.
        self.help_at = help_at if help_at * 2 <= max_pending else None
        self.helped = 0  # flushes made by callers that found the buffer full
        self._healthy = True  # the last flush reached the store
        self._flushing = threading.Lock()  # one flush at a time, the thread's or a caller's
        self.written = 0
        self.dropped = 0
        self.unwritable = 0
        self.failures = 0
        self._pending: dict[str, PredictionRecord] = {}
        self._inflight: dict[str, PredictionRecord] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="onlearn-predictions", daemon=True)
        self._thread.start()
        # Purges run in a thread of their own: a purge paces itself (it leaves the store's write
        # lock free between chunks), which takes seconds for a big one, and flushes must go on
        # meanwhile (a record not written yet is invisible to other processes).
        self._purger = threading.Thread(
            target=self._purge, name="onlearn-prediction-purge", daemon=True
        )
        self._purger.start()

    def put(self, record: PredictionRecord) -> None:
        with self._lock:
            self._pending[record.id] = record
            behind = len(self._pending)
            if behind > self.max_pending:
                del self._pending[next(iter(self._pending))]
                self.dropped += 1
        if self.help_at is not None and behind >= self.help_at:
            self._help()

    def put_many(self, records: list[PredictionRecord]) -> None:
        """``put`` of each record, under one taking of the lock."""
        with self._lock:
            pending = self._pending
            for record in records:
                pending[record.id] = record
            behind = len(pending)
            over = behind - self.max_pending
            if over > 0:
                for key in list(itertools.islice(pending, over)):
                    del pending[key]
                self.dropped += over
        if self.help_at is not None and behind >= self.help_at:
            self._help()

    def _help(self) -> None:
        """Write the buffer from the caller's thread (see the class docstring)."""
        if self._healthy and self._flushing.acquire(blocking=False):
            try:
                self.helped += 1
                self._flush()
            finally:
                self._flushing.release()

    def get(self, prediction_id: str) -> PredictionRecord | None:
        """A record still in memory (not yet written), else None."""
        with self._lock:
            return self._pending.get(prediction_id) or self._inflight.get(prediction_id)

    @property
    def pending(self) -> int:
        return len(self._pending) + len(self._inflight)

    def flush(self) -> None:
        with self._flushing:
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            if not self._pending:
                return
            self._inflight, self._pending = self._pending, {}
        records = list(self._inflight.values())
        try:
            try:
                self.store.put_many(records)
            except StoreUnavailable:
                raise
            except Exception:
                # Not the store being away: something in the batch cannot be stored. Retrying
                # the batch would fail the same way forever, so find the culprits one by one.
                log.warning(
                    "a batch of %d prediction records was refused; writing them one by one",
                    len(records),
                    exc_info=True,
                )
                records = self._write_each(records)
        except StoreUnavailable:
            self._healthy = False
            self._retry_later()
            return
        self._healthy = True
        self.written += len(records)
        with self._lock:
            self._inflight = {}
        if self.after_write is not None:
            try:
                self.after_write(records)
            except Exception:
                log.exception("work after writing %d prediction records failed", len(records))

    def _write_each(self, records: list[PredictionRecord]) -> list[PredictionRecord]:
        """Write ``records`` one at a time; drop (and count) those the store refuses. Returns the
        records written; StoreUnavailable goes up with the rest still in flight."""
        written = []
        for record in records:
            try:
                self.store.put_many([record])
            except StoreUnavailable:
                raise
            except Exception as exc:
                self.unwritable += 1
                log.error("prediction record %s cannot be written, dropped: %r", record.id, exc)
                with self._lock:
                    del self._inflight[record.id]
                continue
            written.append(record)
        return written

    def _retry_later(self) -> None:
        """Keep the batch in flight for the next try, in front of newer records, within the
        bound."""
        self.failures += 1
        log.warning("could not write %d prediction records; will retry", len(self._inflight))
        with self._lock:
            merged = {**self._inflight, **self._pending}
            overflow = max(0, len(merged) - self.max_pending)
            for key in list(merged)[:overflow]:
                del merged[key]
            self.dropped += overflow
            self._pending, self._inflight = merged, {}

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._purger.join()
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval_s):
            self.flush()

    def _purge(self) -> None:
        while not self._stop.wait(self.purge_interval_s):
            try:
                self.store.purge_expired(self.clock())
            except Exception:
                log.warning("could not purge expired prediction records; will retry")
