"""The training worker, the registry's roles and safe rollout, against real stores."""

from __future__ import annotations

import pytest

from onlearn.background.worker import Worker, enqueue_refit
from onlearn.engine import Engine, FeedbackItem
from onlearn.errors import RoleConflict
from onlearn.records import JobState
from onlearn.snapshots import replay, restore
from tests.core.conftest import Clock, phishing_settings, phishing_stream
from tests.specs import trusted_fresh_state

STREAM = list(phishing_stream())  # 1250 rows


def engine_for(url, clock=None, engine=None, **model):
    settings = phishing_settings(url, engine=engine, **model)
    from onlearn.keys import resolve_secret
    from onlearn.store import open_store

    eng = Engine(
        settings, open_store(url), secret=resolve_secret("test", url), clock=clock or Clock()
    )
    return eng.start()


def learn(engine, rows):
    """Predict, then give the label by prediction id: stored outputs for every role version."""
    for x, y in rows:
        p = engine.predict_one("phishing", x)
        engine.feedback_one("phishing", FeedbackItem(y, prediction_id=p.prediction_id))


def probe(engine, version=None):
    rt = engine.runtime("phishing")
    state = rt.states[version or rt.roles["champion"]]
    with rt.lock:
        return [state.estimator.predict_proba_one(x) for x, _ in STREAM[:40]]


def refit_now(engine, worker, **options):
    job = enqueue_refit(engine, "phishing", reason="test", actor="test", options=options)
    claimed = engine.store.jobs.claim(worker.name, lease_s=60, now=engine.clock())
    assert claimed.job_id == job.job_id
    return worker.run_job(claimed)


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path}/onlearn.db"


def test_refit_registers_a_challenger_with_lineage_that_catches_up_by_replay(url):
    engine = engine_for(url)
    worker = Worker(engine)
    learn(engine, STREAM[:600])
    done = refit_now(engine, worker, candidates=[{"name": "hoeffding_tree"}], register_anyway=True)
    assert done.state is JobState.DONE, done.error
    version = done.result["registered"]
    rt = engine.runtime("phishing")
    assert rt.roles == {"champion": "v1", "challenger": version}
    info = engine.store.registry.get_version("phishing", version)
    lineage = info.meta
    assert lineage["source"] == "refit" and lineage["parent"] == "v1"
    assert lineage["trained_on"]["to_seq"] == lineage["base_seq"] < 600
    assert lineage["labels_by_source"] == {"app": lineage["trained_on"]["to_seq"]}
    assert lineage["code"]["package"] and lineage["schema_fingerprint"]
    assert set(lineage["metrics_at_registration"]) >= {"accuracy", "log_loss"}
    # Refit (one pass) plus the catch-up replay equals a replay of the same events through the
    # same spec from nothing.
    full = replay(engine.store, "phishing", rt.schema, trusted_fresh_state(_as_online(info)))
    assert probe(engine, version) == [full.estimator.predict_proba_one(x) for x, _ in STREAM[:40]]
    # The challenger now predicts on live traffic and is compared with the champion.
    learn(engine, STREAM[600:700])
    paired = rt.states[version].paired["v1"]
    assert paired.n == 100
    engine.close()


def _as_online(info):
    from dataclasses import replace

    return replace(info, meta={k: v for k, v in info.meta.items() if k != "base_seq"})


def test_a_retried_refit_job_registers_one_version(url):
    engine = engine_for(url)
    w1, w2 = Worker(engine, name="w1"), Worker(engine, name="w2")
    learn(engine, STREAM[:300])
    job = enqueue_refit(
        engine, "phishing", reason="t", actor="t", options={"register_anyway": True}
    )
    first = engine.store.jobs.claim("w1", lease_s=60, now=engine.clock())
    result_1 = w1._refit(first)  # the first worker registered, then died before completing
    engine.clock.now += 61  # its lease ran out
    again = engine.store.jobs.claim("w2", lease_s=60, now=engine.clock())
    assert again.job_id == job.job_id and again.attempts == 2
    assert again.committed  # it had started writing: it can no longer be cancelled
    result_2 = w2._refit(again)
    assert result_1["registered"] == result_2["registered"]
    assert [v.version for v in engine.store.registry.list_versions("phishing")] == ["v1", "v2"]
    assert engine.store.log.head("phishing") == 301  # one control event
    engine.close()


