"""Importance weights (issue 14 §1): the sampler's probability of asking, stored on the
prediction record, copied into the label event, and learned as the weight min(1/p, clip), live,
in a replay of the log and in refits.

Oracle tests: a strategy's stated probability against the frequency of its asks over many
independent draws from the same state; the live weighted model against a replay of its log;
weighted learning against the bare river model given the same weights."""

from __future__ import annotations

import copy
import dataclasses
import math
import pickle
import random

import numpy as np
import pytest
from river import linear_model, naive_bayes

from onlearn.active import sampler_from_config
from onlearn.active.strategies import (
    RandomizedVariableUncertainty,
    RandomSampling,
    Split,
    VariableUncertainty,
)
from onlearn.background.refit import _load
from onlearn.engine import Engine, FeedbackItem
from onlearn.errors import ConfigError
from onlearn.learner import LearnerState
from onlearn.models import PipelineSpec, build_pipeline
from onlearn.models.catalog import CATALOG
from onlearn.models.sklearn_adapter import sklearn_from_spec
from onlearn.records import Event, EventKind
from onlearn.schema import Schema
from onlearn.snapshots import fresh_state, replay
from onlearn.weights import event_weight, paced_trees, takes_pace, takes_weight
from tests.core.conftest import PHISHING_FEATURES, phishing_settings, phishing_stream

ACTIVE = {
    "strategy": "randomized_variable_uncertainty",
    "budget": 0.1,
    "window": 100,
    "importance_weights": True,
    "weight_clip": 20.0,
    "seed": 3,
}


def _settings(store_url: str, active: dict) -> object:
    return phishing_settings(store_url, active=active)


# --- the probability of asking -----------------------------------------------------------------


def _frequency(strategy, uncertainty: float, draws: int = 4000) -> float:
    """How often ``decide`` asks from the strategy's present state, over independent draws."""
    asked = 0
    frozen = pickle.dumps(strategy)
    for i in range(draws):
        twin = pickle.loads(frozen)
        twin._rng = random.Random(10_000 + i)
        asked += twin.decide(uncertainty)
    return asked / draws


@pytest.mark.parametrize(
    "make",
    [
        lambda: RandomSampling(budget=0.3, window=10),
        lambda: RandomizedVariableUncertainty(budget=0.5, window=10, delta=0.5, seed=1),
        lambda: Split(budget=0.5, window=10, random_share=0.2, seed=1),
    ],
    ids=["random", "randomized_variable_uncertainty", "split"],
)
@pytest.mark.parametrize("uncertainty", [0.05, 0.4, 0.9])
def test_ask_probability_is_the_frequency_of_asks(make, uncertainty):
    strategy = make()
    for u in (0.9, 0.1, 0.5):  # move the threshold somewhere
        strategy.decide(u)
    untouched = copy.deepcopy(strategy)
    p = strategy.ask_probability(uncertainty)
    after = copy.deepcopy(strategy)
    stream = [i / 50 for i in range(50)]
    assert [after.decide(u) for u in stream] == [untouched.decide(u) for u in stream], (
        "asking for p moves no state"
    )
    # 4000 Bernoulli draws: 4.5 standard deviations at most
    tolerance = 4.5 * math.sqrt(max(p * (1 - p), 1e-4) / 4000)
    assert abs(_frequency(strategy, uncertainty) - p) <= tolerance


def test_ask_probability_is_zero_while_the_budget_refuses():
    # No credit line: a plain cumulative budget of one ask per two predictions.
    strategy = RandomSampling(budget=0.5, window=2, seed=0, credit=0)
    for _ in range(1000):
        if not strategy._budget.can_spend:
            break
        assert strategy.ask_probability(0.5) == 0.5
        strategy.decide(0.5)
    else:
        raise AssertionError("the budget never refused in 1000 predictions")
    assert strategy.ask_probability(0.5) == 0.0  # the asks spent all that was earned


