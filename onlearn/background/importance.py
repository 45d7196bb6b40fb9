"""Feature importance drift of the served versions, computed by the worker with its snapshots.

The worker holds a version's full state when it snapshots it (the replayed state, or a pickled
copy of the live one): that is when importances are computed (onlearn/drift/importance.py),
over the newest ``budget.window`` labelled rows of the log, within ``budget``'s CPU cap per
version. The result is the registry document ``importance`` of the model (every server reads
it into ``GET /models/{name}/drift``, the dashboard shows it next to input drift), and an
alarm (a log line and the model's webhook, as the monitor's) when a version's top ranking
moves. The alarm is not put in the log: an online model whose importances moved has often
already adapted, so it informs rather than triggers a retrain.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Mapping
from typing import Any

from onlearn.drift.importance import (
    ImportanceBudget,
    ImportanceDrift,
    feature_importance,
)
from onlearn.records import EventKind
from onlearn.registry import IMPORTANCE_REPORT
from onlearn.runtime import ModelRuntime
from onlearn.store.base import Store

log = logging.getLogger(__name__)

TIMELINE = 100  # computations kept per model for the dashboard
ALARMS = 20


class ImportanceWatch:
    """Each model's versions: their importance drift, and the document that shows it."""

    def __init__(self, store: Store, *, budget: ImportanceBudget | None = None, clock) -> None:
        self.store = store
        self.budget = budget or ImportanceBudget()
        self.clock = clock
        self._drift: dict[tuple[str, str], ImportanceDrift] = {}
        self._timeline: dict[str, collections.deque] = {}
        self._alarms: dict[str, collections.deque] = {}

    def labelled_window(self, rt: ModelRuntime) -> tuple[list[dict], list[Any]]:
        """The newest ``budget.window`` labelled rows of the log (model inputs) and labels."""
        size = self.budget.window
        head = self.store.log.head(rt.name)
        after = max(0, head - 2 * size)  # label events are most of the log; read a little more
        window: collections.deque = collections.deque(maxlen=size)
        while after < head:
            events = self.store.log.read(rt.name, after=after, limit=min(2000, head - after))
            if not events:
                break
            for e in events:
                if e.kind is EventKind.LABEL and e.payload.get("corrects") is None:
                    window.append((e.payload["features"], e.payload["label"]))
            after = events[-1].seq
        rows = [rt.schema.model_input(x) for x, _ in window]
        return rows, [y for _, y in window]

    def update(self, rt: ModelRuntime, estimators: Mapping[str, Any], notify=None) -> dict:
        """Compute the importances of ``estimators`` (version -> a state no one else uses) and
        store the model's document; ``notify(alarm)`` for each alarm."""
        features = list(rt.schema.names)
        rows, labels = self.labelled_window(rt)
        now = self.clock()
        roles: dict[str, list[str]] = {}
        for role, version in rt.roles.items():
            roles.setdefault(version, []).append(role)
        versions = {}
        for version, estimator in sorted(estimators.items()):
            result = feature_importance(
                estimator,
                features,
                rows,
                labels,
                task=rt.config.task.value,
                budget=self.budget,
                seed=rt.seq,
            )
            drift = self._drift.setdefault((rt.name, version), ImportanceDrift())
            if result.importances:
                drift.update(result.importances)
            versions[version] = {
                **result.to_dict(),
                "roles": sorted(roles.get(version, [])),
                "drift": drift.to_dict(),
            }
            if drift.drift_detected:
                alarm = {
                    "model": rt.name,
                    "at": now,
                    "kind": "importance_drift",
                    "version": version,
                    "detail": f"top features now {', '.join(result.ranking[: drift.top_k])} "
                    f"(overlap {drift.overlap} with the reference)",
                }
                self._alarms.setdefault(rt.name, collections.deque(maxlen=ALARMS)).append(alarm)
                if notify is not None:
                    notify(alarm)
        timeline = self._timeline.setdefault(rt.name, collections.deque(maxlen=TIMELINE))
        timeline.append(
            {
                "at": now,
                "seq": rt.seq,
                "versions": {v: d["importances"] for v, d in versions.items()},
            }
        )
        for key in [k for k in self._drift if k[0] == rt.name and k[1] not in rt.roles.values()]:
            del self._drift[key]  # a version without a role starts afresh if it comes back
        document = {
            "model": rt.name,
            "updated_at": now,
            "seq": rt.seq,
            "labelled_rows": len(rows),
            "budget": {
                "window": self.budget.window,
                "sample_size": self.budget.sample_size,
                "time_cap_s": self.budget.time_cap_s,
            },
            "versions": versions,
            "alarms": list(self._alarms.get(rt.name, ())),
            "timeline": list(timeline),
        }
        self.store.registry.put_document(rt.name, IMPORTANCE_REPORT, document)
        return document


__all__ = ["ImportanceWatch"]