def test_rollback_restores_the_previous_predictions_exactly(url):
    engine = engine_for(url)
    worker = Worker(engine)
    learn(engine, STREAM[:400])
    before = probe(engine)
    version = refit_now(
        engine, worker, candidates=[{"name": "hoeffding_tree"}], register_anyway=True
    ).result["registered"]
    engine.promote("phishing", version, "champion", actor="test", reason="try it")
    rt = engine.runtime("phishing")
    assert rt.roles == {"champion": version, "previous": "v1"}
    assert probe(engine) != before
    engine.rollback("phishing", actor="test", reason="back")
    assert rt.roles == {"champion": "v1"}
    assert probe(engine) == before  # nothing learned in between: literally the same answers
    head = engine.store.log.head("phishing")
    rows = [r for r in engine.role_history("phishing") if r["seq"] == head]
    assert {(r["role"], r["version"], r["previous"]) for r in rows} == {
        ("champion", "v1", version),
        ("previous", None, "v1"),
    }
    assert {r["reason"] for r in rows} == {"back"}
    engine.close()


def test_rollback_after_labels_equals_never_having_promoted(tmp_path):
    """While demoted, the previous champion kept learning: after a rollback it is the state it
    would be had the promotion never happened."""
    a = engine_for(f"sqlite:///{tmp_path}/a.db")
    b = engine_for(f"sqlite:///{tmp_path}/b.db")
    learn(a, STREAM[:300])
    learn(b, STREAM[:300])
    worker = Worker(b)
    version = refit_now(
        b, worker, candidates=[{"name": "hoeffding_tree"}], register_anyway=True
    ).result["registered"]
    b.promote("phishing", version, "champion", actor="t", reason="t")
    learn(a, STREAM[300:500])
    learn(b, STREAM[300:500])
    b.rollback("phishing", actor="t", reason="t")
    assert probe(b) == probe(a)
    a.close()
    b.close()


MAJORITY = {"name": "hoeffding_tree", "grace_period": 100_000, "leaf_prediction": "mc"}


def test_an_auto_promotion_that_should_not_happen_does_not(url):
    engine = engine_for(
        url,
        rollout={"policy": "auto", "min_labels": 100, "alpha": 0.05},
        refit={"candidates": [{"id": "majority", **MAJORITY}]},
    )
    worker = Worker(engine)
    learn(engine, STREAM[:500])
    # A challenger that is much worse: a tree that never splits answers the majority class.
    v = refit_now(engine, worker, candidates=["majority"], register_anyway=True).result[
        "registered"
    ]
    learn(engine, STREAM[500:900])
    rt = engine.runtime("phishing")
    paired = rt.states[v].paired["v1"]
    assert paired.a_only > paired.b_only  # the champion is right more often where they differ
    worker.check_gates(rt)
    assert rt.roles["champion"] == "v1"
    assert "challenger" not in rt.roles  # rejected: significantly worse
    assert "rejected" in engine.role_history("phishing")[-1]["reason"]
    engine.close()


