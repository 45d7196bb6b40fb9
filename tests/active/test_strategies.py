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
    STRATEGIES,
    BudgetManager,
    FixedUncertainty,
    RandomizedVariableUncertainty,
    RandomSampling,
    Split,
    VariableUncertainty,
    entropy,
)
from onlearn.active.budget import labels_per_window
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
    for make in (BudgetManager, VariableUncertainty, Split):
        with pytest.raises(ConfigError) as info:
            make(budget=budget, window=window)
        assert str(info.value).startswith(f"{make.__name__}: budget * window must be at least 1")
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
# a reference: the strategies re-derived from the paper, the window counted from the history


def reference(
    name: str,
    us,
    budget: float,
    window: int,
    *,
    seed: int = 42,
    step: float = 0.01,
    threshold: float = 0.3,
    delta: float = 1.0,
    random_share: float = 0.2,
) -> list[bool]:
    """Ask iff the last ``window - 1`` decisions plus this one hold at most floor(budget *
    window) asks (budget taken as the decimal it is written as) and the paper's rule wants it;
    random numbers are drawn only when the rule is consulted, in the same order."""
    limit = math.floor(Fraction(str(budget)) * window)
    rng = random.Random(seed)
    theta = 1.0
    asked: list[bool] = []
    for u in us:
        previous = asked[max(0, len(asked) - window + 1) :] if window > 1 else []
        ask = False
        if sum(previous) + 1 <= limit:
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
    return asked


def max_per_window(asked, window: int) -> int:
    """The most asks in any ``window`` consecutive decisions (a shorter stream: all of it)."""
    counts = np.concatenate([[0], np.cumsum(np.asarray(asked, dtype=int))])
    if len(counts) <= window:
        return int(counts[-1])
    return int((counts[window:] - counts[:-window]).max())


# ---------------------------------------------------------------------------------------------
# golden: seeded streams give exact answers


