"""Batch refit: the split by time, candidates equal to replays, the holdout comparison."""

from __future__ import annotations

import copy
import itertools
import json
import pickle
import random

import pytest
from river import datasets

from onlearn.background.refit import NotEnoughData, RefitResult, refit
from onlearn.compare import PairedCounts, PairedErrors, mcnemar, wilcoxon
from onlearn.errors import ConfigError, OnlearnError
from onlearn.learner import LearnerState
from onlearn.models import SklearnBatch, SklearnIncremental, sklearn_from_spec
from onlearn.records import Event, EventKind, VersionInfo
from onlearn.schema import Schema
from onlearn.snapshots import replay
from onlearn.store import open_store
from tests.specs import trusted_fresh_state

MODEL = "phishing"
CLASSES = [True, False]
SCHEMA = Schema.from_config(
    {
        name: "number"
        for name in (
            "empty_server_form_handler",
            "popup_window",
            "https",
            "request_from_other_domain",
            "anchor_from_other_domain",
            "is_popular",
            "long_url",
        )
    }
    | {"age_of_domain": "integer", "ip_in_url": "integer", "bucket": "string"}
)
CHAMPION = {"name": "logistic_regression"}
START = 1_800_000_000.0


def label_event(i: int, x: dict, y, source: str = "app") -> Event:
    payload = {
        "features": SCHEMA.validate(x),
        "label": y,
        "source": source,
        "labeller": None,
        "prediction_id": None,
        "predicted_at": None,
        "outputs": None,
        "sampled": None,
    }
    return Event(EventKind.LABEL, payload, at=START + i)


def phishing_events(n: int) -> list[Event]:
    """``n`` label events of the Phishing stream, a string feature added, 1 in 10 labelled by a
    person, with an alarm every 97 labels: control events are in the log too."""
    events = []
    for i, (x, y) in enumerate(itertools.islice(datasets.Phishing(), n)):
        x = dict(x, bucket="new" if x["age_of_domain"] == 0 else "old" if x["https"] else "mid")
        events.append(label_event(i, x, y, source="human" if i % 10 == 0 else "app"))
        if i % 97 == 50:
            events.append(Event(EventKind.ALARM, {"detector": "test"}, at=START + i))
    return events


@pytest.fixture
def store():
    with open_store("memory://") as s:
        s.log.append(MODEL, phishing_events(500))
        yield s


def river_state(store, spec, upto, version="v1") -> LearnerState:
    """The state a replay of the log gives ``spec`` at ``upto``: what the engine would hold."""
    info = VersionInfo(
        MODEL,
        version,
        0.0,
        {
            "task": "classification",
            "pipeline": spec,
            "schema": SCHEMA.to_config(),
            "classes": CLASSES,
        },
    )
    return replay(store, MODEL, SCHEMA, trusted_fresh_state(info), upto=upto)


def same_state(a: LearnerState, b: LearnerState, xs: list[dict]) -> bool:
    """Equal versions, seqs, metrics and answers (probabilities included) on ``xs``. Pickles
    are not compared byte for byte: equal strings from different sources pickle apart."""
    return (
        (a.version, a.seq, a.learn_errors) == (b.version, b.seq, b.learn_errors)
        and a.metrics.to_dict() == b.metrics.to_dict()
        and [a.predict(x) for x in xs] == [b.predict(x) for x in xs]
        and pickle.loads(pickle.dumps(a)).predict(xs[0]) == a.predict(xs[0])
    )


def champion_at(store):
    return lambda seq: river_state(store, CHAMPION, seq)


def run(store, candidates, **kwargs) -> RefitResult:
    options = {
        "schema": SCHEMA,
        "task": "classification",
        "classes": CLASSES,
        "champion_state_at": champion_at(store),
        "candidates": candidates,
        **kwargs,
    }
    return refit(store, MODEL, **options)


def labels(store, after=0, upto=None):
    events = store.log.read(MODEL, after=after, limit=10_000)
    return [e for e in events if e.kind is EventKind.LABEL and (upto is None or e.seq <= upto)]


def rows(store):
    return [SCHEMA.model_input(e.payload["features"]) for e in labels(store)]