def test_the_decision_carries_p_only_when_weights_are_on_and_it_asks():
    table = {**ACTIVE, "evaluation_rate": 0.05, "window": 1000}
    weighted = sampler_from_config(table)
    plain = sampler_from_config({k: v for k, v in table.items() if k != "importance_weights"})
    twin = copy.deepcopy(weighted)
    rng = random.Random(5)
    for _ in range(2000):
        yes = rng.random()
        proba = {True: yes, False: 1 - yes}
        u = twin.uncertainty(proba)
        q = twin.strategy.ask_probability(u)
        twin.decide(proba)
        expected = max(1 - (1 - 0.05) * (1 - q), 1 / 20.0)
        d, e = weighted.decide(proba), plain.decide(proba)
        # weights change no decision, only add p to the asks
        assert (d.ask, d.reason, d.priority, d.uncertainty) == tuple(e[:4])
        assert e.p is None
        if d.ask:
            assert d.p == expected and 1 / 20.0 <= d.p <= 1.0
        else:
            assert d.p is None


def test_importance_weights_need_a_randomised_strategy():
    with pytest.raises(ConfigError, match="'importance_weights' needs a randomised strategy"):
        sampler_from_config({"strategy": "variable_uncertainty", "importance_weights": True})
    with pytest.raises(ConfigError, match="randomised strategy"):
        sampler_from_config({**ACTIVE, "delta": 0.0})
    with pytest.raises(ConfigError, match="randomised strategy"):
        sampler_from_config({"strategy": "split", "random_share": 0, "importance_weights": True})
    with pytest.raises(ConfigError, match=r"'weight_clip' must be a number in \[1, 1000\]"):
        sampler_from_config({**ACTIVE, "weight_clip": 0.5})
    for beyond in (1e6, float("inf"), float("nan")):
        with pytest.raises(ConfigError, match="'weight_clip' must be a number in"):
            sampler_from_config({**ACTIVE, "weight_clip": beyond})
    with pytest.raises(ConfigError, match="'importance_weights' must be true or false"):
        sampler_from_config({**ACTIVE, "importance_weights": "yes"})
    # through the model's config file: the table is named
    with pytest.raises(ConfigError, match=r"\[models.phishing.active\]: 'importance_weights'"):
        _settings("memory://", {"strategy": "fixed_uncertainty", "importance_weights": True})
    sampler = sampler_from_config(ACTIVE)
    assert sampler_from_config(sampler.to_config()).to_config() == sampler.to_config()
    assert sampler.to_config()["weight_clip"] == 20.0
    assert "importance_weights" not in sampler_from_config({"strategy": "random"}).to_config()
    assert VariableUncertainty().randomised is False


# --- which pipelines learn with a weight ------------------------------------------------------


def test_catalog_pipelines_that_take_a_weight_and_a_pace():
    """(takes_weight, takes_pace, paced_trees) of each catalog pipeline, with and without
    declared classes: the pace weight (onlearn/weights.py) goes to the linear models only, the
    paced split checks to the Hoeffding trees (not to a forest's)."""
    takes = {}
    for name, entry in CATALOG.items():
        classes = (True, False) if entry.task == "classification" else None
        for declared in {classes, None}:
            estimator = build_pipeline(
                PipelineSpec.from_config({"name": name}),
                task=entry.task,
                numeric=("a",),
                categorical=("c",),
                classes=declared,
            )
            ways = (takes_weight(estimator), takes_pace(estimator), bool(paced_trees(estimator)))
            takes.setdefault(name, set()).add(ways)
    assert takes == {
        "logistic_regression": {(True, True, False)},
        "hoeffding_tree": {(True, False, True)},
        "adaptive_random_forest": {(False, False, False)},
        "gaussian_naive_bayes": {(False, False, False)},
        "linear_regression": {(True, True, False)},
        "hoeffding_tree_regressor": {(True, False, True)},
        "adaptive_random_forest_regressor": {(False, False, False)},
    }
    assert not takes_weight(naive_bayes.GaussianNB())


