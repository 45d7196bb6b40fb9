"""The worker computes feature importances with its snapshots, into the model's drift answer."""

from __future__ import annotations

import random
import time

import pytest

from onlearn.background.webhook import WebhookSender
from onlearn.background.worker import Worker
from onlearn.engine import Engine
from onlearn.registry import IMPORTANCE_REPORT as IMPORTANCE_DOCUMENT
from tests.core.test_monitor import Webhook, settings, traffic
from tests.core.test_worker import (
    STREAM,
    engine_for,
    learn,
    learn_regression,
    regression_engine,
    regression_rows,
)


@pytest.mark.parametrize("replay", [False, True])
def test_snapshots_bring_importances_into_the_drift_answer(tmp_path, replay):
    engine = engine_for(f"sqlite:///{tmp_path}/onlearn.db")
    worker = Worker(engine, replay_snapshots=replay)
    rt = engine.runtime("phishing")
    for rows in (STREAM[:300], STREAM[300:600]):
        learn(engine, rows)
        worker.write_snapshots(rt)
    document = engine.store.registry.get_document("phishing", IMPORTANCE_DOCUMENT)
    assert document["seq"] == rt.seq and document["labelled_rows"] == 600
    v1 = document["versions"]["v1"]
    assert v1["roles"] == ["champion"] and v1["method"] == "weights"
    assert set(v1["importances"]) == set(rt.schema.names)
    assert sum(v1["importances"].values()) == pytest.approx(1.0)
    assert v1["drift"]["reference"] and v1["drift"]["overlap"] is not None
    assert len(document["timeline"]) == 2
    # the weights are the live model's, whichever way the snapshot was made
    with rt.lock:
        from onlearn.drift.importance import linear_importance

        live = linear_importance(rt.states["v1"].estimator, list(rt.schema.names))
    assert v1["importances"] == pytest.approx(live)
    assert engine.drift("phishing")["importance"]["versions"]["v1"]["method"] == "weights"
    engine.close()


def test_importance_can_be_turned_off(tmp_path):
    engine = engine_for(f"sqlite:///{tmp_path}/onlearn.db")
    worker = Worker(engine, importance=None)
    learn(engine, STREAM[:200])
    assert worker.write_snapshots(engine.runtime("phishing"))
    assert engine.store.registry.get_document("phishing", IMPORTANCE_DOCUMENT) is None
    assert engine.drift("phishing")["importance"] is None
    engine.close()


def swapped(n: int, seed: int, informative: str):
    """Rows of the monitor tests' model whose label is the sign of ``informative`` alone."""
    rng = random.Random(seed)
    for _ in range(n):
        x = {"x1": rng.gauss(0, 1), "x2": rng.gauss(0, 1), "color": rng.choice(["red", "blue"])}
        yield x, "pos" if x[informative] > 0 else "neg"


