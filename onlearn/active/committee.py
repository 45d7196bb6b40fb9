"""How much several versions disagree about one prediction (query by committee).

When the champion and its shadows or challengers all answer, their disagreement is a measure of
doubt that a single model's probabilities cannot give. ``probas`` is one river-style
``{label: p}`` per member; members may know different labels (a label missing from a member has
probability 0 for it).

======================== ============================================== ======================
measure                  value                                          divided by
======================== ============================================== ======================
``vote_entropy``         entropy of the members' votes (their labels)   ``log(min(m, k))``
``consensus_entropy``    entropy of the mean probabilities              ``log(k)``
``kl_max_disagreement``  largest KL divergence of a member from the     ``log(m)``
                         mean probabilities
======================== ============================================== ======================

``m`` is the number of members with an opinion and ``k`` the number of labels they know. The
divisors bound each measure (vote entropy reaches its bound when the votes split evenly), so the
results lie in ``[0, 1]`` like the single-model measures; ``normalize=False`` gives the raw values in nats, which equal modAL's
``vote_entropy``, ``consensus_entropy`` and ``KL_max_disagreement``.

A member's vote is the label it would answer: its most probable label, ties going to the label
it lists first. A member with an empty ``proba`` (a fresh version), or with a NaN or ``None``
probability, has no opinion and is left out; with no opinion at all every measure is 1.0, as for an empty ``proba`` in
``onlearn.active.uncertainty``. One member alone cannot disagree with itself: vote entropy and
KL disagreement are 0 (consensus entropy is then that member's entropy). Consensus entropy is
1.0 when the members know fewer than two labels between them, as for a single model.

As for the single-model measures, the pure-Python functions serve one prediction and
``disagreement_many`` computes many rows through modAL's functions; the tests check that both
agree.

>>> champion, shadow = {"cat": 0.9, "dog": 0.1}, {"cat": 0.2, "dog": 0.8}
>>> vote_entropy([champion, shadow])
1.0
>>> round(consensus_entropy([champion, shadow]), 4)
0.9928
>>> round(kl_max_disagreement([champion, shadow]), 4)
0.4225
>>> vote_entropy([champion, {"cat": 0.6, "dog": 0.4}])
0.0
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from math import log

import numpy as np

from onlearn.active.uncertainty import _total

__all__ = [
    "COMMITTEE_MEASURES",
    "consensus_entropy",
    "disagreement_many",
    "kl_max_disagreement",
    "vote_entropy",
]

Proba = Mapping[Hashable, float]


def _opinions(probas: Sequence[Proba]) -> list[tuple[Proba, float]]:
    """The members with an opinion, each with the sum of its probabilities."""
    out = []
    for proba in probas:
        if proba:
            total = _total(proba.values())
            if total > 0.0:  # NaN or None in it: a broken answer, no opinion
                out.append((proba, total))
    return out


def vote_entropy(probas: Sequence[Proba], normalize: bool = True) -> float:
    """Entropy of the distribution of the members' predicted labels."""
    votes: dict[Hashable, int] = {}
    labels: set[Hashable] = set()
    m = 0
    for proba in probas:
        if not proba or not _total(proba.values()) > 0.0:
            continue
        m += 1
        label = max(proba, key=proba.__getitem__)
        votes[label] = votes.get(label, 0) + 1
        labels.update(proba)
    if m == 0:
        return 1.0
    h = 0.0
    for count in votes.values():
        q = count / m
        h -= q * log(q)
    if not normalize:
        return h
    k = min(m, len(labels))
    if k < 2:
        return 0.0
    h /= log(k)
    return 1.0 if h > 1.0 else h


def _summed(opinions: list[tuple[Proba, float]]) -> dict[Hashable, float]:
    """The sum over members of their normalised probabilities, per label."""
    summed: dict[Hashable, float] = {}
    for proba, total in opinions:
        for label, p in proba.items():
            summed[label] = summed.get(label, 0.0) + p / total
    return summed


def consensus_entropy(probas: Sequence[Proba], normalize: bool = True) -> float:
    """Entropy of the members' mean probabilities."""
    opinions = _opinions(probas)
    if not opinions:
        return 1.0
    summed = _summed(opinions)
    k = len(summed)
    if k < 2:
        return 1.0
    m = len(opinions)
    h = 0.0
    for s in summed.values():
        if s > 0.0:
            q = s / m
            h -= q * log(q)
    if not normalize:
        return h
    h /= log(k)
    return 1.0 if h > 1.0 else h