def _label(x, y, seq, sample_p):
    payload = {"label": y, "features": x, "source": "human", "sample_p": sample_p}
    return Event(EventKind.LABEL, payload, 1.0, seq)


def test_a_label_is_learned_with_weight_one_over_p():
    """Through the pipeline (scaler, binary wrapper) the weight reaches river's logistic
    regression: the same floats as the bare model given the same weights."""
    schema = Schema.from_config(PHISHING_FEATURES)

    def pipeline():
        return build_pipeline(
            PipelineSpec.from_config({"name": "logistic_regression"}),
            task="classification",
            numeric=schema.numeric,
            categorical=schema.categorical,
            classes=[True, False],
        )

    state = LearnerState("v1", "classification", pipeline())
    unweighted = LearnerState("v1", "classification", pipeline())
    bare = pipeline()
    ps = [0.5, 0.05, None, 1.0, 0.2]
    for seq, (x, y) in enumerate(phishing_stream(200), start=1):
        p = ps[seq % len(ps)]
        x = schema.model_input(x)
        state.learn(_label(x, y, seq, p), x)
        unweighted.learn(_label(x, y, seq, None), x)
        bare.learn_one(x, y, w=event_weight({"sample_p": p}))
    weights = state.estimator.steps[list(state.estimator.steps)[-1]].classifier.weights
    bare_weights = bare.steps[list(bare.steps)[-1]].classifier.weights
    plain_weights = unweighted.estimator.steps[list(unweighted.estimator.steps)[-1]]
    assert weights == bare_weights
    assert weights != plain_weights.classifier.weights, "the weights changed what was learned"


# --- stored, copied, replayed ------------------------------------------------------------------


def test_p_goes_from_the_record_to_the_label_event_and_replay_equals_live(sqlite_url):
    settings = _settings(sqlite_url, ACTIVE)
    stream = list(phishing_stream(600))
    with Engine.from_settings(settings) as engine:
        rt = engine.runtime("phishing")
        asked = 0
        for x, y in stream:
            prediction = engine.predict_one("phishing", x)
            engine._records.flush()
            record = engine.store.predictions.get(prediction.prediction_id)
            if prediction.queued:
                asked += 1
                assert 1 / 20.0 <= record.sample_p <= 1.0
                result = engine.feedback_one(
                    "phishing",
                    FeedbackItem(y, prediction_id=prediction.prediction_id, source="human"),
                )
                assert result.applied
            else:
                assert record.sample_p is None
                if random.Random(prediction.prediction_id).random() < 0.05:  # an app label
                    engine.feedback_one(
                        "phishing", FeedbackItem(y, prediction_id=prediction.prediction_id)
                    )
        events = engine.store.log.read("phishing", after=0, limit=10_000)
        ps = [e.payload["sample_p"] for e in events]
        weighted = [p for p in ps if p is not None]
        assert asked == len(weighted) > 20 and len(ps) > len(weighted)
        assert len(set(weighted)) > 10 and max(weighted) < 1, "labels of many weights above 1"

        info = engine.store.registry.get_version("phishing", "v1")
        schema = rt.schema
        full = replay(engine.store, "phishing", schema, fresh_state(info, engine.secret))
        live = rt.champion
        assert full.seq == live.seq == len(events)

        def unweigh(event):
            return dataclasses.replace(event, payload={**event.payload, "sample_p": None})

        plain = replay(
            engine.store, "phishing", schema, fresh_state(info, engine.secret), rewrite=unweigh
        )
        probe = [schema.model_input(x) for x, _ in stream[:100]]
        expected = [live.estimator.predict_proba_one(x) for x in probe]
        assert [full.estimator.predict_proba_one(x) for x in probe] == expected
        assert [plain.estimator.predict_proba_one(x) for x in probe] != expected
        assert full.metrics.to_dict() == live.metrics.to_dict()


