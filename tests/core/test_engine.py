"""The engine against real stores: oracle tests (engine == bare river on the same stream),
replay == live, idempotent feedback, delayed-label joins, and read-your-writes."""

from __future__ import annotations

import asyncio
import math
from concurrent.futures import ThreadPoolExecutor

import pytest
from sklearn import metrics as skm

from onlearn.engine import Engine, FeedbackItem
from onlearn.errors import (
    LabelConflict,
    PredictionExpired,
    SchemaViolation,
    UnknownModel,
    UnknownPrediction,
)
from onlearn.models import PipelineSpec, build_pipeline
from onlearn.schema import Schema
from onlearn.snapshots import advance_snapshot, fresh_state, replay, restore
from onlearn.store import open_store
from tests.core.conftest import PHISHING_FEATURES, Clock, phishing_settings, phishing_stream


def bare_pipeline():
    schema = Schema.from_config(PHISHING_FEATURES)
    return build_pipeline(
        PipelineSpec.from_config({"name": "logistic_regression"}),
        task="classification",
        numeric=schema.numeric,
        categorical=schema.categorical,
        classes=[True, False],  # as phishing_settings declares
    )


def test_engine_predicts_and_learns_exactly_like_bare_river():
    bare = bare_pipeline()
    with Engine.from_settings(phishing_settings("memory://")) as engine:
        for x, y in phishing_stream(300):
            p = engine.predict_one("phishing", x)
            assert p.proba == bare.predict_proba_one(x)
            result = engine.feedback_one("phishing", FeedbackItem(y, prediction_id=p.prediction_id))
            assert result.applied
            bare.learn_one(x, y)
        assert engine.runtime("phishing").seq == 300


def test_restart_restores_identical_predictions(sqlite_url):
    settings = phishing_settings(sqlite_url)
    probe = [x for x, _ in phishing_stream(50)]
    with Engine.from_settings(settings) as engine:
        for x, y in phishing_stream(400):
            engine.feedback_one("phishing", FeedbackItem(y, features=x))
        before = [engine.predict_one("phishing", x).proba for x in probe]
    with Engine.from_settings(settings) as engine:  # from the shutdown snapshot
        assert [engine.predict_one("phishing", x).proba for x in probe] == before


def test_replay_without_snapshot_equals_live_state(sqlite_url):
    settings = phishing_settings(sqlite_url)
    probe = [x for x, _ in phishing_stream(50)]
    engine = Engine.from_settings(settings).start()
    for x, y in phishing_stream(400):
        engine.feedback_one("phishing", FeedbackItem(y, features=x))
    before = [engine.predict_one("phishing", x).proba for x in probe]
    # Leave without the shutdown snapshot, as a crash would: only the log remains.
    engine._stopping.set()
    engine._committer.close()
    engine._records.close()
    engine.store.close()
    with Engine.from_settings(settings) as engine:
        assert engine.store.registry.latest_snapshot("phishing", "v1") is None
        assert [engine.predict_one("phishing", x).proba for x in probe] == before


def test_snapshot_plus_tail_equals_full_replay(sqlite_url):
    settings = phishing_settings(sqlite_url)
    with Engine.from_settings(settings) as engine:
        stream = list(phishing_stream(300))
        for x, y in stream[:200]:
            engine.feedback_one("phishing", FeedbackItem(y, features=x))
        info = engine.store.registry.get_version("phishing", "v1")
        snapshot = advance_snapshot(engine.store, info, engine.secret)
        assert snapshot.seq == 200
        for x, y in stream[200:]:
            engine.feedback_one("phishing", FeedbackItem(y, features=x))
        from_snapshot = restore(engine.store, info, engine.secret)
        full = replay(
            engine.store,
            "phishing",
            engine.runtime("phishing").schema,
            fresh_state(info, engine.secret),
        )
        live = engine.runtime("phishing").champion
        assert from_snapshot.seq == full.seq == live.seq == 300
        for x, _ in stream[:50]:
            expected = live.estimator.predict_proba_one(x)
            assert from_snapshot.estimator.predict_proba_one(x) == expected
            assert full.estimator.predict_proba_one(x) == expected
        assert from_snapshot.metrics.to_dict() == full.metrics.to_dict() == live.metrics.to_dict()


