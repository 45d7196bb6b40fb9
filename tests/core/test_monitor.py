"""The monitor against a real store and a real engine: references, drift, alarms, webhooks."""

from __future__ import annotations

import dataclasses
import http.server
import json
import math
import random
import re
import threading
import time

import pytest

from onlearn.background.monitor import (
    DOCUMENT,
    ModelMonitor,
    Monitor,
    calibration_source,
    profile_document,
)
from onlearn.background.monitor import SETTLE_S as SETTLE
from onlearn.background.webhook import WebhookSender
from onlearn.background.worker import Worker
from onlearn.config import active_from_mapping, settings_from_mapping
from onlearn.drift import ProfileBuilder, expected_calibration_error
from onlearn.engine import Engine, FeedbackItem
from onlearn.errors import ConfigError, SchemaViolation
from onlearn.learner import proba_dict
from onlearn.records import Event, EventKind
from onlearn.store import open_store

FEATURES = {
    "x1": {"type": "number"},
    "x2": {"type": "number"},
    "color": {"type": "category", "nullable": True},
}


def settings(url, **monitor):
    # The traffic of these tests is thousands of predictions within a second: reports are
    # counted in predictions only, unless a test sets the time floor.
    monitor = {"window": 300, "reference_size": 500, "report_every": 300, **monitor}
    monitor.setdefault("min_report_interval_s", 0)
    table = {
        "task": "classification",
        "classes": ["pos", "neg"],
        "pipeline": {"name": "logistic_regression"},
        "features": FEATURES,
        "monitor": monitor,
        "retrain": {"cooldown_s": 0},
    }
    return settings_from_mapping(
        {"store": {"url": url}, "security": {"secret_key": "k"}, "models": {"m": table}}
    )


def rows(n, seed, shift=0.0, flip=False, missing=0.0):
    rng = random.Random(seed)
    for _ in range(n):
        x1, x2 = rng.gauss(shift, 1), rng.gauss(0, 1)
        color = None if rng.random() < missing else rng.choice(["red", "blue"])
        label = "pos" if (x1 - shift) + x2 > 0 else "neg"
        if flip:
            label = "neg" if label == "pos" else "pos"
        yield {"x1": x1, "x2": x2, "color": color}, label


def traffic(engine, stream):
    for x, y in stream:
        p = engine.predict_one("m", x)
        engine.feedback_one("m", FeedbackItem(y, prediction_id=p.prediction_id))
    engine._records.flush()


