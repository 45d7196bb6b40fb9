"""The engine's execution model: a fixed number of threads whatever the number of models, a
model that cannot learn delays only itself, the learning backlog is bounded, a snapshot writer
gets in between two slices of a long catch-up, and models learn exactly what a serial replay
learns (oracle) however the learners interleave them."""

from __future__ import annotations

import threading
import time

import pytest

from onlearn.config import settings_from_mapping
from onlearn.engine import Engine, FeedbackItem
from onlearn.engine.feedback import SNAPSHOT_RECHECK_S
from onlearn.errors import Overloaded
from onlearn.snapshots import restore, save_snapshot
from tests.core.conftest import phishing_stream

FEATURES = {"x": {"type": "number"}, "y": {"type": "number"}}


def many_models(
    url: str, n: int, *, engine: dict | None = None, pipeline: str = "logistic_regression"
):
    return settings_from_mapping(
        {
            "store": {"url": url},
            "security": {"secret_key": "test"},
            "engine": engine or {},
            "models": {
                f"m{i:04d}": {
                    "task": "classification",
                    "classes": [True, False],
                    "pipeline": {"name": pipeline},
                    "features": FEATURES,
                }
                for i in range(n)
            },
        }
    )


def engine_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("onlearn")}


def row(i: int) -> tuple[dict, bool]:
    x, y = (i * 37 % 100) / 50 - 1, (i * 11 % 100) / 50 - 1
    return {"x": x, "y": y}, x + y > 0


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_threads_do_not_grow_with_the_number_of_models(store, tmp_path, redis_url):
    url = f"sqlite:///{tmp_path}/one.db" if store == "sqlite" else redis_url
    with Engine.from_settings(many_models(url, 1)):
        with_one = engine_threads()
    url = f"sqlite:///{tmp_path}/many.db" if store == "sqlite" else redis_url + "?prefix=many"
    with Engine.from_settings(many_models(url, 200)) as engine:
        with_many = engine_threads()
        # and every model still learns what it is sent
        for i, name in enumerate(sorted(engine.runtimes)[::20]):
            features, label = row(i)
            p = engine.predict_one(name, features)
            assert engine.feedback_one(
                name, FeedbackItem(label, prediction_id=p.prediction_id)
            ).applied
    assert with_many == with_one, (sorted(with_one), sorted(with_many))
    assert any(name.startswith("onlearn-learner") for name in with_many)


def test_a_model_that_cannot_learn_delays_only_itself(sqlite_url):
    settings = many_models(sqlite_url, 2, engine={"max_learn_lag": 50})
    with Engine.from_settings(settings) as engine:
        stuck, other = engine.runtime("m0000"), engine.runtime("m0001")
        with stuck.lock:  # its learning waits for this lock: the model is stuck mid-event
            # Its labels are still made durable, not applied.
            for i in range(10):
                features, label = row(i)
                result = engine.feedback_one(
                    "m0000", FeedbackItem(label, features=features), wait=False
                )
                assert result.seq == i + 1
            # The other model's labels are committed and learned meanwhile.
            for i in range(30):
                features, label = row(i)
                result = engine.feedback_one("m0001", FeedbackItem(label, features=features))
                assert result.applied and result.seq == i + 1
            assert other.seq == 30 and other.labels_applied == 30
            assert stuck.labels_applied == 0 and stuck.known_head == 10
        deadline = time.monotonic() + 10
        while stuck.seq < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stuck.seq == 10 and stuck.labels_applied == 10, "the learners catch it up"


@pytest.mark.parametrize("store", ["sqlite", "redis", "memory"])
def test_the_learning_backlog_is_bounded(store, sqlite_url, redis_url):
    url = {"sqlite": sqlite_url, "redis": redis_url, "memory": "memory://"}[store]
    settings = many_models(url, 2, engine={"max_learn_lag": 20})
    with Engine.from_settings(settings) as engine:
        stuck = engine.runtime("m0000")
        refused = 0
        with stuck.lock:
            for i in range(30):
                features, label = row(i)
                try:
                    engine.feedback_one("m0000", FeedbackItem(label, features=features), wait=False)
                except Overloaded as e:
                    refused += 1
                    assert "max_learn_lag = 20" in str(e) and "m0000" in str(e)
            assert stuck.known_head == 20 and refused == 10, (stuck.known_head, refused)
            assert stuck.lag_refused == 10
            # The other model takes labels as usual.
            features, label = row(0)
            assert engine.feedback_one("m0001", FeedbackItem(label, features=features)).applied
            assert stuck.backlog == 20
        deadline = time.monotonic() + 10
        while stuck.backlog and time.monotonic() < deadline:
            time.sleep(0.01)
        features, label = row(99)
        result = engine.feedback_one("m0000", FeedbackItem(label, features=features))
        assert result.applied and result.seq == 21, "accepted again once caught up"
        stats = engine.stats()["models"]["m0000"]
        assert stats["learn_backlog"] == 0 and stats["learn_lag_refused"] == 10