def test_duplicate_feedback_returns_the_same_seq_and_is_applied_once():
    with Engine.from_settings(phishing_settings("memory://")) as engine:
        x, _ = next(phishing_stream())
        p = engine.predict_one("phishing", x)
        first = engine.feedback_one("phishing", FeedbackItem(True, prediction_id=p.prediction_id))
        again = engine.feedback_one("phishing", FeedbackItem(True, prediction_id=p.prediction_id))
        assert first.seq == again.seq == 1
        # A different label is not answered as if it were used (issue 13).
        with pytest.raises(LabelConflict) as refused:
            engine.feedback_one("phishing", FeedbackItem(False, prediction_id=p.prediction_id))
        assert refused.value.recorded == {
            "label": True,
            "source": "app",
            "labeller": None,
            "seq": 1,
        }
        assert engine.runtime("phishing").labels_applied == 1
        inline = FeedbackItem(True, features=x, event_id="abc")
        assert (
            engine.feedback_one("phishing", inline).seq
            == engine.feedback_one("phishing", inline).seq
        )


def test_unknown_and_expired_prediction_ids():
    clock = Clock()
    settings = phishing_settings("memory://", prediction_ttl_s=60)
    with Engine(settings, open_store("memory://"), secret=b"k", clock=clock) as engine:
        x, _ = next(phishing_stream())
        p = engine.predict_one("phishing", x)
        with pytest.raises(UnknownPrediction, match="inline features"):
            engine.feedback_one("phishing", FeedbackItem(True, prediction_id="nope"))
        with pytest.raises(UnknownPrediction):
            engine.feedback_one(
                "phishing",
                FeedbackItem(
                    True,
                    prediction_id=p.prediction_id[:-1]
                    + ("1" if p.prediction_id[-1] == "0" else "0"),
                ),
            )
        engine._records.flush()
        clock.now += 61
        engine.store.predictions.purge_expired(clock.now)
        with pytest.raises(PredictionExpired, match="send the label with inline features"):
            engine.feedback_one("phishing", FeedbackItem(True, prediction_id=p.prediction_id))
        # With inline features as a fallback, the expired id is no error.
        result = engine.feedback_one(
            "phishing", FeedbackItem(True, prediction_id=p.prediction_id, features=x)
        )
        assert result.applied


def test_a_record_not_yet_written_is_joined_from_memory():
    with Engine.from_settings(phishing_settings("memory://")) as engine:
        engine._records.flush_interval_s = 3600  # nothing reaches the store during this test
        x, _ = next(phishing_stream())
        p = engine.predict_one("phishing", x)
        assert (
            engine.feedback_one("phishing", FeedbackItem(True, prediction_id=p.prediction_id)).seq
            == 1
        )


@pytest.mark.parametrize(
    ("item", "loc", "rule"),
    [
        (FeedbackItem([1]), ("label",), "type"),
        (FeedbackItem(None), ("label",), "type"),
        (FeedbackItem(1.5), ("label",), "type"),
        (FeedbackItem("yes"), ("label",), "allowed"),
        (FeedbackItem(1), ("label",), "allowed"),  # 1 is not True: labels keep their type
        (FeedbackItem(True, source="robot"), ("source",), "enum"),
        (FeedbackItem(True), (), "missing"),
        (FeedbackItem(True, features={"https": "x"}), ("features", "https"), "type"),
    ],
)
def test_bad_feedback_names_the_field_and_the_rule(item, loc, rule):
    with Engine.from_settings(phishing_settings("memory://")) as engine:
        with pytest.raises(SchemaViolation) as caught:
            engine.feedback_one("phishing", item)
        assert (loc, rule) in [(e.loc, e.rule) for e in caught.value.errors]
        assert engine.store.log.head("phishing") == 0


def test_unknown_model():
    with Engine.from_settings(phishing_settings("memory://")) as engine:
        with pytest.raises(UnknownModel, match="served models: phishing"):
            engine.predict_one("nope", {})


