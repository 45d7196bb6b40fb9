"""Active learning through the engine: the sampler picks, the queue holds, labels teach."""

from __future__ import annotations

import asyncio

import pytest

from onlearn.engine import Engine
from onlearn.errors import (
    ActiveLearningOff,
    LeaseConflict,
    QueueItemGone,
    SchemaViolation,
    UnknownQueueItem,
)
from tests.core.conftest import Clock, phishing_settings, phishing_stream


def active_engine(clock=None, **active):
    table = {"budget": 0.5, "window": 100, "evaluation_rate": 0.1, "lease_s": 30, **active}
    settings = phishing_settings("memory://", active=table)
    from onlearn.store import open_store

    return Engine(settings, open_store("memory://"), secret=b"k", clock=clock or Clock())


def predict_some(engine, n=100):
    answers = [engine.predict_one("phishing", x) for x, _ in phishing_stream(n)]
    engine._records.flush()  # the writer thread queues what the sampler picked
    return answers


def test_the_sampler_picks_and_the_queue_holds_them():
    with active_engine() as engine:
        answers = predict_some(engine)
        queued = [a for a in answers if a.queued]
        assert queued and len(queued) < len(answers)
        stats = engine.labelling.stats("phishing")
        # Identical feature vectors are queued once.
        assert stats["pushed"] + stats["duplicates"] == len(queued)
        assert stats["depth"] == stats["pushed"]
        assert stats["budget"]["asked"] <= len(answers)


def test_claim_label_twice_and_the_label_is_human_feedback():
    with active_engine() as engine:
        predict_some(engine)
        (item,) = engine.labelling.claim("phishing", limit=1, labeller="ann")
        assert item["claim_id"] and item["lease_expires_at"] == engine.clock() + 30
        first = engine.labelling.label("phishing", item["item_id"], True, claim_id=item["claim_id"])
        again = engine.labelling.label(
            "phishing", item["item_id"], False, claim_id=item["claim_id"]
        )
        assert first == again == {"seq": 1, "version": "v1", "durable": True, "applied": True}
        (event,) = engine.store.log.read("phishing", 0)
        assert event.payload["source"] == "human" and event.payload["labeller"] == "ann"
        assert event.payload["prediction_id"] == item["prediction_id"]
        assert event.payload["sampled"] == item["reason"]
        assert engine.runtime("phishing").labels_applied == 1
        stats = engine.labelling.stats("phishing")
        assert stats["labelled"] == 1 and stats["claimed"] == 0


def test_a_label_after_the_lease_expired_and_another_claimed_is_a_conflict():
    clock = Clock()
    with active_engine(clock) as engine:
        predict_some(engine, 40)
        (mine,) = engine.labelling.claim("phishing", limit=1, labeller="ann", lease_s=10)
        clock.now += 11
        theirs = engine.labelling.claim("phishing", limit=50, labeller="bob")
        assert mine["item_id"] in [i["item_id"] for i in theirs]
        with pytest.raises(LeaseConflict, match="someone else"):
            engine.labelling.label("phishing", mine["item_id"], True, claim_id=mine["claim_id"])
        assert engine.store.log.head("phishing") == 0
        assert engine.labelling.stats("phishing")["expired"] == 1


def test_a_late_label_is_accepted_when_nobody_claimed_the_item_since():
    clock = Clock()
    with active_engine(clock) as engine:
        predict_some(engine, 40)
        (mine,) = engine.labelling.claim("phishing", limit=1, lease_s=10)
        clock.now += 60
        result = engine.labelling.label(
            "phishing", mine["item_id"], False, claim_id=mine["claim_id"]
        )
        assert result["seq"] == 1


def test_skip_returns_the_item_until_max_skips():
    with active_engine(max_skips=2) as engine:
        predict_some(engine, 40)
        (item,) = engine.labelling.claim("phishing", limit=1)
        assert (
            engine.labelling.skip("phishing", item["item_id"], claim_id=item["claim_id"])["state"]
            == "queued"
        )
        again = [
            i
            for i in engine.labelling.claim("phishing", limit=100)
            if i["item_id"] == item["item_id"]
        ]
        assert (
            engine.labelling.skip("phishing", item["item_id"], claim_id=again[0]["claim_id"])[
                "state"
            ]
            == "skipped"
        )
        with pytest.raises(QueueItemGone):
            engine.labelling.label("phishing", item["item_id"], True)


