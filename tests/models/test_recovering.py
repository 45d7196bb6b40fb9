"""The tree that recovers from a concept change (onlearn/models/recovering.py).

Oracle tests: until its first surprise alarm the wrapper is the plain tree, answer for answer;
a pickle taken while a copy trains resumes exactly; paced split checks reach both trees and
leave the spec's grace period behind, also when a copy is made or takes over during a label.
A golden run on river's STAGGER stream with an abrupt change shows the hand-over and what it
is for."""

from __future__ import annotations

import pickle

import pytest
from river import datasets, tree
from river.datasets import synth

from onlearn.errors import ConfigError
from onlearn.models import PipelineSpec, build_pipeline
from onlearn.models.recovering import RecoveringClassifier
from onlearn.weights import learn_weighted, paced_trees


def stagger(n: int, seed: int = 1, change_at: int | None = None) -> list[tuple[dict, bool]]:
    """STAGGER function 0, then function 2 from ``change_at`` on (an abrupt change)."""
    first = synth.STAGGER(classification_function=0, seed=seed)
    second = synth.STAGGER(classification_function=2, seed=seed + 1)
    rows = list(first.take(n if change_at is None else change_at))
    if change_at is not None:
        rows += list(second.take(n - change_at))
    return rows


def tree_spec(**params) -> PipelineSpec:
    return PipelineSpec(name="hoeffding_tree", params=params)


def build(spec: PipelineSpec):
    categorical = ("size", "color", "shape")
    return build_pipeline(spec, task="classification", numeric=(), categorical=categorical)


def wrapper(model) -> RecoveringClassifier:
    return list(model.steps.values())[-1]


def test_recover_is_a_boolean_catalog_parameter():
    assert isinstance(wrapper(build(tree_spec(recover=True))), RecoveringClassifier)
    assert isinstance(wrapper(build(tree_spec())), tree.HoeffdingTreeClassifier)
    assert isinstance(wrapper(build(tree_spec(recover=False))), tree.HoeffdingTreeClassifier)
    for bad in (1, "yes", None):
        with pytest.raises(ConfigError, match="parameter 'recover' must be true or false"):
            build(tree_spec(recover=bad))


def test_it_is_the_plain_tree_until_an_alarm_and_takes_over_after_a_change():
    rows = stagger(4000, change_at=2000)
    plain, recovering = build(tree_spec()), build(tree_spec(recover=True))
    first_alarm = None
    right = {"plain": 0, "recovering": 0}
    for i, (x, y) in enumerate(rows):
        answer = recovering.predict_proba_one(x)
        if first_alarm is None:
            assert answer == plain.predict_proba_one(x), i
        if i >= 2000:
            right["plain"] += max(plain.predict_proba_one(x).items(), key=lambda kv: kv[1])[0] == y
            right["recovering"] += max(answer.items(), key=lambda kv: kv[1])[0] == y
        plain.learn_one(x, y)
        recovering.learn_one(x, y)
        if first_alarm is None and wrapper(recovering).background is not None:
            first_alarm = i
    assert first_alarm is not None and first_alarm >= 2000, "no alarm, or one before the change"
    assert wrapper(recovering).n_handovers >= 1
    # The plain tree keeps its old splits; the copy learned the new concept alone.
    assert right["recovering"] > right["plain"] + 200, right


def test_a_multiclass_tree_hands_over_after_its_classes_rotate():
    """Three classes by thirds of x for 3000 labels, then each class moved one third up: over
    the 500 labels after the first 100 of the new map, the plain tree still answers mostly the
    old classes (its leaves hold 1000 labels each of them); the copy learned the new map."""

    def label(x: float, changed: bool) -> str:
        return "abc"[(int(x * 3) + changed) % 3]

    rows = [({"x": (i * 37 % 101) / 101}, i >= 3000) for i in range(3600)]
    models = {
        variant: build_pipeline(
            tree_spec(recover=variant == "recover"),
            task="classification",
            numeric=("x",),
            categorical=(),
        )
        for variant in ("plain", "recover")
    }
    right = dict.fromkeys(models, 0)
    for i, (x, changed) in enumerate(rows):
        y = label(x["x"], changed)
        for variant, model in models.items():
            proba = model.predict_proba_one(x)
            right[variant] += i >= 3100 and max(proba, key=proba.__getitem__) == y
            model.learn_one(x, y)
    assert wrapper(models["recover"]).n_handovers >= 1
    assert set(models["recover"].predict_proba_one({"x": 0.5})) == {"a", "b", "c"}
    assert right["recover"] > 450 and right["plain"] < 200, right  # of 500


def test_regression_trees_take_no_recover():
    with pytest.raises(ConfigError, match="'hoeffding_tree_regressor' has no parameter 'recover'"):
        build_pipeline(
            PipelineSpec(name="hoeffding_tree_regressor", params={"recover": True}),
            task="regression",
            numeric=("x",),
            categorical=(),
        )


def test_no_hand_over_on_a_stream_without_change():
    rows = list(datasets.Phishing())
    recovering = build_pipeline(
        tree_spec(recover=True), task="classification", numeric=list(rows[0][0]), categorical=()
    )
    for x, y in rows:
        recovering.learn_one(x, y)
    assert wrapper(recovering).n_handovers == 0


def test_a_pickle_taken_while_a_copy_trains_resumes_exactly():
    rows = stagger(3000, change_at=1000)
    model = build(tree_spec(recover=True))
    learned = 0
    while wrapper(model).background is None:
        assert learned < len(rows), "no alarm after the change"
        model.learn_one(*rows[learned])
        learned += 1
    restored = pickle.loads(pickle.dumps(model, protocol=5))
    assert wrapper(restored).background is not None
    for x, y in rows[learned:]:
        assert restored.predict_proba_one(x) == model.predict_proba_one(x)
        model.learn_one(x, y)
        restored.learn_one(x, y)
    assert wrapper(restored).n_handovers == wrapper(model).n_handovers >= 1


def test_paced_split_checks_reach_both_trees_and_leave_the_grace_period():
    """At pace 10 every tree checks every 20 labels during the label and is back at 200 after
    it, also the copy made at an alarm and the copy that took over during a label."""
    rows = stagger(3000, change_at=1000)
    model = build(tree_spec(recover=True))
    seen_copy = handed_over = False
    for x, y in rows:
        learn_weighted(model, x, y, 1.0, True, 10.0)
        trees = paced_trees(model)
        assert [t.grace_period for t in trees] == [200] * len(trees)
        seen_copy |= len(trees) == 2
        handed_over |= wrapper(model).n_handovers > 0
    assert seen_copy and handed_over


def test_paced_checks_are_those_of_a_tree_with_a_tenth_of_the_grace_until_an_alarm():
    rows = stagger(1000)
    paced = build(tree_spec(recover=True))
    tenth = build(tree_spec(grace_period=20))
    for x, y in rows:
        learn_weighted(paced, x, y, 1.0, True, 10.0)
        tenth.learn_one(x, y)
        assert wrapper(paced).background is None, "an alarm on a stream without change"
        assert paced.predict_proba_one(x) == tenth.predict_proba_one(x)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"z": 0}, "z"),
        ({"min_disagreements": 0}, "min_disagreements"),
        ({"threshold": -1}, "threshold"),
    ],
)
def test_its_settings_are_checked(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        RecoveringClassifier(tree.HoeffdingTreeClassifier(), **kwargs)
