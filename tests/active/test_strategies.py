"""Budgeted stream strategies: the paper's algorithms, golden counts, budgets held."""

from __future__ import annotations

import functools
import math
import pickle
import random
from fractions import Fraction

import numpy as np
import pytest

from onlearn.active import (
    DEFAULT_STEP,
    STRATEGIES,
    BudgetManager,
    FixedUncertainty,
    RandomizedVariableUncertainty,
    RandomSampling,
    Split,
    VariableUncertainty,
    entropy,
)
from onlearn.active.budget import (
    DEFAULT_COLD_START,
    DEFAULT_CREDIT,
    DEFAULT_DRIFT_CREDIT,
    DEFAULT_REPAY,
    labels_per_window,
)
from onlearn.errors import ConfigError
from tests.active.streams import STREAMS, random_probas

WINDOW = 200
_SEEDED = {"random", "randomized_variable_uncertainty", "split"}


@functools.cache
def uncertainties(stream: str, n: int = 20_000, seed: int = 42) -> tuple[float, ...]:
    return tuple(entropy(p) for p in STREAMS[stream](n, seed))


def build(name: str, budget: float, window: int = WINDOW, **params):
    if name == "fixed_uncertainty":
        params.setdefault("threshold", 0.3)
    return STRATEGIES[name](budget=budget, window=window, **params)


# ---------------------------------------------------------------------------------------------
# the budget manager: an exact sliding window


# (budget, window, floor(budget * window)), the limits worked out by hand
LIMITS = [
    (0.3, 50, 15),
    (0.29, 100, 29),  # 0.29 * 100 == 28.999999999999996 in floats
    (0.07, 300, 21),  # 21.000000000000004
    (1 / 3, 3, 1),
    (0.05, 20, 1),
    (0.25, 4, 1),
    (0.5, 7, 3),
    (1.0, 7, 7),
    (1.0, 1, 1),
    (0.1, 1000, 100),
]


@pytest.mark.parametrize("budget, window, limit", LIMITS)
def test_the_limit_is_floor_budget_times_window_despite_float_rounding(budget, window, limit):
    assert labels_per_window(budget, window) == limit
    assert BudgetManager(budget, window).limit == limit


@pytest.mark.parametrize("budget, window, limit", LIMITS)
def test_the_manager_matches_a_brute_force_window_at_every_step(budget, window, limit):
    """can_spend: the window of w predictions ending at this one would hold <= limit labels;
    spending: labels among the last min(n, w) predictions over min(n, w). Recomputed from the
    whole history at every step."""
    rng = random.Random(window)
    manager = BudgetManager(budget, window)
    history: list[bool] = []
    assert manager.spending == 0.0
    for _ in range(max(600, 5 * window)):
        previous = history[max(0, len(history) - window + 1) :] if window > 1 else []
        assert manager.can_spend == (sum(previous) + 1 <= limit)
        ask = manager.can_spend and rng.random() < 0.6
        manager.update(ask)
        history.append(ask)
        last = history[-window:]
        assert manager.n_labelled == sum(last)
        assert manager.spending == sum(last) / len(last)
    asked = np.array(history, dtype=int)
    assert max_per_window(asked, window) == limit  # reached, never passed


def test_a_budget_of_one_never_refuses():
    for window in (1, 2, 10):
        manager = BudgetManager(budget=1.0, window=window)
        for _ in range(1000):
            assert manager.can_spend
            manager.update(True)
        assert manager.spending == 1.0


def test_a_fresh_manager_may_spend_the_whole_window_at_once_then_waits():
    manager = BudgetManager(budget=0.1, window=50)  # 5 labels in any 50 predictions
    asked = []
    for _ in range(200):
        asked.append(manager.can_spend)
        manager.update(asked[-1])
    # Each label frees its slot exactly one window later: the first burst repeats.
    assert [i for i, a in enumerate(asked) if a] == [
        b + i for b in (0, 50, 100, 150) for i in range(5)
    ]


@pytest.mark.parametrize(
    "budget, window, smallest",
    [(0.01, 50, 100), (0.3, 3, 4), (0.1, 9, 10), (0.07, 10, 15), (0.001, 999, 1000)],
)
def test_a_window_too_short_to_hold_one_label_is_refused(budget, window, smallest):
    with pytest.raises(ConfigError) as info:
        BudgetManager(budget=budget, window=window)
    assert str(info.value).startswith("BudgetManager: budget * window must be at least 1")
    assert f"use a window of at least {smallest} predictions" in str(info.value)
    for make in (VariableUncertainty, Split):  # the strategies' window is the rate cap's
        with pytest.raises(ConfigError) as info:
            make(budget=0.001, max_rate=budget, window=window)
        assert str(info.value).startswith("CreditBudget: max_rate * window must be at least 1")
        assert f"use a window of at least {smallest} predictions" in str(info.value)
    assert BudgetManager(budget, smallest).limit == 1
    assert labels_per_window(budget, smallest - 1) == 0


