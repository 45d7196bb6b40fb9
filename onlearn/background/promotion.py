"""Promotion and rollback policy: pure decisions from metrics and paired counts, no I/O.

A model's config says how a challenger becomes champion::

    rollout = { policy = "auto", min_labels = 200, alpha = 0.05, margin = 0.01 }

``decide_promotion`` and ``decide_rollback`` turn the numbers the worker measured into a
:class:`Decision` whose ``reason`` is a sentence with those numbers, for the audit history. The
worker acts on it (changes roles, appends the control event); nothing here touches a store.

Paired counts follow :class:`onlearn.compare.PairedCounts`' convention: ``a`` is the incumbent
(the champion; after a promotion, the previous champion) and ``b`` the newcomer (the
challenger; after a promotion, the new champion), so one table kept across a promotion serves
both decisions.

>>> from onlearn.compare import PairedCounts
>>> paired = PairedCounts()
>>> for a, b in [(True, True)] * 300 + [(False, True)] * 40 + [(True, False)] * 10:
...     paired.update(a, b)
>>> policy = RolloutPolicy.from_config({"policy": "auto"})
>>> decision = decide_promotion(policy, {"accuracy": 0.886}, {"accuracy": 0.971}, paired)
>>> decision.action
<Action.PROMOTE: 'promote'>
>>> print(decision.reason)
promote: on 350 paired labels the challenger was right where the champion was wrong 40 times and the reverse 10 times (McNemar p = 4.1e-05 < level 0.025, look 1 at 200 labels); accuracy 0.971 vs 0.886 (margin 0.01).

Regression versions are compared on their absolute errors on the same labels
(:class:`onlearn.compare.PairedErrors`, Wilcoxon's signed-rank test); better means a lower mean
absolute error, significantly, and ``margin`` is then relative: a new version's MAE may exceed
the other's by at most that share of it.

>>> from onlearn.compare import PairedErrors
>>> errors = PairedErrors.from_errors([1.0 + (i % 7) / 10 for i in range(300)],
...                                   [0.8 + (i % 5) / 10 for i in range(300)])
>>> decision = decide_promotion(policy, {"mae": errors.a_mae}, {"mae": errors.b_mae}, errors)
>>> print(decision.reason)
promote: on 300 paired labels the challenger's mean absolute error was 1 against the champion's 1.299 (Wilcoxon signed-rank p = 2.4e-40 < level 0.025, look 1 at 200 labels; margin 1% of the MAE).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from onlearn.compare import PairedCounts, PairedErrors
from onlearn.rollout_policy import RolloutPolicy
from onlearn.two_sample import TwoSampleCounts, TwoSampleErrors

__all__ = [
    "Action",
    "Decision",
    "Look",
    "RolloutPolicy",
    "decide_promotion",
    "decide_rollback",
]


class Action(str, enum.Enum):
    """What a decision asks the worker to do."""

    PROMOTE = "promote"  # make the challenger the champion
    HOLD = "hold"  # keep comparing (not enough evidence, or a person decides)
    REJECT = "reject"  # the challenger is significantly worse: retire it
    ROLLBACK = "rollback"  # the previous champion answers again
    KEEP = "keep"  # the new champion stays


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Decision:
    """An action and why, as a sentence with the numbers; ``evidence`` holds them as data."""

    action: Action
    reason: str
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action.value, "reason": self.reason, "evidence": dict(self.evidence)}


@dataclass(frozen=True)
class Look:
    """A planned look of a gate: look ``index`` (0, 1, 2, ...) is due once the labels compared
    reach ``at = min_labels * 2**index`` and tests at ``level = alpha / 2**(index + 1)``.

    Why: a gate re-tested after every label promotes a version no better than the champion far
    more often than alpha (a test every 50 labels: 13.5% instead of 2.5%). Testing only at
    these looks, each at its own level, bounds the chance of any wrong decision over the whole
    stream by ``sum(alpha / 2**(k + 1)) < alpha`` (a union bound, whatever the tests' dependence
    and however long the stream runs). The look is a function of the count alone: no state.

    >>> look = Look.at_count(450, min_labels=100, alpha=0.05)
    >>> look.index, look.at, look.level, look.next_at
    (2, 400, 0.00625, 800)
    """

    index: int
    at: int
    level: float
    next_at: int

    @classmethod
    def at_count(cls, n: int, *, min_labels: int, alpha: float) -> Look:
        """The latest look due at ``n >= min_labels`` labels."""
        index = max((n // min_labels).bit_length() - 1, 0)
        at = min_labels << index
        return cls(index, at, alpha / 2 ** (index + 1), at << 1)

    def describe(self) -> str:
        return f"level {_num(self.level)}, look {self.index + 1} at {self.at} labels"


def _look(policy: RolloutPolicy, n: int, evidence: dict[str, Any]) -> Look:
    look = Look.at_count(n, min_labels=policy.min_labels, alpha=policy.alpha)
    # "taken": a test was due (enough labels); the worker remembers the looks it took
    evidence["look"] = {
        "index": look.index,
        "at": look.at,
        "level": look.level,
        "next_at": look.next_at,
        "taken": n >= policy.min_labels,
    }
    return look


def _wait(action: Action, look: Look, last_look: int, evidence: dict[str, Any]) -> Decision | None:
    """The look due now was already taken (``look.index <= last_look``): the gate holds until
    the next one, since testing again in between would spend alpha it does not have."""
    if look.index > last_look:
        return None
    return Decision(
        action,
        f"{action.value}: look {look.index + 1} ({look.at} labels) was taken; next look at "
        f"{look.next_at} labels.",
        evidence,
    )


def decide_promotion(
    policy: RolloutPolicy,
    champion_metrics: Any,
    challenger_metrics: Any,
    paired: PairedCounts | PairedErrors | TwoSampleCounts | TwoSampleErrors,
    *,
    last_look: int = -1,
) -> Decision:
    """Promote, hold or reject a challenger compared with the champion on paired labels.

    ``paired``: ``a`` = the champion, ``b`` = the challenger. Metrics are
    :class:`onlearn.metrics.ClassificationMetrics`-like objects or their ``to_dict()``; only
    ``accuracy`` is read. In order:

    1. fewer than ``min_labels`` paired labels: hold;
    2. the challenger significantly worse (p < alpha, ``a_only > b_only``): reject, whatever the
       policy (a manual policy can still ignore it);
    3. a manual policy: hold, saying what an automatic one would do;
    4. promote when the challenger is significantly better (p < alpha, ``b_only > a_only``) and
       its accuracy is at least the champion's minus ``margin``; hold otherwise.

    With :class:`PairedErrors` (regression) the metrics' ``mae`` is read, and significantly
    better or worse means Wilcoxon's p < alpha with that side favoured (lower MAE and smaller
    signed ranks on the tested labels); see :func:`_promotion_on_errors`.

    With an A/B comparison (:mod:`onlearn.two_sample`, a model with ``labels_follow_answer``)
    the newcomer is a canary and each side is scored on the labels of what it answered; see
    :func:`_promotion_ab`. The metrics are then read from the comparison itself.

    "p < alpha" above means p below the level of the planned :class:`Look` due at the labels
    compared (``alpha / 2**(k + 1)`` at look k). ``last_look``: the index of the last look a
    caller already tested on this comparison (the worker keeps it); while the look due is not
    newer, the gate holds and says when it looks next. The default, -1, tests the look due now.
    """
    if isinstance(paired, TwoSampleCounts | TwoSampleErrors):
        return _promotion_ab(policy, paired, last_look)
    if isinstance(paired, PairedErrors):
        return _promotion_on_errors(policy, champion_metrics, challenger_metrics, paired, last_look)
    champion_acc = _accuracy(champion_metrics)
    challenger_acc = _accuracy(challenger_metrics)
    statistic, p = paired.test()
    evidence = _evidence(policy, paired, statistic, p, champion_acc, challenger_acc)
    look = _look(policy, paired.n, evidence)
    level = look.describe()
    counts = (
        f"on {paired.n} paired labels the challenger was right where the champion was wrong "
        f"{paired.b_only} times and the reverse {paired.a_only} times"
    )
    accuracies = (
        f"accuracy {_fmt(challenger_acc)} vs {_fmt(champion_acc)} (margin {_num(policy.margin)})"
    )
    if paired.n < policy.min_labels:
        return Decision(
            Action.HOLD,
            f"hold: only {paired.n} paired labels of the {policy.min_labels} needed to compare "
            "the challenger with the champion.",
            evidence,
        )
    waiting = _wait(Action.HOLD, look, last_look, evidence)
    if waiting is not None:
        return waiting
    test = f"McNemar p = {_p(p)}"
    if p < look.level and paired.a_only > paired.b_only:
        return Decision(
            Action.REJECT,
            f"reject: the challenger is significantly worse; {counts} ({test} < "
            f"{level}); {accuracies}.",
            evidence,
        )
    better = p < look.level and paired.b_only > paired.a_only
    within_margin = (
        champion_acc is None
        or challenger_acc is None
        or challenger_acc >= champion_acc - policy.margin
    )
    if champion_acc is None or challenger_acc is None:
        return Decision(
            Action.HOLD,
            f"hold: no accuracy to compare ({accuracies}); automatic promotion needs the "
            "accuracy of both versions.",
            evidence,
        )
    if policy.policy != "auto":
        would = "would be promoted" if better and within_margin else "would not be promoted"
        return Decision(
            Action.HOLD,
            f"hold: the rollout policy is manual, so an operator promotes; the challenger "
            f"{would} automatically: {counts} ({test}, {level}); "
            f"{accuracies}.",
            evidence,
        )
    if not better:
        return Decision(
            Action.HOLD,
            f"hold: the challenger is not significantly better; {counts} ({test}, "
            f"{level}); {accuracies}.",
            evidence,
        )
    if not within_margin:
        return Decision(
            Action.HOLD,
            f"hold: the challenger wins on paired labels but its accuracy is more than the "
            f"margin below the champion's; {counts} ({test}); {accuracies}.",
            evidence,
        )
    return Decision(
        Action.PROMOTE,
        f"promote: {counts} ({test} < {level}); {accuracies}.",
        evidence,
    )


def decide_rollback(
    policy: RolloutPolicy,
    new_champion_metrics: Any,
    previous_metrics: Any,
    paired: PairedCounts | PairedErrors,
    *,
    last_look: int = -1,
) -> Decision:
    """Roll back to the previous champion, or keep the new one.

    ``paired``: ``a`` = the previous champion, ``b`` = the new champion (the orientation of the
    comparison that promoted it). With at least ``min_labels`` paired labels, roll back when the
    previous champion is significantly better (p < alpha, ``a_only > b_only``) or when the new
    champion's accuracy is below the previous one's minus ``margin``; keep otherwise. The rule
    is the same for manual and automatic policies: a worker with a manual policy may only report
    the decision.

    With :class:`PairedErrors` (regression): roll back when the previous champion is favoured
    with Wilcoxon's p < alpha, or when the new champion's MAE exceeds the previous one's by
    more than ``margin`` of it.

    Planned looks and ``last_look`` as in :func:`decide_promotion` (keep between looks).
    """
    if isinstance(paired, PairedErrors):
        return _rollback_on_errors(
            policy, new_champion_metrics, previous_metrics, paired, last_look
        )
    new_acc = _accuracy(new_champion_metrics)
    previous_acc = _accuracy(previous_metrics)
    statistic, p = paired.test()
    evidence = _evidence(policy, paired, statistic, p, previous_acc, new_acc)
    look = _look(policy, paired.n, evidence)
    level = look.describe()
    counts = (
        f"on {paired.n} paired labels the previous champion was right where the new one was "
        f"wrong {paired.a_only} times and the reverse {paired.b_only} times"
    )
    accuracies = (
        f"accuracy {_fmt(new_acc)} now vs {_fmt(previous_acc)} before "
        f"(margin {_num(policy.margin)})"
    )
    test = f"McNemar p = {_p(p)}, {level}"
    if paired.n < policy.min_labels:
        return Decision(
            Action.KEEP,
            f"keep: only {paired.n} paired labels of the {policy.min_labels} needed to judge "
            "the new champion against the previous one.",
            evidence,
        )
    waiting = _wait(Action.KEEP, look, last_look, evidence)
    if waiting is not None:
        return waiting
    if p < look.level and paired.a_only > paired.b_only:
        return Decision(
            Action.ROLLBACK,
            f"rollback: the previous champion is significantly better; {counts} ({test}); "
            f"{accuracies}.",
            evidence,
        )
    if new_acc is not None and previous_acc is not None and new_acc < previous_acc - policy.margin:
        return Decision(
            Action.ROLLBACK,
            f"rollback: the new champion's accuracy fell more than the margin below the "
            f"previous one's; {accuracies}; {counts} ({test}).",
            evidence,
        )
    return Decision(
        Action.KEEP,
        f"keep: the new champion is not worse than the previous one; {counts} ({test}); "
        f"{accuracies}.",
        evidence,
    )


def _promotion_on_errors(
    policy: RolloutPolicy,
    champion_metrics: Any,
    challenger_metrics: Any,
    paired: PairedErrors,
    last_look: int = -1,
) -> Decision:
    """``decide_promotion`` for regression: the same steps, on absolute errors."""
    champion_mae = _metric(champion_metrics, "mae")
    challenger_mae = _metric(challenger_metrics, "mae")
    statistic, p = paired.test()
    evidence = _error_evidence(policy, paired, statistic, p, champion_mae, challenger_mae)
    look = _look(policy, paired.n, evidence)
    level = look.describe()
    if paired.n < policy.min_labels:
        return Decision(
            Action.HOLD,
            f"hold: only {paired.n} paired labels of the {policy.min_labels} needed to compare "
            "the challenger with the champion.",
            evidence,
        )
    waiting = _wait(Action.HOLD, look, last_look, evidence)
    if waiting is not None:
        return waiting
    maes = (
        f"{_labels(paired)} the challenger's mean absolute error was {_fmt_mae(challenger_mae)} "
        f"against the champion's {_fmt_mae(champion_mae)}"
    )
    test = f"Wilcoxon signed-rank p = {_p(p)}"
    margin = f"margin {_num(100 * policy.margin)}% of the MAE"
    if p < look.level and paired.favoured == "a":
        return Decision(
            Action.REJECT,
            f"reject: the challenger is significantly worse; {maes} ({test} < {level}).",
            evidence,
        )
    if champion_mae is None or challenger_mae is None:
        return Decision(
            Action.HOLD,
            f"hold: no mean absolute error to compare ({maes}); automatic promotion needs the "
            "MAE of both versions.",
            evidence,
        )
    better = p < look.level and paired.favoured == "b"
    within_margin = challenger_mae <= champion_mae * (1 + policy.margin)
    if policy.policy != "auto":
        would = "would be promoted" if better and within_margin else "would not be promoted"
        return Decision(
            Action.HOLD,
            f"hold: the rollout policy is manual, so an operator promotes; the challenger "
            f"{would} automatically: {maes} ({test}, {level}; {margin}).",
            evidence,
        )
    if not better:
        return Decision(
            Action.HOLD,
            f"hold: the challenger is not significantly better; {maes} ({test}, {level}).",
            evidence,
        )
    if not within_margin:
        return Decision(
            Action.HOLD,
            f"hold: the challenger wins on paired labels but its mean absolute error is more "
            f"than the margin above the champion's; {maes} ({test}; {margin}).",
            evidence,
        )
    return Decision(
        Action.PROMOTE,
        f"promote: {maes} ({test} < {level}; {margin}).",
        evidence,
    )


def _rollback_on_errors(
    policy: RolloutPolicy,
    new_champion_metrics: Any,
    previous_metrics: Any,
    paired: PairedErrors,
    last_look: int = -1,
) -> Decision:
    """``decide_rollback`` for regression: the same steps, on absolute errors."""
    new_mae = _metric(new_champion_metrics, "mae")
    previous_mae = _metric(previous_metrics, "mae")
    statistic, p = paired.test()
    evidence = _error_evidence(policy, paired, statistic, p, previous_mae, new_mae)
    look = _look(policy, paired.n, evidence)
    level = look.describe()
    if paired.n < policy.min_labels:
        return Decision(
            Action.KEEP,
            f"keep: only {paired.n} paired labels of the {policy.min_labels} needed to judge "
            "the new champion against the previous one.",
            evidence,
        )
    waiting = _wait(Action.KEEP, look, last_look, evidence)
    if waiting is not None:
        return waiting
    maes = (
        f"{_labels(paired)} the new champion's mean absolute error was {_fmt_mae(new_mae)} "
        f"against the previous one's {_fmt_mae(previous_mae)}"
    )
    test = f"Wilcoxon signed-rank p = {_p(p)}, {level}"
    margin = f"margin {_num(100 * policy.margin)}% of the MAE"
    if p < look.level and paired.favoured == "a":
        return Decision(
            Action.ROLLBACK,
            f"rollback: the previous champion is significantly better; {maes} ({test}).",
            evidence,
        )
    if (
        new_mae is not None
        and previous_mae is not None
        and new_mae > previous_mae * (1 + policy.margin)
    ):
        return Decision(
            Action.ROLLBACK,
            f"rollback: the new champion's mean absolute error rose more than the margin above "
            f"the previous one's; {maes} ({margin}; {test}).",
            evidence,
        )
    return Decision(
        Action.KEEP,
        f"keep: the new champion is not worse than the previous one; {maes} ({test}; {margin}).",
        evidence,
    )


def _promotion_ab(
    policy: RolloutPolicy, ab: TwoSampleCounts | TwoSampleErrors, last_look: int = -1
) -> Decision:
    """``decide_promotion`` for an A/B test (``a`` = the champion, ``b`` = the canary), each
    version on the labels of the requests it answered: a two-proportion z-test of accuracies, or
    Welch's t-test of mean absolute errors. In order: fewer than ``min_labels`` labels in the
    smaller arm (the canary's, usually) hold; a significantly worse canary is rejected; a manual
    policy holds, saying what an automatic one would do; a significantly better canary is
    promoted; else hold, saying how many more labels the test needs to detect the difference
    observed. ``margin`` needs no check: significantly better on its own labels means the
    canary's accuracy (MAE) is above (below) the champion's."""
    evidence: dict[str, Any] = {"policy": policy.to_config()}
    look = _look(policy, ab.smaller_arm, evidence)
    # The labels needed are planned at the level of the next look that can still decide (the
    # first, or the one after the look due now), not at the full alpha: at a planned look the
    # test runs at that smaller level, and needs more labels.
    planned = policy.alpha / 2 if ab.smaller_arm < policy.min_labels else look.level / 2
    details = ab.to_dict(alpha=planned)
    needed = details["sample_size"]["sentence"]
    evidence["ab"] = details
    level = look.describe()
    if isinstance(ab, TwoSampleCounts):
        quality = (
            f"accuracy {_fmt(ab.b_accuracy)} on {ab.b_n} labels of the canary's answers vs "
            f"{_fmt(ab.a_accuracy)} on {ab.a_n} of the champion's"
        )
        test = f"two-proportion z = {details['statistic']:.3g}, p = {_p(ab.test()[1])}"
    else:
        quality = (
            f"mean absolute error {_fmt_mae(ab.b_mae)} on {ab.b_n} labels of the canary's "
            f"answers vs {_fmt_mae(ab.a_mae)} on {ab.a_n} of the champion's"
        )
        test = f"Welch t = {details['statistic']:.3g}, p = {_p(ab.test()[1])}"
    p = details["p_value"]
    if ab.smaller_arm < policy.min_labels:
        return Decision(
            Action.HOLD,
            f"hold: A/B test: only {ab.smaller_arm} labels in the smaller arm of the "
            f"{policy.min_labels} each version needs on the traffic it answered; {quality}; "
            f"{needed}.",
            evidence,
        )
    waiting = _wait(Action.HOLD, look, last_look, evidence)
    if waiting is not None:
        return waiting
    alpha = level
    if p < look.level and ab.favoured == "a":
        return Decision(
            Action.REJECT,
            f"reject: A/B test: the canary is significantly worse; {quality} ({test} < {alpha}).",
            evidence,
        )
    better = p < look.level and ab.favoured == "b"
    if policy.policy != "auto":
        would = "would be promoted" if better else "would not be promoted"
        return Decision(
            Action.HOLD,
            f"hold: the rollout policy is manual, so an operator promotes; A/B test: the canary "
            f"{would} automatically: {quality} ({test}, {alpha}); {needed}.",
            evidence,
        )
    if not better:
        return Decision(
            Action.HOLD,
            f"hold: A/B test: the canary is not significantly better; {quality} ({test}, "
            f"{alpha}); {needed}.",
            evidence,
        )
    return Decision(
        Action.PROMOTE,
        f"promote: A/B test: the canary is significantly better; {quality} ({test} < {alpha}).",
        evidence,
    )


def _labels(paired: PairedErrors) -> str:
    if paired.tested < paired.n:
        return f"on the last {paired.tested} of {paired.n} paired labels"
    return f"on {paired.n} paired labels"


def _error_evidence(
    policy: RolloutPolicy,
    paired: PairedErrors,
    statistic: float,
    p: float,
    a_mae: float | None,
    b_mae: float | None,
) -> dict[str, Any]:
    return {
        "policy": policy.to_config(),
        "paired": {"n": paired.n, "tested": paired.tested, "favoured": paired.favoured},
        "test": "wilcoxon",
        "statistic": statistic,
        "p_value": p,
        "a_mae": a_mae,
        "b_mae": b_mae,
    }


def _metric(metrics: Any, name: str) -> float | None:
    if metrics is None:
        return None
    value = metrics.get(name) if isinstance(metrics, Mapping) else getattr(metrics, name, None)
    return float(value) if _is_number(value) else None


def _accuracy(metrics: Any) -> float | None:
    return _metric(metrics, "accuracy")


def _fmt_mae(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.4g}"


def _evidence(
    policy: RolloutPolicy,
    paired: PairedCounts,
    statistic: float,
    p: float,
    a_accuracy: float | None,
    b_accuracy: float | None,
) -> dict[str, Any]:
    return {
        "policy": policy.to_config(),
        "paired": {
            "n": paired.n,
            "both": paired.both,
            "a_only": paired.a_only,
            "b_only": paired.b_only,
            "neither": paired.neither,
        },
        "statistic": statistic,
        "p_value": p,
        "a_accuracy": a_accuracy,
        "b_accuracy": b_accuracy,
    }


def _fmt(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.3f}"


def _num(value: float) -> str:
    return f"{value:g}"


def _p(p: float) -> str:
    return f"{p:.3g}" if p >= 1e-3 else f"{p:.2g}"
