"""The committee measures equal modAL's, computed by a real ``modAL.models.Committee``."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from modAL.disagreement import KL_max_disagreement
from modAL.disagreement import consensus_entropy as modal_consensus_entropy
from modAL.disagreement import vote_entropy as modal_vote_entropy
from modAL.models import ActiveLearner, Committee

from onlearn.active import (
    COMMITTEE_MEASURES,
    consensus_entropy,
    disagreement_many,
    kl_max_disagreement,
    vote_entropy,
)
from tests.active.streams import dirichlet

TOL = dict(rel=1e-12, abs=1e-12)
MODAL = {
    "vote_entropy": modal_vote_entropy,
    "consensus_entropy": modal_consensus_entropy,
    "kl_max_disagreement": KL_max_disagreement,
}


class Answered:
    """A fitted scikit-learn-like classifier that gives one stored river answer.

    Its ``classes_`` are the global ids of the labels it knows, sorted (as scikit-learn keeps
    them), so modAL's ``Committee`` aligns members that know different labels by itself.
    """

    def __init__(self, proba: dict, ids: dict) -> None:
        total = sum(proba.values())
        known = sorted(proba, key=ids.__getitem__)
        self.classes_ = np.array([ids[label] for label in known])
        self._row = np.array([[proba[label] / total for label in known]])
        self._vote = ids[max(proba, key=proba.__getitem__)]  # the label the version answers

    def predict_proba(self, X):
        return np.repeat(self._row, len(X), axis=0)

    def predict(self, X):
        return np.full(len(X), self._vote)


def modal_committee(probas: list[dict]) -> Committee:
    ids: dict = {}
    for proba in probas:
        for label in proba:
            ids.setdefault(label, len(ids))
    return Committee([ActiveLearner(estimator=Answered(p, ids)) for p in probas])


def random_committees(n: int, seed: int) -> list[list[dict]]:
    """2 to 5 members, 2 to 6 labels, members knowing different subsets of the labels."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        labels = ["cat", "dog", 3, "owl", 5.5, "eel"][: rng.randint(2, 6)]
        members = []
        for _ in range(rng.randint(2, 5)):
            known = (
                labels if rng.random() < 0.6 else rng.sample(labels, rng.randint(1, len(labels)))
            )
            values = dirichlet(rng, len(known), rng.choice([0.1, 1.0, 10.0]))
            members.append(dict(zip(known, values, strict=True)))
        out.append(members)
    return out


COMMITTEES = random_committees(400, seed=3)


@pytest.mark.parametrize("measure", list(COMMITTEE_MEASURES))
def test_each_measure_equals_modal_committee(measure):
    fast = COMMITTEE_MEASURES[measure]
    for members in COMMITTEES:
        expected = float(MODAL[measure](modal_committee(members), np.zeros((1, 1)))[0])
        assert fast(members, normalize=False) == pytest.approx(expected, **TOL), members


@pytest.mark.parametrize("measure", list(COMMITTEE_MEASURES))
def test_the_modal_batch_equals_the_fast_path(measure):
    fast = COMMITTEE_MEASURES[measure]
    for normalize in (False, True):
        expected = [fast(members, normalize=normalize) for members in COMMITTEES]
        batch = disagreement_many(COMMITTEES, measure, normalize=normalize)
        np.testing.assert_allclose(batch, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("measure", list(COMMITTEE_MEASURES))
def test_normalised_measures_lie_in_the_unit_interval_and_reach_one(measure):
    values = [COMMITTEE_MEASURES[measure](members) for members in COMMITTEES]
    assert min(values) >= 0.0 and max(values) <= 1.0
    opposed = [{"a": 1.0, "b": 0.0}, {"a": 0.0, "b": 1.0}]
    assert COMMITTEE_MEASURES[measure](opposed) == pytest.approx(1.0)


def test_normalisation_divides_by_the_largest_possible_value():
    members = COMMITTEES[0]
    m = len(members)
    k = len({label for p in members for label in p})
    assert vote_entropy(members) == pytest.approx(
        vote_entropy(members, normalize=False) / math.log(min(m, k))
    )
    assert consensus_entropy(members) == pytest.approx(
        consensus_entropy(members, normalize=False) / math.log(k)
    )
    assert kl_max_disagreement(members) == pytest.approx(
        kl_max_disagreement(members, normalize=False) / math.log(m)
    )


def test_agreement_members_without_opinion_and_lonely_members():
    same = [{"a": 0.7, "b": 0.3}] * 3
    assert vote_entropy(same) == 0.0
    assert kl_max_disagreement(same) == pytest.approx(0.0, abs=1e-15)
    # A fresh version (empty answer) has no opinion and is left out.
    with_fresh = [{"a": 0.9, "b": 0.1}, {}, {"a": 0.1, "b": 0.9}, {"a": None, "b": 0.2}]
    for fn in COMMITTEE_MEASURES.values():
        assert fn(with_fresh) == fn([with_fresh[0], with_fresh[2]])  # broken answers too
        assert fn([{}, {}]) == 1.0  # nobody knows anything
        assert fn([]) == 1.0
    alone = [{"a": 0.6, "b": 0.4}]
    assert vote_entropy(alone) == 0.0 and kl_max_disagreement(alone) == 0.0
    assert consensus_entropy(alone) == pytest.approx(0.9709505944546686)
    rows = [with_fresh, [{}, {}], alone, [{"a": 1.0}, {"a": 1.0}]]
    for name, fn in COMMITTEE_MEASURES.items():
        assert disagreement_many(rows, name).tolist() == pytest.approx([fn(r) for r in rows])


def test_a_vote_is_the_label_the_version_would_answer():
    # Tied members vote for the label they list first, as LearnerState.predict answers.
    tied = [{"a": 0.5, "b": 0.5}, {"b": 0.5, "a": 0.5}]
    assert vote_entropy(tied) == 1.0
    assert disagreement_many([tied], "vote_entropy").tolist() == [1.0]


def test_unknown_measure():
    with pytest.raises(ValueError, match="unknown committee measure"):
        disagreement_many([], "loudness")
