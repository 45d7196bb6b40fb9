"""Prediction records are written in small batches off the request path.

A prediction answered 200 has its record written: nothing is dropped to make room. The buffer
is bounded (``max_pending``): a predict that finds no room for its records (the store does not
keep up, or is away) is refused with :class:`~onlearn.errors.Overloaded` (HTTP 503 with
``Retry-After``) before anything is predicted, and counted (``refused``). Losing the last few
milliseconds of records on a crash only loses a join (the client can still send the label with
inline features). What can still be lost is counted and logged, never silent: a record the store
refuses for what it holds (not because the store is away: ``unwritable``, so that one bad record
cannot hold back every record after it), and records still waiting when the process stops with
the store away (``dropped``).
"""

from __future__ import annotations

import logging
import threading
import time

from onlearn.errors import Overloaded, StoreUnavailable
from onlearn.records import PredictionRecord
from onlearn.store.base import PredictionStore

log = logging.getLogger(__name__)


class PredictionWriter:
    """Buffers records and flushes them every ``flush_interval_s`` from one thread.

    When the buffer holds ``help_at`` records (the thread fell behind: predictions come faster
    than it writes them), the caller that puts more writes the buffer itself, if no flush is
    running and the last one reached the store. That is the back-pressure of a busy server:
    without it, batch predicts at 40k rows/s outran the thread (it waits for the GIL each time
    its SQLite calls release it) and the bound dropped 51% of the records of a store that was
    up. When even that leaves no room (:meth:`admit`), the predict is refused with a 503: a
    store that is down, or slower than the predictions, makes callers wait and retry instead of
    losing the records of predictions they were answered.
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
        self.dropped = 0  # records lost: still waiting when the process stopped, store away
        self.unwritable = 0  # records the store refused for what they hold (logged)
        self.refused = 0  # predicted rows refused with 503: the buffer had no room for them
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

    def admit(self, n: int = 1) -> None:
        """Make sure ``n`` more records fit in the buffer, before predicting them; raise
        :class:`Overloaded` (HTTP 503, counted in ``refused``) when they do not.

        A caller that finds the buffer full writes it itself first when the store is up (as
        ``help_at`` does). A batch bigger than the whole bound is taken when the buffer is
        empty (so it can be answered at all); the bound is then passed by at most one batch.
        Callers admitted at once may pass it by their batches: the bound is on what waits, and
        nothing admitted is ever dropped to keep it.
        """
        waiting = len(self._pending) + len(self._inflight)
        if waiting + n <= self.max_pending or not waiting:
            return
        if self.help_at is not None:
            self._help()
        waiting = len(self._pending) + len(self._inflight)
        if waiting + n <= self.max_pending or not waiting:
            return
        self.refused += n
        raise Overloaded(
            f"{waiting} prediction records are waiting to be written ([engine] "
            f"max_pending_predictions = {self.max_pending}): the store does not keep up "
            f"{'or is unavailable ' if not self._healthy else ''}and this predict of {n} "
            "rows was refused rather than answered without its record; retry after "
            "Retry-After, send fewer rows per call, or add capacity"
        )

    def put(self, record: PredictionRecord) -> None:
        """Buffer ``record`` (admitted before by :meth:`admit`: never dropped here)."""
        with self._lock:
            self._pending[record.id] = record
            behind = len(self._pending)
        if self.help_at is not None and behind >= self.help_at:
            self._help()

    def put_many(self, records: list[PredictionRecord]) -> None:
        """``put`` of each record, under one taking of the lock."""
        with self._lock:
            pending = self._pending
            for record in records:
                pending[record.id] = record
            behind = len(pending)
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
            if not self._pending and not self._inflight:
                return
            # A batch left in flight by a flush that failed unexpectedly goes first, not lost.
            self._inflight, self._pending = {**self._inflight, **self._pending}, {}
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
        """Keep the batch in flight for the next try, in front of newer records (all of them:
        :meth:`admit` bounds what comes in)."""
        self.failures += 1
        log.warning("could not write %d prediction records; will retry", len(self._inflight))
        with self._lock:
            self._pending, self._inflight = {**self._inflight, **self._pending}, {}

    def close(self, attempts: int = 3, pause_s: float = 0.2) -> None:
        """Stop, writing what waits: a few tries while the store is away, then what is left
        is counted in ``dropped`` and logged (the process is going; nothing can hold it)."""
        self._stop.set()
        self._thread.join()
        self._purger.join()
        for attempt in range(attempts):
            self.flush()
            if not self.pending:
                return
            if attempt + 1 < attempts:
                time.sleep(pause_s)
        lost = self.pending
        self.dropped += lost
        log.error(
            "%d prediction records were not written at shutdown: the store is unavailable; "
            "labels for them need inline features",
            lost,
        )

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval_s):
            try:
                self.flush()
            except Exception:
                # Never let the writer thread die: records would pile up unseen until every
                # predict is refused. The batch stays for the next try (or was counted).
                log.exception("writing prediction records failed; will retry")

    def _purge(self) -> None:
        while not self._stop.wait(self.purge_interval_s):
            try:
                self.store.purge_expired(self.clock())
            except Exception:
                log.warning("could not purge expired prediction records; will retry")
