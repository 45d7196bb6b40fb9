"""Prometheus metrics, read from the engine's counters at scrape time (nothing on the hot path)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest

from onlearn.errors import OnlearnError
from serving.http_metrics import HttpCollector, HttpMetrics
from serving.lag_metrics import LagCollector

# Each version's prequential metrics: a classifier has the first four, a regressor the last
# three; a gauge is exported only for the metrics its task has (never an accuracy of 0 for a
# regressor).
QUALITY = ("accuracy", "recent_accuracy", "log_loss", "macro_f1", "mae", "recent_mae", "rmse")


class EngineCollector:
    def __init__(self, engine, monitor_ttl_s: float = 2.0) -> None:
        self.engine = engine
        self.monitor_ttl_s = monitor_ttl_s
        self._reports: tuple[float, dict] = (0.0, {})

    def _monitor_reports(self) -> dict:
        """The monitor's reports from the store, read at most every ``monitor_ttl_s``."""
        at, reports = self._reports
        if time.monotonic() - at > self.monitor_ttl_s:
            reports = {}
            for name in self.engine.runtimes:
                try:
                    reports[name] = self.engine.drift(name)
                except OnlearnError:
                    continue  # the store is away: the scrape still gives the counters
            self._reports = (time.monotonic(), reports)
        return reports

    def collect(self):
        yield from self._monitoring()
        stats = self.engine.stats()
        predictions = CounterMetricFamily(
            "onlearn_predictions", "Predictions served", labels=["model"]
        )
        labels = CounterMetricFamily(
            "onlearn_labels_applied", "Label events applied", labels=["model"]
        )
        seq = GaugeMetricFamily("onlearn_applied_seq", "Log position applied", labels=["model"])
        snap = GaugeMetricFamily(
            "onlearn_snapshot_seq", "Log position of the newest snapshot", labels=["model"]
        )
        backlog = GaugeMetricFamily(
            "onlearn_learn_backlog",
            "Label events in the log not yet learned by this process ([engine] max_learn_lag)",
            labels=["model"],
        )
        lag_refused = CounterMetricFamily(
            "onlearn_learn_lag_refused",
            "Feedback calls answered 503 because the learning backlog reached max_learn_lag",
            labels=["model"],
        )
        labelled = GaugeMetricFamily(
            "onlearn_version_labels", "Labels scored per version", labels=["model", "version"]
        )
        conflicts = CounterMetricFamily(
            "onlearn_label_conflicts",
            "Labels refused with 409 by this process: they differed from the recorded label and "
            "were not sent as corrections",
            labels=["model"],
        )
        corrections = GaugeMetricFamily(
            "onlearn_version_corrections",
            "Corrections learned per version, by the source that corrected",
            labels=["model", "version", "source"],
        )
        corrected = GaugeMetricFamily(
            "onlearn_version_corrected_labels",
            "Labels overruled by a correction, by the source of the overruled label",
            labels=["model", "version", "source"],
        )
        disagreement = GaugeMetricFamily(
            "onlearn_version_disagreement_rate",
            "Share of a source's or a labeller's labels that a correction overruled",
            labels=["model", "version", "by", "name"],
        )
        quality = {
            q: GaugeMetricFamily(
                f"onlearn_version_{q}", f"Prequential {q} per version", labels=["model", "version"]
            )
            for q in QUALITY
        }
        pair = ["model", "version", "against"]
        paired_labels = GaugeMetricFamily(
            "onlearn_paired_labels",
            "Labels both versions answered since the last change of roles",
            labels=pair,
        )
        paired_p = GaugeMetricFamily(
            "onlearn_paired_p_value",
            "p-value of the paired test of a version against another on the same labels "
            "(McNemar for classification, Wilcoxon signed-rank on absolute errors for regression)",
            labels=[*pair, "test"],
        )
        paired_accuracy = GaugeMetricFamily(
            "onlearn_paired_accuracy",
            "Accuracy of a version on the labels it shares with another (classification)",
            labels=pair,
        )
        paired_mae = GaugeMetricFamily(
            "onlearn_paired_mae",
            "Mean absolute error of a version on the recent labels it shares with another "
            "(regression)",
            labels=pair,
        )
        ab = ["model", "version", "against"]
        ab_labels = GaugeMetricFamily(
            "onlearn_ab_labels",
            "A/B comparison (labels_follow_answer): labels of the requests each side answered "
            "(arm: the version, a canary, or the champion it is compared with)",
            labels=[*ab, "arm"],
        )
        ab_p = GaugeMetricFamily(
            "onlearn_ab_p_value",
            "p-value of the A/B test of a canary against the champion, each on the labels of "
            "its own answers (two-proportion z for classification, Welch's t for regression)",
            labels=[*ab, "test"],
        )
        ab_accuracy = GaugeMetricFamily(
            "onlearn_ab_accuracy",
            "A/B comparison: accuracy of each side on the labels of its own answers",
            labels=[*ab, "arm"],
        )
        ab_mae = GaugeMetricFamily(
            "onlearn_ab_mae",
            "A/B comparison: mean absolute error of each side on the labels of its own answers",
            labels=[*ab, "arm"],
        )
        ab_needed = GaugeMetricFamily(
            "onlearn_ab_labels_needed",
            "A/B comparison: labels each side needs in all to detect the difference observed at "
            "the rollout's alpha and a power of 0.8",
            labels=[*ab, "arm"],
        )
        for name, m in stats["models"].items():
            predictions.add_metric([name], m["predictions"])
            labels.add_metric([name], m["labels_applied"])
            seq.add_metric([name], m["applied_seq"])
            snap.add_metric([name], m["snapshot_seq"])
            backlog.add_metric([name], m["learn_backlog"])
            lag_refused.add_metric([name], m["learn_lag_refused"])
            conflicts.add_metric([name], m.get("label_conflicts", 0))
            for version, vm in m["versions"].items():
                labelled.add_metric([name, version], vm["n"])
                c = vm.get("corrections") or {}
                for source, n in (c.get("by_source") or {}).items():
                    corrections.add_metric([name, version, source], n)
                for source, n in (c.get("corrected_by_source") or {}).items():
                    corrected.add_metric([name, version, source], n)
                for by in ("source", "labeller"):
                    for who, rate in (c.get(f"disagreement_rate_by_{by}") or {}).items():
                        if rate is not None:
                            disagreement.add_metric([name, version, by, who], rate)
                for q in QUALITY:
                    if vm.get(q) is not None:
                        quality[q].add_metric([name, version], vm[q])
            # A version's comparison with another: the version is side b, the other side a.
            for version, others in (m.get("paired") or {}).items():
                for other, p in others.items():
                    key = [name, version, other]
                    paired_labels.add_metric(key, p["n"])
                    paired_p.add_metric([*key, p["test"]], p["p_value"])
                    if p.get("b_accuracy") is not None:
                        paired_accuracy.add_metric(key, p["b_accuracy"])
                    if p.get("b_mae") is not None:
                        paired_mae.add_metric(key, p["b_mae"])
            # A canary's A/B test: the canary is side b, the champion (against) side a.
            for version, t in (m.get("ab") or {}).items():
                key = [name, version, t["against"]]
                ab_p.add_metric([*key, t["test"]], t["p_value"])
                needed = t.get("sample_size") or {}
                for side, arm in (("b", "version"), ("a", "against")):
                    ab_labels.add_metric([*key, arm], t[f"{side}_n"])
                    for field, family in (("accuracy", ab_accuracy), ("mae", ab_mae)):
                        if t.get(f"{side}_{field}") is not None:
                            family.add_metric([*key, arm], t[f"{side}_{field}"])
                    if needed.get(f"{side}_needed") is not None:
                        ab_needed.add_metric([*key, arm], needed[f"{side}_needed"])
        yield from (predictions, labels, seq, snap, backlog, lag_refused, labelled)
        yield from (conflicts, corrections, corrected, disagreement)
        yield from quality.values()
        yield from (paired_labels, paired_p, paired_accuracy, paired_mae)
        yield from (ab_labels, ab_p, ab_accuracy, ab_mae, ab_needed)
        records = stats["prediction_records"]
        yield GaugeMetricFamily(
            "onlearn_prediction_records_pending",
            "Records not yet written",
            value=records["pending"],
        )
        yield CounterMetricFamily(
            "onlearn_prediction_records_written", "Records written", value=records["written"]
        )
        yield CounterMetricFamily(
            "onlearn_prediction_records_dropped",
            "Records not written: still waiting when the process stopped with the store away",
            value=records["dropped"],
        )
        yield CounterMetricFamily(
            "onlearn_prediction_records_refused",
            "Predicted rows refused with 503 (max_pending_predictions records were waiting)",
            value=records["refused"],
        )
        yield CounterMetricFamily(
            "onlearn_prediction_records_unwritable",
            "Records the store refused for what they hold (dropped, logged)",
            value=records["unwritable"],
        )
        commits = stats["log_commits"]
        yield CounterMetricFamily(
            "onlearn_log_commit_batches",
            "Durable log appends (group commits)",
            value=commits["batches"],
        )
        yield CounterMetricFamily(
            "onlearn_log_committed_events",
            "Events appended by group commit",
            value=commits["events"],
        )
        yield GaugeMetricFamily(
            "onlearn_log_pending_events",
            "Label events waiting for their durable append",
            value=commits["pending"],
        )
        yield CounterMetricFamily(
            "onlearn_log_refused_submissions",
            "Feedback calls refused with 503: max_pending_labels events were waiting",
            value=commits["refused"],
        )

    def _monitoring(self):
        labels = ["model"]
        share = GaugeMetricFamily(
            "onlearn_drift_share", "Share of features drifting", labels=labels
        )
        p_value = GaugeMetricFamily(
            "onlearn_feature_drift_p_value",
            "Adjusted p-value of each feature's drift test",
            labels=["model", "feature"],
        )
        psi = GaugeMetricFamily(
            "onlearn_feature_psi",
            "Population stability index of each feature",
            labels=["model", "feature"],
        )
        alarms = GaugeMetricFamily(
            "onlearn_alarms", "Alarms in the monitor's recent history", labels=["model", "kind"]
        )
        accuracy = GaugeMetricFamily(
            "onlearn_recent_accuracy",
            "Accuracy over the last 500 labels (classification)",
            labels=["model", "version"],
        )
        mae = GaugeMetricFamily(
            "onlearn_recent_mae",
            "Mean absolute error over the last 500 labels (regression)",
            labels=["model", "version"],
        )
        rmse = GaugeMetricFamily(
            "onlearn_recent_rmse",
            "Root mean squared error over the last 500 labels (regression)",
            labels=["model", "version"],
        )
        estimated = GaugeMetricFamily(
            "onlearn_estimated_accuracy",
            "Accuracy estimated from the calibrated confidence of the last predictions, before "
            "their labels (classification)",
            labels=["model", "version"],
        )
        ece = GaugeMetricFamily(
            "onlearn_expected_calibration_error",
            "Expected calibration error of the version's confidence on its calibration labels",
            labels=["model", "version"],
        )
        estimate_error = GaugeMetricFamily(
            "onlearn_estimate_abs_error",
            "Mean absolute gap between estimated and measured accuracy over the reconciled "
            "windows of labels",
            labels=["model", "version"],
        )
        depth = GaugeMetricFamily("onlearn_queue_depth", "Items waiting for a label", labels=labels)
        outcomes = CounterMetricFamily(
            "onlearn_queue_items",
            "Labelling queue items by what happened to them, ever: pushed, labelled, skipped, "
            "released, expired, evicted, rejected, duplicates, answered_elsewhere",
            labels=["model", "outcome"],
        )
        rate = GaugeMetricFamily(
            "onlearn_label_rate_per_minute", "Labels per minute", labels=labels
        )
        violations = CounterMetricFamily(
            "onlearn_validation_violations",
            "Rows refused, by field and rule (this process)",
            labels=["model", "feature", "rule"],
        )
        for name, report in self._monitor_reports().items():
            drift = report.get("input_drift") or {}
            if drift.get("drift_share") is not None:
                share.add_metric([name], drift["drift_share"])
            for feature in drift.get("features", []):
                if feature.get("adjusted_p_value") is not None:
                    p_value.add_metric([name, feature["name"]], feature["adjusted_p_value"])
                value = (feature.get("statistics") or {}).get("psi")
                if value is not None:
                    psi.add_metric([name, feature["name"]], value)
            kinds: dict[str, int] = {}
            for alarm in report.get("alarms", []):
                kinds[alarm["kind"]] = kinds.get(alarm["kind"], 0) + 1
            for kind, count in kinds.items():
                alarms.add_metric([name, kind], count)
            for family, key in ((accuracy, "accuracy"), (mae, "mae"), (rmse, "rmse")):
                for version, value in (report.get(key) or {}).items():
                    if value is not None:
                        family.add_metric([name, version], value)
            versions = (report.get("performance_estimate") or {}).get("versions") or {}
            for version, e in versions.items():
                reconciliation = e.get("reconciliation") or {}
                for family, value in (
                    (estimated, e.get("estimated_accuracy")),
                    (ece, e.get("expected_calibration_error")),
                    (estimate_error, reconciliation.get("mean_abs_error")),
                ):
                    if value is not None:
                        family.add_metric([name, version], value)
            queue = report.get("queue") or {}
            if queue.get("depth") is not None:
                depth.add_metric([name], queue["depth"])
            for outcome, count in queue.items():
                if outcome not in ("depth", "claimed") and isinstance(count, int):
                    outcomes.add_metric([name, outcome], count)
            if report.get("label_rate_per_min") is not None:
                rate.add_metric([name], report["label_rate_per_min"])
            for feature, rules in (report.get("violations") or {}).items():
                for rule, count in rules.items():
                    violations.add_metric([name, feature, rule], count)
        yield from (share, p_value, psi, alarms, accuracy, mae, rmse)
        yield from (estimated, ece, estimate_error, depth, outcomes, rate, violations)
        yield from self._webhooks()

    # Alarm webhook deliveries (issue 15), as the monitor's report counts them.

    def _webhooks(self):
        deliveries = CounterMetricFamily(
            "onlearn_webhook_alarms",
            "Alarms of the model's webhook by outcome (delivered, retried: attempts after a "
            "failure, refused, expired, full, stopped: not delivered), since the monitor started",
            labels=["model", "outcome"],
        )
        pending = GaugeMetricFamily(
            "onlearn_webhook_pending", "Alarms waiting for delivery", labels=["model"]
        )
        for name, report in self._monitor_reports().items():
            counts = report.get("webhook") or {}
            for outcome, count in counts.items():
                if outcome == "pending":
                    pending.add_metric([name], count)
                elif outcome != "queued" and isinstance(count, int):
                    deliveries.add_metric([name, outcome], count)
        yield from (deliveries, pending)


def registry_for(engine, http: HttpMetrics | None = None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(engine))
    registry.register(LagCollector(engine))
    if http is not None:
        registry.register(HttpCollector(http))
    ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