def test_refits_read_the_weights(sqlite_url):
    """A refit's rows carry 1 / sample_p; a scikit-learn batch candidate fits with them as
    sample_weight: the same coefficients as scikit-learn given those weights."""
    from sklearn.linear_model import LogisticRegression

    settings = _settings(sqlite_url, ACTIVE)
    with Engine.from_settings(settings) as engine:
        for i, (x, y) in enumerate(phishing_stream(300)):
            engine.feedback_one("phishing", FeedbackItem(y, features=x, event_id=str(i)))
        # Weighted events as a sampler would have left them (inline features have no record).
        rng = random.Random(1)
        events = [
            Event(
                EventKind.LABEL,
                {**e.payload, "sample_p": rng.choice([0.1, 0.5, 1.0])},
                e.at,
                key=f"w:{e.seq}",
            )
            for e in engine.store.log.read("phishing", after=0, limit=1000)
        ]
        engine.store.log.append("phishing", events)
        schema = engine.runtime("phishing").schema
        _, labelled, _, _ = _load(
            engine.store, "phishing", schema, engine.store.log.head("phishing"), None, lambda: None
        )
    assert [e.w for e in labelled] == [1.0] * 300 + [1 / e.payload["sample_p"] for e in events]
    spec = {"sklearn": "sklearn.linear_model:LogisticRegression", "incremental": False}
    model = sklearn_from_spec(spec, features=schema.numeric, classes=(True, False))
    model.fit_many([e.x for e in labelled], [e.y for e in labelled], [e.w for e in labelled])
    direct = LogisticRegression(random_state=42)
    direct.fit(
        model._matrix([e.x for e in labelled]),
        model._label_indices([e.y for e in labelled]),
        sample_weight=np.array([e.w for e in labelled]),
    )
    assert np.allclose(model._model.coef_, direct.coef_, rtol=0, atol=1e-12)
    unweighted = sklearn_from_spec(spec, features=schema.numeric, classes=(True, False))
    unweighted.fit_many([e.x for e in labelled], [e.y for e in labelled])
    assert not np.allclose(unweighted._model.coef_, direct.coef_)


def test_a_bare_river_model_without_a_weight_learns_each_label_once():
    """A model that takes no weight (naive Bayes) learns a weighted event as an unweighted one."""
    state = LearnerState("v1", "classification", naive_bayes.GaussianNB())
    bare = naive_bayes.GaussianNB()
    for seq, (x, y) in enumerate(phishing_stream(50), start=1):
        state.learn(_label(x, y, seq, 0.1), x)
        bare.learn_one(x, y)
    x = next(phishing_stream(1))[0]
    assert state.estimator.predict_proba_one(x) == bare.predict_proba_one(x)
    assert takes_weight(linear_model.LogisticRegression())


def test_a_label_through_the_queue_carries_the_records_p(store_url):
    active = {
        "strategy": "split",
        "random_share": 0.5,
        "budget": 0.3,
        "window": 50,
        "step": 0.2,  # the threshold falls fast below the confidences: asks at random too
        "importance_weights": True,
        "weight_clip": 5,
        "seed": 1,
        # No random evaluation slice (an active table's default is 0.01): its asks while the
        # budget refuses have p = 0.01, floored at 1 / weight_clip, below split's floor.
        "evaluation_rate": 0.0,
    }
    with Engine.from_settings(_settings(store_url, active)) as engine:
        stream = list(phishing_stream(400))
        for i, (x, y) in enumerate(stream[:200]):  # a model sure of some answers
            engine.feedback_one("phishing", FeedbackItem(y, features=x, event_id=str(i)))
        labels = {}
        for x, y in stream[200:]:
            prediction = engine.predict_one("phishing", x)
            labels[prediction.prediction_id] = y
        engine._records.flush()
        items = engine.labelling.claim("phishing", limit=100, labeller="ann")
        assert len(items) >= 20
        for item in items:
            engine.labelling.label(
                "phishing",
                item["item_id"],
                labels[item["prediction_id"]],
                claim_id=item["claim_id"],
            )
        events = engine.store.log.read("phishing", after=200, limit=1000)
        assert len(events) == len(items)
        for event in events:
            record = engine.store.predictions.get(event.payload["prediction_id"])
            assert event.payload["sample_p"] == record.sample_p
            assert 0.5 <= record.sample_p <= 1.0  # split's floor is its random share
        assert {e.payload["sample_p"] for e in events} == {0.5, 1.0}


