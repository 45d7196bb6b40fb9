"""Pace weights (issue 14 §2): a label the budgeted strategy bought is learned by river's linear
models with the weight min(1 / budget, weight_clip), written into the label event by the feedback
path, so that live, replay and refit learn the same thing.

Oracle tests: the live model against the bare river pipeline given the same weights, and
against a replay of its own log; trees against the unweighted tree (bit for bit). Which catalog
pipelines take the pace: tests/core/test_importance_weights.py."""

from __future__ import annotations

import dataclasses

import pytest

from onlearn.active import sampler_from_config
from onlearn.active.sampler import Reason, Sampler
from onlearn.active.strategies import RandomizedVariableUncertainty, VariableUncertainty
from onlearn.background.refit import _load
from onlearn.engine import Engine, FeedbackItem
from onlearn.errors import ConfigError
from onlearn.learner import LearnerState
from onlearn.models import PipelineSpec, build_pipeline
from onlearn.records import Event, EventKind
from onlearn.schema import Schema
from onlearn.snapshots import fresh_state, replay
from onlearn.weights import label_weight, learn_weighted
from tests.core.conftest import PHISHING_FEATURES, phishing_settings, phishing_stream

# The default strategy; a random evaluation slice too, whose labels carry no pace. The measure
# is named: these streams were chosen (the trees split within them) with it.
ACTIVE = {"budget": 0.2, "window": 100, "evaluation_rate": 0.05, "seed": 5, "measure": "entropy"}


# --- the sampler's rule ------------------------------------------------------------------------


def test_the_pace_of_each_reason_and_config():
    sampler = sampler_from_config({"budget": 0.2})
    assert sampler.pace(Reason.UNCERTAIN) == sampler.pace("uncertain") == 5.0
    # The evaluation slice, a prediction never asked, anything a store may hold: no pace.
    for reason in (Reason.RANDOM, "random", None, "", "UNCERTAIN", 1, b"uncertain"):
        assert sampler.pace(reason) is None
    assert sampler_from_config({"budget": 0.001, "window": 5000}).pace("uncertain") == 10.0
    assert sampler_from_config({"budget": 0.01, "weight_clip": 50}).pace("uncertain") == 50.0
    assert sampler_from_config({"budget": 1.0}).pace("uncertain") == 1.0
    off = sampler_from_config({"budget": 0.2, "pace_weight": False})
    assert off.pace("uncertain") is None
    assert off.to_config()["pace_weight"] is False
    assert "pace_weight" not in sampler.to_config()  # the default, as steer's
    assert sampler_from_config(off.to_config()).to_config() == off.to_config()
    assert "pace_weight=False" in repr(off)
    # With importance weights 1 / p already counts the rate of asks: no pace on top.
    weighted = Sampler(RandomizedVariableUncertainty(budget=0.2), importance_weights=True)
    assert weighted.pace("uncertain") is None


@pytest.mark.parametrize("value", [1, "yes", None, 0.0])
def test_pace_weight_must_be_a_boolean(value):
    with pytest.raises(ConfigError, match="'pace_weight'"):
        sampler_from_config({"pace_weight": value})
    with pytest.raises(ConfigError, match="'pace_weight'"):
        Sampler(VariableUncertainty(), pace_weight=value)


def _label(x, y, seq, pace, sample_p=None):
    payload = {"label": y, "features": x, "source": "human", "pace": pace, "sample_p": sample_p}
    return Event(EventKind.LABEL, payload, 1.0, seq)


def _pipeline(name: str, schema: Schema, classes: tuple | None = (True, False)):
    return build_pipeline(
        PipelineSpec.from_config({"name": name}),
        task="classification",
        numeric=schema.numeric,
        categorical=schema.categorical,
        classes=classes,
    )


