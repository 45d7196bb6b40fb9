"""The sampler: measure + strategy + random evaluation slice; config; state."""

from __future__ import annotations

import itertools
import math
import pickle
import random
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from onlearn.active import (
    ALL_MEASURES,
    DEFAULT_STEP,
    STRATEGIES,
    Decision,
    RandomSampling,
    RandomSlice,
    Reason,
    Sampler,
    VariableUncertainty,
    entropy,
    priority_of,
    sampler_from_config,
    vote_entropy,
)
from onlearn.active.budget import labels_per_window
from onlearn.errors import ConfigError
from tests.active.streams import mixed, random_probas

CONFIG = {
    "strategy": "variable_uncertainty",
    "measure": "entropy",
    "budget": 0.1,
    "step": 0.01,
    "window": 1000,
    "evaluation_rate": 0.01,
    "seed": 42,
}


def test_the_issue_config_builds_the_expected_sampler():
    sampler = sampler_from_config(CONFIG)
    assert isinstance(sampler.strategy, VariableUncertainty)
    assert (sampler.strategy.budget, sampler.strategy.step, sampler.strategy.window) == (
        0.1,
        0.01,
        1000,
    )
    assert (sampler.measure, sampler.evaluation_rate, sampler.seed) == ("entropy", 0.01, 42)
    assert sampler.to_config() == CONFIG


@pytest.mark.parametrize("name", list(STRATEGIES))
@pytest.mark.parametrize("measure", ALL_MEASURES)
def test_config_round_trips(name, measure):
    config = sampler_from_config({"strategy": name, "measure": measure, "seed": 7}).to_config()
    assert config["strategy"] == name and config["seed"] == 7
    assert sampler_from_config(config).to_config() == config
    again = sampler_from_config(config)
    assert repr(again) == repr(sampler_from_config(config))


def test_defaults():
    sampler = sampler_from_config({})
    assert sampler.to_config() == {
        "strategy": "variable_uncertainty",
        "budget": 0.1,
        "window": 1000,
        "step": DEFAULT_STEP,
        "measure": "margin",
        "evaluation_rate": 0.0,
        "seed": 42,
    }


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"budget": 0}, "'budget' must be a number in (0, 1], got 0"),
        ({"budget": 1.5}, "'budget' must be a number in (0, 1], got 1.5"),
        ({"budget": "10%"}, "'budget' must be a number in (0, 1], got '10%'"),
        ({"budget": True}, "'budget' must be a number in (0, 1], got True"),
        ({"budget": math.nan}, "'budget' must be a number in (0, 1], got nan"),
        ({"window": 0}, "'window' must be an integer >= 1, got 0"),
        ({"window": 10.0}, "'window' must be an integer >= 1, got 10.0"),
        ({"step": 0}, "'step' must be a number in (0, 1), got 0"),
        ({"step": 1}, "'step' must be a number in (0, 1), got 1"),
        ({"evaluation_rate": -0.1}, "'evaluation_rate' must be a number in [0, 1], got -0.1"),
        ({"seed": "42"}, "'seed' must be an integer, got '42'"),
        ({"seed": 4.2}, "'seed' must be an integer, got 4.2"),
        ({"measure": "doubt"}, "'measure' must be one of 'least_confident', 'margin', "),
        ({"strategy": "greedy"}, "'strategy' must be one of 'random', 'fixed_uncertainty', "),
        ({"budjet": 0.1}, "unknown entry 'budjet' for strategy 'variable_uncertainty'"),
        ({"strategy": "fixed_uncertainty", "step": 0.1}, "unknown entry 'step'"),
        ({"strategy": "fixed_uncertainty", "threshold": 2}, "'threshold' must be a number in"),
        ({"strategy": "split", "random_share": -1}, "'random_share' must be a number in [0, 1]"),
        ({"strategy": "randomized_variable_uncertainty", "delta": math.inf}, "'delta' must be"),
        ({"budget": 0.0001}, "max_rate * window must be at least 1, got 0.0005 * 1000 = 0.5"),
        ({"budget": 0.002, "window": 50}, "use a window of at least 100 predictions"),
        ({"strategy": "random", "max_rate": 0.2, "window": 4}, "got 0.2 * 4 = 0.8"),
        ({"credit": -1}, "'credit' must be an integer >= 0, got -1"),
        ({"cold_start": 2.5}, "'cold_start' must be an integer >= 0, got 2.5"),
        ({"strategy": "split", "drift_credit": True}, "'drift_credit' must be an integer >= 0"),
        ({"repay": 0}, "'repay' must be a number in (0, 1], got 0"),
        ({"strategy": "random", "max_rate": 1.5}, "'max_rate' must be a number in (0, 1]"),
        ({"steer": "yes"}, "'steer' must be true or false, got 'yes'"),
    ],
)
def test_config_errors_name_the_entry(entry, message):
    with pytest.raises(ConfigError) as info:
        sampler_from_config(entry, where="models.spam.sampler")
    assert str(info.value).startswith("models.spam.sampler: ")
    assert message in str(info.value)