def test_a_budget_too_small_for_any_window_is_refused_without_a_window_to_suggest():
    with pytest.raises(ConfigError, match="5e-324 \\* 1000 = 4.941e-321: .* use a larger budget$"):
        BudgetManager(budget=5e-324, window=1000)


def test_a_pickled_manager_keeps_its_window():
    manager = BudgetManager(budget=0.2, window=30)
    rng = random.Random(1)
    for _ in range(47):
        manager.update(manager.can_spend and rng.random() < 0.5)
    copy = pickle.loads(pickle.dumps(manager))
    for _ in range(200):
        assert copy.can_spend == manager.can_spend and copy.spending == manager.spending
        ask = manager.can_spend and rng.random() < 0.5
        manager.update(ask)
        copy.update(ask)


# ---------------------------------------------------------------------------------------------
# the paper's algorithms, traced by hand


def test_variable_uncertainty_follows_the_papers_algorithm():
    # No budget limit; step 0.5. theta: 1 -> ask 0.5 -> no 0.75 -> ask 0.375 -> ask 0.1875
    # -> no 0.28125 -> no 0.421875 -> ask (confidence 0.3 < 0.421875).
    strategy = VariableUncertainty(budget=1.0, step=0.5)
    confidences = [0.6, 0.6, 0.6, 0.2, 0.3, 0.3, 0.3]
    asked = [strategy.decide(1.0 - c) for c in confidences]
    assert asked == [True, False, True, True, False, False, True]
    assert strategy.threshold == pytest.approx(1.0 - 0.421875 * 0.5)


def test_the_budget_is_checked_first_and_a_refusal_leaves_the_threshold_alone():
    strategy = VariableUncertainty(budget=0.1, step=0.05, window=20)
    refused = 0
    for u in uncertainties("mixed", 3000):
        allowed = strategy._budget.can_spend
        before = strategy.threshold
        asked = strategy.decide(u)
        if not allowed:
            refused += 1
            assert not asked and strategy.threshold == before
        else:
            assert strategy.threshold != before  # consulted: it always moves
    assert refused > 1000


def test_fixed_uncertainty_asks_above_its_threshold_within_the_budget():
    strategy = FixedUncertainty(threshold=0.5, budget=1.0)
    assert [strategy.decide(u) for u in (0.2, 0.5, 0.51, 0.9)] == [False, False, True, True]


def test_randomization_without_spread_is_variable_uncertainty():
    us = uncertainties("mixed", 5000)
    plain = VariableUncertainty(budget=0.1, window=WINDOW)
    same = RandomizedVariableUncertainty(budget=0.1, window=WINDOW, delta=0.0)
    assert [plain.decide(u) for u in us] == [same.decide(u) for u in us]


def test_split_without_random_share_is_variable_uncertainty_and_all_random_ignores_doubt():
    us = uncertainties("mixed", 5000)
    plain = VariableUncertainty(budget=0.1, window=WINDOW)
    split = Split(budget=0.1, window=WINDOW, random_share=0.0)
    assert [plain.decide(u) for u in us] == [split.decide(u) for u in us]
    blind = Split(budget=0.1, window=WINDOW, random_share=1.0)
    confident = [0.0] * 5000
    # It wants every label: the first 20 of each of the 25 windows of 200.
    assert sum(blind.decide(u) for u in confident) == 500


def test_variable_thresholds_adapt_to_spend_the_budget_on_any_stream():
    """A fixed threshold spends nothing when the model is sure; a variable one keeps buying."""
    confident = uncertainties("confident")
    fixed = build("fixed_uncertainty", 0.1)
    variable = build("variable_uncertainty", 0.1)
    assert sum(map(fixed.decide, confident)) == 0
    assert sum(map(variable.decide, confident)) / len(confident) == pytest.approx(0.1, abs=0.01)


# ---------------------------------------------------------------------------------------------
# a reference: the strategies re-derived from the paper, the budget recomputed from the history