def test_predict_many_names_the_row():
    with Engine.from_settings(phishing_settings("memory://")) as engine:
        rows = [x for x, _ in phishing_stream(3)]
        rows[2] = {**rows[2], "https": math.inf}
        with pytest.raises(SchemaViolation) as caught:
            engine.predict_many("phishing", rows)
        assert [(e.loc, e.rule) for e in caught.value.errors] == [((2, "https"), "finite")]


def test_feedback_many_reports_lookup_errors_per_item():
    with Engine.from_settings(phishing_settings("memory://")) as engine:
        x, _ = next(phishing_stream())
        p = engine.predict_one("phishing", x)
        results = engine.feedback_many(
            "phishing",
            [
                FeedbackItem(True, prediction_id=p.prediction_id),
                FeedbackItem(True, prediction_id="unknown"),
                FeedbackItem(False, features=x),
            ],
        )
        assert [r.seq for r in results] == [1, None, 2]
        assert isinstance(results[1].error, UnknownPrediction)


def test_metrics_are_computed_from_the_stored_predictions():
    """Oracle: the engine's prequential metrics equal scikit-learn's on what predict answered."""
    with Engine.from_settings(phishing_settings("memory://")) as engine:
        y_true, y_pred, p_true = [], [], []
        for x, y in phishing_stream(500):
            p = engine.predict_one("phishing", x)
            engine.feedback_one("phishing", FeedbackItem(y, prediction_id=p.prediction_id))
            y_true.append(y)
            y_pred.append(p.label)
            p_true.append(min(max(p.proba.get(True, 0.0) if p.proba else 0.0, 1e-15), 1 - 1e-15))
        m = engine.metrics("phishing")["versions"]["v1"]
        assert m["n"] == 500
        # The first prediction (nothing learned yet) has no label: wrong for accuracy, and left
        # out of macro F1 rather than counted as a class of its own.
        assert y_pred[0] is None
        assert m["accuracy"] == pytest.approx(
            sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / 500
        )
        assert m["log_loss"] == pytest.approx(
            skm.log_loss(y_true, p_true, labels=[False, True]), rel=1e-3
        )
        scored = [(t, p) for t, p in zip(y_true, y_pred, strict=True) if p is not None]
        assert m["macro_f1"] == pytest.approx(
            skm.f1_score(*zip(*scored, strict=True), average="macro")
        )
        assert m["scored_on_stored_prediction"] == 500
        assert m["labels_by_source"] == {"app": 500}


def test_concurrent_async_feedback_is_group_committed_and_equals_a_serial_replay(sqlite_url):
    settings = phishing_settings(sqlite_url)
    stream = list(phishing_stream(400))

    async def send_all(engine):
        ids = [engine.predict_one("phishing", x).prediction_id for x, _ in stream]
        return await asyncio.gather(
            *(
                engine.feedback_one_async("phishing", FeedbackItem(y, prediction_id=pid))
                for pid, (_, y) in zip(ids, stream, strict=True)
            )
        )

    with Engine.from_settings(settings) as engine:
        results = asyncio.run(send_all(engine))
        assert sorted(r.seq for r in results) == list(range(1, 401))
        assert all(r.applied for r in results)
        assert engine._committer.batches < 400  # concurrent calls shared commits
        live = engine.runtime("phishing").champion
        probe = [x for x, _ in stream[:30]]
        live_answers = [live.estimator.predict_proba_one(x) for x in probe]
        info = engine.store.registry.get_version("phishing", "v1")
        serial = replay(
            engine.store,
            "phishing",
            engine.runtime("phishing").schema,
            fresh_state(info, engine.secret),
        )
        assert [serial.estimator.predict_proba_one(x) for x in probe] == live_answers


