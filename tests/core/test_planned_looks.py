"""The gates look at planned points only, each at its own share of alpha (promotion.Look).

Oracles: the levels spent over the looks sum to at most alpha; seeded streams with no
difference between the versions, gated as the worker gates them, decide (promote or reject) in
at most alpha of the streams within a binomial tolerance, while the same A/B streams re-tested
at full alpha at every check (the old gate) go well above it (McNemar's exact test of the
paired gate is conservative enough that its old gate stayed near alpha on these streams).
"""

from __future__ import annotations

import math
import random

import pytest

from onlearn.background.promotion import Action, Look, RolloutPolicy, decide_promotion
from onlearn.compare import PairedCounts
from onlearn.two_sample import TwoSampleCounts

ALPHA = 0.05
MIN_LABELS = 32
LOOKS = 6  # streams reach 32 * 2**5 = 1024 labels
CHECK_EVERY = 32  # a divisor of every look, so each look is taken where it is planned
STREAMS = 400


def test_levels_spent_over_looks_sum_to_at_most_alpha():
    levels = [
        Look.at_count(MIN_LABELS << k, min_labels=MIN_LABELS, alpha=ALPHA).level for k in range(60)
    ]
    assert math.fsum(levels) <= ALPHA
    assert levels[0] == ALPHA / 2 and levels[3] == ALPHA / 16


@pytest.mark.parametrize("n", [32, 33, 63, 64, 100, 127, 128, 1000, 4096, 5000])
def test_the_look_is_the_latest_power_of_two_reached(n):
    look = Look.at_count(n, min_labels=MIN_LABELS, alpha=ALPHA)
    assert look.at <= n < look.next_at == 2 * look.at
    assert look.at == MIN_LABELS * 2**look.index
    assert look.level == ALPHA / 2 ** (look.index + 1)


def test_between_looks_the_gate_holds_and_says_when_it_looks_next():
    policy = RolloutPolicy(policy="auto", min_labels=200)
    paired = PairedCounts()
    paired.update(True, True, by=300)
    paired.update(False, True, by=40)
    paired.update(True, False, by=10)  # 350 labels, far better: promoted at a fresh look
    first = decide_promotion(policy, None, None, paired)
    assert first.action is Action.HOLD  # no accuracies given: holds, but the look was taken
    assert first.evidence["look"] == {
        "index": 0,
        "at": 200,
        "level": 0.025,
        "next_at": 400,
        "taken": True,
    }
    metrics = {"accuracy": paired.a_accuracy}, {"accuracy": paired.b_accuracy}
    assert decide_promotion(policy, *metrics, paired).action is Action.PROMOTE
    held = decide_promotion(policy, *metrics, paired, last_look=0)
    assert held.action is Action.HOLD
    assert held.reason == "hold: look 1 (200 labels) was taken; next look at 400 labels."
    paired.update(True, True, by=50)  # 400: look 2, at alpha / 4
    again = decide_promotion(policy, *metrics, paired, last_look=0)
    assert again.action is Action.PROMOTE and "level 0.0125, look 2 at 400 labels" in again.reason


def _gate(policy, comparison, last_look):
    metrics = {"accuracy": comparison.a_accuracy}, {"accuracy": comparison.b_accuracy}
    decision = decide_promotion(policy, *metrics, comparison, last_look=last_look)
    look = decision.evidence["look"]
    return decision.action, max(last_look, look["index"]) if look["taken"] else last_look


def _false_decisions(
    kind: str, *, planned: bool, check_every: int = CHECK_EVERY, seed: int = 7
) -> float:
    """Share of no-difference streams in which the gate promoted or rejected at some check."""
    rng = random.Random(seed)
    policy = RolloutPolicy(policy="auto", min_labels=MIN_LABELS, alpha=ALPHA, margin=0.99)
    wrong = 0
    for _ in range(STREAMS):
        comparison = PairedCounts() if kind == "paired" else TwoSampleCounts()
        last_look = -1
        for i in range(1, MIN_LABELS * 2 ** (LOOKS - 1) + 1):
            if kind == "paired":
                comparison.update(rng.random() < 0.75, rng.random() < 0.75)
            else:  # arms alternate, so the smaller arm passes every look exactly
                comparison.update("ab"[i % 2], rng.random() < 0.75)
            if i % check_every:
                continue
            action, look = _gate(policy, comparison, last_look if planned else -1)
            last_look = look
            if action in (Action.PROMOTE, Action.REJECT):
                wrong += 1
                break
    return wrong / STREAMS


@pytest.mark.parametrize("kind", ["paired", "ab"])
def test_no_difference_streams_decide_in_at_most_alpha_of_streams(kind):
    tolerance = 3 * math.sqrt(ALPHA * (1 - ALPHA) / STREAMS)  # 3 binomial sd: 0.033
    planned = _false_decisions(kind, planned=True)
    assert planned <= ALPHA + tolerance
    if kind == "ab":  # the simulation sees peeking: the old gate, full alpha at every check
        assert _false_decisions(kind, planned=False, check_every=16) > ALPHA + tolerance


def test_an_ab_hold_plans_the_labels_it_needs_at_the_next_looks_level():
    policy = RolloutPolicy(policy="auto", min_labels=100)
    ab = TwoSampleCounts()
    for side, right, n in (("a", 160, 200), ("b", 90, 110)):  # 0.80 vs 0.82: not significant
        for i in range(n):
            ab.update(side, i < right)
    held = decide_promotion(policy, None, None, ab)
    assert held.action is Action.HOLD and held.evidence["look"]["level"] == 0.025
    # look 1 (110 labels in the smaller arm) tests at 0.025; the next one at 0.0125
    planned = held.evidence["ab"]["sample_size"]
    assert planned == ab.labels_needed(alpha=0.0125)
    assert planned["more_labels"] > ab.labels_needed(alpha=0.05)["more_labels"]
    assert "at alpha 0.0125" in held.reason
    early = TwoSampleCounts()
    for side, right, n in (("a", 40, 50), ("b", 45, 50)):  # before the first look: its level
        for i in range(n):
            early.update(side, i < right)
    assert decide_promotion(policy, None, None, early).evidence["ab"]["sample_size"] == (
        early.labels_needed(alpha=0.025)
    )