class Webhook:
    """A real HTTP receiver on a free port that keeps what it is POSTed (``received``: the
    alarms; ``deliveries``: (headers, alarm)) and answers ``status`` (settable)."""

    def __init__(self, status: int = 204):
        self.status = status
        received = self.received = []
        deliveries = self.deliveries = []
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                alarm = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                received.append(alarm)
                deliveries.append((dict(self.headers), alarm))
                self.send_response(hook.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alarms"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


def run_monitor(monitor):
    while monitor.tick():
        pass


def make(url="memory://", **monitor_options):
    s = settings(url, **monitor_options)
    engine = Engine.from_settings(s).start()
    # The monitor reads SETTLE_S behind the present; its clock runs ahead to read everything.
    monitor = Monitor(s, engine.store, clock=lambda: time.time() + 10)
    return engine, monitor


def test_reference_from_training_data_then_no_alarm_on_stationary_traffic():
    engine, monitor = make()
    traffic(engine, rows(2400, seed=1, missing=0.1))
    run_monitor(monitor)
    document = monitor.publish("m")
    assert document["reference"] == {"version": "v1", "ready": True, "rows": 500}
    assert engine.store.registry.get_document("m", profile_document("v1"))["rows"] == 500
    assert document["alarms"] == []
    assert document["input_drift"]["alarm"] is False
    assert document["train_serve_skew"]["alarm"] is False
    missing = document["validation"]["missing_rate"]["color"]
    assert 0.05 < missing < 0.15
    assert document["accuracy"]["v1"] > 0.9
    assert len(document["timeline"]) >= 5
    engine.close()


def test_a_shift_raises_one_input_drift_alarm_in_the_log_the_log_file_and_the_webhook(
    webhook, caplog
):
    engine, monitor = make(webhook=webhook.url)
    traffic(engine, rows(1500, seed=2))
    run_monitor(monitor)
    assert monitor.publish("m")["alarms"] == []
    with caplog.at_level("WARNING", logger="onlearn.background.monitor"):
        traffic(engine, rows(900, seed=3, shift=2.0))
        run_monitor(monitor)
        document = monitor.publish("m")
    kinds = [a["kind"] for a in document["alarms"]]
    assert kinds.count("input_drift") == 1  # raised when it starts, not at every report
    drifted = next(a for a in document["alarms"] if a["kind"] == "input_drift")
    assert drifted["features"] == ["x1"]
    alarms = [e for e in engine.store.log.read("m", 0, 10_000) if e.kind is EventKind.ALARM]
    assert [e.payload["kind"] for e in alarms].count("input_drift") == 1
    assert any("ALARM model=m kind=input_drift" in r.getMessage() for r in caplog.records)
    deadline = time.monotonic() + 5
    while (
        not any(a["kind"] == "input_drift" for a in webhook.received)
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert any(a["kind"] == "input_drift" and a["model"] == "m" for a in webhook.received)
    # Delivered through the monitor's queue, and counted in its report.
    counts = monitor.publish("m")["webhook"]
    assert counts["delivered"] == len(webhook.received) and counts["pending"] == 0
    monitor.close()
    from serving.prometheus import registry_for, render

    scraped = render(registry_for(engine)).decode()
    delivered = (
        f'onlearn_webhook_alarms_total{{model="m",outcome="delivered"}} {counts["delivered"]}.0'
    )
    assert delivered in scraped and 'onlearn_webhook_pending{model="m"} 0.0' in scraped
    # The drift also shows in the report the server gives, and in the timeline.
    report = engine.drift("m")
    assert report["input_drift"]["features"][0]["name"] == "x1"
    assert any("input_drift" in point["alarms"] for point in report["timeline"])
    engine.close()


def test_an_alarm_not_delivered_when_the_monitor_dies_is_sent_by_the_next_one(tmp_path):
    """The receiver is down when the drift alarm is raised; the monitor dies (its queue is
    lost, as in a kill -9) after its report, and after appending one more alarm it could not
    report. The next monitor sends both, the first with the delivery id of the failed attempts;
    not an alarm some other caller put in the log, and nothing twice."""
    hook = Webhook(503)
    s = settings(f"sqlite:///{tmp_path}/w.db", webhook=hook.url)
    engine = Engine.from_settings(s).start()
    slow = WebhookSender(base_delay_s=30, max_delay_s=30)
    monitor = Monitor(s, engine.store, clock=lambda: time.time() + 10, webhooks=slow)
    traffic(engine, rows(1500, seed=2))
    traffic(engine, rows(900, seed=3, shift=2.0))
    run_monitor(monitor)
    document = monitor.publish("m")
    raised = [a["kind"] for a in document["alarms"]]
    assert "input_drift" in raised
    deadline = time.monotonic() + 5
    while len(hook.deliveries) < len(raised) and time.monotonic() < deadline:
        time.sleep(0.02)
    first_tries = list(hook.deliveries)  # one each, then 30 s of backoff
    held = document["webhook"]["outbox"]
    assert [h["alarm"]["kind"] for h in held] == raised
    assert [h["id"] for h in held] == [h["X-Onlearn-Delivery"] for h, _ in first_tries]
    slow.close(0)  # the process dies: its queue with it
    # Appended by the dying monitor after its last report, and one raised by someone else.
    late = {"kind": "concept_drift", "version": "v1", "at": time.time(), "detail": "late"}
    engine.store.log.append(
        "m", [Event(EventKind.ALARM, late, at=late["at"], key="alarm:concept_drift:v1:late")]
    )
    engine.raise_alarm("m", {"kind": "agreement_drop", "detail": "not the monitor's"})

    hook.status = 204
    again = Monitor(s, engine.store, clock=lambda: time.time() + 10, webhooks=WebhookSender())
    deadline = time.monotonic() + 5
    while len(hook.deliveries) < len(raised) * 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    # The outbox goes at the start; the late alarm when the log pass reads it.
    assert len(hook.deliveries) == len(raised) * 2
    run_monitor(again)
    expected = len(raised) * 2 + 1
    deadline = time.monotonic() + 5
    while len(hook.deliveries) < expected and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # anything more would come now
    resent = hook.deliveries[len(raised) :]
    assert [body["kind"] for _, body in resent] == [*raised, "concept_drift"]
    assert [h["X-Onlearn-Delivery"] for h, _ in resent[:-1]] == [h["id"] for h in held]
    assert resent[-1][1]["detail"] == "late" and resent[-1][1]["model"] == "m"
    assert again.webhooks.stats("m")["delivered"] == len(raised) + 1
    # Delivered: the next report's outbox is empty, and a third monitor sends nothing, the
    # alarms it reads in the log included.
    run_monitor(again)
    assert again.publish("m")["webhook"]["outbox"] == []
    again.webhooks.close()
    third = Monitor(s, engine.store, clock=lambda: time.time() + 10, webhooks=WebhookSender())
    run_monitor(third)
    time.sleep(0.3)
    assert len(hook.deliveries) == expected and third.webhooks.stats("m")["queued"] == 0
    engine.close()
    hook.close()


@pytest.mark.parametrize(
    "outbox",
    [
        "not a list",
        [None, 3, {"alarm": "x"}, {"id": "a\r\nX-Evil: 1", "alarm": {"kind": "input_drift"}}],
        [{"id": "x" * 65, "alarm": {"kind": "input_drift", "at": "yesterday"}}],
    ],
    ids=["not-a-list", "hostile-id", "long-id"],
)
def test_a_hostile_outbox_in_the_store_sends_only_alarms_under_sane_ids(tmp_path, outbox):
    """The report comes from the store: entries that are not alarms are skipped, an id that
    is not letters and digits (a header injection, an overlong one) is replaced."""
    hook = Webhook(204)
    s = settings(f"sqlite:///{tmp_path}/h.db", webhook=hook.url)
    engine = Engine.from_settings(s).start()
    engine.store.registry.put_document("m", DOCUMENT, {"alarms": [], "webhook": {"outbox": outbox}})
    monitor = Monitor(s, engine.store, clock=lambda: time.time() + 10, webhooks=WebhookSender())
    expected = 0 if isinstance(outbox, str) else 1
    deadline = time.monotonic() + 5
    while len(hook.deliveries) < expected and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)
    assert len(hook.deliveries) == expected
    for headers, body in hook.deliveries:
        assert re.fullmatch(r"[0-9a-f]{32}", headers["X-Onlearn-Delivery"])
        assert "X-Evil" not in headers and body["kind"] == "input_drift"
    monitor.webhooks.close()
    engine.close()
    hook.close()


def test_a_monitor_started_on_a_used_store_takes_its_reference_from_the_log_at_once():
    # Seen: a monitor started after traffic (and after a promote and a rollback) had no profile
    # of the champion and waited for reference_size new labels, drift unwatched meanwhile.
    s = settings("memory://")
    engine = Engine.from_settings(s).start()
    traffic(engine, rows(400, seed=7))
    few = Monitor(s, engine.store, clock=lambda: time.time() + 10)
    assert few.models["m"].reference is None  # 400 labels: fewer than reference_size (500)
    assert engine.store.registry.get_document("m", profile_document("v1")) is None
    traffic(engine, rows(300, seed=8))
    monitor = Monitor(s, engine.store, clock=lambda: time.time() + 10)
    reference = monitor.models["m"].reference
    assert reference is not None and reference.rows == 500
    stored = engine.store.registry.get_document("m", profile_document("v1"))
    assert stored == reference.to_dict()
    # The same profile as the last 500 labels of the log, built by hand.
    labels = [e for e in engine.store.log.read("m", 0, 10_000) if e.kind is EventKind.LABEL]
    builder = ProfileBuilder.from_schema(s.models[0].schema, sample_size=500)
    for event in labels[-500:]:
        builder.update(event.payload["features"])
    assert builder.profile().to_dict() == stored
    # Drift is watched from the first shifted prediction on, not after 500 new labels.
    traffic(engine, rows(400, seed=9, shift=2.0))
    run_monitor(monitor)
    document = monitor.publish("m")
    assert document["reference"] == {"version": "v1", "ready": True, "rows": 500}
    assert [a["features"] for a in document["alarms"] if a["kind"] == "input_drift"] == [["x1"]]
    engine.close()


def test_flipped_labels_raise_a_concept_drift_alarm_that_triggers_a_retrain():
    engine, monitor = make(detector={"name": "adwin"})
    worker = Worker(engine)  # running all along: it sees the alarms raised from now on
    traffic(engine, rows(1500, seed=4))
    run_monitor(monitor)
    traffic(engine, rows(600, seed=5, flip=True))
    run_monitor(monitor)
    document = monitor.publish("m")
    concept = [a for a in document["alarms"] if a["kind"] == "concept_drift"]
    assert concept and concept[0]["version"] == "v1" and concept[0]["detector"] == "adwin"
    rt = engine.runtime("m")
    engine.catch_up(rt)  # the alarm events reach the worker through the log
    job = worker.check_triggers(rt)
    assert job is not None and "concept_drift" in job.params["reason"]
    engine.close()


def test_prediction_drift_and_violations_are_reported(tmp_path):
    engine, monitor = make(f"sqlite:///{tmp_path}/o.db")
    traffic(engine, rows(1200, seed=6))
    run_monitor(monitor)
    # The model now sees inputs far on one side: it answers "pos" almost always.
    for x, _ in rows(700, seed=7, shift=3.0):
        engine.predict_one("m", x)
    engine._records.flush()
    run_monitor(monitor)
    document = monitor.publish("m")
    assert "prediction_drift" in [a["kind"] for a in document["alarms"]]
    assert document["prediction_drift"]["alarm"] is True
    with pytest.raises(SchemaViolation):
        engine.predict_one("m", {"x1": "high", "x2": 0.0, "color": "red"})
    report = engine.drift("m")
    assert report["violations"] == {"x1": {"type": 1}}
    # A restarted monitor resumes from its cursor and keeps its alarm history.
    again = Monitor(monitor.settings, engine.store, clock=lambda: time.time() + 10)
    assert again.publish("m")["alarms"] == document["alarms"]
    assert engine.store.registry.get_document("m", DOCUMENT)["cursor"]["log_seq"] >= 1200
    engine.close()


def test_a_monitor_that_fell_behind_skips_to_the_recent_traffic_but_reads_every_label():
    s = settings("memory://")
    s = dataclasses.replace(s, engine=dataclasses.replace(s.engine, monitor_max_lag_s=30.0))
    engine = Engine.from_settings(s).start()
    now = [time.time() + 10]
    monitor = Monitor(s, engine.store, clock=lambda: now[0])
    traffic(engine, rows(300, seed=11))
    run_monitor(monitor)
    assert (monitor.models["m"].rows, monitor.models["m"].labels) == (300, 300)
    traffic(engine, rows(300, seed=12))
    now[0] += 100  # the new records are now 90 s old: beyond monitor_max_lag_s
    run_monitor(monitor)
    watched = monitor.models["m"]
    assert watched.skipped_backlogs == 1
    assert watched.rows == 300, "records older than monitor_max_lag_s are skipped"
    assert watched.labels == 600, "labels (the concept drift detectors' input) are never skipped"
    assert monitor.publish("m")["backlog_skips"] == 1
    engine.close()


@pytest.mark.parametrize("floor_s", [0.0, 60.0])
def test_reports_wait_for_report_every_predictions_and_min_report_interval_s(floor_s):
    s = settings("memory://", min_report_interval_s=floor_s)
    s = dataclasses.replace(s, engine=dataclasses.replace(s.engine, monitor_max_lag_s=3600.0))
    now = [time.time()]
    engine = Engine(s, open_store("memory://"), secret=b"k", clock=lambda: now[0]).start()
    # Watching from the start (a monitor opened later begins with the recent traffic).
    monitor = Monitor(s, engine.store, clock=lambda: now[0] + 10)
    run_monitor(monitor)
    for i, (x, y) in enumerate(rows(3000, seed=21), 1):  # 0.1 s apart: 300 s in all
        now[0] += 0.1
        p = engine.predict_one("m", x)
        engine.feedback_one("m", FeedbackItem(y, prediction_id=p.prediction_id))
        if i % 100 == 0:  # one read per 100 rows: the traffic never pauses (a pause reports)
            engine._records.flush()
            assert monitor.tick()
    points = list(monitor.models["m"].timeline)
    gaps = [b["at"] - a["at"] for a, b in zip(points, points[1:], strict=False)]
    rows_at = [p["rows"] for p in points]
    # The first read reports at once, then every 300 predictions (30 s of this traffic)...
    if floor_s == 0:
        assert rows_at == list(range(100, 3001, 300)), rows_at
        assert all(math.isclose(g, 30.0, abs_tol=1e-3) for g in gaps), gaps
    else:
        # ...held by the floor to one report a minute: 600 predictions and one more, as the
        # sum of the 0.1 s steps falls a hair short of 60 s at the 600th.
        assert rows_at == [100, 701, 1302, 1903, 2504], rows_at
        assert all(60.0 <= g < 60.2 for g in gaps), gaps
    engine.close()


def test_the_monitor_thread_keeps_to_its_share_of_the_cpu():
    s = settings("memory://")
    engine = Engine.from_settings(s).start()
    traffic(engine, rows(600, seed=14))  # labels: a reference, so each record is compared
    for x, _ in rows(20_000, seed=13):
        engine.predict_one("m", x)
    engine._records.flush()
    monitor = Monitor(s, engine.store, clock=lambda: time.time() + 10, cpu_share=0.1)
    stop = threading.Event()
    thread = threading.Thread(target=monitor.run, args=(stop,))
    wall, cpu = time.monotonic(), time.process_time()  # this thread sleeps meanwhile
    thread.start()
    # Long enough for a whole tick and its rest: the first ticks are the dearest (each report
    # of a skew window still growing simulates a new null), and a window ending right after
    # one would read its cost over too short a time.
    time.sleep(4.0)
    stop.set()
    thread.join()
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    watched = monitor.models["m"]
    assert 0 < watched.rows < 20_600, "it made progress, and had not finished the backlog"
    assert cpu / wall < 0.2, f"the monitor used {cpu / wall:.0%} of a CPU, allowed 10%"
    with pytest.raises(ValueError, match="cpu_share"):
        Monitor(s, engine.store, cpu_share=0)
    engine.close()


def test_a_monitor_started_before_the_first_version_is_registered_finds_the_champion(tmp_path):
    # Processes of a deployment start together: the monitor may open the store before any
    # server or worker registered the config's first version (which sets the role without a
    # log event).
    from onlearn.store import open_store

    s = settings(f"sqlite:///{tmp_path}/m.db")
    with open_store(s.store_url) as store:
        monitor = Monitor(s, store, clock=lambda: time.time() + 10)
        assert monitor.models["m"].roles == {}
        with Engine.from_settings(s) as engine:
            engine.start()
            traffic(engine, rows(900, seed=15))
            run_monitor(monitor)
            document = monitor.publish("m")
    assert document["reference"] == {"version": "v1", "ready": True, "rows": 500}
    assert document["accuracy"]["v1"] > 0.9


def test_labels_appended_out_of_time_order_are_each_read_once():
    """Two servers append: seq order and time order differ by milliseconds. With the horizon
    falling between them, the monitor must neither skip an event nor read one twice."""
    from onlearn.records import Event

    s = settings("memory://")
    engine = Engine.from_settings(s).start()
    t0 = time.time() - 100

    def label(at, i):
        payload = {"features": {"x1": 0.1, "x2": 0.2, "color": "red"}, "label": "pos"}
        return Event(EventKind.LABEL, payload, at=at, key=f"k{i}")

    # seq 1 at t0, seq 2 at t0 + 3 ms, seq 3 at t0 + 1 ms (appended by another server).
    engine.store.log.append("m", [label(t0, 1), label(t0 + 0.003, 2), label(t0 + 0.001, 3)])
    now = [t0 + SETTLE + 0.002]  # the horizon falls between seq 3 and seq 2
    monitor = Monitor(s, engine.store, clock=lambda: now[0])
    monitor._log_cursor["m"] = 0
    run_monitor(monitor)
    assert monitor.models["m"].labels == 1, "seq 2 is not settled: stop before it"
    now[0] += 1
    run_monitor(monitor)
    assert monitor.models["m"].labels == 3
    now[0] += 1
    run_monitor(monitor)
    assert monitor.models["m"].labels == 3, "nothing read twice"
    engine.close()


# -- regression: the error stream is absolute errors ------------------------------------------


def make_regression(url="memory://", **monitor):
    monitor = {"window": 300, "reference_size": 500, "report_every": 300, **monitor}
    monitor.setdefault("min_report_interval_s", 0)
    table = {
        "task": "regression",
        "pipeline": {"name": "linear_regression"},
        "features": {"x1": {"type": "number"}, "x2": {"type": "number"}},
        "monitor": monitor,
        "retrain": {"cooldown_s": 0},
    }
    s = settings_from_mapping(
        {"store": {"url": url}, "security": {"secret_key": "k"}, "models": {"m": table}}
    )
    engine = Engine.from_settings(s).start()
    return engine, Monitor(s, engine.store, clock=lambda: time.time() + 10)


def regression_rows(n, seed, shift=0.0):
    rng = random.Random(seed)
    for _ in range(n):
        x1, x2 = rng.gauss(0, 1), rng.gauss(0, 1)
        yield {"x1": x1, "x2": x2}, 3 * x1 - 2 * x2 + 5 + rng.gauss(0, 0.3) + shift


def test_a_regression_report_has_recent_mae_and_rmse_not_an_accuracy_of_zero():
    engine, monitor = make_regression()
    traffic(engine, regression_rows(1500, seed=1))
    run_monitor(monitor)
    document = monitor.publish("m")
    assert document["task"] == "regression"
    assert "accuracy" not in document
    # The oracle: the last 500 labels' absolute errors of what v1 answered, from the log.
    events = [e for e in engine.store.log.read("m", after=0, limit=5000) if e.kind.value == "label"]
    errors = [abs(e.payload["label"] - e.payload["outputs"]["v1"]["label"]) for e in events]
    recent = errors[-500:]
    assert document["mae"]["v1"] == pytest.approx(sum(recent) / 500, rel=1e-12)
    assert document["rmse"]["v1"] == pytest.approx(
        math.sqrt(sum(e * e for e in recent) / 500), rel=1e-12
    )
    assert 0 < document["mae"]["v1"] < 1.0  # the model learned the line
    points = document["timeline"]
    assert points and all("accuracy" not in p and set(p["mae"]) == {"v1"} for p in points)
    # The concept drift detector watches the absolute errors, and stays quiet on stationary
    # traffic.
    assert document["concept_drift"]["v1"]["detector"] == "adwin"
    assert document["concept_drift"]["v1"]["updates"] == 1500 - 500
    assert document["alarms"] == []
    engine.close()


@pytest.mark.parametrize("detector", ["adwin", "kswin", "page_hinkley"])
def test_a_regression_concept_shift_raises_a_concept_drift_alarm_that_triggers_a_retrain(detector):
    engine, monitor = make_regression(detector={"name": detector})
    worker = Worker(engine)
    traffic(engine, regression_rows(1500, seed=4))
    run_monitor(monitor)
    assert monitor.publish("m")["alarms"] == []
    traffic(engine, regression_rows(600, seed=5, shift=20.0))
    run_monitor(monitor)
    document = monitor.publish("m")
    concept = [a for a in document["alarms"] if a["kind"] == "concept_drift"]
    assert concept and concept[0]["version"] == "v1" and concept[0]["detector"] == detector
    assert document["concept_drift"]["v1"]["alarms"] >= 1
    rt = engine.runtime("m")
    engine.catch_up(rt)
    job = worker.check_triggers(rt)
    assert job is not None and "concept_drift" in job.params["reason"]
    engine.close()


def test_a_regression_model_refuses_a_detector_of_right_and_wrong_answers():
    from onlearn.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        make_regression(detector={"name": "ddm"})
    assert "[models.m.monitor]: detector 'ddm' watches right and wrong answers" in str(e.value)
    assert "adwin, kswin, page_hinkley" in str(e.value)


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_a_round_visits_only_the_models_with_something_new(store, tmp_path, redis_url):
    """Two statements per round for all the models (heads; records after the cursors), then
    only the models with news are read: an idle round costs the same for 300 models as for 3."""
    url = f"sqlite:///{tmp_path}/v.db" if store == "sqlite" else redis_url
    table = {
        "task": "classification",
        "pipeline": {"name": "logistic_regression"},
        "features": {"x1": {"type": "number"}},
    }
    s = settings_from_mapping(
        {
            "store": {"url": url},
            "security": {"secret_key": "k"},
            "models": {f"m{i:03d}": table for i in range(300)},
        }
    )
    with Engine.from_settings(s) as engine:
        monitor = Monitor(s, engine.store, clock=lambda: time.time() + 10)
        assert len(monitor._to_visit()) == 300, "the first round visits every model"
        run_monitor(monitor)
        assert monitor._to_visit() == [], "nothing new: nothing visited"
        p = engine.predict_one("m007", {"x1": 1.0})
        engine._records.flush()
        assert monitor._to_visit() == ["m007"]
        run_monitor(monitor)
        engine.feedback_one("m123", FeedbackItem(True, features={"x1": 2.0}))
        assert monitor._to_visit() == ["m123"], "a label event makes its model visited"
        engine.feedback_one("m007", FeedbackItem(False, prediction_id=p.prediction_id))
        run_monitor(monitor)
        assert monitor._to_visit() == []


# Monitoring before the labels come (issue 14 §3)


def active_settings(active, **monitor):
    """``settings`` with an ``active`` table (a labelling queue and its sampler)."""
    s = settings("memory://", **monitor)
    (config,) = s.models
    active = active_from_mapping(active, "[models.m.active]")
    return dataclasses.replace(s, models=(dataclasses.replace(config, active=active),))


def predictions(engine, stream):
    for x, _ in stream:
        engine.predict_one("m", x)
    engine._records.flush()


def test_a_model_buying_1pct_of_its_labels_gets_input_drift_after_reference_size_plus_window():
    s = active_settings(active={"budget": 0.01, "window": 1000})
    assert s.models[0].active.sampler["evaluation_rate"] == 0.01  # the slice is on by default
    engine = Engine.from_settings(s).start()
    monitor = Monitor(s, engine.store, clock=lambda: time.time() + 10)
    predictions(engine, rows(499, seed=1))
    run_monitor(monitor)
    document = monitor.publish("m")
    assert document["reference"]["ready"] is False and document["input_drift"] is None
    predictions(engine, rows(1 + 300, seed=2))  # reference_size + window, and not one label
    run_monitor(monitor)
    document = monitor.publish("m")
    assert document["reference"] == {"version": "v1", "ready": True, "rows": 500}
    assert engine.store.registry.get_document("m", profile_document("v1"))["rows"] == 500
    assert document["input_drift"]["n"] == 300 and document["input_drift"]["alarm"] is False
    engine.close()


def estimate_of(document, version="v1"):
    return document["performance_estimate"]["versions"][version]


def test_the_estimate_is_reported_beside_the_accuracy_and_reconciled_with_all_labels():
    engine, monitor = make(estimate_window_labels=50)
    traffic(engine, rows(2400, seed=1))
    run_monitor(monitor)
    document = monitor.publish("m")
    estimate = document["performance_estimate"]
    assert estimate["calibration_source"] == "all_labels"
    v1 = estimate_of(document)
    # The last 300 predictions' estimate against the last 500 labels' accuracy, on stationary
    # traffic: the two measure the same thing over overlapping windows.
    assert abs(v1["estimated_accuracy"] - document["accuracy"]["v1"]) < 0.05
    assert document["estimated_accuracy"] == {"v1": v1["estimated_accuracy"]}
    # Every label calibrates, but the first answer (of a model that had learned nothing) has
    # no probabilities to calibrate.
    assert v1["calibration_labels"] == 2399
    # The ECE of the answers' own confidence, computed in one batch from the log's labels.
    confidences, right = [], []
    for event in engine.store.log.read("m", after=0, limit=10_000):
        answer = (
            (event.payload.get("outputs") or {}).get("v1")
            if event.kind is EventKind.LABEL
            else None
        )
        if answer and answer["proba"]:
            proba = proba_dict(answer["proba"])
            confidences.append(proba[answer["label"]])
            right.append(answer["label"] == event.payload["label"])
    assert v1["expected_calibration_error"] == pytest.approx(
        expected_calibration_error(confidences, right)
    )
    # A logistic regression learning online is underconfident on this separable stream: the
    # calibration is what brings its estimate to the accuracy above.
    assert sum(confidences[-300:]) / 300 < document["accuracy"]["v1"] - 0.1
    reconciliation = v1["reconciliation"]
    assert reconciliation["window_labels"] == 50 and reconciliation["windows"] == 2399 // 50
    assert reconciliation["mean_abs_error"] < 0.1
    assert "estimated_accuracy" in document["timeline"][-1]
    assert not [a for a in document["alarms"] if a["kind"] == "estimated_drop"]
    engine.close()


def test_with_a_random_slice_the_estimate_calibrates_on_its_labels_only():
    s = active_settings(active={"budget": 0.1, "window": 100, "evaluation_rate": 0.2})
    engine = Engine.from_settings(s).start()
    monitor = Monitor(s, engine.store, clock=lambda: time.time() + 10)
    traffic(engine, rows(1500, seed=3))  # every prediction labelled, only the slice calibrates
    run_monitor(monitor)
    document = monitor.publish("m")
    assert document["performance_estimate"]["calibration_source"] == "random_slice"
    labels = [e.payload for e in engine.store.log.read("m", after=0, limit=10_000)]
    in_slice = [p for p in labels if p.get("sampled") == "random" and p["outputs"]["v1"]["proba"]]
    assert estimate_of(document)["calibration_labels"] == len(in_slice)
    assert 0.1 * 1500 < len(in_slice) < 0.3 * 1500
    engine.close()


def test_an_estimated_drop_raises_an_alarm_before_any_label():
    engine, monitor = make()
    traffic(engine, rows(1500, seed=1))
    # The inputs move onto the decision boundary: the model is unsure of everything, and no
    # label says so yet.
    near = (
        ({"x1": x["x1"] * 0.02, "x2": x["x2"] * 0.02, "color": x["color"]}, y)
        for x, y in rows(600, seed=2)
    )
    predictions(engine, near)
    run_monitor(monitor)
    document = monitor.publish("m")
    drops = [a for a in document["alarms"] if a["kind"] == "estimated_drop"]
    assert [a["version"] for a in drops] == ["v1"]
    assert drops[0]["estimated_accuracy"] < drops[0]["reference_estimated_accuracy"] - 0.05
    assert estimate_of(document)["dropped"] is True
    alarms = [
        e for e in engine.store.log.read("m", after=0, limit=10_000) if e.kind is EventKind.ALARM
    ]
    assert "estimated_drop" in {e.payload["kind"] for e in alarms}
    engine.close()


def test_a_regression_report_says_nothing_is_estimated():
    engine, monitor = make_regression()
    for x, y in regression_rows(400, seed=1):
        p = engine.predict_one("m", x)
        engine.feedback_one("m", FeedbackItem(y, prediction_id=p.prediction_id))
    engine._records.flush()
    run_monitor(monitor)
    document = monitor.publish("m")
    estimate = document["performance_estimate"]
    assert estimate["method"] is None and estimate["versions"] == {}
    assert "regression" in estimate["detail"]
    assert "estimated_accuracy" not in document
    engine.close()


@pytest.mark.parametrize(
    ("key", "value", "rule"),
    [
        ("estimate_drop", 1.5, "estimate_drop must be in (0, 1)"),
        ("estimate_window_labels", 0, "estimate_window_labels must be at least 1"),
        ("calibration_window", 0, "calibration_window must be at least 1"),
        ("reference_confidence", 1.0, "reference_confidence must be in [0, 1)"),
        ("reference_confidence", "high", "reference_confidence must be a non-negative number"),
    ],
)
def test_bad_estimate_settings_are_refused_naming_the_key_and_the_rule(key, value, rule):
    with pytest.raises(ConfigError, match=re.escape(f"[models.m.monitor]: {rule}")):
        settings("memory://", **{key: value})


@pytest.mark.parametrize(("configured", "bound"), [(None, 0.99), (0.9, 0.9), (0, None)])
def test_reference_confidence_reaches_both_input_drift_tests(configured, bound):
    extra = {} if configured is None else {"reference_confidence": configured}
    (config,) = settings("memory://", **extra).models
    watched = ModelMonitor(config)
    builder = ProfileBuilder.from_schema(config.schema, sample_size=500)
    for x, _ in rows(500, seed=1):
        builder.update(x)
    watched.set_reference(builder.profile(), "v1")
    assert watched.inputs.reference_confidence == watched.skew.reference_confidence == bound


def test_an_active_table_without_a_slice_calibrates_on_all_labels():
    (config,) = active_settings({"budget": 0.1, "evaluation_rate": 0.0}).models
    assert config.active.sampler["evaluation_rate"] == 0.0
    assert calibration_source(config) == "all_labels"
    (config,) = active_settings({"budget": 0.1}).models
    assert calibration_source(config) == "random_slice"
    (config,) = settings("memory://").models
    assert calibration_source(config) == "all_labels"
