"""Active learning through the engine: the sampler picks, the queue holds, labels teach."""

from __future__ import annotations

import asyncio
import time

import pytest

from onlearn.engine import Engine
from onlearn.errors import (
    ActiveLearningOff,
    LabelConflict,
    LeaseConflict,
    QueueItemGone,
    SchemaViolation,
    UnknownQueueItem,
)
from onlearn.records import FeedbackItem
from onlearn.store import open_store
from tests.core.conftest import Clock, phishing_settings, phishing_stream


def active_engine(clock=None, url="memory://", **active):
    # No cold-start allowance: a fresh model would be asked about its first 100 predictions.
    table = {
        "budget": 0.5,
        "window": 100,
        "cold_start": 0,
        "evaluation_rate": 0.1,
        "lease_s": 30,
        **active,
    }
    settings = phishing_settings(url, active=table)
    return Engine(settings, open_store(url), secret=b"k", clock=clock or Clock())


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
        again = engine.labelling.label("phishing", item["item_id"], True, claim_id=item["claim_id"])
        assert first == again == {"seq": 1, "version": "v1", "durable": True, "applied": True}
        # A different label over a person's is not answered as used (issue 13).
        with pytest.raises(LabelConflict):
            engine.labelling.label("phishing", item["item_id"], False, claim_id=item["claim_id"])
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


def test_a_labelled_prediction_leaves_the_queue(store_url):
    """Issue 13, section 1: an app (or human) label by feedback closes the prediction's item,
    a weak one leaves it claimable, and a person's label over weak or app is a correction,
    also when the app label commits after the claim."""
    with active_engine(url=store_url, budget=0.9) as engine:
        queued = [
            a.prediction_id
            for a in predict_some(engine, 60)
            if a.queued and engine.store.queue.get("phishing", a.prediction_id) is not None
        ]
        by_app, by_weak, raced = queued[:3]

        def feedback(pid, label, source):
            item = FeedbackItem(label, prediction_id=pid, source=source, labeller=f"{source}-1")
            return engine.feedback_one("phishing", item)

        app_seq = feedback(by_app, True, "app").seq
        feedback(by_weak, True, "weak")
        stats = engine.labelling.stats("phishing")
        assert stats["answered_elsewhere"] == 1 and stats["depth"] == len(queued) - 1
        closed = engine.store.queue.get("phishing", by_app)
        assert closed.state.value == "done" and closed.result["seq"] == app_seq
        assert closed.result["answered_elsewhere"] is True and closed.result["source"] == "app"

        claimed = {i["item_id"]: i for i in engine.labelling.claim("phishing", limit=50)}
        assert by_app not in claimed, "an app-labelled prediction is never handed to a person"
        assert by_weak in claimed, "a weak label leaves the item claimable"
        weak = claimed[by_weak]
        answer = engine.labelling.label("phishing", by_weak, False, claim_id=weak["claim_id"])
        assert answer["correction"] is True, "a person's label over a weak one corrects it"
        # The app's label commits after the claim: the person's label is then a correction too,
        # never dropped with a 200, and its item stays closed.
        feedback(raced, True, "app")
        assert engine.store.queue.get("phishing", raced).result["answered_elsewhere"] is True
        late = engine.labelling.label("phishing", raced, False, claim_id=claimed[raced]["claim_id"])
        assert late["correction"] is True and late["applied"] is True
        events = {e.seq: e for e in engine.store.log.read("phishing", 0)}
        assert events[late["seq"]].payload["previous_source"] == "app"
        assert events[answer["seq"]].payload["previous_label"] is True
        # The same label again is idempotent; a different one over a person's is a 409.
        again = engine.labelling.label(
            "phishing", raced, False, claim_id=claimed[raced]["claim_id"]
        )
        assert again["seq"] == late["seq"]
        with pytest.raises(LabelConflict) as refused:
            engine.labelling.label("phishing", raced, True, claim_id=claimed[raced]["claim_id"])
        assert refused.value.recorded["seq"] == late["seq"]
        assert refused.value.recorded["source"] == "human"
        stats = engine.labelling.stats("phishing")
        assert stats["answered_elsewhere"] == 2 and stats["labelled"] == 1


def test_a_label_without_claim_id_does_not_take_an_item_someone_holds():
    clock = Clock()
    with active_engine(clock) as engine:
        predict_some(engine, 40)
        (held,) = engine.labelling.claim("phishing", limit=1, labeller="ann", lease_s=10)
        for labeller in (None, "bob"):
            with pytest.raises(LeaseConflict, match="someone else.*claim_id"):
                engine.labelling.label("phishing", held["item_id"], True, labeller=labeller)
        with pytest.raises(LeaseConflict, match="not skipped"):
            engine.labelling.skip("phishing", held["item_id"])
        assert engine.store.log.head("phishing") == 0, "a 409 label is not in the log"
        clock.now += 10  # ann's lease ran out and nobody claimed the item: anyone may label it
        result = engine.labelling.label("phishing", held["item_id"], False, labeller="bob")
        assert result == {"seq": 1, "version": "v1", "durable": True, "applied": True}