def test_the_worker_tests_each_planned_look_once_and_holds_in_between(url):
    from onlearn.background.promotion import Action, decide_promotion

    # Looks at 10, 20, 40, 80 paired labels, at levels 0.025, 0.0125, 0.00625, 0.003125.
    engine = engine_for(
        url,
        rollout={"policy": "auto", "min_labels": 10, "alpha": 0.05},
        refit={"candidates": [{"id": "majority", **MAJORITY}]},
    )
    worker = Worker(engine)
    learn(engine, STREAM[:500])
    v = refit_now(engine, worker, candidates=["majority"], register_anyway=True).result[
        "registered"
    ]
    rt = engine.runtime("phishing")
    learn(engine, STREAM[500:540])  # 40 paired labels: look 3, McNemar p = 0.057
    worker.check_gates(rt)
    assert rt.roles.get("challenger") == v
    learn(engine, STREAM[540:548])  # 48: p = 0.0044, below look 3's level, but look 3 was taken
    paired = rt.states[v].paired["v1"]
    assert decide_promotion(rt.config.rollout, None, None, paired).action is Action.REJECT
    worker.check_gates(rt)
    assert rt.roles.get("challenger") == v  # held: no second test at the same look
    learn(engine, STREAM[548:580])  # 80: look 4, p = 0.0012 < 0.003125
    worker.check_gates(rt)
    assert "challenger" not in rt.roles
    assert "level 0.003125, look 4 at 80 labels" in engine.role_history("phishing")[-1]["reason"]
    engine.close()


def test_an_auto_promotion_of_a_better_challenger_and_an_auto_rollback_when_it_regresses(url):
    # Better than the majority-class champion, until it has learned 700 labels.
    turncoat = {"factory": "tests.core.factories:turncoat", "flip_after": 700}
    engine = engine_for(
        url,
        rollout={"policy": "auto", "min_labels": 100, "alpha": 0.05, "margin": 0.0},
        pipeline=MAJORITY,
        refit={"candidates": [turncoat]},
    )
    worker = Worker(engine)
    learn(engine, STREAM[:300])
    v = refit_now(engine, worker, candidates=["turncoat"]).result["registered"]
    assert v == "v2"
    learn(engine, STREAM[300:450])
    rt = engine.runtime("phishing")
    worker.check_gates(rt)
    assert rt.roles == {"champion": v, "previous": "v1"}, engine.role_history("phishing")[-1]
    assert engine.role_history("phishing")[-1]["reason"].startswith("automatic promotion")
    learn(engine, STREAM[450:900])  # it turns at 700 labels learned
    worker.check_gates(rt)
    assert rt.roles == {"champion": "v1"}
    reasons = [r["reason"] for r in engine.role_history("phishing")[-2:]]
    assert all(r.startswith("automatic rollback") for r in reasons), reasons
    engine.close()


def test_promotion_refuses_a_version_trained_on_another_schema(tmp_path):
    url = f"sqlite:///{tmp_path}/o.db"
    engine = engine_for(url)
    learn(engine, STREAM[:100])
    engine.close()
    # The config's schema changes (a feature gets a bound): v2 is registered from it.
    from tests.core.conftest import PHISHING_FEATURES

    features = {**PHISHING_FEATURES, "age_of_domain": {"type": "integer", "min": 0}}
    engine = engine_for(url, features=features)
    rt = engine.runtime("phishing")
    assert rt.roles == {"champion": "v2", "previous": "v1"}
    with pytest.raises(RoleConflict, match="another schema"):
        engine.promote("phishing", "v1", "shadow", actor="t", reason="t")
    engine.close()


def test_any_version_state_at_any_retained_seq_is_rebuilt_by_replay(url):
    engine = engine_for(url)
    worker = Worker(engine)
    answers = {}
    for upto in (100, 250, 400):
        learn(engine, STREAM[upto - 100 if upto == 100 else {250: 100, 400: 250}[upto] : upto])
        answers[upto] = probe(engine)
        worker.write_snapshots(engine.runtime("phishing"))
    info = engine.store.registry.get_version("phishing", "v1")
    for upto, expected in answers.items():
        state = restore(engine.store, info, engine.secret, upto=upto)
        assert state.seq == upto
        assert [state.estimator.predict_proba_one(x) for x, _ in STREAM[:40]] == expected
    engine.close()


def test_the_worker_writes_snapshots_on_schedule(url):
    engine = engine_for(url, engine={"snapshot_every_events": 100, "snapshot_every_s": 0})
    worker = Worker(engine)
    learn(engine, STREAM[:250])
    worker.tick()
    snapshot = engine.store.registry.latest_snapshot("phishing", "v1")
    assert snapshot.seq == 250 and engine.runtime("phishing").snapshot_seq == 250
    engine.close()


