"""The monitor: a sidecar that watches each model's traffic and labels and raises alarms.

It reads the prediction records (with a cursor over their time-ordered ids) and the log (label
and control events), never the predict path. For each model it keeps:

- validation statistics: missing values per field (violations are counted by the servers, which
  refuse them);
- the reference profile of the champion's training data (stored with the version; built from
  the first ``reference_size`` predictions it serves when it has none yet: inputs need no
  labels) and two comparisons with live traffic: a sliding window (input drift) and a long one
  (train/serve skew);
- drift of the predicted labels and of the confidence, and the champion's agreement with the
  challengers and shadows (signals that need no labels);
- a concept drift detector on the error stream of each served version (right or wrong for a
  classifier; the absolute errors of a regressor, for the detectors that watch numbers);
- each served classifier's accuracy estimated from its probabilities before labels arrive
  (``onlearn.drift.performance_estimate``), calibrated on the random evaluation slice when the
  sampler has one, otherwise on every label, and reconciled with the labels as they come;
- a timeline for the dashboard.

Its report is a document in the store (``monitor``) that every server reads for
``GET /models/{name}/drift``, ``/metrics`` and the dashboard. An alarm is an ``alarm`` event in
the model's log (the worker's retrain triggers read it), a log line, and a webhook POST
(queued: ``onlearn.background.webhook``; its counts are in the report, under ``webhook``).
"""

from __future__ import annotations

import collections
import dataclasses
import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from onlearn.background.webhook import (
    WebhookSender,
    notify_alarm,
    resend,
    resend_outbox,
    stable_delivery_id,
)
from onlearn.config import ModelConfig, MonitorConfig, Settings
from onlearn.drift import (
    AgreementMonitor,
    InputDriftMonitor,
    PerformanceEstimator,
    PredictionDriftMonitor,
    Profile,
    ProfileBuilder,
    confidence_of,
    detector_from_config,
    prediction_row,
)
from onlearn.errors import OnlearnError
from onlearn.learner import proba_dict
from onlearn.metrics import absolute_error, mean_error
from onlearn.records import Event, EventKind, PredictionRecord
from onlearn.registry import CHAMPION, MONITOR_REPORT
from onlearn.store.base import Store

log = logging.getLogger(__name__)

DOCUMENT = MONITOR_REPORT
SKEW_WINDOW = 5000
SETTLE_S = 2.0  # how far behind the present the monitor reads the traffic  # predictions in the long window compared with the training data
MAX_ALARMS = 100


def profile_document(version: str) -> str:
    return f"profile:{version}"


def training_profile(store: Store, config: ModelConfig, upto: int) -> Profile | None:
    """The profile of the last ``reference_size`` label events at or before ``upto``: the
    training data of a version trained up to there. None when the log holds fewer."""
    size = config.monitor.reference_size
    builder = ProfileBuilder.from_schema(config.schema, sample_size=size)
    after = max(0, upto - 4 * size)  # label events are most of the log; read a little more
    rows: collections.deque = collections.deque(maxlen=size)
    while after < upto:
        events = store.log.read(config.name, after=after, limit=min(2000, upto - after))
        if not events:
            break
        rows.extend(
            e.payload["features"]
            for e in events
            if e.kind is EventKind.LABEL and e.payload.get("corrects") is None  # one row each
        )
        after = events[-1].seq
    for row in rows:
        builder.update(row)
    return builder.profile() if len(rows) == size else None