def test_a_config_that_is_not_a_table():
    with pytest.raises(ConfigError, match="sampler must be a table, got list"):
        sampler_from_config([("budget", 0.1)])


def test_decisions_carry_reason_priority_and_uncertainty():
    sampler = Sampler(VariableUncertainty(budget=0.5, window=10), measure="margin")
    decision = sampler.decide({"a": 0.6, "b": 0.4})
    assert decision == Decision(True, Reason.UNCERTAIN, pytest.approx(0.8), pytest.approx(0.8))
    assert decision.reason == "uncertain"  # a str enum: JSON and records take it as is
    sure = [sampler.decide({"a": 1.0, "b": 0.0}) for _ in range(50)]
    assert any(not d.ask and d.reason is None and d.priority == 0.0 for d in sure)


def test_the_random_slice_is_asked_on_top_flagged_and_outranks_uncertain_items():
    sampler = Sampler(VariableUncertainty(budget=0.05), evaluation_rate=0.2, seed=3)
    decisions = [sampler.decide(p) for p in mixed(20_000, seed=1)]
    random_ones = [d for d in decisions if d.reason == Reason.RANDOM]
    uncertain_ones = [d for d in decisions if d.reason == Reason.UNCERTAIN]
    assert all(d.ask for d in random_ones + uncertain_ones)
    assert len(random_ones) / len(decisions) == pytest.approx(0.2, abs=0.01)
    assert all(d.priority == d.uncertainty + 1.0 for d in random_ones)
    assert all(d.priority == d.uncertainty for d in uncertain_ones)
    assert min(d.priority for d in random_ones) >= max(d.priority for d in uncertain_ones)
    assert priority_of(0.3, "random") == 1.3 and priority_of(0.3, Reason.UNCERTAIN) == 0.3


def test_the_random_slice_is_an_unbiased_sample_of_the_traffic():
    """Its uncertainties look like the whole stream's; the strategy's look like hard cases."""
    sampler = sampler_from_config({"budget": 0.1, "evaluation_rate": 0.05, "seed": 5})
    decisions = [sampler.decide(p) for p in mixed(40_000, seed=2)]
    everything = statistics.fmean(d.uncertainty for d in decisions)
    sliced = statistics.fmean(d.uncertainty for d in decisions if d.reason == Reason.RANDOM)
    asked = statistics.fmean(d.uncertainty for d in decisions if d.reason == Reason.UNCERTAIN)
    assert sliced == pytest.approx(everything, abs=0.02)
    assert asked > everything + 0.15


def test_the_slice_and_a_random_strategy_with_the_same_seed_are_independent():
    strategy = RandomSampling(budget=0.5, window=100_000, seed=9)
    sampler = Sampler(strategy, evaluation_rate=0.5, seed=9)
    both = slice_only = 0
    for _ in range(20_000):
        wanted_before = strategy.n_asked
        d = sampler.decide({"a": 0.5, "b": 0.5})
        strategy_asked = strategy.n_asked > wanted_before
        both += d.reason == Reason.RANDOM and strategy_asked
        slice_only += d.reason == Reason.RANDOM
    # Independent: P(both) = P(slice) * P(strategy)
    assert both / slice_only == pytest.approx(strategy.n_asked / 20_000, abs=0.03)


@pytest.mark.parametrize("rate", [0.0, 0.01, 0.1, 0.5, 1.0])
def test_random_slice_rate(rate):
    picks = RandomSlice(rate=rate, seed=1)
    share = sum(picks.decide() for _ in range(50_000)) / 50_000
    assert share == pytest.approx(rate, abs=4 * math.sqrt(rate * (1 - rate) / 50_000) + 1e-12)


# (asked as uncertain, asked as random) on 20 000 varied probabilities. The strategy is the
# golden split of test_strategies (2000 asks: exactly budget x n at the end, its cold start
# repaid); the slice draws 232 whatever the strategy, and takes the 29 of them the strategy
# also wanted.
GOLDEN = (1971, 232)


def test_golden_decisions_on_a_seeded_stream():
    sampler = sampler_from_config({**CONFIG, "window": 200, "strategy": "split"})
    decisions = [sampler.decide(p) for p in random_probas(20_000, seed=42)]
    reasons = [d.reason for d in decisions]
    assert (reasons.count(Reason.UNCERTAIN), reasons.count(Reason.RANDOM)) == GOLDEN
    assert sum(d.ask for d in decisions) == sum(GOLDEN)
    assert sampler.strategy.n_asked == 2000
    alone = RandomSlice(CONFIG["evaluation_rate"], CONFIG["seed"])
    assert sum(alone.decide() for _ in range(20_000)) == GOLDEN[1]


def max_per_window(flags: list[bool], window: int) -> int:
    counts = [0, *itertools.accumulate(map(int, flags))]
    return max(counts[i + window] - counts[i] for i in range(len(counts) - window))