# (labels asked, the indices of asks 1000 to 1005) on 20 000 varied probability vectors, budget
# 0.1, window 200: at most 20 asks in any 200 decisions, so at most 100 x 20 = 2000 in all.
GOLDEN = {
    "random": (1693, [11807, 11813, 11817, 11821, 11835, 11851]),
    "fixed_uncertainty": (2000, [10001, 10002, 10011, 10012, 10015, 10017]),
    "variable_uncertainty": (2000, [10001, 10011, 10021, 10031, 10041, 10051]),
    "randomized_variable_uncertainty": (1994, [10031, 10080, 10082, 10083, 10091, 10092]),
    "split": (2000, [10001, 10011, 10021, 10031, 10041, 10047]),
}


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_golden_asks_on_a_seeded_stream(name):
    us = [entropy(p) for p in random_probas(20_000, seed=42)]
    strategy = build(name, 0.1, seed=42) if name in _SEEDED else build(name, 0.1)
    decisions = [strategy.decide(u) for u in us]
    asked = [i for i, ask in enumerate(decisions) if ask]
    assert (len(asked), asked[1000:1006]) == GOLDEN[name]
    assert decisions == reference(name, us, 0.1, WINDOW)
    blocks = np.bincount(np.array(asked) // WINDOW, minlength=100)
    assert blocks.max() <= 20
    if len(asked) == 2000:  # every block of 200 full: ask 1000 is the first of block 50
        assert (blocks == 20).all() and 10_000 <= asked[1000] < 10_200


def test_random_sampling_asks_the_same_whatever_the_uncertainty():
    """Its draws do not depend on the stream: the golden count holds on any stream."""
    for stream in STREAMS:
        strategy = build("random", 0.1, seed=42)
        assert sum(map(strategy.decide, uncertainties(stream))) == GOLDEN["random"][0]


# ---------------------------------------------------------------------------------------------
# budgets: no window of `window` decisions ever holds more than floor(budget * window) asks


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


PROPERTY_STREAMS = [*STREAMS, "varied", "bursts"]
CONFIGS = [(0.02, 200), (0.1, 200), (0.3, 200), (0.05, 20), (0.29, 100), (0.5, 7), (0.25, 4)]


@functools.cache
def property_stream(stream: str, n: int = 6000) -> tuple[float, ...]:
    if stream == "varied":
        return _varied(n)
    if stream == "bursts":
        return _bursts(n)
    return uncertainties(stream, n, seed=7)


@pytest.mark.parametrize("budget, window", CONFIGS)
@pytest.mark.parametrize("stream", PROPERTY_STREAMS)
@pytest.mark.parametrize("name", list(STRATEGIES))
def test_no_window_ever_holds_more_than_the_budget(name, stream, budget, window):
    us = property_stream(stream)
    strategy = build(name, budget, window)
    asked = [strategy.decide(u) for u in us]
    limit = math.floor(Fraction(str(budget)) * window)
    assert max_per_window(asked, window) <= limit
    assert sum(asked) <= math.ceil(len(us) / window) * limit
    assert asked == reference(name, us, budget, window)


def test_no_window_ever_holds_more_than_the_budget_random_hyperparameters():
    """300 random strategies, budgets, windows (1 to 400) and stream lengths."""
    rng = random.Random(2024)
    checked = 0
    while checked < 300:
        budget = rng.choice([round(rng.uniform(0.005, 1.0), 3), rng.choice([0.01, 0.1, 1.0])])
        window = rng.choice([rng.randint(1, 30), rng.randint(1, 400)])
        limit = math.floor(Fraction(str(budget)) * window)
        if limit < 1:
            with pytest.raises(ConfigError, match="budget \\* window must be at least 1"):
                BudgetManager(budget, window)
            continue
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
        n = rng.randint(1, 4 * window + 100)
        source = property_stream(rng.choice(PROPERTY_STREAMS))
        offset = rng.randrange(len(source) - n) if n < len(source) else 0
        us = source[offset : offset + n]
        strategy = STRATEGIES[name](budget=budget, window=window, **params)
        asked = [strategy.decide(u) for u in us]
        assert max_per_window(asked, window) <= limit, (name, budget, window, params)
        assert asked == reference(name, us, budget, window, **params), (name, budget, window)
        checked += 1


@pytest.mark.parametrize("stream", list(STREAMS))
@pytest.mark.parametrize("name", list(STRATEGIES))
@pytest.mark.parametrize("budget", [0.02, 0.1, 0.3])
def test_the_share_asked_is_the_budget_when_labels_are_wanted(name, stream, budget):
    us = uncertainties(stream)
    strategy = build(name, budget)
    asked = np.array([strategy.decide(u) for u in us], dtype=float)
    assert max_per_window(asked, WINDOW) <= budget * WINDOW
    assert asked.sum() <= budget * len(us)  # 20 000 = 100 windows of 200
    steady = asked[WINDOW:].mean()
    if name == "random":
        # It asks with probability budget; the draws the window refused are not made up.
        assert 0.65 * budget <= steady <= budget
    elif name != "fixed_uncertainty" or stream in ("uncertain", "mixed"):
        # A strategy that wants labels gets nearly all the window allows.
        assert 0.98 * budget <= steady <= budget


@pytest.mark.parametrize("budget", [0.02, 0.1, 0.3])
def test_a_strategy_that_wants_every_label_repeats_its_first_burst(budget):
    """Each ask frees its slot one window later: asks are the first floor(b * w) of each window."""
    strategy = build("fixed_uncertainty", budget)  # every uncertainty here is above 0.9
    asked = [i for i, u in enumerate(uncertainties("uncertain")) if strategy.decide(u)]
    limit = round(budget * WINDOW)
    assert asked == [i for i in range(20_000) if i % WINDOW < limit]


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_spending_is_the_share_asked_over_the_last_window(name):
    strategy = build(name, 0.05)
    assert strategy.spending == 0.0
    asked: list[bool] = []
    for u in uncertainties("drifting", 5000):
        asked.append(strategy.decide(u))
        last = asked[-WINDOW:]
        assert strategy.spending == sum(last) / len(last)
        if len(asked) >= WINDOW:
            assert strategy.spending <= 0.05


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
    assert public == {"budget": 0.2, "window": 300, "step": 0.05, "delta": 0.5, "seed": 3}
    assert strategy.to_config() == {"strategy": "randomized_variable_uncertainty", **public}
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
        (lambda: VariableUncertainty(budget=0.001, window=500), "budget * window must be at least"),
        (lambda: RandomSampling(budget=0.5, window=1), "use a window of at least 2 predictions"),
    ],
)
def test_bad_hyperparameters_are_refused_by_name(make, message):
    with pytest.raises(ValueError) as info:
        make()
    assert message in str(info.value)