def test_a_snapshot_writer_gets_in_during_a_long_catch_up(sqlite_url):
    settings = many_models(sqlite_url, 1, pipeline="adaptive_random_forest")
    with Engine.from_settings(settings) as engine:
        rt = engine.runtime("m0000")
        items = [FeedbackItem(row(i)[1], features=row(i)[0]) for i in range(3000)]
        with rt.lock:  # nothing learns until every label is durable: one long catch-up
            engine.feedback_many("m0000", items, wait=False)
        deadline = time.monotonic() + 10
        while rt.seq == 0 and time.monotonic() < deadline:
            time.sleep(0.001)  # until the learners are into it
        with rt.apply_lock:  # what the worker takes to pickle a consistent state
            taken_at = rt.seq
        assert 0 < taken_at < 3000, f"got the lock at seq {taken_at}: not between two slices"
        engine.catch_up(rt)
        assert rt.seq == 3000


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_models_interleaved_on_the_learners_equal_a_serial_replay(store, tmp_path, redis_url):
    """Oracle: six models fed concurrently through the pool (async-style, not waiting) hold the
    state a fresh replay of each model's log builds."""
    url = f"sqlite:///{tmp_path}/o.db" if store == "sqlite" else redis_url
    settings = many_models(url, 6)
    stream = list(phishing_stream(300))
    with Engine.from_settings(settings) as engine:
        names = sorted(engine.runtimes)

        def feed(k: int) -> None:
            name = names[k]
            for i in range(0, 300, 25):
                items = [
                    FeedbackItem(
                        (k + i) % 3 == 0 or y, features={"x": x["popup_window"], "y": x["https"]}
                    )
                    for x, y in stream[i : i + 25]
                ]
                engine.feedback_many(name, items, wait=False)

        threads = [threading.Thread(target=feed, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for name in names:
            rt = engine.runtime(name)
            engine.catch_up(rt)
            assert rt.seq == 300
            info = engine.store.registry.get_version(name, "v1")
            # No worker ran: the store holds no snapshot, so this is a replay of the whole log.
            assert engine.store.registry.latest_snapshot(name, "v1") is None
            replayed = restore(engine.store, info, engine.secret, upto=300)
            for probe in ({"x": 0.5, "y": 0.0}, {"x": 0.0, "y": 1.0}):
                assert rt.champion.predict(probe) == replayed.predict(probe), name


def test_labels_are_refused_while_the_newest_snapshot_falls_too_far_behind(sqlite_url):
    """Once a worker is seen writing snapshots, what a restart would replay is bounded too:
    snapshot_every_events + max_learn_lag events after the newest snapshot."""
    settings = many_models(sqlite_url, 1, engine={"max_learn_lag": 5, "snapshot_every_events": 10})
    with Engine.from_settings(settings) as engine:
        rt = engine.runtime("m0000")

        def send(n: int) -> list:
            out = []
            for i in range(n):
                features, label = row(i)
                try:
                    out.append(engine.feedback_one("m0000", FeedbackItem(label, features=features)))
                except Overloaded as e:
                    out.append(e)
            return out

        assert all(not isinstance(r, Overloaded) for r in send(40)), "no worker seen: no bound"
        with rt.lock:
            save_snapshot(engine.store, "m0000", rt.champion, engine.secret)  # as a worker would
        engine.refresh_snapshot_seqs()
        assert rt.snapshots_advance and rt.snapshot_seq == 40
        answers = send(20)
        accepted = [r for r in answers if not isinstance(r, Overloaded)]
        refused = [r for r in answers if isinstance(r, Overloaded)]
        assert len(accepted) == 15 and len(refused) == 5, (len(accepted), len(refused))
        assert "newest snapshot is 15 label events behind" in str(refused[0])
        assert "onlearn worker" in str(refused[0])
        with rt.lock:
            save_snapshot(engine.store, "m0000", rt.champion, engine.secret)
        time.sleep(SNAPSHOT_RECHECK_S)
        assert not isinstance(send(1)[0], Overloaded), "a new snapshot lets labels in again"