def kl_max_disagreement(probas: Sequence[Proba], normalize: bool = True) -> float:
    """The largest Kullback-Leibler divergence of a member from the mean probabilities."""
    opinions = _opinions(probas)
    m = len(opinions)
    if m == 0:
        return 1.0
    if m == 1:
        return 0.0
    summed = _summed(opinions)
    worst = 0.0
    for proba, total in opinions:
        kl = 0.0
        for label, p in proba.items():
            if p > 0.0:
                q = p / total
                kl += q * log(q / (summed[label] / m))
        if kl > worst:
            worst = kl
    if not normalize:
        return worst
    worst /= log(m)
    return 1.0 if worst > 1.0 else worst


COMMITTEE_MEASURES: Mapping[str, Callable[..., float]] = {
    "vote_entropy": vote_entropy,
    "consensus_entropy": consensus_entropy,
    "kl_max_disagreement": kl_max_disagreement,
}
"""The committee measures by config name."""


# ---------------------------------------------------------------------------------------------
# many rows at once, through modAL


class _FixedCommittee:
    """What modAL's disagreement measures read from a committee, for answers already given.

    ``proba`` is ``(rows, members, labels)``; ``votes`` holds each member's label index per row.
    modAL asks for ``X``'s rows: here ``X`` is ``arange(rows)``.
    """

    def __init__(self, proba: np.ndarray, votes: np.ndarray) -> None:
        self._proba = proba
        self._votes = votes
        self.classes_ = np.arange(proba.shape[2])

    def __len__(self) -> int:
        return self._proba.shape[1]

    def __iter__(self):
        return iter(range(len(self)))

    def vote(self, X: np.ndarray) -> np.ndarray:
        return self._votes[X]

    def vote_proba(self, X: np.ndarray) -> np.ndarray:
        return self._proba[X]

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self._proba[X].mean(axis=1)


def _modal(measure: str) -> Callable[..., np.ndarray]:
    # Imported here: the per-request path (the functions above) needs neither modAL nor scipy.
    from modAL import disagreement

    return {
        "vote_entropy": disagreement.vote_entropy,
        "consensus_entropy": disagreement.consensus_entropy,
        "kl_max_disagreement": disagreement.KL_max_disagreement,
    }[measure]


def disagreement_many(
    committees: Sequence[Sequence[Proba]], measure: str = "vote_entropy", normalize: bool = True
) -> np.ndarray:
    """The disagreement of every row (one list of member answers each), by modAL's function.

    Rows are grouped by their number of members with an opinion, as a modAL committee has a
    fixed size; each group becomes one ``(rows, members, labels)`` array.
    """
    if measure not in COMMITTEE_MEASURES:
        raise ValueError(
            f"unknown committee measure {measure!r}; choose one of {', '.join(COMMITTEE_MEASURES)}"
        )
    out = np.ones(len(committees))
    groups: dict[int, list[int]] = {}
    opinions = []
    for i, probas in enumerate(committees):
        ops = _opinions(probas)
        opinions.append(ops)
        if ops:
            groups.setdefault(len(ops), []).append(i)
    for m, rows in groups.items():
        labels = []  # per row: label -> column, in first-seen order
        for i in rows:
            columns: dict[Hashable, int] = {}
            for proba, _ in opinions[i]:
                for label in proba:
                    columns.setdefault(label, len(columns))
            labels.append(columns)
        width = max(len(c) for c in labels)
        proba3 = np.zeros((len(rows), m, width))
        votes = np.zeros((len(rows), m), dtype=int)
        for r, (i, columns) in enumerate(zip(rows, labels, strict=True)):
            for j, (proba, total) in enumerate(opinions[i]):
                for label, p in proba.items():
                    proba3[r, j, columns[label]] = p / total
                votes[r, j] = columns[max(proba, key=proba.__getitem__)]
        values = _modal(measure)(_FixedCommittee(proba3, votes), np.arange(len(rows)))
        k = np.array([len(c) for c in labels], dtype=float)
        if measure == "consensus_entropy":
            single = k < 2
            if normalize:
                values = np.minimum(values / np.log(np.where(single, 2.0, k)), 1.0)
            values = np.where(single, 1.0, values)
        elif normalize and measure == "vote_entropy":
            bound = np.minimum(k, m)
            values = np.where(
                bound < 2, 0.0, np.minimum(values / np.log(np.maximum(bound, 2.0)), 1.0)
            )
        elif normalize:  # kl_max_disagreement
            values = np.minimum(values / log(m), 1.0) if m > 1 else np.zeros(len(rows))
        out[rows] = values
    return out
