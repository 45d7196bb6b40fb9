"""Jobs that cannot get stuck: cancellation, permanent failures, a stopping worker, bounded refits.

Against a real SQLite file (the store's side of each rule is also in the contract checks, on
every backend).
"""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest

from onlearn.background.refit import refit
from onlearn.background.worker import Worker, cancel_job, enqueue_refit
from onlearn.errors import Interrupted, JobConflict
from onlearn.learner import LearnerState
from onlearn.models import PipelineSpec, build_pipeline
from onlearn.records import JobState
from onlearn.refit_options import Candidate
from onlearn.snapshots import replay
from tests.core.test_worker import STREAM, engine_for, learn

SLOW_FOREST = {"id": "slow", "name": "adaptive_random_forest", "n_models": 50}
SLOW_SKLEARN = {
    "id": "slow_sklearn",
    "sklearn": "sklearn.ensemble:RandomForestClassifier",
    "params": {"n_estimators": 20_000, "random_state": 0},
    "incremental": False,
}


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path}/onlearn.db"


def claim(engine, worker):
    return engine.store.jobs.claim(worker.name, lease_s=60, now=engine.clock())


def run_in_thread(worker, job):
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("job", worker.run_job(job)))
    thread.start()
    return thread, out


def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


@pytest.mark.parametrize("candidate", [SLOW_FOREST, SLOW_SKLEARN], ids=["river", "sklearn"])
def test_a_running_refit_stops_when_cancelled_and_registers_nothing(url, candidate):
    engine = engine_for(url, refit={"candidates": [candidate], "passes": 20})
    worker = Worker(engine)
    learn(engine, STREAM[:800])
    job = enqueue_refit(
        engine, "phishing", reason="t", actor="t", options={"register_anyway": True}
    )
    thread, out = run_in_thread(worker, claim(engine, worker))
    time.sleep(1.5)  # well into the training (the whole refit takes minutes)
    assert thread.is_alive()
    cancelled = cancel_job(engine.store, job.job_id, actor="ann", now=engine.clock())
    assert cancelled.state is JobState.CANCELLED and cancelled.error == "cancelled by ann"
    started = time.monotonic()
    thread.join(15)
    assert not thread.is_alive() and time.monotonic() - started < 10
    assert out["job"].state is JobState.CANCELLED
    assert [v.version for v in engine.store.registry.list_versions("phishing")] == ["v1"]
    assert engine.runtime("phishing").roles == {"champion": "v1"}
    assert not multiprocessing.active_children()  # a scikit-learn fit's process was killed
    # Cancelling again is harmless; the job never runs again.
    assert cancel_job(engine.store, job.job_id, actor="ann", now=engine.clock()).state is (
        JobState.CANCELLED
    )
    assert engine.store.jobs.claim("other", lease_s=60, now=engine.clock() + 1e6) is None
    engine.close()


def test_a_queued_job_cancelled_never_runs(url):
    engine = engine_for(url)
    job = enqueue_refit(engine, "phishing", reason="t", actor="t")
    assert cancel_job(engine.store, job.job_id, actor="a", now=engine.clock()).state is (
        JobState.CANCELLED
    )
    assert Worker(engine).tick() is False
    assert engine.store.jobs.get(job.job_id).state is JobState.CANCELLED
    engine.close()


def test_cancelling_a_job_that_registered_its_version_is_a_conflict_naming_it(url):
    engine = engine_for(url)
    worker = Worker(engine)
    learn(engine, STREAM[:300])
    job = enqueue_refit(
        engine, "phishing", reason="t", actor="t", options={"register_anyway": True}
    )
    done = worker.run_job(claim(engine, worker))
    assert done.state is JobState.DONE and done.result["registered"] == "v2"
    with pytest.raises(JobConflict, match="already registered its version v2"):
        cancel_job(engine.store, job.job_id, actor="a", now=engine.clock())
    assert engine.store.jobs.get(job.job_id).state is JobState.DONE
    engine.close()