class ModelMonitor:
    """Everything watched for one model, fed records and events in order."""

    def __init__(self, config: ModelConfig, *, reference: Profile | None = None) -> None:
        self.config = config
        self.settings = config.monitor
        self.roles: dict[str, str] = {}
        self.reference: Profile | None = None
        self.reference_version: str | None = None
        self._builder: ProfileBuilder | None = None
        self.inputs: InputDriftMonitor | None = None
        self.skew: InputDriftMonitor | None = None
        self._prediction_builder: ProfileBuilder | None = None
        self.prediction_drift: PredictionDriftMonitor | None = None
        self.agreement = AgreementMonitor(window=self.settings.window)
        self.detectors: dict[str, Any] = {}
        self.missing: collections.Counter[str] = collections.Counter()
        self.rows = 0
        self.labels = 0
        self.skipped_backlogs = 0  # times the monitor jumped over records it was too late for
        self._label_times: collections.deque[float] = collections.deque(maxlen=1000)
        self.regression = config.task.value == "regression"
        # per version: correctness of its last answers, or their absolute errors (regression)
        self._recent: dict[str, collections.deque[float]] = {}
        self._errors: dict[str, ErrorRates] = {}
        self._concept_alarms: collections.Counter[str] = collections.Counter()
        self.last_at = 0.0  # time of the newest record or event observed
        self.unreported = False  # observed something since the last report
        self._confidence: collections.deque[float] = collections.deque(maxlen=self.settings.window)
        self._labels_watched = 0
        self.estimates: dict[str, PerformanceEstimator] = {}
        self.calibration_source = calibration_source(config)
        self.timeline: collections.deque[dict] = collections.deque(maxlen=self.settings.timeline)
        self.alarms: collections.deque[dict] = collections.deque(maxlen=MAX_ALARMS)
        self._on: set[str] = set()  # alarms currently raised: raised again only after clearing
        self._new_alarm_kinds: set[str] = set()  # raised since the last timeline point
        self.pending: list[dict] = []  # raised, not yet sent
        self._since_report = 0
        self._last_report_at = float("-inf")
        self.last_report: dict[str, Any] = {}
        if reference is not None:
            self.set_reference(reference, None)

    # Inputs

    def set_reference(self, profile: Profile, version: str | None) -> None:
        cfg = self.settings
        self.reference, self.reference_version = profile, version
        # 0 in the config: the plain two-sample p-values (None to the monitor).
        bound = float(cfg.reference_confidence) or None
        self.inputs = InputDriftMonitor(
            profile,
            window=cfg.window,
            alpha=cfg.alpha,
            correction=cfg.correction,
            reference_confidence=bound,
        )
        self.skew = InputDriftMonitor(
            profile,
            window=SKEW_WINDOW,
            alpha=cfg.alpha,
            correction=cfg.correction,
            reference_confidence=bound,
        )
        self._builder = None

    def watch_champion(self, version: str, reference: Profile | None) -> None:
        """A new champion: compare the traffic with its training data's profile (built from the
        next ``reference_size`` predictions when it has none yet), and its answers with its
        first ones."""
        size = self.settings.reference_size
        if reference is not None:
            self.set_reference(reference, version)
        else:
            self.reference_version = version
            self._builder = ProfileBuilder.from_schema(self.config.schema, sample_size=size)
        self.prediction_drift = None
        self._prediction_builder = ProfileBuilder(
            numeric=["confidence"], categorical=["label"], sample_size=size
        )
        self._labels_watched = 0

    def observe_prediction(self, record: PredictionRecord) -> Profile | None:
        """A prediction record; returns a reference profile when one was just completed (to
        store)."""
        self.last_at = max(self.last_at, record.at)
        self.unreported = True
        self.rows += 1
        self._since_report += 1
        features = record.features
        for f in self.config.schema.features:
            if features.get(f.name) is None:
                self.missing[f.name] += 1
        completed = None
        if self._builder is not None:
            # The inputs a version serves are its reference: at a 1% label budget, waiting for
            # reference_size labels would leave input drift unwatched for 100x as long.
            self._builder.update(features)
            if self._builder.rows >= self.settings.reference_size:
                completed = self._builder.profile()
                self.set_reference(completed, self.reference_version)
        elif self.inputs is not None:
            self.inputs.update(features)
            self.skew.update(features)
        outputs = record.outputs
        answer = outputs.get(record.version)
        if answer is not None and self.config.task.value == "classification":
            proba = proba_dict(answer["proba"])
            if self.prediction_drift is not None:
                self.prediction_drift.update(answer["label"], proba)
                if proba:
                    self._confidence.append(max(proba.values()))
            elif (
                self._prediction_builder is not None
                and self._labels_watched >= self.settings.reference_size
            ):
                # The answers of a model still learning its first labels are no reference.
                self._prediction_builder.update(prediction_row(answer["label"], proba))
                if self._prediction_builder.rows >= self.settings.reference_size:
                    self.prediction_drift = PredictionDriftMonitor(
                        self._prediction_builder.profile(),
                        window=self.settings.window,
                        alpha=self.settings.alpha,
                    )
                    self._prediction_builder = None
            others = {v: o["label"] for v, o in outputs.items() if v != record.version}
            if others:
                self.agreement.update(answer["label"], others)
            for version, output in outputs.items():
                confidence = confidence_of(output["label"], proba_dict(output.get("proba")))
                if confidence is not None:
                    self._estimator(version).observe(confidence)
        return completed

    def _estimator(self, version: str) -> PerformanceEstimator:
        estimator = self.estimates.get(version)
        if estimator is None:
            cfg = self.settings
            estimator = self.estimates[version] = PerformanceEstimator(
                window=cfg.window,
                reference_size=cfg.reference_size,
                reconcile_every=cfg.estimate_window_labels,
                calibration_window=cfg.calibration_window,
                drop=cfg.estimate_drop,
            )
        return estimator

    def observe_event(self, event: Event) -> None:
        """A log event: roles, and labels for the error streams and the estimates."""
        self.last_at = max(self.last_at, event.at)
        self.unreported = True
        if event.kind in (EventKind.PROMOTE, EventKind.ROLLBACK):
            for role, version in event.payload["changes"].items():
                if version is None:
                    self.roles.pop(role, None)
                else:
                    self.roles[role] = version
            return
        if event.kind is not EventKind.LABEL:
            return
        payload = event.payload
        if payload.get("corrects") is not None:
            # A correction is not a new observation: the first label already fed the profile,
            # the error windows and the detectors, which cannot take it back (their streams are
            # of what was seen, in order). The versions' metrics are revised instead.
            return
        self.labels += 1
        self._labels_watched += 1
        self._label_times.append(event.at)
        y = payload["label"]
        calibrates = self.calibration_source == ALL_LABELS or payload.get("sampled") == "random"
        for version, answer in (payload.get("outputs") or {}).items():
            if calibrates and not self.regression:
                confidence = confidence_of(answer["label"], proba_dict(answer.get("proba")))
                if confidence is not None:
                    self._estimator(version).learn(confidence, answer["label"] == y)
            if self.regression:
                error = absolute_error(y, answer["label"])
                if not math.isfinite(error):
                    continue  # a label beyond float range: nothing a detector can weigh
            else:
                error = 0.0 if answer["label"] == y else 1.0
            recent = self._recent.setdefault(version, collections.deque(maxlen=500))
            recent.append(error)
            errors = self._errors.setdefault(version, ErrorRates())
            errors.update(error)
            if errors.n > self.settings.reference_size:
                # Skip a version's first labels: a model learning errs less and less, a change
                # every detector sees and none worth an alarm.
                detector = self.detectors.get(version)
                if detector is None:
                    detector = self.detectors[version] = detector_from_config(
                        self.settings.detector
                    )
                if self.regression:
                    detector.update_error(error)
                else:
                    detector.update_pair(y, answer["label"])
                # Detectors see changes both ways; only more errors is an alarm.
                if detector.drift_detected and errors.worse():
                    self._concept_alarms[version] += 1
                    self._raise(
                        {
                            "kind": "concept_drift",
                            "version": version,
                            "detector": detector.name,
                            "detail": f"{detector.name} detected a change in the errors of {version}",
                            "seq": event.seq,
                        },
                        at=event.at,
                    )
                    errors.reset()
                elif detector.drift_detected:
                    errors.reset()

    # Reports

    def due(self) -> bool:
        """``report_every`` predictions and ``min_report_interval_s`` of traffic time since the
        last report (traffic time: a replayed or backlogged stream reports as it did live)."""
        return (
            self._since_report >= self.settings.report_every
            and self.last_at - self._last_report_at >= self.settings.min_report_interval_s
        )

    def report(self, now: float, queue: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The current state as a JSON document, and a timeline point."""
        self._since_report = 0
        self._last_report_at = self.last_at
        self.unreported = False
        # Alarms and timeline points are dated by the traffic they describe, as concept drift
        # alarms are by their label: one clock on the dashboard's time axis.
        now = self.last_at or now
        inputs = self.inputs.report() if self.inputs is not None and self.inputs.n >= 2 else None
        skew = self.skew.report() if self.skew is not None and self.skew.n >= 2 else None
        predictions = (
            self.prediction_drift.report()
            if self.prediction_drift is not None and self.prediction_drift.n >= 2
            else None
        )
        agreement = self.agreement.report()
        if inputs is not None:
            self._level(
                "input_drift",
                inputs.alarm,
                now,
                f"features drifting: {', '.join(inputs.drifted)}",
                {"features": list(inputs.drifted), "drift_share": inputs.drift_share},
            )
        if predictions is not None:
            drifted = list(predictions.drifted)
            reference = self.prediction_drift.reference["confidence"].mean
            window = self._confidence
            if "confidence" in drifted and window and sum(window) / len(window) >= (reference or 0):
                # A learning model grows surer of itself: only falling confidence is a signal.
                drifted.remove("confidence")
            self._level(
                "prediction_drift",
                bool(drifted),
                now,
                f"answers drifting: {', '.join(drifted)}",
                {"features": drifted},
            )
        if agreement.alarm:
            dropped = [c.name for c in agreement.challengers if c.dropped]
            self._level(
                "agreement_drop",
                True,
                now,
                f"agreement with the champion fell for {', '.join(dropped)}",
                {"versions": dropped},
            )
        else:
            self._level("agreement_drop", False, now, "", {})
        served = set(self.roles.values())
        recent = {v: r for v, r in self._recent.items() if v in served and r}
        if self.regression:
            # The last 500 labels of each served version, as the classifiers' accuracy.
            quality = {
                "mae": {v: _finite(mean_error(r)) for v, r in recent.items()},
                "rmse": {
                    v: _finite(math.sqrt(mean_error([e * e for e in r]))) for v, r in recent.items()
                },
            }
        else:
            quality = {"accuracy": {v: (len(r) - sum(r)) / len(r) for v, r in recent.items()}}
        estimate = self._estimate_report(served, now)
        if not self.regression:
            quality["estimated_accuracy"] = {
                v: e["estimated_accuracy"] for v, e in estimate["versions"].items()
            }
        point = {
            "at": now,
            "rows": self.rows,
            "labels": self.labels,
            "label_rate_per_min": self.label_rate(now),
            "queue_depth": (queue or {}).get("depth"),
            **quality,
            "drift_share": inputs.drift_share if inputs else None,
            "drift": {f.name: _statistic(f) for f in inputs.features} if inputs else {},
            "p_values": {f.name: f.adjusted_p_value for f in inputs.features} if inputs else {},
            "alarms": sorted(self._new_alarm_kinds),
        }
        self._new_alarm_kinds = set()
        self.timeline.append(point)
        self.last_report = {
            "model": self.config.name,
            "task": self.config.task.value,
            "updated_at": now,
            "roles": dict(self.roles),
            "reference": {
                "version": self.reference_version,
                "ready": self.reference is not None,
                "rows": self.reference.rows if self.reference else 0,
            },
            "backlog_skips": self.skipped_backlogs,
            "validation": {
                "rows": self.rows,
                "missing": dict(self.missing),
                "missing_rate": {k: v / self.rows for k, v in self.missing.items()}
                if self.rows
                else {},
            },
            "input_drift": inputs.to_dict() if inputs else None,
            "train_serve_skew": skew.to_dict() if skew else None,
            "prediction_drift": predictions.to_dict() if predictions else None,
            "agreement": agreement.to_dict(),
            "concept_drift": {
                v: {
                    "detector": d.name,
                    "updates": d.n,
                    "detections": d.n_detections,
                    "alarms": self._concept_alarms[v],
                    "warning": bool(getattr(d, "warning_detected", False)),
                }
                for v, d in self.detectors.items()
            },
            **quality,
            "performance_estimate": estimate,
            "label_rate_per_min": point["label_rate_per_min"],
            "queue": dict(queue) if queue else None,
            "alarms": list(self.alarms),
            "timeline": list(self.timeline),
        }
        return self.last_report

    def _estimate_report(self, served: set[str], now: float) -> dict[str, Any]:
        """Each served version's estimated accuracy, its calibration and its reconciliation;
        an ``estimated_drop`` alarm per version whose estimate fell."""
        if self.regression:
            return {
                "method": None,
                "calibration_source": None,
                "versions": {},
                "detail": "nothing is estimated for a regression model: confidence-based "
                "estimation needs class probabilities; its input drift needs no labels",
            }
        # Versions no longer served are forgotten (a version promoted again starts over).
        for version in [v for v in self.estimates if v not in served]:
            del self.estimates[version]
        versions = {v: e.to_dict() for v, e in self.estimates.items()}
        for version, e in versions.items():
            self._level(
                f"estimated_drop:{version}",
                e["dropped"],
                now,
                f"estimated accuracy of {version} fell to {e['estimated_accuracy']:.3f} from "
                f"{e['reference_estimated_accuracy']:.3f} (estimated without labels)"
                if e["dropped"]
                else "",
                {
                    "version": version,
                    "estimated_accuracy": e["estimated_accuracy"],
                    "reference_estimated_accuracy": e["reference_estimated_accuracy"],
                },
                kind="estimated_drop",
            )
        return {
            "method": "confidence-based (CBPE)",
            "calibration_source": self.calibration_source,
            "window": self.settings.window,
            "versions": versions,
        }

    def label_rate(self, now: float) -> float | None:
        """Labels per minute over the last minutes (up to the last 1000 labels)."""
        if len(self._label_times) < 10:
            return None
        span = max(now, self._label_times[-1]) - self._label_times[0]
        return 60.0 * len(self._label_times) / span if span >= 1.0 else None

    # Alarms

    def _level(
        self, name: str, on: bool, now: float, detail: str, extra: dict, kind: str | None = None
    ) -> None:
        """An alarm raised when a condition starts, and re-armed when it clears (``name`` keys
        the condition, ``kind`` names the alarm when one condition is watched per version)."""
        if on and name not in self._on:
            self._on.add(name)
            self._raise({"kind": kind or name, "detail": detail, **extra}, at=now)
        elif not on:
            self._on.discard(name)

    def _raise(self, alarm: dict, *, at: float) -> None:
        alarm = {"model": self.config.name, "at": at, **alarm}
        self.alarms.append(alarm)
        self._new_alarm_kinds.add(alarm["kind"])
        self.pending.append(alarm)

    def take_alarms(self) -> list[dict]:
        alarms, self.pending = self.pending, []
        return alarms


class ErrorRates:
    """A version's mean error since the last detected change, and over its last 100 labels:
    whether a change a detector saw made it worse. An error is 1.0 for a wrong answer and 0.0
    for a right one (the error rate), or a regressor's absolute error (the MAE)."""

    RECENT = 100

    def __init__(self) -> None:
        self.n = 0
        self._since = [0.0, 0]  # sum of errors, labels since the last change
        self._recent: collections.deque[float] = collections.deque(maxlen=self.RECENT)

    def update(self, error: float) -> None:
        self.n += 1
        self._since[0] += error
        self._since[1] += 1
        self._recent.append(error)

    def worse(self) -> bool:
        errors, labels = self._since
        if not labels or not self._recent:
            return False
        return sum(self._recent) / len(self._recent) > errors / labels

    def reset(self) -> None:
        self._since = [sum(self._recent), len(self._recent)]


ALL_LABELS = "all_labels"
RANDOM_SLICE = "random_slice"


def calibration_source(config: ModelConfig) -> str:
    """The labels the estimates calibrate on: the sampler's random evaluation slice when it has
    one (the only unbiased labels of a model that buys its labels), otherwise every label."""
    active = config.active
    if active is not None and (active.sampler.get("evaluation_rate") or 0) > 0:
        return RANDOM_SLICE
    return ALL_LABELS


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _statistic(feature) -> float | None:
    value = feature.statistics.get("psi")
    return value if value is None or math.isfinite(value) else None


class Monitor:
    """Runs a ModelMonitor per model against the store, as a process or a thread."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        clock=time.time,
        notify: Callable[[dict, MonitorConfig], None] | None = None,
        poll_s: float = 1.0,
        cpu_share: float = 1.0,
        webhooks: WebhookSender | None = None,
    ) -> None:
        if not 0 < cpu_share <= 1:
            raise ValueError(f"cpu_share must be in (0, 1], got {cpu_share}")
        self.settings = settings
        self.store = store
        self.clock = clock
        self.poll_s = poll_s
        self.cpu_share = cpu_share
        self.max_lag_s = settings.engine.monitor_max_lag_s
        # Alarms to the models' webhooks, off this loop; its thread starts at the first one.
        self.webhooks = webhooks or WebhookSender()
        self.notify = notify or (
            lambda alarm, config: notify_alarm(
                alarm, config, self.webhooks, delivery_id=stable_delivery_id(alarm)
            )
        )
        self.models: dict[str, ModelMonitor] = {}
        self._log_cursor: dict[str, int] = {}
        self._prediction_cursor: dict[str, str | None] = {}
        # A round visits the models that read something in the last one, and those with
        # anything newer than their cursors; the first round visits all.
        self._first_round = True
        self._reading: set[str] = set()
        # model -> (after, upto): the log seqs of alarms a stopped monitor appended after its
        # last report, sent again as the log pass reads them (_resume_webhooks)
        self._resend_window: dict[str, tuple[int, int]] = {}
        for config in settings.models:
            self._open(config)

    def _open(self, config: ModelConfig) -> None:
        name = config.name
        monitor = ModelMonitor(config)
        state = self.store.registry.roles_state(name)
        monitor.roles = dict(state.roles)
        previous = self.store.registry.get_document(name, DOCUMENT) or {}
        head = self.store.log.head(name)
        cursor = previous.get("cursor") or {}
        # Resume where the last monitor stopped; a first start reads back enough of the log to
        # build a reference, and the traffic of the last minute.
        self._log_cursor[name] = min(
            cursor.get("log_seq", max(0, head - config.monitor.reference_size)), head
        )
        now = self.clock()
        lookback = min(60.0, self.max_lag_s)
        self._prediction_cursor[name] = (
            cursor.get("prediction_id") or f"{int((now - lookback) * 1000):012x}"
        )
        for alarm in previous.get("alarms", []):
            monitor.alarms.append(alarm)
        for point in previous.get("timeline", []):
            monitor.timeline.append(point)
        if previous and config.monitor.webhook:
            self._resume_webhooks(config, previous, head)
        self._load_reference(monitor, first_start=True)
        self.models[name] = monitor

    def _resume_webhooks(self, config: ModelConfig, previous: dict, head: int) -> None:
        """Send again what the last monitor had not delivered when it stopped (a kill -9
        included), with the delivery ids they had (a receiver drops duplicates by them) and
        the age they have (``max_age_s`` still counts from the alarm): the outbox of its last
        report now, and the alarms it appended to the log after that report was written as
        the first reads of the log pass them (``_resend_appended``), up to today's head, so
        that a monitor down for long does not read its backlog twice."""
        name, settings = config.name, config.monitor
        outbox = (previous.get("webhook") or {}).get("outbox")
        resend_outbox(self.webhooks, name, settings, outbox, self.clock())
        # Appended after the report: beyond every alarm and the log position it holds.
        known = [
            a["alarm_seq"]
            for a in previous.get("alarms") or []
            if isinstance(a, dict) and isinstance(a.get("alarm_seq"), int)
        ]
        after = max([*known, int((previous.get("cursor") or {}).get("log_seq") or 0)])
        if after < head:
            self._resend_window[name] = (after, head)

    def _resend_appended(self, name: str, settings: MonitorConfig, event: Event) -> None:
        """An alarm event the log pass reads: sent again when the last monitor appended it
        after its last report (``_resume_webhooks``); this monitor's own are beyond the
        window."""
        after, upto = self._resend_window[name]
        if after < event.seq <= upto and (event.key or "").startswith("alarm:"):
            alarm = {"model": name, **event.payload, "alarm_seq": event.seq}
            resend(self.webhooks, name, settings, alarm, self.clock())

    def _load_reference(self, monitor: ModelMonitor, *, first_start: bool = False) -> None:
        champion = monitor.roles.get(CHAMPION)
        if champion is None or champion == monitor.reference_version:
            return
        name = monitor.config.name
        document = self.store.registry.get_document(name, profile_document(champion))
        reference = Profile.from_dict(document) if document else None
        if reference is None and first_start:
            # A monitor started after the champion has learned (a first start on a used store,
            # or its profile lost) takes the labels already in the log as its training data,
            # rather than waiting for reference_size new ones with drift unwatched meanwhile.
            # Stored, so that a rollback to this version read back from the log finds it.
            reference = training_profile(self.store, monitor.config, self.store.log.head(name))
            if reference is not None:
                self.store.registry.put_document(
                    name, profile_document(champion), reference.to_dict()
                )
        monitor.watch_champion(champion, reference)

    def run(self, stop: threading.Event) -> None:
        log.info("monitor: running (cpu share %g)", self.cpu_share)
        while not stop.is_set():
            started = time.thread_time()
            try:
                busy = self.tick()
            except OnlearnError as e:
                log.warning("monitor: %s; retrying", e)
                busy = False
            except Exception:
                log.exception("monitor: tick failed; retrying")
                busy = False
            # This thread's CPU time (not wall time, which waiting for the GIL inflates): rest
            # long enough that the work stays within its share.
            spent = time.thread_time() - started
            rest = spent * (1 - self.cpu_share) / self.cpu_share
            if not busy:
                rest = max(rest, self.poll_s)
            if rest > 0:
                stop.wait(rest)
        self.close()

    def close(self, deadline_s: float = 2.0) -> None:
        """Deliver the alarms still queued for webhooks, for at most ``deadline_s``."""
        self.webhooks.close(deadline_s)

    def tick(self) -> bool:
        """Read what arrived, report when due. True when there was something to read."""
        busy = False
        for name in self._to_visit():
            monitor = self.models[name]
            if CHAMPION not in monitor.roles:
                # Opened before any process registered the config's first version: that sets
                # the role without a log event, so only the registry can tell.
                monitor.roles = dict(self.store.registry.roles_state(name).roles)
                self._load_reference(monitor)
            read = self._read(name, monitor)
            busy |= read
            if read:
                self._reading.add(name)
            else:
                self._reading.discard(name)
            # Traffic paused: report what came since the last report rather than sit on it.
            if (read and not monitor.last_report) or (not read and monitor.unreported):
                self.publish(name)
        return busy

    def _to_visit(self) -> list[str]:
        """The models with something to read or report: two statements for all the models
        (their log heads; which have records after their cursors, an index probe each), not a
        read of the log and a scan of the records per model. The first round visits all."""
        if self._first_round:
            self._first_round = False
            return list(self.models)
        horizon = f"{int((self.clock() - SETTLE_S) * 1000):012x}g"
        heads = self.store.log.heads(list(self.models))
        recorded = self.store.predictions.models_after(self._prediction_cursor, horizon)
        return [
            name
            for name, monitor in self.models.items()
            if name in recorded
            or heads[name] > self._log_cursor[name]
            or name in self._reading  # read last round: a page may have been left
            or monitor.unreported
            or CHAMPION not in monitor.roles
        ]

    def _read(self, name: str, monitor: ModelMonitor, page: int = 2000) -> bool:
        """Feed the monitor what arrived, labels and predictions merged in time order (the
        answers of a model are judged against what it had learned when it gave them)."""
        # Servers write their records in batches, so an id may reach the store after a larger
        # one: stay SETTLE_S behind the present, where every batch has landed; labels too, so
        # that both streams are read to the same point in time.
        settled = self.clock() - SETTLE_S
        horizon = f"{int(settled * 1000):012x}"
        # Prediction ids start with their time in milliseconds (12 hex digits), so the cursor
        # can jump over a backlog it would never catch up with, to the recent traffic.
        oldest = f"{int((settled - self.max_lag_s) * 1000):012x}"
        if (self._prediction_cursor[name] or "") < oldest:
            self._prediction_cursor[name] = oldest
            monitor.skipped_backlogs += 1
        log_page = self.store.log.read(name, after=self._log_cursor[name], limit=page)
        # Bounded in the store: ids with a time prefix up to the horizon ("g" sorts after every
        # hex digit). Filtered here, the records not yet settled were read, decoded and dropped
        # at every poll, a page of them when the monitor had caught up.
        records = self.store.predictions.scan(
            name, self._prediction_cursor[name], limit=page, upto=horizon + "g"
        )
        # When a page is full, what lies beyond it may be older than the other page's end:
        # process only up to the earlier of the two ends, and read the rest next time.
        until = min(
            settled,
            log_page[-1].at if len(log_page) == page else settled,
            records[-1].at if len(records) == page else settled,
        )
        # Each stream is taken in its own order (seqs; ids) up to its first item beyond
        # ``until``, and never past it: several servers append, so seq order and time order may
        # differ by a few milliseconds, and a cursor moved past an item not yet read would lose
        # it. The merge interleaves the two streams by time without reordering either.
        events = list(itertools.takewhile(lambda e: e.at <= until, log_page))
        records = list(itertools.takewhile(lambda r: r.at <= until, records))
        items = list(
            heapq.merge(
                ((e.at, 0, e) for e in events),
                ((r.at, 1, r) for r in records),
                key=lambda item: (item[0], item[1]),
            )
        )
        for _, kind, item in items:
            if kind == 1:
                completed = monitor.observe_prediction(item)
                if completed is not None:
                    self.store.registry.put_document(
                        name, profile_document(monitor.reference_version), completed.to_dict()
                    )
                self._prediction_cursor[name] = item.id
                if monitor.due():
                    self.publish(name)
                continue
            monitor.observe_event(item)
            if item.kind in (EventKind.PROMOTE, EventKind.ROLLBACK):
                self._load_reference(monitor)
            elif item.kind is EventKind.ALARM and name in self._resend_window:
                self._resend_appended(name, monitor.settings, item)
            self._log_cursor[name] = item.seq
        if name in self._resend_window and self._log_cursor[name] >= self._resend_window[name][1]:
            del self._resend_window[name]
        self._dispatch(name, monitor)
        return bool(items)

    def publish(self, name: str) -> dict:
        monitor = self.models[name]
        queue = None
        if monitor.config.active is not None and self.store.queue is not None:
            stats = self.store.queue.stats(name)
            queue = dataclasses.asdict(stats)  # depth and claimed now, and every counter
        document = monitor.report(self.clock(), queue)
        document["cursor"] = {
            "log_seq": self._log_cursor[name],
            "prediction_id": self._prediction_cursor[name],
        }
        self._dispatch(name, monitor)
        document["alarms"] = list(monitor.alarms)
        if monitor.settings.webhook:
            # What is still to deliver rides in the report, so that a restart sends it again.
            document["webhook"] = {
                **self.webhooks.stats(name),
                "outbox": self.webhooks.unfinished(name),
            }
        self.store.registry.put_document(name, DOCUMENT, document)
        return document

    def _dispatch(self, name: str, monitor: ModelMonitor) -> None:
        for alarm in monitor.take_alarms():
            key = (
                f"alarm:{alarm['kind']}:{alarm.get('version', '')}:{alarm.get('seq', alarm['at'])}"
            )
            payload = {k: v for k, v in alarm.items() if k != "model"}
            (seq,) = self.store.log.append(
                name, [Event(EventKind.ALARM, payload, at=alarm["at"], key=key)]
            )
            alarm["alarm_seq"] = seq
            self.notify(alarm, monitor.settings)


__all__ = [
    "DOCUMENT",
    "ModelMonitor",
    "Monitor",
    "calibration_source",
    "profile_document",
]