def test_canary_answers_a_sticky_share_and_shadow_never_answers(url):
    engine = engine_for(url)
    worker = Worker(engine)
    learn(engine, STREAM[:300])
    v2 = refit_now(
        engine, worker, candidates=[{"name": "hoeffding_tree"}], register_anyway=True
    ).result["registered"]
    engine.change_roles("phishing", {"challenger": None, "shadow": v2}, actor="t", reason="t")
    x = STREAM[0][0]
    assert {engine.predict_one("phishing", x, key=f"user-{i}").version for i in range(200)} == {
        "v1"
    }
    engine.promote("phishing", v2, "canary", actor="t", reason="t", share=0.3)
    rt = engine.runtime("phishing")
    assert rt.roles == {"champion": "v1", "canary": v2, "shadow": v2}
    answered = [engine.predict_one("phishing", x, key=f"user-{i}").version for i in range(2000)]
    assert 0.25 < answered.count(v2) / 2000 < 0.35
    again = [engine.predict_one("phishing", x, key=f"user-{i}").version for i in range(2000)]
    assert again == answered  # sticky: a key always lands on the same side
    engine.close()


def test_replicas_switch_roles_at_the_same_seq(url):
    a = engine_for(url)
    b = engine_for(url)  # a second process would do the same: it follows the log
    learn(a, STREAM[:300])
    worker = Worker(a)
    v2 = refit_now(a, worker, candidates=[{"name": "hoeffding_tree"}], register_anyway=True).result[
        "registered"
    ]
    a.promote("phishing", v2, "champion", actor="t", reason="t")
    learn(a, STREAM[300:400])
    b.catch_up(b.runtime("phishing"))
    assert b.runtime("phishing").roles == a.runtime("phishing").roles
    assert probe(b) == probe(a)
    a.close()
    b.close()


def test_no_retrain_without_movement_however_much_history(url):
    engine = engine_for(url, retrain={"every_labels": 100, "cooldown_s": 0})
    worker = Worker(engine)
    learn(engine, STREAM[:1200])  # a stationary stream: no alarm, accuracy steady
    assert worker.check_triggers(engine.runtime("phishing")) is None
    assert engine.store.jobs.list("phishing") == []
    engine.close()


def test_an_alarm_triggers_a_retrain_once_then_the_cooldown_holds(url):
    clock = Clock()
    engine = engine_for(url, clock=clock, retrain={"cooldown_s": 600})
    worker = Worker(engine)
    learn(engine, STREAM[:100])
    engine.raise_alarm("phishing", {"kind": "concept_drift", "detail": "adwin on errors"})
    rt = engine.runtime("phishing")
    engine.catch_up(rt)
    clock.now += 601
    job = worker.check_triggers(rt)
    assert job is not None and "concept_drift" in job.params["reason"]
    engine.raise_alarm("phishing", {"kind": "input_drift"})
    engine.catch_up(rt)
    assert worker.check_triggers(rt) is None  # within the cool-down
    clock.now += 601
    assert worker.check_triggers(rt) is not None
    assert len(engine.store.jobs.list("phishing")) == 2
    engine.close()


def test_new_labels_and_a_performance_drop_trigger_a_retrain(url):
    engine = engine_for(url, retrain={"every_labels": 100, "cooldown_s": 0})
    worker = Worker(engine)
    learn(engine, STREAM[:1000])
    rt = engine.runtime("phishing")
    assert worker.check_triggers(rt) is None
    learn(engine, [(x, not y) for x, y in STREAM[1000:1250]])  # the concept flipped
    job = worker.check_triggers(rt)
    assert job is not None and "recent accuracy" in job.params["reason"]
    done = worker.run_job(engine.store.jobs.claim(worker.name, lease_s=60, now=engine.clock()))
    assert done.state is JobState.DONE, done.error
    engine.close()