def test_an_incremental_scikit_learn_candidate_learns_with_sample_weight():
    from sklearn.linear_model import SGDClassifier

    schema = Schema.from_config(PHISHING_FEATURES)
    rows = [(schema.model_input(x), y) for x, y in phishing_stream(300)]
    xs, ys = [x for x, _ in rows], [y for _, y in rows]
    ws = [random.Random(i).choice([1.0, 2.0, 10.0]) for i in range(len(rows))]
    spec = {
        "sklearn": "sklearn.linear_model:SGDClassifier",
        "params": {"loss": "log_loss"},
        "batch_size": 100,
    }
    model = sklearn_from_spec(spec, features=schema.numeric, classes=(True, False))
    model.learn_many(xs, ys, ws)
    direct = SGDClassifier(loss="log_loss", random_state=42)
    X, y = model._matrix(xs), model._label_indices(ys)
    for start in range(0, len(rows), 100):
        chunk = slice(start, start + 100)
        direct.partial_fit(X[chunk], y[chunk], classes=[0, 1], sample_weight=np.array(ws[chunk]))
    assert np.array_equal(model._model.coef_, direct.coef_)
    plain = sklearn_from_spec(spec, features=schema.numeric, classes=(True, False))
    plain.learn_many(xs, ys, [1.0] * len(xs))  # all ones: the unweighted call
    again = sklearn_from_spec(spec, features=schema.numeric, classes=(True, False))
    again.learn_many(xs, ys)
    assert np.array_equal(plain._model.coef_, again._model.coef_)
    assert not np.array_equal(plain._model.coef_, direct.coef_)


def test_a_refit_learns_the_weights_the_live_model_learned(sqlite_url):
    """A river candidate of the champion's spec, one pass: the live model's state at the end of
    the train split (weights included); a second pass learns each label with its weight again."""
    from onlearn.background.refit import refit

    settings = _settings(sqlite_url, ACTIVE)
    stream = list(phishing_stream(500))
    with Engine.from_settings(settings) as engine:
        for x, y in stream:
            prediction = engine.predict_one("phishing", x)
            if prediction.queued:
                engine.feedback_one(
                    "phishing", FeedbackItem(y, prediction_id=prediction.prediction_id)
                )
        rt = engine.runtime("phishing")
        info = engine.store.registry.get_version("phishing", "v1")

        def refit_once(passes):
            return refit(
                engine.store,
                "phishing",
                schema=rt.schema,
                task="classification",
                classes=(True, False),
                champion_state_at=None,
                candidates=[{"name": "logistic_regression"}],
                passes=passes,
                min_labels=10,
            )

        once, twice = refit_once(1), refit_once(2)
        upto = once.train_upto
        live_then = replay(
            engine.store, "phishing", rt.schema, fresh_state(info, engine.secret), upto=upto
        )
        probe = [rt.schema.model_input(x) for x, _ in stream[:50]]
        state = once.candidates[0].state
        assert [state.predict(x) for x in probe] == [live_then.predict(x) for x in probe]

        # The second pass, by hand: each train label once more, with its weight.
        events = [
            e for e in engine.store.log.read("phishing", after=0, limit=1000) if e.seq <= upto
        ]
        assert any(e.payload["sample_p"] < 1 for e in events)
        for e in events:
            x = rt.schema.model_input(e.payload["features"])
            live_then.estimator.learn_one(x, e.payload["label"], w=event_weight(e.payload))
        state = twice.candidates[0].state
        assert [state.predict(x) for x in probe] == [live_then.predict(x) for x in probe]