@pytest.mark.parametrize("name", list(STRATEGIES))
@pytest.mark.parametrize("budget, window", [(0.05, 200), (0.1, 50), (0.3, 10)])
def test_the_strategy_holds_its_bound_and_the_slice_comes_on_top(name, budget, window):
    """The strategy's own asks (whether or not the slice took them too) stay within
    budget * n + credit after every prediction and under the rate cap in every window; the
    random slice adds its picks on top."""
    sampler = sampler_from_config(
        {"strategy": name, "budget": budget, "window": window, "evaluation_rate": 0.2, "seed": 3}
    )
    strategy = sampler.strategy
    wanted, flagged, decisions = [], [], []
    for n, p in enumerate(random_probas(8000, seed=6), 1):
        before = strategy.n_asked
        decision = sampler.decide(p)
        wanted.append(strategy.n_asked > before)
        decisions.append(decision)
        assert strategy.n_asked <= budget * n + strategy.credit
    cap = labels_per_window(min(1.0, 5 * budget), window)
    assert max_per_window(wanted, window) <= cap
    for want, d in zip(wanted, decisions, strict=True):
        assert d.ask == (want or d.reason == Reason.RANDOM)
        assert (d.reason == Reason.UNCERTAIN) == (want and d.reason != Reason.RANDOM)
        flagged.append(d.ask)
    assert sum(flagged) > budget * len(flagged) + strategy.credit  # the slice is not held


def test_decide_many_equals_deciding_one_by_one():
    probas = random_probas(3000, seed=8)
    one, many = sampler_from_config(CONFIG), sampler_from_config(CONFIG)
    assert many.decide_many(probas) == [one.decide(p) for p in probas]


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_a_pickled_sampler_continues_identically(name):
    probas = random_probas(6000, seed=4)
    sampler = sampler_from_config({"strategy": name, "evaluation_rate": 0.05, "window": 300})
    for p in probas[:2000]:
        sampler.decide(p)
    copy = pickle.loads(pickle.dumps(sampler))
    assert copy.decide_many(probas[2000:]) == sampler.decide_many(probas[2000:])


def test_committee_measures_read_the_other_versions_and_fall_back_alone():
    sampler = sampler_from_config({"measure": "vote_entropy", "budget": 1.0})
    champion, shadow = {"a": 0.9, "b": 0.1}, {"a": 0.2, "b": 0.8}
    assert sampler.decide(champion, [shadow]).uncertainty == vote_entropy([champion, shadow])
    assert sampler.decide(champion, [champion]).uncertainty == 0.0
    # No shadow, or one that knows nothing: the champion's own entropy stands in.
    assert sampler.decide(champion).uncertainty == entropy(champion)
    assert sampler.decide(champion, [{}]).uncertainty == entropy(champion)
    assert sampler.decide(champion, [{"a": None, "b": 0.5}]).uncertainty == entropy(champion)
    consensus = sampler_from_config({"measure": "consensus_entropy"})
    assert consensus.uncertainty(champion) == entropy(champion)
    single = sampler_from_config({"measure": "margin"})
    assert single.uncertainty(champion, [shadow]) == single.uncertainty(champion)
    rows, others = [champion, champion, shadow], [[shadow], [], [champion, {}]]
    one, many = (sampler_from_config({"measure": "kl_max_disagreement"}) for _ in range(2))
    expected = [one.decide(p, o) for p, o in zip(rows, others, strict=True)]
    assert many.decide_many(rows, others) == expected


def test_to_config_refuses_two_seeds():
    sampler = Sampler(RandomSampling(seed=1), seed=2)
    with pytest.raises(ValueError, match="one seed for both"):
        sampler.to_config()
    assert Sampler(VariableUncertainty(), seed=2).to_config()["seed"] == 2


def test_bad_arguments():
    with pytest.raises(TypeError, match="strategy must be a Strategy"):
        Sampler("variable_uncertainty")
    with pytest.raises(ConfigError, match="Sampler: 'measure' must be one of"):
        Sampler(measure="loudness")
    with pytest.raises(ConfigError, match="RandomSlice: 'rate'"):
        RandomSlice(rate=1.2)


def test_the_same_seed_gives_the_same_decisions_in_another_process():
    """Seeds are hashed the same everywhere (random.Random of a str uses SHA-512)."""
    code = (
        "from onlearn.active import sampler_from_config\n"
        "from tests.active.streams import random_probas\n"
        "s = sampler_from_config({'strategy': 'split', 'evaluation_rate': 0.1, 'window': 100})\n"
        "print(sum(d.ask for d in s.decide_many(random_probas(5000, seed=1))))\n"
    )
    env = {"PYTHONHASHSEED": str(random.randrange(1, 10_000)), "PATH": ""}
    root = Path(__file__).parents[2]
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root
    )
    assert run.returncode == 0, run.stderr
    out = run.stdout
    sampler = sampler_from_config({"strategy": "split", "evaluation_rate": 0.1, "window": 100})
    assert int(out) == sum(d.ask for d in sampler.decide_many(random_probas(5000, seed=1)))