def test_snapshots_are_pruned_and_the_log_trimmed_to_what_is_still_needed(url):
    engine = engine_for(url, engine={"keep_snapshots": 2, "retain_events": 50})
    worker = Worker(engine)
    rt = engine.runtime("phishing")
    for start in range(0, 500, 100):
        learn(engine, STREAM[start : start + 100])
        worker.write_snapshots(rt)
    registry, log = engine.store.registry, engine.store.log
    assert registry.latest_snapshot("phishing", "v1").seq == 500
    assert registry.latest_snapshot("phishing", "v1", max_seq=450).seq == 400  # 2 kept
    assert registry.latest_snapshot("phishing", "v1", max_seq=399) is None
    assert log.read("phishing", 0, 1)[0].seq == 451  # the newest snapshot's seq - retain_events
    before = probe(engine)
    engine.close()
    again = engine_for(url)  # restarts from the snapshot: the trimmed events are not needed
    assert probe(again) == before
    again.close()


# -- regression: gates on paired absolute errors, triggers on the recent MAE ------------------

REGRESSION_FEATURES = {"a": {"type": "number"}, "b": {"type": "number"}}
MEAN = {"factory": "tests.core.factories:mean_regressor"}


def regression_rows(n: int, seed: int, *, shift: float = 0.0) -> list[tuple[dict, float]]:
    """y = 3a - 2b + 10 + noise (+ ``shift``: the concept moved)."""
    import random

    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = round(rng.gauss(0, 1), 4), round(rng.gauss(0, 1), 4)
        rows.append(({"a": a, "b": b}, 3 * a - 2 * b + 10 + rng.gauss(0, 0.5) + shift))
    return rows


def regression_engine(url, **model):
    from onlearn.config import settings_from_mapping
    from onlearn.keys import resolve_secret
    from onlearn.store import open_store

    table = {
        "task": "regression",
        "pipeline": {"name": "linear_regression"},
        "features": REGRESSION_FEATURES,
        **model,
    }
    settings = settings_from_mapping(
        {"store": {"url": url}, "security": {"secret_key": "test"}, "models": {"reg": table}}
    )
    engine = Engine(settings, open_store(url), secret=resolve_secret("test", url), clock=Clock())
    return engine.start()


def learn_regression(engine, rows):
    for x, y in rows:
        p = engine.predict_one("reg", x)
        engine.feedback_one("reg", FeedbackItem(y, prediction_id=p.prediction_id))


def test_regression_versions_are_compared_on_paired_absolute_errors_with_wilcoxon(url):
    """Every consumer of the comparison (the live state, the versions API, the evaluate job)
    speaks of absolute errors and Wilcoxon, computed from the answers each version served."""
    from onlearn.background.worker import EVALUATE, new_job
    from onlearn.compare import PairedErrors

    rows = regression_rows(400, seed=1)
    learn_regression(regression_engine(url, pipeline=MEAN), rows[:100])
    engine = regression_engine(url)  # the config's pipeline changed: v2 champion, v1 previous
    rt = engine.runtime("reg")
    assert rt.roles == {"champion": "v2", "previous": "v1"}
    seq = rt.seq
    learn_regression(engine, rows[100:400])
    paired = rt.states["v2"].paired["v1"]
    assert isinstance(paired, PairedErrors)
    # a = v1 (the previous champion), b = v2: the absolute errors of what each answered, as
    # the label events carry it.
    events = [e.payload for e in engine.store.log.read("reg", after=seq) if e.kind.value == "label"]
    assert len(events) == 300
    a_errors = [abs(e["label"] - e["outputs"]["v1"]["label"]) for e in events]
    b_errors = [abs(e["label"] - e["outputs"]["v2"]["label"]) for e in events]
    assert paired == PairedErrors.from_errors(a_errors, b_errors)
    assert paired.b_mae < paired.a_mae and paired.favoured == "b"

    (v2,) = [v for v in engine.versions("reg") if v["version"] == "v2"]
    report = v2["paired"]["v1"]
    assert report["test"] == "wilcoxon" and report["n"] == 300
    assert report["a_mae"] == paired.a_mae and report["b_mae"] == paired.b_mae
    assert report["p_value"] == paired.test()[1] < 1e-10
    assert not {"a_only", "b_only", "a_accuracy", "b_accuracy"} & set(report)

    engine.change_roles(
        "reg", {"champion": "v1", "previous": None, "challenger": "v2"}, actor="t", reason="t"
    )
    learn_regression(engine, rows[:250])
    worker = Worker(engine)
    job = engine.store.jobs.enqueue(new_job(EVALUATE, "reg", {"version": "v2"}, at=engine.clock()))
    done = worker.run_job(engine.store.jobs.claim(worker.name, lease_s=60, now=engine.clock()))
    assert done.job_id == job.job_id and done.state is JobState.DONE, done.error
    result = done.result
    assert result["paired"]["test"] == "wilcoxon" and result["paired"]["n"] == 250
    decision = result["decision"]
    assert decision["action"] == "hold"  # the default policy is manual
    assert "would be promoted" in decision["reason"]
    assert "mean absolute error" in decision["reason"] and "Wilcoxon" in decision["reason"]
    assert "accuracy" not in decision["reason"]
    engine.close()


