"""Feature importance drift of the served versions, computed by the worker with its snapshots.

The worker holds a version's full state when it snapshots it (the replayed state, or a pickled
copy of the live one): that is when importances are computed (onlearn/drift/importance.py),
over the newest ``budget.window`` labelled rows of the log, within ``budget``'s CPU cap per
version. The result is the registry document ``importance`` of the model (every server reads
it into ``GET /models/{name}/drift``, the dashboard shows it next to input drift), and an
alarm (a log line and the model's webhook, as the monitor's) when a version's top ranking
moves. The alarm is not put in the log: an online model whose importances moved has often
already adapted, so it informs rather than triggers a retrain.

The document is also what a restarted worker (a kill -9 included) takes up: each version's
detector state (its reference ranking and the comparisons already below the threshold), the
alarms and timeline shown, and the webhook outbox (the alarms still queued or in flight when it
was written), sent again with their delivery ids: delivery is at least once, and a duplicate
carries the id of the first.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Mapping
from typing import Any

from onlearn.background.webhook import (
    WebhookSender,
    notify_alarm,
    resend_outbox,
    stable_delivery_id,
)
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

    def __init__(
        self,
        store: Store,
        *,
        budget: ImportanceBudget | None = None,
        clock,
        webhooks: WebhookSender | None = None,
    ) -> None:
        self.store = store
        self.budget = budget or ImportanceBudget()
        self.clock = clock
        self.webhooks = webhooks
        self._drift: dict[tuple[str, str], ImportanceDrift] = {}
        self._timeline: dict[str, collections.deque] = {}
        self._alarms: dict[str, collections.deque] = {}
        # The detector states a previous process left, per model (its document's ``versions``),
        # until this process's first computation for the model replaces them.
        self._saved: dict[str, dict] = {}

    def take_up(self, rt: ModelRuntime) -> None:
        """Once per model and process: what the last process left in the document (see the
        module's docstring). From the store, so untrusted: entries of another shape are
        dropped."""
        if rt.name in self._saved:
            return
        saved = self.store.registry.get_document(rt.name, IMPORTANCE_REPORT)
        saved = saved if isinstance(saved, dict) else {}
        versions = saved.get("versions")
        self._saved[rt.name] = versions if isinstance(versions, dict) else {}
        alarms = self._alarms.setdefault(rt.name, collections.deque(maxlen=ALARMS))
        for alarm in _dicts(saved.get("alarms")):
            if isinstance(alarm.get("at"), int | float) and isinstance(alarm.get("kind"), str):
                alarms.append(alarm)
        timeline = self._timeline.setdefault(rt.name, collections.deque(maxlen=TIMELINE))
        timeline.extend(p for p in _dicts(saved.get("timeline")) if "at" in p)
        config = rt.config.monitor
        if config.webhook and self.webhooks is not None:
            outbox = (saved.get("webhook") or {}) if isinstance(saved.get("webhook"), dict) else {}
            resend_outbox(self.webhooks, rt.name, config, outbox.get("outbox"), self.clock())

    def budget_of(self, rt: ModelRuntime) -> ImportanceBudget:
        """This worker's budget with the model's own keys ([models.<name>.monitor.importance])."""
        return rt.config.monitor.importance.budget(self.budget)

    def labelled_window(self, rt: ModelRuntime) -> tuple[list[dict], list[Any]]:
        """The newest ``window`` labelled rows of the log (model inputs) and labels."""
        size = self.budget_of(rt).window
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

    def update(self, rt: ModelRuntime, estimators: Mapping[str, Any]) -> dict:
        """Compute the importances of ``estimators`` (version -> a state no one else uses),
        send each alarm to the model's webhook and store the model's document."""
        self.take_up(rt)
        saved_versions = self._saved[rt.name]
        features = list(rt.schema.names)
        budget = self.budget_of(rt)
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
                budget=budget,
                seed=rt.seq,
            )
            drift = self._drift.get((rt.name, version))
            if drift is None:
                drift = self._drift[(rt.name, version)] = rt.config.monitor.importance.drift()
                saved = saved_versions.get(version)
                if isinstance(saved, dict) and version in rt.roles.values():
                    drift.restore(saved.get("drift"))
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
                self._alarms[rt.name].append(alarm)
                notify_alarm(
                    alarm, rt.config.monitor, self.webhooks, delivery_id=stable_delivery_id(alarm)
                )
        timeline = self._timeline[rt.name]
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
                "window": budget.window,
                "sample_size": budget.sample_size,
                "time_cap_s": budget.time_cap_s,
            },
            "versions": versions,
            "alarms": list(self._alarms.get(rt.name, ())),
            "timeline": list(timeline),
        }
        if rt.config.monitor.webhook and self.webhooks is not None:
            document["webhook"] = {
                **self.webhooks.stats(rt.name),
                "outbox": self.webhooks.unfinished(rt.name),
            }
        self._saved[rt.name] = {}  # taken up: from now on this process's state is the truth
        self.store.registry.put_document(rt.name, IMPORTANCE_REPORT, document)
        return document


def _dicts(value: Any) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


__all__ = ["ImportanceWatch"]
