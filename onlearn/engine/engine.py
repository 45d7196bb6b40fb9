"""The Engine: its life cycle, the wiring of its parts, and the queries about its models.

Predict, feedback, following the log, roles and maintenance each live in their own module; the
engine resolves the model a call names and hands the call to the part that owns it.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from onlearn.config import ModelConfig, Settings
from onlearn.engine.feedback import FeedbackHandler, FeedbackResult
from onlearn.engine.follower import Follower
from onlearn.engine.maintenance import Maintenance
from onlearn.engine.predict import Prediction, Predictor
from onlearn.engine.roles import RoleChanges
from onlearn.errors import OnlearnError, StoreReplaced, UnknownModel, UnknownVersion
from onlearn.group_commit import GroupCommitter
from onlearn.keys import resolve_secret
from onlearn.labelling import Labelling
from onlearn.prediction_writer import PredictionWriter
from onlearn.records import Event, EventKind, FeedbackItem
from onlearn.registry import CHAMPION, IMPORTANCE_REPORT, MONITOR_REPORT, ensure_registered
from onlearn.runtime import ModelRuntime
from onlearn.snapshots import restore
from onlearn.store import open_store
from onlearn.store.base import AppendResult, Store
from onlearn.two_sample import describe_ab

log = logging.getLogger(__name__)


class Engine:
    """Serves the configured models from one store. ``start()`` before use, ``close()`` after.

    >>> from onlearn.config import settings_from_mapping
    >>> settings = settings_from_mapping({"store": {"url": "memory://"}, "models": {"m": {
    ...     "pipeline": {"name": "logistic_regression"},
    ...     "features": {"x": {"type": "number"}}}}})
    >>> with Engine.from_settings(settings) as engine:
    ...     p = engine.predict_one("m", {"x": 1.0})
    ...     result = engine.feedback_one("m", FeedbackItem(label=True, prediction_id=p.prediction_id))
    ...     (p.version, result.seq, result.applied)
    ('v1', 1, True)
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        secret: bytes,
        clock=time.time,
        learns: bool = True,
    ):
        self.settings = settings
        # False in the worker process: its states are scorecards (metrics and comparisons kept
        # from the answers stored in label events, no estimator), see LearnerState.scorecard.
        self.learns = learns
        self.store = store
        self.secret = secret
        self.clock = clock
        self.runtimes: dict[str, ModelRuntime] = {}
        self._records: PredictionWriter | None = None
        self._committer: GroupCommitter | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self.started = False
        self.labelling = Labelling(self)
        # The parts that share the prediction writer and the committer get them at start().
        self._follower = Follower(settings, store, self.runtimes, self._stopping)
        self._roles = RoleChanges(store, self._follower, clock)
        self._maintenance = Maintenance(
            settings, store, self.runtimes, self.labelling, self._stopping, secret=secret
        )
        self._predictor: Predictor | None = None
        self._feedback: FeedbackHandler | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, learns: bool = True) -> Engine:
        secret = resolve_secret(settings.secret_key, settings.store_url)
        return cls(settings, open_store(settings.store_url), secret=secret, learns=learns)

    # Life cycle

    def start(self) -> Engine:
        es = self.settings.engine
        for config in self.settings.models:
            self.runtimes[config.name] = self._load(config)
        self._records = PredictionWriter(
            self.store.predictions,
            flush_interval_s=es.prediction_flush_ms / 1000,
            max_pending=es.max_pending_predictions,
            clock=self.clock,
            after_write=self.labelling.enqueue,
        )
        self._committer = GroupCommitter(
            self.store.log,
            max_pending=es.max_pending_labels,
            on_commit=self._committed,
            before_commit=self._follower.before_commit,
        )
        self._predictor = Predictor(self._records, self.clock)
        self._feedback = FeedbackHandler(
            self.settings, self.store, self._records, self._committer, self._follower, self.clock
        )
        # A fixed number of threads whatever the number of models: the learners, the follower
        # (shared stores only), maintenance, the commit and the record writer.
        self._threads += self._follower.start()
        self._spawn("onlearn-maintenance", self._maintenance.run)
        self.started = True
        return self

    def close(self) -> None:
        if not self.started:
            self.store.close()
            return
        self.started = False
        self._committer.close()
        self._stopping.set()
        for thread in self._threads:
            thread.join()
        self._follower.close()
        for rt in self.runtimes.values():
            try:
                self.catch_up(rt)
                self._maintenance.snapshot_live(rt)
            except StoreReplaced:
                # The live state holds events the store does not: it must not become a
                # snapshot there (onlearn.store.generation).
                log.error("model %r: no snapshot at shutdown: the store was found changed", rt.name)
            except OnlearnError:
                log.warning("model %r: no snapshot at shutdown; replay will rebuild it", rt.name)
        self._records.close()
        self.store.close()

    def _committed(self, model: str, events: Sequence[Event], result) -> None:
        """After a durable append, in the commit thread: the new events go to the learners, and
        the queue items of predictions that got their label close (issue 13, section 1)."""
        self._follower.committed(model, events, result)
        self.labelling.answered(model, events, result)

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def _load(self, config: ModelConfig) -> ModelRuntime:
        name = config.name
        ensure_registered(self.store, config, at=self.clock(), secret=self.secret)
        # Roles and the log position must agree: read the head, then the roles; roles changed by
        # a control event after that head would be applied twice, so read again if so.
        while True:
            head = self.store.log.head(name)
            roles_state = self.store.registry.roles_state(name)
            if roles_state.seq <= head:
                break
        started = time.monotonic()
        scorecard = not self.learns
        states = {
            version: self.version_state(name, version, head, scorecard=scorecard)
            for version in sorted(set(roles_state.roles.values()))
        }
        snapshots = {
            version: (
                s.seq
                if (s := self.store.registry.latest_snapshot(name, version, max_seq=head))
                else 0
            )
            for version in states
        }
        rt = ModelRuntime(
            config,
            states,
            dict(roles_state.roles),
            seq=head,
            canary_share=roles_state.canary_share,
            loader=lambda version, upto: self.version_state(
                name, version, upto, scorecard=scorecard
            ),
        )
        rt.snapshot_seq = snapshots.get(rt.roles[CHAMPION], 0)
        # How this process got its states: what a new replica took from snapshots, what it replayed.
        rt.restored = {
            "at_seq": head,
            "from_snapshots": snapshots,
            "seconds": round(time.monotonic() - started, 3),
        }
        log.info("model %r: %s serving at seq %d", config.name, rt.roles[CHAMPION], head)
        return rt

    def version_state(self, name: str, version: str, upto: int, *, scorecard: bool = False):
        """A version's state at ``upto``: its newest snapshot there, then a replay of the log
        (a full state, whatever this engine holds, unless ``scorecard``)."""
        info = self.store.registry.get_version(name, version)
        if info is None:
            raise UnknownVersion(f"model {name!r} has no version {version!r}")
        return restore(self.store, info, self.secret, upto=upto, scorecard=scorecard)

    def _spawn(self, name: str, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # Queries

    def runtime(self, name: str) -> ModelRuntime:
        try:
            return self.runtimes[name]
        except KeyError:
            served = ", ".join(sorted(self.runtimes)) or "none"
            raise UnknownModel(f"model {name!r} is not served; served models: {served}") from None

    def describe(self, name: str) -> dict[str, Any]:
        rt = self.runtime(name)
        versions = [
            {"version": v.version, "created_at": v.created_at, "meta": dict(v.meta)}
            for v in self.store.registry.list_versions(name)
        ]
        return {**rt.describe(), "versions": versions}

    def metrics(self, name: str) -> dict[str, Any]:
        rt = self.runtime(name)
        roles_of: dict[str, list[str]] = {}
        for role, version in rt.roles.items():
            roles_of.setdefault(version, []).append(role)
        with rt.lock:
            versions = {
                v: {
                    "roles": roles_of.get(v, []),
                    **s.metrics.to_dict(),
                    "learn_errors": s.learn_errors,
                }
                for v, s in rt.states.items()
            }
        return {
            "model": name,
            "task": rt.config.task.value,
            "applied_seq": rt.seq,
            "versions": versions,
        }

    def drift(self, name: str) -> dict[str, Any]:
        """The monitor's latest report of the model (input drift, skew, prediction drift,
        agreement, concept drift, alarms, timeline) and this process's validation counters."""
        rt = self.runtime(name)
        report = self.store.registry.get_document(name, MONITOR_REPORT)
        violations: dict[str, dict[str, int]] = {}
        for (feature, rule), count in sorted(rt.violations.items()):
            violations.setdefault(feature, {})[rule] = count
        if report is None:
            report = {
                "model": name,
                "updated_at": None,
                "detail": "no monitor report yet: run `onlearn monitor` (onlearn serve runs one "
                "with the embedded store) and send some traffic",
            }
        report = dict(report)
        report.pop("cursor", None)
        report["violations"] = violations
        # the worker's feature importances (computed with its snapshots), None before any
        report["importance"] = self.store.registry.get_document(name, IMPORTANCE_REPORT)
        return report

    def ready(self) -> tuple[bool, str]:
        if not self.started:
            return False, "models are not loaded yet"
        generation = self.store.generation
        if generation.lost is None:
            try:
                self.store.ping()
            except OnlearnError as e:
                return False, f"store unavailable: {e}"
            # Two reads (the generation id, every log head): a store emptied, replaced or
            # restored from an older copy fails readiness at the first probe, not at the next
            # maintenance round.
            self._maintenance.check_log_position()
        if generation.lost is not None:
            return False, generation.lost  # for good: see onlearn.store.generation
        return True, "ok"

    def stats(self) -> dict[str, Any]:
        """Counters for monitoring, read at scrape time so the hot path only bumps integers."""
        return {
            "models": {
                name: {
                    "predictions": rt.predictions,
                    "labels_applied": rt.labels_applied,
                    "applied_seq": rt.seq,
                    "snapshot_seq": rt.snapshot_seq,
                    "learn_backlog": rt.backlog,
                    "learn_lag_refused": rt.lag_refused,
                    "label_conflicts": rt.label_conflicts,
                    "champion": rt.roles[CHAMPION],
                    "versions": {v: s.metrics.to_dict() for v, s in rt.states.items()},
                    # A model whose labels follow the answer is compared by its A/B test (the
                    # canary's): the paired comparison is biased there, and is not given.
                    "paired": {} if rt.config.labels_follow_answer else self._paired(rt),
                    "ab": {v: ab for v, ab in self._ab(rt).items() if ab["compared"]},
                }
                for name, rt in self.runtimes.items()
            },
            "prediction_records": {
                "pending": self._records.pending if self._records else 0,
                "written": self._records.written if self._records else 0,
                "dropped": self._records.dropped if self._records else 0,
                "unwritable": self._records.unwritable if self._records else 0,
                "refused": self._records.refused if self._records else 0,
            },
            "log_commits": {
                "batches": self._committer.batches if self._committer else 0,
                "events": self._committer.events if self._committer else 0,
                "pending": self._committer.pending if self._committer else 0,
                "refused": self._committer.refused if self._committer else 0,
            },
        }

    @staticmethod
    def _ab(rt: ModelRuntime) -> dict[str, dict[str, Any]]:
        """``describe_ab`` of each version held here, for a model whose labels follow the
        answer ({} for the others): counts copied under the lock, tested outside it."""
        if not rt.config.labels_follow_answer:
            return {}
        with rt.lock:
            counts = {v: copy.deepcopy(getattr(s, "ab", None)) for v, s in rt.states.items()}
            roles = dict(rt.roles)
        return _describe_ab(rt, counts, roles)

    @staticmethod
    def _paired(rt: ModelRuntime) -> dict[str, dict[str, dict[str, Any]]]:
        """Each version's comparison with every other on the same labels (``b`` = the version,
        ``a`` = the other), copied under the lock and tested outside it."""
        with rt.lock:
            paired = {v: copy.deepcopy(s.paired) for v, s in rt.states.items() if s.paired}
        return {v: {o: p.to_dict() for o, p in ps.items()} for v, ps in paired.items()}

    # Versions and roles

    def versions(self, name: str) -> list[dict[str, Any]]:
        """Every version with its lineage, its roles, and (when held here) live metrics and
        paired comparisons."""
        rt = self.runtime(name)
        roles_of: dict[str, list[str]] = {}
        for role, version in rt.roles.items():
            roles_of.setdefault(version, []).append(role)
        out = []
        with rt.lock:
            for info in self.store.registry.list_versions(name):
                state = rt.states.get(info.version)
                out.append(
                    {
                        "version": info.version,
                        "created_at": info.created_at,
                        "roles": roles_of.get(info.version, []),
                        "spec": dict(info.spec),
                        "lineage": dict(info.meta),
                        "metrics": state.metrics.to_dict() if state else None,
                        # copied under the lock, tested outside it: a regression comparison's
                        # test ranks thousands of errors, too long to hold predicts back
                        "paired": copy.deepcopy(state.paired) if state else None,
                    }
                )
                if rt.config.labels_follow_answer:  # copied here, tested outside the lock
                    out[-1]["ab"] = copy.deepcopy(getattr(state, "ab", None))
            roles = dict(rt.roles)
        described = _describe_ab(rt, {v["version"]: v["ab"] for v in out if "ab" in v}, roles)
        for version in out:
            if version["paired"] is not None:
                version["paired"] = {o: p.to_dict() for o, p in version["paired"].items()}
            if "ab" in version:
                version["ab"] = described[version["version"]]
        return out

    def role_history(self, name: str) -> list[dict]:
        self.runtime(name)
        return self.store.registry.role_history(name)

    # The calls below resolve the model they name (UnknownModel if it is not served) and hand
    # the call to the part that owns it: see predict.py, feedback.py, roles.py, follower.py.
    def change_roles(
        self,
        name: str,
        changes: Mapping[str, str | None],
        *,
        actor: str,
        reason: str,
        kind: EventKind = EventKind.PROMOTE,
        canary_share: float | None = None,
        key: str | None = None,
    ) -> int:
        return self._roles.change_roles(
            self.runtime(name),
            changes,
            actor=actor,
            reason=reason,
            kind=kind,
            canary_share=canary_share,
            key=key,
        )

    def promote(
        self,
        name: str,
        version: str,
        role: str,
        *,
        actor: str,
        reason: str,
        share: float | None = None,
        key: str | None = None,
    ) -> int:
        return self._roles.promote(
            self.runtime(name), version, role, actor=actor, reason=reason, share=share, key=key
        )

    def rollback(self, name: str, *, actor: str, reason: str, key: str | None = None) -> int:
        return self._roles.rollback(self.runtime(name), actor=actor, reason=reason, key=key)

    def raise_alarm(self, name: str, alarm: Mapping[str, Any], *, key: str | None = None) -> int:
        """Append an alarm (drift, performance) to the model's log, where retrain triggers read it."""
        rt = self.runtime(name)
        event = Event(kind=EventKind.ALARM, payload=dict(alarm), at=self.clock(), key=key)
        (seq,) = self.store.log.append(name, [event])
        rt.note_head(seq)  # the learners read it from the log (a memory store has no follower)
        self._follower.schedule(rt)
        return seq

    # Predict

    def predict_one(self, name: str, features: Any, *, key: str | None = None) -> Prediction:
        return self._predictor.predict_one(self.runtime(name), features, key)

    def predict_many(
        self, name: str, rows: Sequence[Any], *, keys: Sequence[str | None] | None = None
    ) -> list[Prediction]:
        return self._predictor.predict_many(self.runtime(name), rows, keys)

    # Feedback

    def feedback_one(self, name: str, item: FeedbackItem, *, wait: bool = True) -> FeedbackResult:
        return self._feedback.feedback_one(self.runtime(name), item, wait)

    def feedback_many(
        self, name: str, items: Sequence[FeedbackItem], *, wait: bool = True
    ) -> list[FeedbackResult]:
        return self._feedback.feedback_many(self.runtime(name), items, wait)

    async def feedback_one_async(
        self, name: str, item: FeedbackItem, *, wait: bool = True
    ) -> FeedbackResult:
        return await self._feedback.feedback_one_async(self.runtime(name), item, wait)

    async def feedback_many_async(
        self, name: str, items: Sequence[FeedbackItem], *, wait: bool = True
    ) -> list[FeedbackResult]:
        return await self._feedback.feedback_many_async(self.runtime(name), items, wait)

    async def retract_async(
        self,
        name: str,
        keys: Sequence[str],
        *,
        source: str = "human",
        labeller: str | None = None,
        wait: bool = True,
    ) -> list[int | None]:
        """Withdraw the labels recorded for ``keys`` (see ``FeedbackHandler.retract_async``)."""
        return await self._feedback.retract_async(
            self.runtime(name), keys, source=source, labeller=labeller, wait=wait
        )

    # The labelling queue's label: its event built as feedback's, appended by the queue itself

    def label_event(self, name: str, item: FeedbackItem) -> Event:
        return self._feedback.label_event(self.runtime(name), item)

    async def label_event_async(self, name: str, item: FeedbackItem) -> Event:
        return await self._feedback.label_event_async(self.runtime(name), item)

    def check_lag(self, name: str) -> None:
        self._feedback.check_lag(self.runtime(name))

    def learn_appended(
        self, name: str, events: Sequence[Event], seqs: AppendResult, *, wait: bool = True
    ) -> bool:
        return self._feedback.learn_appended(self.runtime(name), events, seqs, wait)

    async def learn_appended_async(
        self, name: str, events: Sequence[Event], seqs: AppendResult, *, wait: bool = True
    ) -> bool:
        return await self._feedback.learn_appended_async(self.runtime(name), events, seqs, wait)

    # Following the log and maintenance

    def catch_up(self, rt: ModelRuntime, upto: int | None = None) -> None:
        self._follower.catch_up(rt, upto)

    @property
    def log_behind(self) -> dict[str, tuple[int, int]]:
        return self._maintenance.log_behind

    def check_log_position(self) -> None:
        self._maintenance.check_log_position()

    def refresh_snapshot_seqs(self) -> None:
        self._maintenance.refresh_snapshot_seqs()


def _describe_ab(
    rt: ModelRuntime, counts: Mapping[str, Any], roles: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    """``describe_ab`` of each version's copied A/B counts, at the model's rollout alpha."""
    task, alpha = rt.config.task.value, rt.config.rollout.alpha
    return {v: describe_ab(v, roles, ab, task=task, alpha=alpha) for v, ab in counts.items()}