def test_regression_auto_promotion_of_a_lower_mae_and_auto_rollback_when_it_regresses(url):
    rollout = {"policy": "auto", "min_labels": 100, "alpha": 0.05, "margin": 0.0}
    rows = regression_rows(900, seed=2)
    learn_regression(regression_engine(url, pipeline=MEAN, rollout=rollout), rows[:300])
    # Better than the mean of the labels, until it has learned 700 labels.
    turncoat = {"factory": "tests.core.factories:regression_turncoat", "flip_after": 700}
    engine = regression_engine(url, pipeline=turncoat, rollout=rollout)
    engine.change_roles(
        "reg", {"champion": "v1", "previous": None, "challenger": "v2"}, actor="t", reason="t"
    )
    rt = engine.runtime("reg")
    worker = Worker(engine)
    learn_regression(engine, rows[300:450])
    worker.check_gates(rt)
    assert rt.roles == {"champion": "v2", "previous": "v1"}, engine.role_history("reg")[-1]
    reason = engine.role_history("reg")[-1]["reason"]
    assert reason.startswith("automatic promotion: promote: on 150 paired labels the challenger's")
    assert "Wilcoxon signed-rank p = " in reason
    learn_regression(engine, rows[450:900])  # it turns at 700 labels learned
    worker.check_gates(rt)
    assert rt.roles == {"champion": "v1"}
    reasons = [r["reason"] for r in engine.role_history("reg")[-2:]]
    assert all(r.startswith("automatic rollback: rollback: the previous champion") for r in reasons)
    assert all("mean absolute error" in r for r in reasons), reasons
    engine.close()


def test_regression_challenger_with_higher_errors_is_rejected(url):
    rows = regression_rows(400, seed=3)
    learn_regression(regression_engine(url), rows[:100])
    engine = regression_engine(url, pipeline=MEAN, rollout={"policy": "auto", "min_labels": 100})
    engine.change_roles(
        "reg", {"champion": "v1", "previous": None, "challenger": "v2"}, actor="t", reason="t"
    )
    rt = engine.runtime("reg")
    learn_regression(engine, rows[100:300])
    Worker(engine).check_gates(rt)
    assert rt.roles == {"champion": "v1"}
    assert engine.role_history("reg")[-1]["reason"].startswith(
        "challenger rejected: reject: the challenger is significantly worse"
    )
    engine.close()