def reference(
    name: str,
    us,
    budget: float,
    window: int,
    *,
    seed: int = 42,
    step: float = DEFAULT_STEP,
    threshold: float = 0.3,
    delta: float = 1.0,
    random_share: float = 0.2,
    credit: int = DEFAULT_CREDIT,
    cold_start: int = DEFAULT_COLD_START,
    drift_credit: int = DEFAULT_DRIFT_CREDIT,
    repay: float = DEFAULT_REPAY,
    max_rate: float | None = None,
    alarms: frozenset[int] = frozenset(),
) -> list[bool]:
    """The documented rule, from the history at every step: ask iff (1) asks so far + 1 <=
    budget * n - forgiven + line(n), the line opened at min(cold_start, credit) and again before
    each prediction index in ``alarms`` at min(credit, max(line, debt + drift_credit)),
    shrinking by repay * budget per prediction; (2) the last ``window - 1`` decisions plus this
    one hold at most floor(max_rate * window) asks; (3) the paper's rule wants it. Random
    numbers are drawn only when the rule is consulted, in the same order."""
    max_rate = min(1.0, 5 * budget) if max_rate is None else max_rate
    cap = math.floor(Fraction(str(max_rate)) * window)
    savings = max(1.0, float(credit))
    rng = random.Random(seed)
    theta = 1.0
    grant, at, forgiven = float(min(cold_start, credit)), 0, 0.0
    asked: list[bool] = []
    total = 0  # sum(asked), kept as we go: the reference must stay fast on long streams
    counts = [0]  # counts[i]: asks among the first i decisions
    for i, u in enumerate(us):
        if i in alarms:  # on_drift() before prediction i + 1
            debt = max(0.0, total + forgiven - budget * i)
            line_now = max(0.0, grant - repay * budget * (i + 1 - at))
            grant, at = min(float(credit), max(line_now, debt + drift_credit)), i + 1
        n = i + 1
        line = max(0.0, grant - repay * budget * (n - at))
        previous = total - counts[max(0, i - window + 1)]  # the last window - 1 decisions
        ask = False
        if total + 1 <= budget * n - forgiven + line and previous + 1 <= cap:
            if name == "random":
                ask = rng.random() < budget
            elif name == "fixed_uncertainty":
                ask = u > threshold
            elif name == "split" and rng.random() < random_share:
                ask = True
            else:
                eta = rng.gauss(1.0, delta) if name == "randomized_variable_uncertainty" else 1.0
                ask = 1.0 - u < theta * eta
                theta = max(theta * (1.0 - step), 1e-6) if ask else theta * (1.0 + step)
        asked.append(ask)
        total += ask
        counts.append(total)
        excess = budget * n - forgiven - total - savings
        if excess > 0:
            forgiven += excess
    return asked


def max_per_window(asked, window: int) -> int:
    """The most asks in any ``window`` consecutive decisions (a shorter stream: all of it)."""
    counts = np.concatenate([[0], np.cumsum(np.asarray(asked, dtype=int))])
    if len(counts) <= window:
        return int(counts[-1])
    return int((counts[window:] - counts[:-window]).max())


def run(strategy, us, alarms=frozenset()) -> list[bool]:
    out = []
    for i, u in enumerate(us):
        if i in alarms:
            strategy.on_drift()
        out.append(strategy.decide(u))
    return out


# ---------------------------------------------------------------------------------------------
# golden: seeded streams give exact answers


# (labels asked, the indices of asks 1000 to 1005) on 20 000 varied probability vectors, budget
# 0.1, window 200 (rate cap: 100 asks in any 200), default credit line.
# Every strategy but random ends at exactly budget x n = 2000: its cold start was repaid.
GOLDEN = {
    "random": (1972, [10106, 10112, 10116, 10120, 10134, 10150]),
    "fixed_uncertainty": (2000, [10009, 10019, 10030, 10039, 10049, 10059]),
    "variable_uncertainty": (2000, [10011, 10019, 10031, 10039, 10049, 10059]),
    "randomized_variable_uncertainty": (2000, [10011, 10019, 10029, 10039, 10049, 10059]),
    "split": (2000, [10011, 10019, 10030, 10039, 10049, 10059]),
}


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_golden_asks_on_a_seeded_stream(name):
    us = [entropy(p) for p in random_probas(20_000, seed=42)]
    strategy = build(name, 0.1, seed=42) if name in _SEEDED else build(name, 0.1)
    decisions = [strategy.decide(u) for u in us]
    asked = [i for i, ask in enumerate(decisions) if ask]
    assert (len(asked), asked[1000:1006]) == GOLDEN[name]
    assert decisions == reference(name, us, 0.1, WINDOW)