def test_a_linear_model_learns_with_the_pace_and_a_tree_checks_splits_at_it():
    """Through the scaler and the binary wrapper the pace reaches river's logistic regression
    (the same floats as the bare pipeline given the same weights); the tree learns every label
    once, checking for splits every grace_period / pace labels (the same tree as a bare one
    whose grace period is set so before each label); an importance weight wins over the pace
    as a weight, and the tree's grace period is the spec's again after each label."""
    schema = Schema.from_config(PHISHING_FEATURES)
    paces = [10.0, None, 2.5, "10", 0.5, 10.0, 4.0]  # a string, a weight below 1: no pace
    ps = [None, None, None, None, None, 0.5]
    linear = LearnerState("v1", "classification", _pipeline("logistic_regression", schema))
    bare = _pipeline("logistic_regression", schema)
    unpaced = _pipeline("logistic_regression", schema)
    tree = LearnerState("v1", "classification", _pipeline("hoeffding_tree", schema))
    bare_tree = _pipeline("hoeffding_tree", schema)
    unpaced_tree = _pipeline("hoeffding_tree", schema)
    grace = bare_tree["HoeffdingTreeClassifier"].grace_period
    for seq, (x, y) in enumerate(phishing_stream(), start=1):
        pace, p = paces[seq % len(paces)], ps[seq % len(ps)]
        x = schema.model_input(x)
        linear.learn(_label(x, y, seq, pace, p), x)
        tree.learn(_label(x, y, seq, pace, p), x)
        assert tree.estimator["HoeffdingTreeClassifier"].grace_period == grace
        real_pace = {None: 1.0, "10": 1.0, 0.5: 1.0}.get(pace, pace)
        expected = real_pace if p is None else 1 / p
        assert label_weight({"pace": pace, "sample_p": p}, paced=True) == expected
        bare.learn_one(x, y, w=expected)
        unpaced.learn_one(x, y)
        bare_tree["HoeffdingTreeClassifier"].grace_period = round(grace / real_pace)
        bare_tree.learn_one(x, y, **({"w": 1 / p} if p is not None else {}))
        unpaced_tree.learn_one(x, y, **({"w": 1 / p} if p is not None else {}))
    probe = [schema.model_input(x) for x, _ in phishing_stream(50)]
    answers = [linear.estimator.predict_proba_one(x) for x in probe]
    assert answers == [bare.predict_proba_one(x) for x in probe]
    assert answers != [unpaced.predict_proba_one(x) for x in probe], "the pace changed nothing"
    tree_answers = [tree.estimator.predict_proba_one(x) for x in probe]
    assert tree_answers == [bare_tree.predict_proba_one(x) for x in probe]
    assert tree.estimator["HoeffdingTreeClassifier"].n_nodes > 1, "the tree never split"
    assert tree_answers != [unpaced_tree.predict_proba_one(x) for x in probe], (
        "the pace changed nothing"
    )


def test_split_checks_at_the_pace_are_a_compute_throttle():
    """At pace 1 the paced tree is the plain tree; at pace 10 it is the tree whose grace period
    is a tenth. The split test still counts real labels: the paced tree splits at a check (a
    multiple of 20 labels), and no earlier than the tree that checks after every label."""
    schema = Schema.from_config(PHISHING_FEATURES)
    stream = [(schema.model_input(x), y) for x, y in phishing_stream()]
    plain, paced_1, paced_10, tenth, every_label = (
        _pipeline("hoeffding_tree", schema) for _ in range(5)
    )
    tenth["HoeffdingTreeClassifier"].grace_period = 20
    every_label["HoeffdingTreeClassifier"].grace_period = 1
    first_split = {}
    for n, (x, y) in enumerate(stream, start=1):
        plain.learn_one(x, y)
        learn_weighted(paced_1, x, y, 1.0, True, 1.0)
        learn_weighted(paced_10, x, y, 1.0, True, 10.0)
        tenth.learn_one(x, y)
        every_label.learn_one(x, y)
        for name, model in (("paced_10", paced_10), ("every_label", every_label)):
            if model["HoeffdingTreeClassifier"].n_nodes > 1:
                first_split.setdefault(name, n)
    probe = [x for x, _ in stream[:100]]
    assert [paced_1.predict_proba_one(x) for x in probe] == [
        plain.predict_proba_one(x) for x in probe
    ]
    assert [paced_10.predict_proba_one(x) for x in probe] == [
        tenth.predict_proba_one(x) for x in probe
    ]
    assert paced_10["HoeffdingTreeClassifier"].grace_period == 200
    assert set(first_split) == {"paced_10", "every_label"}
    assert first_split["paced_10"] % 20 == 0
    assert first_split["paced_10"] >= first_split["every_label"]


# --- written by the feedback path, replayed, refitted ------------------------------------------