def test_sync_feedback_goes_through_the_group_commit_with_the_same_answers(sqlite_url):
    # One path to durability for the library and the server: the sync calls are counted by the
    # committer, and threads calling at once share its commits.
    stream = list(phishing_stream(200))
    with Engine.from_settings(phishing_settings(sqlite_url)) as engine:
        ids = [engine.predict_one("phishing", x).prediction_id for x, _ in stream]
        items = [
            FeedbackItem(y, prediction_id=pid) for pid, (_, y) in zip(ids, stream, strict=True)
        ]
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda item: engine.feedback_one("phishing", item), items))
        assert sorted(r.seq for r in results) == list(range(1, 201))
        assert all(r.applied and r.version == "v1" for r in results)
        many = engine.feedback_many("phishing", items[:50])  # sent again: the same seqs
        assert [r.seq for r in many] == [r.seq for r in results[:50]]
        commits = engine.stats()["log_commits"]
        assert commits["events"] == 250 and commits["pending"] == 0
        assert engine.runtime("phishing").labels_applied == 200


def test_predict_many_answers_what_predict_one_answers():
    with Engine.from_settings(phishing_settings("memory://")) as engine:
        stream = list(phishing_stream(300))
        for x, y in stream[:200]:
            engine.feedback_one("phishing", FeedbackItem(y, features=x))
        rows = [x for x, _ in stream[200:]]
        batch = engine.predict_many("phishing", rows)
        single = [engine.predict_one("phishing", x) for x in rows]
        assert [(p.label, p.proba, p.uncertainty) for p in batch] == [
            (p.label, p.proba, p.uncertainty) for p in single
        ]
        assert len({p.prediction_id for p in batch + single}) == 200


def test_a_log_that_ends_before_what_a_model_applied_fails_readiness(redis_url):
    # Restoring an older copy of the store under a running server: new labels would reuse seqs
    # its model has applied, and its follower would skip them. It must say so and stop being
    # ready, for good: the log growing past the old seq again does not make it right.
    import redis

    settings = phishing_settings(redis_url)
    with Engine.from_settings(settings) as engine:
        for x, y in phishing_stream(20):
            engine.feedback_one("phishing", FeedbackItem(y, features=x))
        engine.check_log_position()
        assert engine.ready() == (True, "ok")
        applied = engine.runtimes["phishing"].seq
        client = redis.Redis.from_url(redis_url)
        try:
            client.flushdb()  # the "restore": an empty store
        finally:
            client.close()
        engine.check_log_position()
        ready, reason = engine.ready()
        assert not ready
        # An emptied store: its generation id is gone, which says more than its log's head
        # (an older copy, with the same id, is tests/core/test_generation.py's).
        assert "not the one this process opened" in reason and "Restart" in reason
        with Engine.from_settings(settings) as other:  # the log grows past the old seq again
            for x, y in phishing_stream(applied + 5):
                other.feedback_one("phishing", FeedbackItem(y, features=x))
        engine.check_log_position()
        assert engine.ready()[0] is False


def test_applied_is_said_only_of_labels_the_model_learned():
    # A label the champion's learn_one refuses is skipped (every replica skips it alike): it is
    # durable, but the answer must not say the model learned it, nor when it is sent again.
    settings = phishing_settings(
        "memory://", pipeline={"factory": "tests.core.factories:picky", "refuse": False}
    )
    with Engine.from_settings(settings) as engine:
        stream = list(phishing_stream(60))
        x_true = next(x for x, y in stream if y is True)
        x_false = next(x for x, y in stream if y is False)
        learned = engine.feedback_one("phishing", FeedbackItem(True, features=x_true))
        skipped = engine.feedback_one(
            "phishing", FeedbackItem(False, features=x_false, event_id="e1")
        )
        assert (learned.durable, learned.applied) == (True, True)
        assert (skipped.durable, skipped.applied) == (True, False)
        again = engine.feedback_one(
            "phishing", FeedbackItem(False, features=x_false, event_id="e1")
        )
        assert (again.seq, again.applied) == (skipped.seq, False), "the same seq, not learned"
        many = engine.feedback_many(
            "phishing",
            [FeedbackItem(True, features=x_true), FeedbackItem(False, features=x_false)],
        )
        assert [(r.durable, r.applied) for r in many] == [(True, True), (True, False)]
        # Without waiting: durable at once, applied only once learned.
        later = engine.feedback_one("phishing", FeedbackItem(True, features=x_true), wait=False)
        assert later.durable and later.to_dict()["durable"] is True