def test_random_sampling_asks_the_same_whatever_the_uncertainty():
    """Its draws do not depend on the stream: the golden count holds on any stream."""
    for stream in STREAMS:
        strategy = build("random", 0.1, seed=42)
        assert sum(map(strategy.decide, uncertainties(stream))) == GOLDEN["random"][0]


# ---------------------------------------------------------------------------------------------
# the bound: over any run, asks <= budget * n + credit; and the rate cap in every window


def _varied(n: int) -> tuple[float, ...]:
    return tuple(entropy(p) for p in random_probas(n, seed=3))


def _bursts(n: int) -> tuple[float, ...]:
    """Stretches of sure and unsure predictions, of random lengths around the window sizes."""
    rng = random.Random(11)
    out: list[float] = []
    while len(out) < n:
        level = rng.choice([0.0, 0.02, 0.5, 0.98, 1.0])
        out += [min(1.0, max(0.0, level + rng.uniform(-0.02, 0.02)))] * rng.randint(1, 300)
    return tuple(out[:n])


def _sawtooth(n: int) -> tuple[float, ...]:
    """Adversarial for a threshold that adapts: alternately just above and far below it."""
    return tuple(1.0 if (i // 7) % 2 else 0.0 for i in range(n))


PROPERTY_STREAMS = [*STREAMS, "varied", "bursts", "sawtooth"]
CONFIGS = [(0.02, 200), (0.1, 200), (0.29, 100), (0.5, 7)]
# No alarm; a few; one before every prediction (the worst case: the line reopens each time).
ALARMS = {
    "none": frozenset(),
    "some": frozenset({700, 701, 1500, 2600}),
    "every": frozenset(range(3000)),
}


@functools.cache
def property_stream(stream: str, n: int = 3000) -> tuple[float, ...]:
    if stream == "varied":
        return _varied(n)
    if stream == "bursts":
        return _bursts(n)
    if stream == "sawtooth":
        return _sawtooth(n)
    return uncertainties(stream, n, seed=7)


def assert_bound(asked, budget: float, credit: int) -> None:
    """After every prediction n: asks <= budget * n + credit."""
    counts = np.cumsum(np.asarray(asked, dtype=int))
    n = np.arange(1, len(asked) + 1)
    assert (counts <= budget * n + credit + 1e-9).all()


@pytest.mark.parametrize("alarms", list(ALARMS))
@pytest.mark.parametrize("budget, window", CONFIGS)
@pytest.mark.parametrize("stream", PROPERTY_STREAMS)
@pytest.mark.parametrize("name", list(STRATEGIES))
def test_asks_stay_within_budget_times_n_plus_credit(name, stream, budget, window, alarms):
    us = property_stream(stream)
    strategy = build(name, budget, window)
    asked = run(strategy, us, ALARMS[alarms])
    assert_bound(asked, budget, strategy.credit)
    cap = labels_per_window(min(1.0, 5 * budget), window)
    assert max_per_window(asked, window) <= cap
    assert asked == reference(name, us, budget, window, alarms=ALARMS[alarms])


def test_the_bound_holds_for_random_hyperparameters_and_alarms():
    """150 random strategies, budgets, credit lines, rate caps, alarm patterns and lengths."""
    rng = random.Random(2024)
    checked = 0
    while checked < 150:
        budget = rng.choice([round(rng.uniform(0.005, 1.0), 3), rng.choice([0.01, 0.1, 1.0])])
        window = rng.choice([rng.randint(1, 30), rng.randint(1, 400)])
        max_rate = rng.choice([None, round(rng.uniform(budget, 1.0), 3)])
        rate = min(1.0, 5 * budget) if max_rate is None else max_rate
        if labels_per_window(rate, window) < 1:
            with pytest.raises(ConfigError, match="max_rate \\* window must be at least 1"):
                build("variable_uncertainty", budget, window, max_rate=max_rate)
            continue
        credit = rng.choice([0, 1, rng.randint(0, 300)])
        budget_keys = {
            "credit": credit,
            "cold_start": rng.randint(0, 2 * credit + 1),  # above the cap: the cap wins
            "drift_credit": rng.randint(0, 2 * credit + 1),
            "repay": rng.choice([1.0, round(rng.uniform(0.01, 1.0), 3)]),
            "max_rate": max_rate,
        }
        name = rng.choice(list(STRATEGIES))
        params = {
            "random": {"seed": rng.randrange(1000)},
            "fixed_uncertainty": {"threshold": rng.random()},
            "variable_uncertainty": {"step": rng.uniform(0.001, 0.5)},
            "randomized_variable_uncertainty": {
                "step": rng.uniform(0.001, 0.5),
                "delta": rng.uniform(0, 2),
                "seed": rng.randrange(1000),
            },
            "split": {
                "step": rng.uniform(0.001, 0.5),
                "random_share": rng.random(),
                "seed": rng.randrange(1000),
            },
        }[name]
        n = rng.randint(1, 2 * window + 500)
        source = property_stream(rng.choice(PROPERTY_STREAMS))
        offset = rng.randrange(len(source) - n) if n < len(source) else 0
        us = source[offset : offset + n]
        alarms = frozenset(i for i in range(n) if rng.random() < rng.choice([0, 0.001, 0.05, 1]))
        strategy = STRATEGIES[name](budget=budget, window=window, **params, **budget_keys)
        asked = run(strategy, us, alarms)
        where = (name, budget, window, params, budget_keys)
        assert_bound(asked, budget, credit)
        assert max_per_window(asked, window) <= labels_per_window(rate, window), where
        assert asked == reference(
            name, us, budget, window, **params, **budget_keys, alarms=alarms
        ), where
        checked += 1


@pytest.mark.parametrize("budget, credit", [(0.02, 10), (0.1, 100), (0.3, 7), (0.05, 0)])
def test_the_bound_is_reached_when_the_line_reopens_at_every_prediction(budget, credit):
    """It is the exact bound: a strategy that wants every label, an alarm before every
    prediction and no rate cap ask min(n, floor(budget * n + credit)) after every n (one
    decision per prediction: n is the other limit)."""
    strategy = FixedUncertainty(
        threshold=0.0, budget=budget, credit=credit, drift_credit=credit, max_rate=1.0, window=10
    )
    asked = run(strategy, [1.0] * 3000, frozenset(range(3000)))
    counts = np.cumsum(asked)
    expected = [min(n, math.floor(Fraction(str(budget)) * n + credit)) for n in range(1, 3001)]
    assert counts.tolist() == expected


# ---------------------------------------------------------------------------------------------
# the credit line: cold start, drift, repayment, rate cap


@pytest.mark.parametrize("name", list(STRATEGIES))
@pytest.mark.parametrize("budget", [0.02, 0.1, 0.3])
def test_the_share_asked_is_the_budget_in_the_long_run(name, budget):
    us = uncertainties("mixed")
    strategy = build(name, budget)
    asked = np.array([strategy.decide(u) for u in us], dtype=float)
    share = asked.mean()
    assert share <= budget + strategy.credit / len(us)
    if name == "random":
        assert 0.9 * budget <= share  # no window refuses its draws any more
    elif name != "fixed_uncertainty":
        assert 0.98 * budget <= share  # a strategy that wants labels gets them


@pytest.mark.parametrize("budget", [0.02, 0.1, 0.3])
def test_a_fresh_strategy_asks_its_cold_start_at_once_then_repays(budget):
    """Wanting every label: the cold start (capped by the rate cap) comes first, then
    (1 - repay) x budget while the line shrinks, then exactly floor(budget * n)."""
    strategy = FixedUncertainty(threshold=0.0, budget=budget, window=200)
    us = [1.0] * 20_000
    counts = np.cumsum([strategy.decide(u) for u in us])
    cap = labels_per_window(min(1.0, 5 * budget), 200)
    cold, repay = DEFAULT_COLD_START, DEFAULT_REPAY
    assert counts[199] == min(cap, math.floor(budget * 200 + cold - repay * budget * 200))
    assert counts[199] > budget * 200  # ahead of the budget
    repaid = math.ceil(cold / (repay * budget))  # the line is gone
    assert all(counts[n - 1] == math.floor(budget * n + 1e-9) for n in range(repaid, 20_001, 97))


def test_an_alarm_opens_the_line_for_the_predictions_that_follow():
    us = uncertainties("mixed", 8000)
    calm, alarmed = build("variable_uncertainty", 0.1), build("variable_uncertainty", 0.1)
    a = run(calm, us)
    b = run(alarmed, us, frozenset({4000}))
    assert a[:4000] == b[:4000]
    assert alarmed.n_drifts == 1 and calm.n_drifts == 0
    assert sum(b[4000:4200]) >= sum(a[4000:4200]) + 40  # the drift credit, spent at once
    assert abs(sum(b) - sum(a)) <= 1  # and repaid by the end


def test_the_rate_cap_keeps_an_allowance_from_flooding():
    strategy = FixedUncertainty(
        threshold=0.0, budget=0.1, credit=500, cold_start=500, max_rate=0.25, window=40
    )
    asked = [strategy.decide(1.0) for _ in range(2000)]
    assert max_per_window(asked, 40) == 10  # floor(0.25 * 40)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_spending_is_the_share_asked_so_far(name):
    strategy = build(name, 0.05)
    assert strategy.spending == 0.0
    asked: list[bool] = []
    for u in uncertainties("drifting", 5000):
        asked.append(strategy.decide(u))
        assert strategy.spending == sum(asked) / len(asked)
        assert strategy.balance == pytest.approx(
            0.05 * len(asked) - sum(asked) - strategy._budget._forgiven
        )


# ---------------------------------------------------------------------------------------------
# state


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_a_pickled_strategy_continues_identically(name):
    us = uncertainties("drifting", 6000)
    strategy = build(name, 0.1)
    for u in us[:2500]:
        strategy.decide(u)
    copy = pickle.loads(pickle.dumps(strategy))
    assert [strategy.decide(u) for u in us[2500:]] == [copy.decide(u) for u in us[2500:]]
    assert copy.n_asked == strategy.n_asked and copy.spending == strategy.spending


@pytest.mark.parametrize("name", sorted(_SEEDED))
def test_seeds_make_random_strategies_reproducible(name):
    us = uncertainties("mixed", 3000)
    runs = [[build(name, 0.1, seed=s).decide(u) for u in us] for s in (1, 1)]
    assert runs[0] == runs[1]
    a, b = build(name, 0.1, seed=1), build(name, 0.1, seed=2)
    assert [a.decide(u) for u in us] != [b.decide(u) for u in us]


def test_hyperparameters_are_public_and_unchanged_state_is_private():
    strategy = RandomizedVariableUncertainty(budget=0.2, step=0.05, delta=0.5, window=300, seed=3)
    before = dict(vars(strategy))
    for u in uncertainties("drifting", 2000):
        strategy.decide(u)
    public = {k: v for k, v in vars(strategy).items() if not k.startswith("_")}
    assert public == {k: v for k, v in before.items() if not k.startswith("_")}
    assert public == {
        "budget": 0.2,
        "window": 300,
        "step": 0.05,
        "delta": 0.5,
        "seed": 3,
        "credit": DEFAULT_CREDIT,
        "cold_start": DEFAULT_COLD_START,
        "drift_credit": DEFAULT_DRIFT_CREDIT,
        "repay": DEFAULT_REPAY,
        "max_rate": None,
    }
    defaults = {"credit", "cold_start", "drift_credit", "repay", "max_rate"}
    config = {k: v for k, v in public.items() if k not in defaults}
    assert strategy.to_config() == {"strategy": "randomized_variable_uncertainty", **config}
    assert repr(strategy) == (
        "RandomizedVariableUncertainty(budget=0.2, window=300, step=0.05, delta=0.5, seed=3)"
    )


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: VariableUncertainty(budget=0), "'budget' must be a number in (0, 1]"),
        (lambda: VariableUncertainty(budget=1.5), "'budget' must be a number in (0, 1]"),
        (lambda: VariableUncertainty(step=1), "'step' must be a number in (0, 1)"),
        (lambda: VariableUncertainty(window=0), "'window' must be an integer >= 1"),
        (lambda: FixedUncertainty(threshold=-0.1), "'threshold' must be a number in [0, 1]"),
        (lambda: RandomizedVariableUncertainty(delta=-1), "'delta' must be a finite number"),
        (lambda: Split(random_share=2), "'random_share' must be a number in [0, 1]"),
        (lambda: RandomSampling(seed="x"), "'seed' must be an integer"),
        (lambda: BudgetManager(window=2.5), "'window' must be an integer >= 1"),
        (lambda: VariableUncertainty(budget=0.0001, window=500), "max_rate * window must be at"),
        (lambda: RandomSampling(max_rate=0.5, window=1), "use a window of at least 2 predictions"),
        (lambda: Split(credit=-1), "'credit' must be an integer >= 0, got -1"),
        (lambda: Split(repay=0.0), "'repay' must be a number in (0, 1]"),
        (lambda: RandomSampling(max_rate=0.0), "'max_rate' must be a number in (0, 1]"),
    ],
)
def test_bad_hyperparameters_are_refused_by_name(make, message):
    with pytest.raises(ValueError) as info:
        make()
    assert message in str(info.value)