# The tree: a loose split confidence and a short grace, so that it splits on the few hundred
# labels of the stream.
PIPELINES = {
    "linear": {"name": "logistic_regression"},
    "tree": {"name": "hoeffding_tree", "grace_period": 50, "delta": 0.3},
    "recovering_tree": {
        "name": "hoeffding_tree",
        "grace_period": 50,
        "delta": 0.3,
        "recover": True,
    },
}


@pytest.mark.parametrize("pipeline", PIPELINES.values(), ids=PIPELINES.keys())
def test_bought_labels_carry_the_pace_and_replay_equals_live(store_url, pipeline):
    """Labels of the strategy's asks, through the queue or straight: pace 1 / budget; labels of
    the evaluation slice, of predictions never asked and inline ones: none. A replay of the log
    is the live model; the same log without its paces is another model (the linear model's
    steps, the tree's split checks)."""
    stream = list(phishing_stream(700))
    settings = phishing_settings(store_url, active=ACTIVE, pipeline=pipeline)
    with Engine.from_settings(settings) as engine:
        rt = engine.runtime("phishing")
        for i, (x, y) in enumerate(stream[:50]):  # inline labels: no record, no pace
            engine.feedback_one("phishing", FeedbackItem(y, features=x, event_id=f"in{i}"))
        reasons, truth = {}, {}
        for i, (x, y) in enumerate(stream[50:]):
            prediction = engine.predict_one("phishing", x)
            reasons[prediction.prediction_id] = prediction.queued
            truth[prediction.prediction_id] = y
            if not prediction.queued and i % 7 == 0:  # an app's label of an unasked prediction
                engine.feedback_one(
                    "phishing", FeedbackItem(y, prediction_id=prediction.prediction_id)
                )
        engine._records.flush()
        items = []
        while batch := engine.labelling.claim("phishing", limit=100, labeller="ann"):
            items += batch
        assert len(items) > 50
        for n, item in enumerate(items):
            if n % 2:
                engine.labelling.label(
                    "phishing",
                    item["item_id"],
                    truth[item["prediction_id"]],
                    claim_id=item["claim_id"],
                )
            else:  # the same label sent by the app with the prediction id
                engine.feedback_one(
                    "phishing",
                    FeedbackItem(truth[item["prediction_id"]], prediction_id=item["prediction_id"]),
                )
        events = engine.store.log.read("phishing", after=0, limit=10_000)
        seen = {"uncertain": set(), "random": set(), None: set()}
        for event in events:
            pid = event.payload["prediction_id"]
            record = engine.store.predictions.get(pid) if pid else None
            seen[record.reason if record else None].add(event.payload["pace"])
        # The app labelled some predictions the strategy did not buy (inline, every 7th
        # unasked one, the slice's): the bought ones weigh less than 1 / budget. The slice's
        # items come first off the queue, so every bought label saw the same share.
        pace = rt.sampler.pace("uncertain")
        assert 1.0 < pace < 5.0
        assert seen == {"uncertain": {pace}, "random": {None}, None: {None}}

        info = engine.store.registry.get_version("phishing", "v1")
        full = replay(engine.store, "phishing", rt.schema, fresh_state(info, engine.secret))

        def unpaced(event):
            return dataclasses.replace(event, payload={**event.payload, "pace": None})

        plain = replay(
            engine.store, "phishing", rt.schema, fresh_state(info, engine.secret), rewrite=unpaced
        )
        probe = [rt.schema.model_input(x) for x, _ in stream[:100]]
        live = [rt.champion.estimator.predict_proba_one(x) for x in probe]
        assert full.seq == rt.champion.seq == len(events)
        assert [full.estimator.predict_proba_one(x) for x in probe] == live
        assert [plain.estimator.predict_proba_one(x) for x in probe] != live

        # A refit reads the pace beside the importance weight, and a correction keeps it.
        _, labelled, _, _ = _load(
            engine.store,
            "phishing",
            rt.schema,
            engine.store.log.head("phishing"),
            None,
            lambda: None,
        )
        assert [e.pace for e in labelled] == [e.payload["pace"] or 1.0 for e in events]
        assert {e.weight(True) for e in labelled} == {1.0, pace}
        assert {e.weight(False) for e in labelled} == {1.0}
        asked = next(e for e in events if e.payload["pace"] == pace)
        result = engine.feedback_one(
            "phishing",
            FeedbackItem(
                not asked.payload["label"],
                prediction_id=asked.payload["prediction_id"],
                correction=True,
            ),
        )
        assert result.applied
        fix = engine.store.log.read("phishing", after=events[-1].seq, limit=10)[-1]
        assert fix.payload["corrects"] == asked.seq and fix.payload["pace"] == pace