def test_a_queue_label_is_learned_here_sync_and_async():
    with active_engine() as engine:
        predict_some(engine, 40)
        first, second = engine.labelling.claim("phishing", limit=2, labeller="ann")
        rt = engine.runtime("phishing")
        done = engine.labelling.label(
            "phishing", first["item_id"], True, claim_id=first["claim_id"]
        )
        assert done["applied"] and rt.seq == done["seq"] == 1 and rt.labels_applied == 1
        later = asyncio.run(
            engine.labelling.label_async(
                "phishing", second["item_id"], False, claim_id=second["claim_id"]
            )
        )
        assert later == {"seq": 2, "version": "v1", "durable": True, "applied": True}
        assert rt.seq == 2 and rt.labels_applied == 2
        (event,) = engine.store.log.read("phishing", 1)
        assert event.payload["label"] is False and event.payload["labeller"] == "ann"


def test_skip_passes_the_item_over_for_its_skipper_and_release_gives_it_to_anyone():
    with active_engine(max_skips=3) as engine:
        predict_some(engine, 40)
        (item,) = engine.labelling.claim("phishing", limit=1, labeller="ann")
        skipped = engine.labelling.skip("phishing", item["item_id"], claim_id=item["claim_id"])
        assert skipped == {"item_id": item["item_id"], "state": "queued", "skips": 1}
        anns = engine.labelling.claim("phishing", limit=100, labeller="ann")
        assert anns and item["item_id"] not in [i["item_id"] for i in anns]
        (bobs,) = engine.labelling.claim("phishing", limit=1, labeller="bob")
        assert bobs["item_id"] == item["item_id"], "others still get it, first"
        released = engine.labelling.release("phishing", bobs["item_id"], claim_id=bobs["claim_id"])
        assert released == {"item_id": item["item_id"], "state": "queued"}
        with pytest.raises(LeaseConflict, match="not released"):
            engine.labelling.release("phishing", bobs["item_id"], claim_id="f00d")
        with pytest.raises(UnknownQueueItem):
            engine.labelling.release("phishing", "nope", claim_id="f00d")
        stats = engine.labelling.stats("phishing")
        assert (stats["released"], stats["skipped"]) == (1, 1)


def test_the_same_input_is_asked_again_once_its_item_is_labelled():
    """De-duplication holds only against items still waiting: a stream with few distinct inputs
    (or a concept change) gets the same input asked again after it was answered."""
    with active_engine(budget=1.0, evaluation_rate=1.0) as engine:
        x, _ = next(iter(phishing_stream(1)))
        asked = engine.predict_one("phishing", x)
        again = engine.predict_one("phishing", x)
        engine._records.flush()
        assert asked.queued and again.queued
        stats = engine.labelling.stats("phishing")
        assert (stats["pushed"], stats["duplicates"]) == (1, 1), "one waiting item per input"
        (item,) = engine.labelling.claim("phishing", limit=5)
        engine.labelling.label("phishing", item["item_id"], True, claim_id=item["claim_id"])
        later = engine.predict_one("phishing", x)
        engine._records.flush()
        assert later.queued
        assert engine.labelling.stats("phishing")["pushed"] == 2, "asked again after its label"
        (back,) = engine.labelling.claim("phishing", limit=5)
        assert back["item_id"] == later.prediction_id


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_a_queue_label_on_a_shared_store_is_learned_by_every_process(backend, tmp_path, request):
    """The process that labels applies the event before answering; another process on the
    same store reads it from the log, as any other event."""
    url = (
        request.getfixturevalue("redis_url")
        if backend == "redis"
        else f"sqlite:///{tmp_path}/shared.db"
    )
    active = {"budget": 1.0, "window": 100, "evaluation_rate": 0.5, "lease_s": 30}
    settings = phishing_settings(url, engine={"poll_interval_ms": 10}, active=active)
    with Engine.from_settings(settings) as here, Engine.from_settings(settings) as there:
        predict_some(here, 20)
        (item,) = here.labelling.claim("phishing", limit=1, labeller="ann")
        answer = asyncio.run(
            here.labelling.label_async("phishing", item["item_id"], True, claim_id=item["claim_id"])
        )
        assert answer == {"seq": 1, "version": "v1", "durable": True, "applied": True}
        assert here.runtime("phishing").labels_applied == 1
        deadline = time.monotonic() + 10
        while there.runtime("phishing").seq < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert there.runtime("phishing").labels_applied == 1, "the other process learned it"
        stats = there.labelling.stats("phishing")
        assert (stats["labelled"], stats["claimed"]) == (1, 0)