# -- the property the issue tests -------------------------------------------------------------


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_refit_plus_catch_up_replay_equals_a_replay_of_the_log(backend, tmp_path):
    url = {"memory": "memory://", "sqlite": f"sqlite:///{tmp_path}/onlearn.db"}[backend]
    specs = [
        {"name": "hoeffding_tree", "grace_period": 50},
        {"name": "logistic_regression", "l2": 0.001},
        {"name": "adaptive_random_forest", "n_models": 3},
    ]
    with open_store(url) as s:
        s.log.append(MODEL, phishing_events(400))
        result = run(s, specs)
        head = s.log.head(MODEL)
        xs = rows(s)
        for i, spec in enumerate(specs):
            state = result.candidates[i].state
            assert state.seq == result.train_upto and state.version == f"candidate-{i}"
            # at train_upto: the very state a replay gives, metrics and all
            reference = river_state(s, spec, result.train_upto, version=f"candidate-{i}")
            assert same_state(state, reference, xs)
            # handed to the online path: replay (train_upto, head]
            replay(s, MODEL, SCHEMA, state, upto=head)
            reference = river_state(s, spec, head, version=f"candidate-{i}")
            assert state.seq == reference.seq == head
            assert same_state(state, reference, xs)


# -- the split --------------------------------------------------------------------------------


def test_split_by_time(store):
    result = run(store, [{"name": "hoeffding_tree"}])
    events = labels(store)
    assert len(events) == 500
    train, test = events[:400], events[400:]
    assert result.train == (1, train[-1].seq) and result.train_upto == train[-1].seq
    assert result.holdout == (test[0].seq, test[-1].seq) == (test[0].seq, store.log.head(MODEL))
    assert (result.train_labels, result.holdout_labels) == (400, 100)
    assert result.labels_by_source == {"human": 40, "app": 360}
    assert result.candidates[0].metrics.n == result.champion.metrics.n == 100
    summary = json.loads(json.dumps(result.to_dict()))
    assert summary["train"] == {
        "first_seq": 1,
        "last_seq": train[-1].seq,
        "labels": 400,
        "labels_by_source": {"human": 40, "app": 360},
    }
    assert summary["holdout"]["labels"] == 100
    assert summary["candidates"][0]["spec"] == {"name": "hoeffding_tree"}
    assert summary["candidates"][0]["version"] == "candidate-0"


def test_upto_and_holdout_fraction(store):
    upto = labels(store)[299].seq
    result = run(store, [{"name": "hoeffding_tree"}], upto=upto, holdout=0.25)
    assert (result.train_labels, result.holdout_labels) == (225, 75)
    assert result.holdout[1] == upto
    assert result.train_upto == labels(store)[224].seq


def test_too_few_labels_is_not_enough_data():
    with open_store("memory://") as s:
        s.log.append(MODEL, phishing_events(30))
        with pytest.raises(NotEnoughData, match="has 30 label events up to seq 30; a refit needs"):
            run(s, [{"name": "hoeffding_tree"}])
        assert issubclass(NotEnoughData, OnlearnError)
        result = run(s, [{"name": "hoeffding_tree"}], min_labels=20)
        assert (result.train_labels, result.holdout_labels) == (24, 6)
    with open_store("memory://") as s, pytest.raises(NotEnoughData, match="has 0 label events"):
        run(s, [{"name": "hoeffding_tree"}])


def test_a_trimmed_log_refits_on_what_is_left(store):
    store.log.trim(MODEL, 100)
    result = run(store, [{"name": "hoeffding_tree"}], champion_state_at=None)
    first = labels(store)[0].seq
    assert result.train[0] == first > 100
    state = LearnerState(
        "candidate-0", "classification", result.best_state.estimator.clone(), seq=100
    )
    replay(store, MODEL, SCHEMA, state, upto=result.train_upto)
    xs = rows(store)
    assert [state.predict(x) for x in xs] == [result.best_state.predict(x) for x in xs]


# -- the comparison on the holdout ------------------------------------------------------------


def prequential(state: LearnerState, events: list[Event], learns: bool = True):
    """The oracle: predict, then learn, event by event; per-event correctness and answers."""
    correct, answers = [], []
    for e in events:
        x = SCHEMA.model_input(e.payload["features"])
        y_pred, proba = state.predict(x)
        answers.append((y_pred, proba))
        correct.append(y_pred == e.payload["label"])
        if learns:
            state.estimator.learn_one(x, e.payload["label"])
    return tuple(correct), answers