@pytest.fixture(params=["sqlite", "redis"])
def durable_url(request, tmp_path) -> str:
    """Each store a worker outlives: a SQLite file and the tests' Redis."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/w.db"
    return request.getfixturevalue("redis_url")


def test_an_importance_alarm_and_the_detector_survive_the_worker_dying(durable_url):
    """The receiver is down when the worker's importance alarm is raised, and the worker dies
    (its queue lost, as in a kill -9). The next worker sends the alarm at its start with the
    delivery id of the failed attempt, and keeps the detector's reference and the alarms shown
    rather than starting afresh; a third sends nothing again once it is delivered."""
    hook = Webhook(503)
    engine = Engine.from_settings(settings(durable_url, webhook=hook.url))
    engine.start()
    slow = WebhookSender(base_delay_s=30, max_delay_s=30)
    worker = Worker(engine, webhooks=slow)
    rt = engine.runtime("m")
    traffic(engine, swapped(1000, 0, "x1"))
    worker.write_snapshots(rt)
    document = engine.store.registry.get_document("m", IMPORTANCE_DOCUMENT)
    assert document["versions"]["v1"]["drift"]["reference"][0] == "x1"
    assert document["alarms"] == [] and document["webhook"]["outbox"] == []
    for seed in range(1, 30):  # the label now follows x2: the weights move over some chunks
        traffic(engine, swapped(300, seed, "x2"))
        worker.write_snapshots(rt)
        document = engine.store.registry.get_document("m", IMPORTANCE_DOCUMENT)
        if document["alarms"]:
            break
    (alarm,) = document["alarms"]
    assert alarm["kind"] == "importance_drift" and alarm["version"] == "v1"
    reference = document["versions"]["v1"]["drift"]["reference"]
    assert reference[0] == "x2"
    deadline = time.monotonic() + 5
    while not hook.deliveries and time.monotonic() < deadline:
        time.sleep(0.02)
    (headers, body), held = hook.deliveries[0], document["webhook"]["outbox"]
    assert body == alarm and [h["alarm"] for h in held] == [alarm]
    assert held[0]["id"] == headers["X-Onlearn-Delivery"]
    slow.close(0)  # the worker dies: its queue with it

    hook.status = 204
    again = Worker(engine, webhooks=WebhookSender())
    deadline = time.monotonic() + 5
    while len(hook.deliveries) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    headers, body = hook.deliveries[1]
    assert body == alarm and headers["X-Onlearn-Delivery"] == held[0]["id"]
    # The detector goes on from the reference it had: the same ranking raises nothing.
    traffic(engine, swapped(300, 99, "x2"))
    again.write_snapshots(rt)
    document = engine.store.registry.get_document("m", IMPORTANCE_DOCUMENT)
    # An overlap: compared with the saved reference (a fresh detector would report none).
    drift = document["versions"]["v1"]["drift"]
    assert drift["reference"] == reference and drift["overlap"] is not None
    assert document["alarms"] == [alarm] and document["webhook"]["outbox"] == []
    again.webhooks.close()
    third = Worker(engine, webhooks=WebhookSender())
    time.sleep(0.3)
    assert len(hook.deliveries) == 2 and third.webhooks.stats("m")["queued"] == 0
    engine.close()
    hook.close()


@pytest.mark.parametrize(
    "saved",
    [
        {"alarms": None, "timeline": "x", "versions": "x", "webhook": "x"},
        {"alarms": "x", "timeline": [3], "versions": {"v1": {"drift": {"reference": [1]}}}},
        {"versions": {"v1": {"drift": {"reference": ["a", "b", "c", "d"], "below": 7}}}},
        {"webhook": {"outbox": [{"id": "a\r\nX-Evil: 1", "alarm": "no"}]}, "alarms": [{}]},
    ],
    ids=["not-lists", "wrong-types", "too-long", "hostile-outbox"],
)
def test_a_hostile_importance_document_is_not_taken_up(tmp_path, saved):
    """The document comes from the store: what is not of the shape the worker writes is
    dropped, and the worker starts afresh rather than failing."""
    hook = Webhook(204)
    engine = Engine.from_settings(settings(f"sqlite:///{tmp_path}/h.db", webhook=hook.url))
    engine.start()
    engine.store.registry.put_document("m", IMPORTANCE_DOCUMENT, saved)
    worker = Worker(engine, webhooks=WebhookSender())
    traffic(engine, swapped(600, 0, "x1"))
    worker.write_snapshots(engine.runtime("m"))
    document = engine.store.registry.get_document("m", IMPORTANCE_DOCUMENT)
    assert document["alarms"] == [] and len(document["timeline"]) == 1
    assert document["versions"]["v1"]["drift"]["reference"][0] == "x1"
    time.sleep(0.1)
    assert hook.deliveries == []
    worker.webhooks.close()
    engine.close()
    hook.close()


def three_class_engine(url: str, pipeline: str) -> Engine:
    from onlearn.config import settings_from_mapping

    table = {
        "task": "classification",
        "classes": ["low", "mid", "high"],
        "pipeline": {"name": pipeline},
        "features": {"x1": {"type": "number"}, "x2": {"type": "number"}},
    }
    return Engine.from_settings(
        settings_from_mapping(
            {"store": {"url": url}, "security": {"secret_key": "k"}, "models": {"m": table}}
        )
    ).start()


def three_class_rows(n: int, seed: int):
    """The class is a band of x1; x2 is noise."""
    rng = random.Random(seed)
    for _ in range(n):
        x = {"x1": rng.gauss(0, 1), "x2": rng.gauss(0, 1)}
        yield x, "low" if x["x1"] < -0.5 else "mid" if x["x1"] < 0.5 else "high"


@pytest.mark.parametrize(
    "task, pipeline, method",
    [
        ("multiclass", "logistic_regression", "weights"),
        ("multiclass", "hoeffding_tree", "permutation"),
        ("regression", "linear_regression", "weights"),
        ("regression", "hoeffding_tree_regressor", "permutation"),
    ],
)
def test_every_task_type_gets_its_importances_from_the_worker(tmp_path, task, pipeline, method):
    """Beyond the binary model above: three classes (the linear models' weights averaged over
    one-vs-rest, a tree's accuracy lost; x2 is noise) and regression (y = 3a - 2b + noise: the
    weights on standardised inputs are 3:2; a tree's MAE gained ranks a first, b second)."""
    url = f"sqlite:///{tmp_path}/t.db"
    if task == "regression":
        engine = regression_engine(url, pipeline={"name": pipeline})
        learn_regression(engine, regression_rows(1000, 0))
        name, informative = "reg", ["a", "b"]
    else:
        engine = three_class_engine(url, pipeline)
        traffic(engine, three_class_rows(1000, 0))
        name, informative = "m", ["x1", "x2"]
    Worker(engine).write_snapshots(engine.runtime(name))
    v1 = engine.store.registry.get_document(name, IMPORTANCE_DOCUMENT)["versions"]["v1"]
    assert v1["method"] == method and v1["ranking"] == informative, v1
    assert sum(v1["importances"].values()) == pytest.approx(1.0)
    if task == "regression" and method == "weights":
        assert v1["importances"] == pytest.approx({"a": 0.6, "b": 0.4}, abs=0.03)
    elif task == "regression":  # both matter, a more
        assert 0.2 < v1["importances"]["b"] < 0.5, v1
    else:  # x2 is noise
        assert v1["importances"]["x1"] > 0.8, v1
    engine.close()


def test_a_models_importance_table_turns_it_off_or_sets_its_budget_and_alarm(tmp_path):
    """[models.<name>.monitor.importance]: ``enabled = false`` computes nothing for the model;
    otherwise its budget is in the document and its alarm settings apply (patience 1: the
    first computation below the threshold alarms; the default waits for a second)."""
    url = f"sqlite:///{tmp_path}/c.db"
    off = Engine.from_settings(settings(url, importance={"enabled": False})).start()
    traffic(off, swapped(600, 0, "x1"))
    Worker(off).write_snapshots(off.runtime("m"))
    assert off.store.registry.get_document("m", IMPORTANCE_DOCUMENT) is None
    off.close()

    first_alarm = {}
    for patience in (1, 2):
        url = f"sqlite:///{tmp_path}/p{patience}.db"
        importance = {"patience": patience, "sample_size": 100, "time_cap_s": 0.5}
        engine = Engine.from_settings(settings(url, importance=importance)).start()
        worker, rt = Worker(engine), engine.runtime("m")
        traffic(engine, swapped(1000, 0, "x1"))
        worker.write_snapshots(rt)
        for seed in range(1, 30):
            traffic(engine, swapped(300, seed, "x2"))
            worker.write_snapshots(rt)
            document = engine.store.registry.get_document("m", IMPORTANCE_DOCUMENT)
            if document["alarms"]:
                first_alarm[patience] = seed
                break
        assert document["budget"] == {"window": 1000, "sample_size": 100, "time_cap_s": 0.5}
        assert document["versions"]["v1"]["drift"]["patience"] == patience
        engine.close()
    assert first_alarm[1] < first_alarm[2], first_alarm


def test_a_restarted_worker_takes_up_every_served_versions_detector(tmp_path):
    """A champion and a challenger (a refit tree: permutation importance beside the linear
    weights) each keep their own reference across a restart: the first computation of the next
    worker compares each with its saved reference, where a fresh detector would take its
    ranking as a new reference and report no overlap."""
    from onlearn.records import JobState
    from tests.core.test_worker import refit_now

    engine = engine_for(f"sqlite:///{tmp_path}/v.db")
    worker = Worker(engine)
    learn(engine, STREAM[:600])
    done = refit_now(engine, worker, candidates=[{"name": "hoeffding_tree"}], register_anyway=True)
    assert done.state is JobState.DONE, done.error
    challenger = done.result["registered"]
    rt = engine.runtime("phishing")
    learn(engine, STREAM[600:900])
    worker.write_snapshots(rt)
    saved = engine.store.registry.get_document("phishing", IMPORTANCE_DOCUMENT)["versions"]
    assert saved["v1"]["method"] == "weights" and saved[challenger]["method"] == "permutation"
    assert all(saved[v]["drift"]["overlap"] is None for v in ("v1", challenger))  # first ones

    learn(engine, STREAM[900:1000])
    Worker(engine).write_snapshots(rt)
    after = engine.store.registry.get_document("phishing", IMPORTANCE_DOCUMENT)["versions"]
    for version in ("v1", challenger):
        drift = after[version]["drift"]
        assert drift["overlap"] is not None, version
        assert (
            drift["reference"] == saved[version]["drift"]["reference"] or (drift["drift_detected"])
        ), version
    engine.close()
