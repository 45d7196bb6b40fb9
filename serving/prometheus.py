"""Prometheus metrics, read from the engine's counters at scrape time (nothing on the hot path)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest

QUALITY = ("accuracy", "log_loss", "macro_f1", "mae", "rmse")


class EngineCollector:
    def __init__(self, engine) -> None:
        self.engine = engine

    def collect(self):
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
        labelled = GaugeMetricFamily(
            "onlearn_version_labels", "Labels scored per version", labels=["model", "version"]
        )
        quality = {
            q: GaugeMetricFamily(
                f"onlearn_version_{q}", f"Prequential {q} per version", labels=["model", "version"]
            )
            for q in QUALITY
        }
        for name, m in stats["models"].items():
            predictions.add_metric([name], m["predictions"])
            labels.add_metric([name], m["labels_applied"])
            seq.add_metric([name], m["applied_seq"])
            snap.add_metric([name], m["snapshot_seq"])
            for version, vm in m["versions"].items():
                labelled.add_metric([name, version], vm["n"])
                for q in QUALITY:
                    if vm.get(q) is not None:
                        quality[q].add_metric([name, version], vm[q])
        yield from (predictions, labels, seq, snap, labelled, *quality.values())
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
            "Records dropped (buffer full)",
            value=records["dropped"],
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


def registry_for(engine) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(engine))
    ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