def test_holdout_scores_are_prequential_and_paired(store):
    candidates = [{"name": "hoeffding_tree"}, CHAMPION]
    result = run(store, candidates)
    holdout = labels(store, after=result.train_upto)
    champion_correct, _ = prequential(river_state(store, CHAMPION, result.train_upto), holdout)
    assert result.champion.correct == champion_correct
    assert result.champion.version == "v1"
    assert result.champion.metrics.accuracy == sum(champion_correct) / len(holdout)
    for i, spec in enumerate(candidates):
        candidate = result.candidates[i]
        correct, _ = prequential(river_state(store, spec, result.train_upto), holdout)
        assert candidate.correct == correct
        assert candidate.metrics.accuracy == sum(correct) / len(holdout)
        assert candidate.paired == PairedCounts.from_correct(champion_correct, correct)
        assert candidate.paired_test == mcnemar(candidate.paired.a_only, candidate.paired.b_only)
        assert candidate.state.seq == result.train_upto  # evaluated on a copy
    # The champion's own spec retrained on the same events is the champion: no difference.
    same = result.candidates[1]
    assert same.paired.a_only == same.paired.b_only == 0
    assert same.metrics.to_dict() == result.champion.metrics.to_dict()


def test_best_by_metric_and_against_the_champion(store):
    candidates = [CHAMPION, {"name": "hoeffding_tree"}, {"name": "gaussian_naive_bayes"}]
    result = run(store, candidates)
    accuracy = [c.metrics.accuracy for c in result.candidates]
    assert result.best == accuracy.index(max(accuracy))
    assert result.best_beats_champion == (max(accuracy) > result.champion.metrics.accuracy)
    assert result.best_state is result.candidates[result.best].state
    assert result.best_spec == candidates[result.best]
    by_loss = run(store, candidates, metric="log_loss")
    losses = [c.metrics.log_loss for c in by_loss.candidates]
    assert by_loss.best == losses.index(min(losses))
    assert by_loss.best_beats_champion == (min(losses) < by_loss.champion.metrics.log_loss)


def test_a_candidate_equal_to_the_champion_does_not_beat_it(store):
    result = run(store, [CHAMPION])
    assert result.best == 0
    assert not result.best_beats_champion  # equal is not better


def test_without_a_champion_the_best_candidate_wins(store):
    result = run(store, [{"name": "hoeffding_tree"}], champion_state_at=lambda seq: None)
    assert result.champion is None
    assert result.candidates[0].paired is None and result.candidates[0].paired_test is None
    assert result.best_beats_champion
    assert result.to_dict()["champion"] is None


def test_the_champion_must_be_at_train_upto(store):
    with pytest.raises(ValueError, match="needs it at seq"):
        run(
            store,
            [{"name": "hoeffding_tree"}],
            champion_state_at=lambda seq: river_state(store, CHAMPION, seq - 1),
        )


def test_refits_are_deterministic(store):
    candidates = [{"name": "adaptive_random_forest", "n_models": 3}]

    def summary(result):
        out = result.to_dict()
        for c in out["candidates"]:
            del c["train_seconds"], c["eval_seconds"]
        return out

    a, b = run(store, candidates), run(store, candidates)
    assert summary(a) == summary(b)
    assert same_state(a.best_state, b.best_state, rows(store))


def test_more_passes_train_more_and_keep_the_first_pass_metrics(store):
    one = run(store, [CHAMPION])
    two = run(store, [CHAMPION], passes=2)
    assert two.best_state.seq == one.best_state.seq == one.train_upto
    assert two.best_state.metrics.to_dict() == one.best_state.metrics.to_dict()
    xs = rows(store)
    assert [two.best_state.predict(x) for x in xs] != [one.best_state.predict(x) for x in xs]


# -- scikit-learn candidates ------------------------------------------------------------------

SGD = {"sklearn": "sklearn.linear_model:SGDClassifier", "params": {"loss": "log_loss"}}
HGB = {
    "sklearn": "sklearn.ensemble:HistGradientBoostingClassifier",
    "params": {"max_iter": 30},
    "incremental": False,
}


