"""Promotion and rollback decisions: golden cases on constructed paired counts."""

from __future__ import annotations

import json

import pytest

from onlearn.background.promotion import (
    Action,
    Decision,
    RolloutPolicy,
    decide_promotion,
    decide_rollback,
)
from onlearn.compare import PairedCounts, PairedErrors
from onlearn.errors import ConfigError
from onlearn.metrics import ClassificationMetrics, RegressionMetrics

AUTO = RolloutPolicy(policy="auto")
MANUAL = RolloutPolicy()


def table(both: int, a_only: int, b_only: int, neither: int) -> PairedCounts:
    """Paired counts with ``a`` = the incumbent, ``b`` = the newcomer."""
    rows = (
        [(True, True)] * both
        + [(True, False)] * a_only
        + [(False, True)] * b_only
        + [(False, False)] * neither
    )
    return PairedCounts.from_correct([a for a, _ in rows], [b for _, b in rows])


def accuracies(paired: PairedCounts) -> tuple[dict, dict]:
    """The accuracies of a and b on the paired events, as metrics dicts."""
    return {"accuracy": paired.a_accuracy}, {"accuracy": paired.b_accuracy}


# -- the policy -------------------------------------------------------------------------------


def test_policy_defaults_and_round_trip():
    assert RolloutPolicy.from_config(None) == RolloutPolicy()
    assert RolloutPolicy().to_config() == {
        "policy": "manual",
        "min_labels": 200,
        "alpha": 0.05,
        "margin": 0.01,
    }
    table_ = {"policy": "auto", "min_labels": 500, "alpha": 0.01, "margin": 0}
    policy = RolloutPolicy.from_config(table_)
    assert policy.to_config() == table_
    assert RolloutPolicy.from_config(policy.to_config()) == policy