def test_a_job_that_committed_cannot_be_cancelled_and_a_cancelled_one_cannot_commit(url):
    engine = engine_for(url)
    first = enqueue_refit(engine, "phishing", reason="t", actor="t", key="one")
    assert claim(engine, Worker(engine, name="w")).job_id == first.job_id
    assert engine.store.jobs.commit(first.job_id, "w", engine.clock()) is not None
    with pytest.raises(JobConflict, match="is registering its version"):
        cancel_job(engine.store, first.job_id, actor="a", now=engine.clock())
    second = enqueue_refit(engine, "phishing", reason="t", actor="t", key="two")
    assert claim(engine, Worker(engine, name="w")).job_id == second.job_id
    cancel_job(engine.store, second.job_id, actor="a", now=engine.clock())
    assert engine.store.jobs.commit(second.job_id, "w", engine.clock()) is None
    engine.close()


def test_a_stopping_worker_hands_its_job_back_without_counting_the_attempt(url):
    engine = engine_for(url, refit={"candidates": [SLOW_FOREST], "passes": 20})
    worker = Worker(engine)
    learn(engine, STREAM[:800])
    job = enqueue_refit(engine, "phishing", reason="t", actor="t")
    thread, out = run_in_thread(worker, claim(engine, worker))
    time.sleep(1.0)
    worker.stopping.set()
    thread.join(10)
    assert not thread.is_alive()
    back = engine.store.jobs.get(job.job_id)
    assert back.state is JobState.QUEUED and back.attempts == 0 and back.worker is None
    engine.close()


def test_errors_that_cannot_go_away_fail_the_job_at_once(url):
    engine = engine_for(url)
    worker = Worker(engine)
    # too few labels: no retry in 5 s will make 50
    enqueue_refit(engine, "phishing", reason="t", actor="t")
    done = worker.run_job(claim(engine, worker))
    assert done.state is JobState.FAILED and done.attempts == 1
    assert "has 0 label events" in done.error and "at least 50" in done.error
    engine.close()


def test_a_refit_keeps_the_newest_max_rows_labels_and_equals_their_replay(url):
    engine = engine_for(url)
    learn(engine, STREAM[:600])
    rt = engine.runtime("phishing")
    config = rt.config
    result = refit(
        engine.store,
        "phishing",
        schema=config.schema,
        task="classification",
        classes=config.classes,
        champion_state_at=None,
        candidates=[Candidate("lr", {"name": "logistic_regression"})],
        max_rows=200,
    )
    assert result.labels_available == 600
    assert result.train_labels + result.holdout_labels == 200
    assert result.train[0] == 401  # one label event per seq here: the newest 200 are 401..600
    assert result.best_candidate.id == "lr"
    # Oracle: the candidate's state is a replay of exactly those events from a fresh pipeline.
    fresh = LearnerState(
        "x",
        "classification",
        build_pipeline(
            PipelineSpec.from_config({"name": "logistic_regression"}),
            task="classification",
            numeric=config.schema.numeric,
            categorical=config.schema.categorical,
            classes=config.classes,
        ),
        seq=400,
    )
    oracle = replay(engine.store, "phishing", config.schema, fresh, upto=result.train_upto)
    probe = [x for x, _ in STREAM[:40]]
    assert [result.best_state.estimator.predict_proba_one(x) for x in probe] == [
        oracle.estimator.predict_proba_one(x) for x in probe
    ]
    engine.close()


def test_should_stop_interrupts_a_refit_and_kills_a_scikit_learn_fit(url):
    engine = engine_for(url)
    learn(engine, STREAM[:300])
    config = engine.runtime("phishing").config
    calls = []

    def stop_on_the_tenth_look():
        calls.append(1)
        return "enough" if len(calls) >= 10 else None

    for candidate in (SLOW_FOREST, SLOW_SKLEARN):
        calls.clear()
        table = {k: v for k, v in candidate.items() if k != "id"}
        with pytest.raises(Interrupted, match="enough"):
            refit(
                engine.store,
                "phishing",
                schema=config.schema,
                task="classification",
                classes=config.classes,
                champion_state_at=None,
                candidates=[Candidate("c", table)],
                passes=20,
                should_stop=stop_on_the_tenth_look,
            )
        assert not multiprocessing.active_children()
    engine.close()
