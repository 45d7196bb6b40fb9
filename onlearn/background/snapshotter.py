"""Snapshots written by replay, holding full states only for the versions being snapshotted.

The worker process follows the log with scorecards (metrics and comparisons, no estimator):
checking gates and triggers needs no model. A snapshot does: it is built by replaying the log
from the newest snapshot (``state(seq) = replay(snapshot(s0), events(s0, seq])``, the same state
the live path holds, by determinism). Unpickling a forest of tens of MB at each interval would
cost more than the replay, so the full states built last are kept, at most
``[engine] worker_cached_states`` of them, and advanced from where they are the next time.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from onlearn.learner import LearnerState
from onlearn.records import Snapshot, VersionInfo
from onlearn.schema import Schema
from onlearn.snapshots import check_spec, replay, restore, save_snapshot
from onlearn.store.base import Store

log = logging.getLogger(__name__)


class Snapshotter:
    def __init__(self, store: Store, secret: bytes, *, keep: int = 8) -> None:
        self.store = store
        self.secret = secret
        self.keep = keep
        # (model, version) -> the full state of the snapshot written last, least recent first.
        self._states: OrderedDict[tuple[str, str], LearnerState] = OrderedDict()

    def state(self, model: str, version: str) -> LearnerState | None:
        """The full state of ``version`` written last, if held (the worker reads it between
        snapshots only, from its own thread: nothing else touches it)."""
        return self._states.get((model, version))

    def held(self) -> list[tuple[str, str]]:
        """The versions whose full state is in memory now."""
        return list(self._states)

    def advance(self, info: VersionInfo, *, min_new_events: int = 1) -> Snapshot | None:
        """A snapshot of ``info``'s version at the log's head, when at least ``min_new_events``
        arrived since its newest one; None otherwise."""
        key = (info.model, info.version)
        newest = self.store.registry.latest_snapshot_seq(info.model, info.version)
        head = self.store.log.head(info.model)
        if head - newest < min_new_events:
            return None
        state = self._states.pop(key, None)
        if state is not None and state.seq == newest:
            # Ours is the newest snapshot: go on from it, no unpickling. (When another worker
            # wrote a newer one, or a restart lost ours, the store's newest is the start.)
            check_spec(info, self.secret)  # as restore does: the replay reads the spec's schema
            replay(self.store, info.model, Schema.from_config(**info.spec["schema"]), state, head)
        else:
            state = restore(self.store, info, self.secret, upto=head)
        snapshot = save_snapshot(self.store, info.model, state, self.secret)
        self._states[key] = state
        while len(self._states) > self.keep:
            dropped, _ = self._states.popitem(last=False)
            log.debug("snapshotter: dropped the state of %s %s from memory", *dropped)
        return snapshot

    def forget(self, model: str, versions: set[str]) -> None:
        """Drop the states of ``model``'s versions not in ``versions`` (they hold no role now)."""
        for key in [k for k in self._states if k[0] == model and k[1] not in versions]:
            del self._states[key]


__all__ = ["Snapshotter"]