def test_regression_retrain_trigger_watches_the_recent_mae(url):
    engine = regression_engine(url, retrain={"every_labels": 100, "cooldown_s": 0})
    worker = Worker(engine)
    rt = engine.runtime("reg")
    learn_regression(engine, regression_rows(1000, seed=4))
    assert worker.check_triggers(rt) is None  # a stationary stream: the MAE did not move
    learn_regression(engine, regression_rows(250, seed=5, shift=20.0))  # the concept moved
    served = rt.champion.metrics.served
    assert served.recent_mae > served.mae
    job = worker.check_triggers(rt)
    assert job is not None
    assert "recent mean absolute error" in job.params["reason"]
    assert "rose above the long-run" in job.params["reason"]
    engine.close()


def scorecard_engine(url, **model):
    """The engine of ``onlearn worker``: scorecards instead of models."""
    from onlearn.keys import resolve_secret
    from onlearn.store import open_store

    settings = phishing_settings(url, **model)
    eng = Engine(
        settings, open_store(url), secret=resolve_secret("test", url), clock=Clock(), learns=False
    )
    return eng.start()


def test_the_worker_process_decides_on_scorecards_as_on_live_states_and_snapshots_by_replay(url):
    """Oracle: a worker that holds no model (the worker process) takes the decisions a worker on
    live states takes, from the answers stored in the label events; its snapshots equal the
    serving process's live states."""
    turncoat = {"factory": "tests.core.factories:turncoat", "flip_after": 700}
    model = {
        "rollout": {"policy": "auto", "min_labels": 100, "alpha": 0.05, "margin": 0.0},
        "pipeline": MAJORITY,
        "refit": {"candidates": [turncoat]},
    }
    server = engine_for(url, **model)
    learn(server, STREAM[:300])
    cards = scorecard_engine(url, **model)
    worker = Worker(cards)
    worker.snapshotter.keep = 1
    rt, served = cards.runtime("phishing"), server.runtime("phishing")

    def no_models():
        return all(state.estimator is None for state in rt.states.values())

    def same_scores():
        cards.catch_up(rt)
        assert rt.seq == served.seq
        for version, state in served.states.items():
            card = rt.states[version]
            assert card.metrics.to_dict() == state.metrics.to_dict()
            assert {v: p.to_dict() for v, p in card.paired.items()} == {
                v: p.to_dict() for v, p in state.paired.items()
            }

    assert no_models()
    same_scores()
    # The refit trains a full model (from the champion's snapshot and replay), as before.
    v2 = refit_now(cards, worker, candidates=["turncoat"]).result["registered"]
    server.catch_up(served)
    assert served.roles == rt.roles == {"champion": "v1", "challenger": v2} and no_models()
    learn(server, STREAM[300:450])
    same_scores()
    worker.check_gates(rt)  # promotes on the scorecards' paired counts
    server.catch_up(served)
    assert served.roles == {"champion": v2, "previous": "v1"}
    learn(server, STREAM[450:900])  # the challenger turns at 700 labels
    same_scores()
    worker.check_gates(rt)
    server.catch_up(served)
    assert served.roles == {"champion": "v1"} and no_models()
    learn(server, STREAM[900:950])
    same_scores()
    assert rt.states["v1"].unscored == 0  # every label had stored answers

    # Snapshots by replay equal the live state, the first from the store's newest snapshot, the
    # next from the full state the snapshotter kept (keep=1: only the last one).
    for rows in (STREAM[950:1000], STREAM[1000:1100]):
        learn(server, rows)
        cards.catch_up(rt)
        written = worker.write_snapshots(rt)
        assert written == {"v1": served.seq}
        assert worker.snapshotter.held() == [("phishing", "v1")]
        snapshot = server.store.registry.latest_snapshot("phishing", "v1")
        from onlearn.snapshots import load_state

        state = load_state(snapshot, server.secret)
        assert state.seq == served.seq
        assert [state.estimator.predict_proba_one(x) for x, _ in STREAM[:40]] == probe(server)
        assert state.metrics.to_dict() == served.states["v1"].metrics.to_dict()
    # A graceful stop of the worker writes no snapshot of its scorecards.
    learn(server, STREAM[1100:1120])
    cards.catch_up(rt)
    cards.close()
    assert server.store.registry.latest_snapshot_seq("phishing", "v1") == 1100 + 3
    server.close()