def test_claim_re_ranks_with_the_current_model():
    """Cases the model has since learned to answer confidently drop below the unsure ones."""
    with active_engine(budget=1.0, evaluation_rate=0.0) as engine:
        stream = list(phishing_stream(300))
        for x, _ in stream[:60]:
            engine.predict_one("phishing", x)  # nothing learned yet: everything is uncertain
        engine._records.flush()
        from onlearn.engine import FeedbackItem

        for x, y in stream[60:]:
            engine.feedback_one("phishing", FeedbackItem(y, features=x))
        queued = engine.store.queue.peek("phishing", 1000)
        assert {i.priority for i in queued} == {1.0}
        claimed = engine.labelling.claim("phishing", limit=5)
        pool = engine.store.queue.peek("phishing", 1000)
        # The pool was re-scored: priorities now spread below 1, and each claimed item is at
        # least as uncertain as everything left in the re-ranked part of the pool.
        rescored = [i.priority for i in pool if i.priority < 1.0]
        assert rescored
        assert min(c["uncertainty"] for c in claimed) >= max(rescored)


def test_bad_claims_and_unknown_items():
    with active_engine() as engine:
        with pytest.raises(SchemaViolation) as caught:
            engine.labelling.claim("phishing", limit=0, lease_s=-1)
        assert {(e.loc, e.rule) for e in caught.value.errors} == {
            (("limit",), "range"),
            (("lease_s",), "range"),
        }
        with pytest.raises(UnknownQueueItem):
            engine.labelling.label("phishing", "nope", True)
        predict_some(engine, 30)
        (item,) = engine.labelling.claim("phishing")
        with pytest.raises(SchemaViolation):
            engine.labelling.label("phishing", item["item_id"], "maybe", claim_id=item["claim_id"])


def test_a_model_without_active_learning_says_how_to_turn_it_on():
    with Engine.from_settings(phishing_settings("memory://")) as engine:
        assert engine.predict_one("phishing", next(phishing_stream())[0]).queued is False
        with pytest.raises(ActiveLearningOff, match=r"\[models.phishing.active\]"):
            engine.labelling.claim("phishing")


def test_a_regression_model_has_no_queue_and_is_not_told_to_add_one():
    # Its config refuses an active table: the answer says why there is none instead.
    settings = phishing_settings(
        "memory://", task="regression", classes=None, pipeline={"name": "linear_regression"}
    )
    with Engine.from_settings(settings) as engine:
        for ask in (engine.labelling.claim, engine.labelling.stats):
            with pytest.raises(ActiveLearningOff) as caught:
                ask("phishing")
            assert "regression model" in str(caught.value)
            assert "classification models only" in str(caught.value)
            assert "[models.phishing.active]" not in str(caught.value)


def test_random_slice_accuracy_is_reported_apart_from_queried_accuracy():
    with active_engine(budget=0.3, evaluation_rate=0.3) as engine:
        truth = {}
        for x, y in phishing_stream(200):
            truth[engine.predict_one("phishing", x).prediction_id] = y
        engine._records.flush()

        async def label_all():
            while items := engine.labelling.claim("phishing", limit=20):
                for item in items:
                    await engine.labelling.label_async(
                        "phishing",
                        item["item_id"],
                        truth[item["prediction_id"]],
                        claim_id=item["claim_id"],
                    )

        asyncio.run(label_all())
        stats = engine.labelling.stats("phishing")
        assert stats["labels_random_slice"] > 0 and stats["labels_queried"] > 0
        assert stats["labels_random_slice"] + stats["labels_queried"] == stats["labelled"]
        assert 0 <= stats["accuracy_random_slice"] <= 1 and 0 <= stats["accuracy_queried"] <= 1