def test_sklearn_candidates(store):
    result = run(store, [SGD, HGB], passes=2)
    incremental, batch = result.candidates
    assert (incremental.kind, batch.kind) == ("sklearn_incremental", "sklearn_batch")
    assert isinstance(incremental.state.estimator, SklearnIncremental)
    assert isinstance(batch.state.estimator, SklearnBatch)
    train = labels(store, upto=result.train_upto)
    holdout = labels(store, after=result.train_upto)
    # the string feature: one-hot over the values of the train events, most frequent first
    counts = {}
    for e in train:
        counts[e.payload["features"]["bucket"]] = counts.get(e.payload["features"]["bucket"], 0) + 1
    vocabulary = tuple(sorted(counts, key=lambda v: -counts[v]))
    assert incremental.state.estimator.categories == {"bucket": vocabulary}
    assert incremental.state.estimator.features == SCHEMA.numeric
    assert json.loads(json.dumps(result.to_dict()))["candidates"][1]["inputs"] == {
        "features": list(SCHEMA.numeric),
        "categories": {"bucket": list(vocabulary)},
        "classes": CLASSES,
    }
    # the incremental candidate: learn_many over the train events, twice
    oracle = sklearn_from_spec(SGD, SCHEMA.numeric, CLASSES, {"bucket": vocabulary})
    xs = [SCHEMA.model_input(e.payload["features"]) for e in train]
    for _ in range(2):
        oracle.learn_many(xs, [e.payload["label"] for e in train])
    everything = rows(store)
    assert incremental.state.estimator.predict_proba_many(everything) == oracle.predict_proba_many(
        everything
    )
    # evaluated prequentially on a copy
    correct, _ = prequential(copy.deepcopy(incremental.state), holdout)
    assert incremental.correct == correct
    assert incremental.state.seq == result.train_upto
    # the batch candidate does not learn on the holdout, and answers it in one call
    correct, answers = prequential(copy.deepcopy(batch.state), holdout, learns=False)
    assert batch.correct == correct
    assert batch.metrics.accuracy == sum(correct) / len(holdout) > 0.85
    # handed to the online path, it serves as it is and counts what it leaves for a refit
    state = batch.state
    assert state.estimator.ignored_labels == 0 and state.metrics.served.n == 0
    replay(store, MODEL, SCHEMA, state, upto=store.log.head(MODEL))
    assert state.estimator.ignored_labels == len(holdout)
    assert state.metrics.served.n == len(holdout)
    assert [state.predict(x) for x in everything[:50]] == [
        copy.deepcopy(batch.state).predict(x) for x in everything[:50]
    ]


def test_sklearn_classes_default_to_those_of_the_train_events(store):
    result = run(store, [SGD], classes=None, champion_state_at=None)
    assert result.best_state.estimator.classes == (True, False)  # first seen first
    assert list(result.best_state.predict(rows(store)[0])[1]) == [True, False]


# -- progress and errors ----------------------------------------------------------------------


def test_progress_reports_to_the_end(store):
    calls = []
    result = run(store, [CHAMPION, SGD, HGB], passes=2, progress=lambda d, t: calls.append((d, t)))
    total = calls[0][1]
    # river and incremental: 400 train events twice; batch: once; 4 models score 100 events
    assert total == 400 * 2 + 400 * 2 + 400 + 100 * 4
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert all(t == total for _, t in calls)
    done = [d for d, _ in calls]
    assert done == sorted(done) and len(calls) <= 205
    assert result.best in (0, 1, 2)


@pytest.mark.parametrize(
    "candidates, kwargs, words",
    [
        ([{"name": "hoeffding_tree"}, {"name": "nope"}], {}, r"candidates\[1\]: unknown"),
        ([{"sklearn": "os:system"}], {}, r"candidates\[0\]: 'sklearn' must name"),
        ([{"sklearn": "sklearn.svm:SVC"}], {}, r"candidates\[0\]: sklearn estimator"),
        ([], {}, "at least one candidate"),
        ({"name": "hoeffding_tree"}, {}, "a list"),
        ([CHAMPION], {"metric": "mae"}, "metric for classification"),
        ([CHAMPION], {"metric": "f1"}, "metric"),
        ([CHAMPION], {"holdout": 0}, "holdout"),
        ([CHAMPION], {"holdout": 1.0}, "holdout"),
        ([CHAMPION], {"passes": 0}, "passes"),
        ([CHAMPION], {"task": "ranking"}, "task"),
    ],
)
def test_bad_options_are_config_errors(store, candidates, kwargs, words):
    with pytest.raises(ConfigError, match=words):
        run(store, candidates, **kwargs)


# -- regression -------------------------------------------------------------------------------

REG_SCHEMA = Schema.from_config({"a": "number", "b": "number", "kind": "category"})