def test_pace_weight_off_writes_no_pace(sqlite_url):
    with Engine.from_settings(
        phishing_settings(sqlite_url, active={**ACTIVE, "pace_weight": False})
    ) as engine:
        asked = 0
        for x, y in phishing_stream(400):
            prediction = engine.predict_one("phishing", x)
            if prediction.queued:
                asked += 1
                engine.feedback_one(
                    "phishing", FeedbackItem(y, prediction_id=prediction.prediction_id)
                )
        events = engine.store.log.read("phishing", after=0, limit=10_000)
        assert len(events) == asked > 20
        assert {e.payload["pace"] for e in events} == {None}


def test_a_weight_beyond_what_onlearn_writes_is_capped():
    """The log is untrusted: a pace of 1e300 (or a sample_p of 1e-300) is learned as the largest
    weight onlearn writes, 1000, and the model's coefficients stay finite."""
    schema = Schema.from_config(PHISHING_FEATURES)
    hostile = LearnerState("v1", "classification", _pipeline("logistic_regression", schema))
    capped = _pipeline("logistic_regression", schema)
    for seq, (x, y) in enumerate(phishing_stream(40), start=1):
        x = schema.model_input(x)
        pace, p = (1e300, None) if seq % 2 else (None, 1e-300)
        hostile.learn(_label(x, y, seq, pace, p), x)
        capped.learn_one(x, y, w=1000.0)
    probe = [schema.model_input(x) for x, _ in phishing_stream(20)]
    answers = [hostile.estimator.predict_proba_one(x) for x in probe]
    assert answers == [capped.predict_proba_one(x) for x in probe]
    assert all(0 <= v <= 1 for a in answers for v in a.values())


def test_a_multiclass_linear_model_takes_the_pace_in_each_one_vs_rest_model():
    """Three classes, no declared pair: one-vs-rest logistic regression, each binary model
    stepping with the pace; the same floats as the bare pipeline given the weights."""
    schema = Schema.from_config({"a": "number", "b": "number"})

    def pipeline():
        return _pipeline("logistic_regression", schema, classes=None)

    paced, bare, plain = LearnerState("v1", "classification", pipeline()), pipeline(), pipeline()
    for seq in range(1, 301):
        x = {"a": (seq * 7 % 13) / 13, "b": (seq * 5 % 11) / 11}
        y = ("low", "mid", "high")[int(3 * x["a"])]
        pace = 5.0 if seq % 3 else None
        paced.learn(_label(x, y, seq, pace), x)
        bare.learn_one(x, y, w=pace or 1.0)
        plain.learn_one(x, y)
    probe = [{"a": i / 10, "b": 0.5} for i in range(10)]
    answers = [paced.estimator.predict_proba_one(x) for x in probe]
    assert len(answers[0]) == 3
    assert answers == [bare.predict_proba_one(x) for x in probe]
    assert answers != [plain.predict_proba_one(x) for x in probe]


@pytest.mark.parametrize("labels_everything", [False, True], ids=["asked-only", "everything"])
def test_the_pace_falls_when_the_application_labels_what_was_not_asked(
    sqlite_url, labels_everything
):
    """An application that labels only what the strategy asks gets 1 / budget on every bought
    label; one that labels every prediction anyway gets about 1 once the cold start is over
    (no bought label outweighs the others), never below 1."""
    active = {**ACTIVE, "evaluation_rate": 0.0}
    paces = []
    with Engine.from_settings(phishing_settings(sqlite_url, active=active)) as engine:
        for x, y in phishing_stream(1250):
            prediction = engine.predict_one("phishing", x)
            if prediction.queued or labels_everything:
                engine.feedback_one(
                    "phishing", FeedbackItem(y, prediction_id=prediction.prediction_id)
                )
                if prediction.queued:
                    event = engine.store.log.read("phishing", after=0, limit=10_000)[-1]
                    paces.append(event.payload["pace"])
    assert len(paces) > 100
    if not labels_everything:
        assert set(paces) == {5.0}
    else:
        assert min(paces) >= 1.0 and paces[0] == 5.0  # the cold start asks nearly everything
        late = paces[len(paces) // 2 :]
        assert max(late) < 1.5, late
