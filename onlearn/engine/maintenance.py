"""Maintenance off the request path, every ``[engine] snapshot_check_s``: labelling queue leases
and retention, the newest snapshot seqs, a check that the log has not gone back in time; and
the snapshot of the live states at shutdown."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping

from onlearn.config import Settings
from onlearn.errors import OnlearnError
from onlearn.labelling import Labelling
from onlearn.registry import CHAMPION
from onlearn.runtime import ModelRuntime
from onlearn.snapshots import save_snapshot
from onlearn.store.base import Store

log = logging.getLogger(__name__)


class Maintenance:
    """The engine's periodic chores, run by one thread until ``stopping`` is set."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        runtimes: Mapping[str, ModelRuntime],
        labelling: Labelling,
        stopping: threading.Event,
        *,
        secret: bytes,
    ) -> None:
        self.settings = settings
        self.store = store
        self.runtimes = runtimes
        self.labelling = labelling
        self.secret = secret
        self._stopping = stopping
        # model -> (its applied seq, the log's head) when the log was seen behind the model
        self.log_behind: dict[str, tuple[int, int]] = {}
        self._cursor = 0  # where the next round of snapshot seqs starts

    # Snapshot seqs refreshed per round (one registry read each).
    MODELS_PER_ROUND = 100

    def run(self) -> None:
        es = self.settings.engine
        while not self._stopping.wait(es.snapshot_check_s):
            self.labelling.maintain()
            self.refresh_snapshot_seqs(self._next_round())
            self.check_log_position()

    def _next_round(self) -> list[ModelRuntime]:
        """The next ``MODELS_PER_ROUND`` models, round robin: a round costs the same for ten
        models or a thousand (each model's snapshot seq is then refreshed less often)."""
        names = list(self.runtimes)
        if not names:
            return []
        start = self._cursor % len(names)
        chosen = (names[start:] + names[:start])[: self.MODELS_PER_ROUND]
        self._cursor = start + len(chosen)
        return [self.runtimes[name] for name in chosen]

    def check_log_position(self) -> None:
        """A log never shrinks (trimming keeps its head): one that ends before what a model
        applied was swapped for an older copy, and the follower would skip the new events that
        reuse those seqs. Readiness fails for good then; the process must start again."""
        # The applied seqs first: read after the heads, they could count an event appended
        # (and applied) in between. One read of every head, whatever the number of models.
        applied = {name: rt.seq for name, rt in self.runtimes.items()}
        generation = self.store.generation
        try:
            # First the generation: an emptied or replaced store says so (its log ends before
            # what was applied too, but that is the lesser news), even while no label comes.
            generation.check()
            heads = self.store.log.heads(list(applied))
        except OnlearnError:
            return  # StoreReplaced noted it; else the next round tries again
        for name, seq in applied.items():
            head = heads[name]
            if head < seq and name not in self.log_behind:
                self.log_behind[name] = (seq, head)
                generation.went_back(name, seq, head)  # logs it; the process stops for good

    def refresh_snapshot_seqs(self, models: Iterable[ModelRuntime] | None = None) -> None:
        """Learn the newest snapshot of each champion from the store: beside a worker process
        (the layout of ``onlearn serve``), snapshots are written by another process, and
        ``onlearn_snapshot_seq`` would otherwise stay at this process's own. ``models``: those
        to refresh (default all)."""
        for rt in self.runtimes.values() if models is None else models:
            try:
                seq = self.store.registry.latest_snapshot_seq(rt.name, rt.roles[CHAMPION])
            except OnlearnError:
                return  # the next round tries again
            rt.note_snapshot(seq)

    def snapshot_live(self, rt: ModelRuntime) -> None:
        """At shutdown nothing learns any more: pickling the live states is exact and quick.
        Scorecards (the worker's) are no states to restore from: none is written. Never over a
        store found changed (save_snapshot checks it again, against the store)."""
        if rt.seq <= rt.snapshot_seq or not rt.learns:
            return
        self.store.generation.refuse()
        with rt.lock:
            for state in rt.states.values():
                save_snapshot(self.store, rt.name, state, self.secret)
        rt.snapshot_seq = rt.seq