def test_regression_refit():
    rng = random.Random(5)
    events = []
    for i in range(300):
        x = {"a": rng.gauss(0, 1), "b": rng.gauss(0, 1), "kind": rng.choice(["u", "v"])}
        y = 3 * x["a"] - 2 * x["b"] + (1.0 if x["kind"] == "u" else 0.0) + rng.gauss(0, 0.1)
        payload = {"features": REG_SCHEMA.validate(x), "label": y, "source": "app"}
        events.append(Event(EventKind.LABEL, payload, at=START + i))
    spec = {"task": "regression", "schema": REG_SCHEMA.to_config(), "classes": None}

    def state_at(pipeline, seq):
        info = VersionInfo("r", "v1", 0.0, {**spec, "pipeline": pipeline})
        return replay(s, "r", REG_SCHEMA, trusted_fresh_state(info), upto=seq)

    with open_store("memory://") as s:
        s.log.append("r", events)
        candidates = [{"name": "hoeffding_tree_regressor"}, {"name": "linear_regression"}]
        result = refit(
            s,
            "r",
            schema=REG_SCHEMA,
            task="regression",
            classes=None,
            champion_state_at=lambda seq: state_at({"name": "linear_regression", "lr": 0.001}, seq),
            candidates=candidates,
            metric="mae",
        )
        maes = [c.metrics.mae for c in result.candidates]
        assert result.best == maes.index(min(maes))
        assert result.best_beats_champion == (min(maes) < result.champion.metrics.mae)
        # Regression pairs absolute errors per holdout event (Wilcoxon), not right/wrong.
        holdout = len(result.champion.correct)
        assert holdout > 0 and all(isinstance(e, float) and e >= 0 for e in result.champion.correct)
        assert result.champion.metrics.mae == pytest.approx(sum(result.champion.correct) / holdout)
        for c in result.candidates:
            assert len(c.correct) == holdout
            assert c.metrics.mae == pytest.approx(sum(c.correct) / holdout)
            assert isinstance(c.paired, PairedErrors) and c.paired.n == holdout
            assert c.paired_test == wilcoxon(c.paired.differences())
        reference = state_at(candidates[1], result.train_upto)
        reference.version = "candidate-1"
        xs = [REG_SCHEMA.model_input(e.payload["features"]) for e in events]
        assert same_state(result.candidates[1].state, reference, xs)
        with pytest.raises(ConfigError, match="scikit-learn candidates are classifiers"):
            refit(
                s,
                "r",
                schema=REG_SCHEMA,
                task="regression",
                classes=None,
                champion_state_at=None,
                candidates=[SGD],
                metric="mae",
            )


# -- corrections (issue 13) ---------------------------------------------------------------------


@pytest.mark.parametrize("candidate", [{"name": "hoeffding_tree"}, SGD])
def test_refits_train_on_the_log_with_corrections_applied(candidate):
    """A log whose first 40 labels were wrong and corrected later (a correction of a correction
    among them) refits exactly as the log with the right labels from the start."""
    from onlearn.corrections import correction_event

    events = [e for e in phishing_events(300) if e.kind is EventKind.LABEL]
    wrong = [
        Event(e.kind, {**e.payload, "label": not e.payload["label"]}, e.at, key=f"event:{i}")
        for i, e in enumerate(events[:40])
    ]
    with open_store("memory://") as right, open_store("memory://") as corrected:
        right.log.append(MODEL, events)
        corrected.log.append(MODEL, wrong + events[40:])
        recorded = {e.key: e for e in corrected.log.read(MODEL, 0, limit=40)}
        fixes = []
        for key, e in recorded.items():
            fix = correction_event(
                e,
                label=not e.payload["label"],
                source="human",
                labeller="ann",
                chain_key=key,
                at=e.at,
            )
            fixes.append(fix)
        corrected.log.append(MODEL, fixes)
        # One label is corrected twice: wrong again, then right.
        (twice,) = corrected.log.by_keys(MODEL, [fixes[0].key]).values()
        again = correction_event(
            twice,
            label=not twice.payload["label"],
            source="weak",
            labeller=None,
            chain_key="event:0",
            at=START,
        )
        (back,) = corrected.log.append(MODEL, [again])
        (again_event,) = corrected.log.read(MODEL, back - 1, limit=1)
        corrected.log.append(
            MODEL,
            [
                correction_event(
                    again_event,
                    label=twice.payload["label"],
                    source="human",
                    labeller="bob",
                    chain_key="event:0",
                    at=START,
                )
            ],
        )
        a = run(right, [candidate], champion_state_at=None)
        b = run(corrected, [candidate], champion_state_at=None)
    assert (b.corrections, b.corrections_applied) == (42, 40)
    assert b.to_dict()["corrections"] == {"events": 42, "applied": 40}
    assert (a.train, a.holdout, a.train_labels) == (b.train, b.holdout, b.train_labels)
    xs = [SCHEMA.model_input(e.payload["features"]) for e in events]
    assert [a.best_state.predict(x) for x in xs] == [b.best_state.predict(x) for x in xs]
    assert a.best_candidate.metrics.to_dict() == b.best_candidate.metrics.to_dict()