@pytest.mark.parametrize(
    "table_, words",
    [
        ({"policy": "sometimes"}, "policy"),
        ({"policy": None}, "policy"),
        ({"min_labels": 0}, "min_labels"),
        ({"min_labels": "200"}, "min_labels"),
        ({"min_labels": 2.5}, "min_labels"),
        ({"min_labels": True}, "min_labels"),
        ({"alpha": 0}, "alpha"),
        ({"alpha": 1.0}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
        ({"alpha": "0.05"}, "alpha"),
        ({"margin": -0.01}, "margin"),
        ({"margin": 1}, "margin"),
        ({"margin": float("inf")}, "margin"),
        ({"min_label": 200}, "min_label"),
    ],
)
def test_bad_policies_are_config_errors_naming_the_entry(table_, words):
    with pytest.raises(ConfigError, match=words):
        RolloutPolicy.from_config(table_)


def test_policy_must_be_a_table():
    with pytest.raises(ConfigError, match="table"):
        RolloutPolicy.from_config("auto")


# -- promotion --------------------------------------------------------------------------------


def test_significantly_better_challenger_is_promoted():
    paired = table(both=300, a_only=10, b_only=40, neither=0)
    champion, challenger = accuracies(paired)
    decision = decide_promotion(AUTO, champion, challenger, paired)
    assert decision.action is Action.PROMOTE and decision.action == "promote"
    assert decision.reason == (
        "promote: on 350 paired labels the challenger was right where the champion was wrong "
        "40 times and the reverse 10 times (McNemar p = 4.1e-05 < level 0.025, look 1 at 200 "
        "labels); accuracy 0.971 vs 0.886 (margin 0.01)."
    )
    assert decision.evidence["paired"] == {
        "n": 350,
        "both": 300,
        "a_only": 10,
        "b_only": 40,
        "neither": 0,
    }
    assert decision.evidence["p_value"] == pytest.approx(paired.test()[1])
    json.dumps(decision.to_dict())


def test_an_auto_promotion_that_should_not_happen_does_not():
    # The challenger is worse: it is rejected, whatever the accuracies it reports elsewhere.
    paired = table(both=300, a_only=40, b_only=10, neither=0)
    champion, challenger = accuracies(paired)
    decision = decide_promotion(AUTO, champion, challenger, paired)
    assert decision.action is Action.REJECT
    assert decision.reason.startswith("reject: the challenger is significantly worse")
    assert "wrong 10 times and the reverse 40 times" in decision.reason
    # Even with flattering metrics, the paired evidence wins.
    flattering = decide_promotion(AUTO, {"accuracy": 0.5}, {"accuracy": 0.99}, paired)
    assert flattering.action is Action.REJECT


def test_slightly_worse_but_not_significantly_is_held():
    paired = table(both=300, a_only=15, b_only=12, neither=10)
    champion, challenger = accuracies(paired)
    decision = decide_promotion(AUTO, champion, challenger, paired)
    assert decision.action is Action.HOLD
    assert decision.reason.startswith("hold: the challenger is not significantly better")
    assert "McNemar p = 0.7," in decision.reason


def test_better_but_not_significantly_is_held():
    paired = table(both=300, a_only=10, b_only=18, neither=0)  # chi2 = 7**2 / 28, p = 0.186
    decision = decide_promotion(AUTO, *accuracies(paired), paired)
    assert decision.action is Action.HOLD
    assert "p = 0.186" in decision.reason


def test_not_enough_labels_is_held_however_good():
    paired = table(both=100, a_only=0, b_only=60, neither=0)
    decision = decide_promotion(AUTO, *accuracies(paired), paired)
    assert decision.action is Action.HOLD
    assert decision.reason == (
        "hold: only 160 paired labels of the 200 needed to compare the challenger with the "
        "champion."
    )
    worse = decide_promotion(AUTO, *accuracies(table(100, 60, 0, 0)), table(100, 60, 0, 0))
    assert worse.action is Action.HOLD  # nor rejected on too few labels


def test_min_labels_boundary():
    paired = table(both=300, a_only=10, b_only=40, neither=0)  # n = 350
    at = decide_promotion(RolloutPolicy("auto", min_labels=350), *accuracies(paired), paired)
    assert at.action is Action.PROMOTE
    above = decide_promotion(RolloutPolicy("auto", min_labels=351), *accuracies(paired), paired)
    assert above.action is Action.HOLD
    assert "only 350 paired labels of the 351 needed" in above.reason


def test_alpha_boundary():
    paired = table(both=300, a_only=10, b_only=25, neither=0)  # chi2 = 14**2 / 35, p = 0.018
    p = paired.test()[1]
    assert 0.0179 < p < 0.0180
    assert decide_promotion(AUTO, *accuracies(paired), paired).action is Action.PROMOTE
    strict = RolloutPolicy(policy="auto", alpha=0.01)
    decision = decide_promotion(strict, *accuracies(paired), paired)
    assert decision.action is Action.HOLD
    assert "level 0.005, look 1 at 200 labels" in decision.reason  # alpha 0.01 / 2


def test_paired_winner_below_the_margin_is_held():
    # The metrics come from elsewhere (e.g. all of each version's traffic) and disagree.
    paired = table(both=300, a_only=10, b_only=40, neither=0)
    decision = decide_promotion(AUTO, {"accuracy": 0.95}, {"accuracy": 0.93}, paired)
    assert decision.action is Action.HOLD
    assert "more than the margin below" in decision.reason
    assert "accuracy 0.930 vs 0.950 (margin 0.01)" in decision.reason
    within = decide_promotion(AUTO, {"accuracy": 0.95}, {"accuracy": 0.94}, paired)
    assert within.action is Action.PROMOTE


def test_manual_policy_never_promotes_but_says_what_auto_would_do():
    paired = table(both=300, a_only=10, b_only=40, neither=0)
    decision = decide_promotion(MANUAL, *accuracies(paired), paired)
    assert decision.action is Action.HOLD
    assert "manual" in decision.reason and "would be promoted" in decision.reason
    worse = table(both=300, a_only=40, b_only=10, neither=0)
    assert decide_promotion(MANUAL, *accuracies(worse), worse).action is Action.REJECT


def test_metrics_objects_are_read_too():
    champion, challenger = ClassificationMetrics(), ClassificationMetrics()
    paired = PairedCounts()
    for i in range(400):
        a_ok, b_ok = i % 5 != 0, i % 20 != 0  # 80% vs 95%
        champion.update(1, 1 if a_ok else 0, None)
        challenger.update(1, 1 if b_ok else 0, None)
        paired.update(a_ok, b_ok)
    decision = decide_promotion(AUTO, champion, challenger, paired)
    assert decision.action is Action.PROMOTE
    assert "accuracy 0.950 vs 0.800" in decision.reason


def test_no_accuracy_is_held():
    paired = table(both=300, a_only=10, b_only=40, neither=0)
    decision = decide_promotion(AUTO, {"mae": 1.0}, None, paired)
    assert decision.action is Action.HOLD
    assert "no accuracy" in decision.reason


# -- rollback ---------------------------------------------------------------------------------


def test_rollback_when_the_previous_champion_is_significantly_better():
    paired = table(both=250, a_only=35, b_only=12, neither=3)  # a = previous, b = new
    previous, new = accuracies(paired)
    decision = decide_rollback(AUTO, new, previous, paired)
    assert decision.action is Action.ROLLBACK and decision.action == "rollback"
    assert decision.reason.startswith(
        "rollback: the previous champion is significantly better; on 300 paired labels the "
        "previous champion was right where the new one was wrong 35 times and the reverse 12 "
        "times (McNemar p = 0.00133, level 0.025, look 1 at 200 labels)"
    )
    assert "accuracy 0.873 now vs 0.950 before (margin 0.01)" in decision.reason


def test_rollback_when_accuracy_falls_below_the_margin():
    paired = table(both=250, a_only=10, b_only=10, neither=30)  # no paired evidence either way
    decision = decide_rollback(AUTO, {"accuracy": 0.90}, {"accuracy": 0.92}, paired)
    assert decision.action is Action.ROLLBACK
    assert "fell more than the margin" in decision.reason
    assert "accuracy 0.900 now vs 0.920 before" in decision.reason


def test_keep_when_not_worse():
    paired = table(both=250, a_only=10, b_only=12, neither=28)
    decision = decide_rollback(AUTO, *reversed(accuracies(paired)), paired)
    assert decision.action is Action.KEEP
    assert decision.reason.startswith("keep: the new champion is not worse")
    within = decide_rollback(AUTO, {"accuracy": 0.915}, {"accuracy": 0.92}, paired)
    assert within.action is Action.KEEP


def test_keep_without_enough_labels():
    paired = table(both=50, a_only=40, b_only=0, neither=0)
    decision = decide_rollback(AUTO, *reversed(accuracies(paired)), paired)
    assert decision.action is Action.KEEP
    assert "only 90 paired labels of the 200 needed" in decision.reason


def test_rollback_rule_is_the_same_for_manual_policies():
    paired = table(both=250, a_only=35, b_only=12, neither=3)
    auto = decide_rollback(AUTO, *reversed(accuracies(paired)), paired)
    manual = decide_rollback(MANUAL, *reversed(accuracies(paired)), paired)
    assert auto.action is manual.action is Action.ROLLBACK


def test_decision_is_a_frozen_record():
    decision = Decision(Action.HOLD, "hold: because.")
    with pytest.raises(AttributeError):
        decision.action = Action.PROMOTE  # type: ignore[misc]
    assert decision.to_dict() == {"action": "hold", "reason": "hold: because.", "evidence": {}}


# -- regression: paired absolute errors, Wilcoxon's signed-rank test --------------------------


def errors(n: int, a_scale: float, b_scale: float, *, seed: int = 3) -> PairedErrors:
    """Paired absolute errors with ``a`` = the incumbent, ``b`` = the newcomer: half-normal
    errors of the given scales on the same labels (a seeded stream: exact p-values)."""
    import random

    rng = random.Random(seed)
    pairs = [(abs(rng.gauss(0, 1)), abs(rng.gauss(0, 1))) for _ in range(n)]
    return PairedErrors.from_errors(
        [a * a_scale for a, _ in pairs], [b * b_scale for _, b in pairs]
    )


def maes(paired: PairedErrors) -> tuple[dict, dict]:
    return {"mae": paired.a_mae}, {"mae": paired.b_mae}


def test_regression_challenger_with_a_significantly_lower_mae_is_promoted():
    paired = errors(300, a_scale=1.0, b_scale=0.6)
    decision = decide_promotion(AUTO, *maes(paired), paired)
    assert decision.action is Action.PROMOTE
    assert decision.reason == (
        "promote: on 300 paired labels the challenger's mean absolute error was 0.491 against "
        "the champion's 0.7555 (Wilcoxon signed-rank p = 9e-09 < level 0.025, look 1 at 200 "
        "labels; margin 1% of the MAE)."
    )
    assert "accuracy" not in decision.reason and "right" not in decision.reason
    assert decision.evidence["test"] == "wilcoxon"
    assert decision.evidence["p_value"] == paired.test()[1]
    assert decision.evidence["a_mae"] == paired.a_mae and decision.evidence["b_mae"] == paired.b_mae
    assert decision.evidence["paired"] == {"n": 300, "tested": 300, "favoured": "b"}
    json.dumps(decision.to_dict())
    # A manual policy holds, saying what an automatic one would do.
    manual = decide_promotion(MANUAL, *maes(paired), paired)
    assert manual.action is Action.HOLD and "would be promoted" in manual.reason


def test_regression_challenger_significantly_worse_is_rejected():
    paired = errors(300, a_scale=0.6, b_scale=1.0)
    decision = decide_promotion(AUTO, *maes(paired), paired)
    assert decision.action is Action.REJECT
    assert decision.reason.startswith("reject: the challenger is significantly worse; on 300")
    assert "mean absolute error was 0.8183 against the champion's 0.4533" in decision.reason
    assert decide_promotion(MANUAL, *maes(paired), paired).action is Action.REJECT


def test_regression_equal_challenger_is_held_and_too_few_labels_hold():
    paired = errors(300, a_scale=1.0, b_scale=1.0)
    decision = decide_promotion(AUTO, *maes(paired), paired)
    assert decision.action is Action.HOLD
    assert decision.reason.startswith("hold: the challenger is not significantly better")
    few = errors(150, a_scale=1.0, b_scale=0.2)
    assert few.test()[1] < 1e-10
    held = decide_promotion(AUTO, *maes(few), few)
    assert held.action is Action.HOLD and "only 150 paired labels of the 200" in held.reason


def test_regression_significant_ranks_without_a_lower_mae_are_not_a_promotion():
    # The challenger is closer on most labels by a little, far off on a few: Wilcoxon favours
    # it, its MAE does not. "Better" needs both.
    paired = PairedErrors.from_errors([1.1] * 250 + [1.0] * 10, [1.0] * 250 + [9.0] * 10)
    assert paired.test()[1] < 0.05 and paired.b_mae > paired.a_mae
    assert paired.favoured is None
    decision = decide_promotion(AUTO, *maes(paired), paired)
    assert decision.action is Action.HOLD
    assert "not significantly better" in decision.reason


def test_regression_margin_is_a_share_of_the_mae():
    paired = errors(300, a_scale=1.0, b_scale=0.6)  # significantly better on paired labels
    # MAEs from elsewhere that disagree: 3% above the champion is beyond a 1% margin...
    decision = decide_promotion(AUTO, {"mae": 1.0}, {"mae": 1.03}, paired)
    assert decision.action is Action.HOLD
    assert "more than the margin above" in decision.reason
    # ...and within a 5% one.
    loose = RolloutPolicy(policy="auto", margin=0.05)
    assert decide_promotion(loose, {"mae": 1.0}, {"mae": 1.03}, paired).action is Action.PROMOTE
    missing = decide_promotion(AUTO, {"accuracy": 0.9}, None, paired)
    assert missing.action is Action.HOLD and "no mean absolute error" in missing.reason


def test_regression_metrics_objects_are_read_too():
    champion, challenger = RegressionMetrics(), RegressionMetrics()
    paired = errors(300, a_scale=1.0, b_scale=0.6)
    for a, b in zip(*paired.errors(), strict=True):
        champion.update(a, 0.0)
        challenger.update(b, 0.0)
    decision = decide_promotion(AUTO, champion, challenger, paired)
    assert decision.action is Action.PROMOTE


def test_regression_rollback_when_the_previous_champion_is_significantly_better():
    paired = errors(300, a_scale=0.6, b_scale=1.0)  # a = previous, b = new
    previous, new = maes(paired)
    decision = decide_rollback(AUTO, new, previous, paired)
    assert decision.action is Action.ROLLBACK
    assert decision.reason.startswith(
        "rollback: the previous champion is significantly better; on 300 paired labels the new "
        "champion's mean absolute error was 0.8183 against the previous one's 0.4533 (Wilcoxon "
        "signed-rank p = 4.7e-17, level 0.025, look 1 at 200 labels)."
    )
    manual = decide_rollback(MANUAL, new, previous, paired)
    assert manual.action is Action.ROLLBACK


def test_regression_rollback_on_the_margin_and_keep():
    paired = errors(300, a_scale=1.0, b_scale=1.0)  # no paired evidence either way
    decision = decide_rollback(AUTO, {"mae": 1.03}, {"mae": 1.0}, paired)
    assert decision.action is Action.ROLLBACK
    assert "rose more than the margin above the previous one's" in decision.reason
    keep = decide_rollback(AUTO, {"mae": 1.005}, {"mae": 1.0}, paired)
    assert keep.action is Action.KEEP
    assert keep.reason.startswith("keep: the new champion is not worse")
    better = errors(300, a_scale=1.0, b_scale=0.6)
    assert decide_rollback(AUTO, *reversed(maes(better)), better).action is Action.KEEP
    few = errors(100, a_scale=0.2, b_scale=1.0)
    kept = decide_rollback(AUTO, *reversed(maes(few)), few)
    assert kept.action is Action.KEEP and "only 100 paired labels" in kept.reason


def test_regression_reason_says_when_only_the_last_window_was_tested():
    paired = PairedErrors(window=250)
    source = errors(400, a_scale=1.0, b_scale=0.6)
    for a, b in zip(*source.errors(), strict=True):
        paired.update(a, b)
    decision = decide_promotion(AUTO, *maes(paired), paired)
    assert "on the last 250 of 400 paired labels" in decision.reason
