"""labels_follow_answer: versions compared as an A/B test, each on the labels of what it answered.

Oracles: the z-test against Pearson's chi-squared and a textbook value, Welch's t against scipy,
the sample sizes against Cohen's tables and against the power they promise. A seeded simulation
of loans (a label exists only for an approved loan) where the paired comparison picks the wrong
version and the A/B test the right one, on the predict/feedback path of a real engine too.
"""

from __future__ import annotations

import math
import random
import zlib

import numpy as np
import pytest
from scipy import stats

from onlearn.background.promotion import Action, RolloutPolicy, decide_promotion
from onlearn.background.refit import NotEnoughData, refit
from onlearn.background.worker import Worker, enqueue_refit
from onlearn.config import settings_from_mapping
from onlearn.engine import Engine, FeedbackItem
from onlearn.errors import ConfigError
from onlearn.learner import LearnerState
from onlearn.records import Event, EventKind, JobState
from onlearn.two_sample import (
    TwoSampleCounts,
    TwoSampleErrors,
    count_answered,
    sample_size_means,
    sample_size_proportions,
    two_proportion_ztest,
    welch_ttest,
)
from tests.core.conftest import Clock

# -- oracles for the statistics ---------------------------------------------------------------


def test_z_squared_is_pearsons_chi_squared_of_the_table():
    rng = random.Random(7)
    for _ in range(200):
        n_a, n_b = rng.randint(5, 3000), rng.randint(5, 3000)
        x_a, x_b = rng.randint(1, n_a - 1), rng.randint(1, n_b - 1)
        z, p = two_proportion_ztest(x_a, n_a, x_b, n_b)
        table = [[x_a, n_a - x_a], [x_b, n_b - x_b]]
        chi2, p_chi2, _, _ = stats.chi2_contingency(table, correction=False)
        assert z * z == pytest.approx(chi2, rel=1e-9)
        assert p == pytest.approx(p_chi2, rel=1e-9, abs=1e-300)
        assert (z > 0) == (x_b / n_b > x_a / n_a)


def test_z_test_textbook_value():
    # Physicians' Health Study (Agresti, Categorical Data Analysis, section 2.4): heart attacks
    # 189 of 11,034 on placebo, 104 of 11,037 on aspirin; Pearson's X^2 = 25.01.
    z, p = two_proportion_ztest(189, 11034, 104, 11037)
    assert z * z == pytest.approx(25.01, abs=0.005)
    assert z < 0 and p == pytest.approx(5.7e-7, rel=0.05)
    assert two_proportion_ztest(0, 0, 3, 4) == (0.0, 1.0)  # an empty arm: no evidence
    assert two_proportion_ztest(5, 5, 7, 7) == (0.0, 1.0)  # no variance: no evidence


def test_welch_t_is_scipys_and_the_running_moments_equal_the_batch_ones():
    rng = np.random.default_rng(3)
    a = rng.exponential(1.0, 300)
    b = rng.exponential(0.8, 90)
    ab = TwoSampleErrors()
    for i, error in enumerate(a):
        ab.update("a", float(error))
        if i < len(b):
            ab.update("b", float(b[i]))
            if i >= 1:  # the incremental mean and variance equal numpy's at every step
                assert ab.a_mae == pytest.approx(a[: i + 1].mean(), rel=1e-12)
                assert ab._arms["b"].variance == pytest.approx(b[: i + 1].var(ddof=1), rel=1e-9)
    expected = stats.ttest_ind(a, b, equal_var=False)
    t, df, p = welch_ttest(a.mean(), a.var(ddof=1), a.size, b.mean(), b.var(ddof=1), b.size)
    assert t == pytest.approx(-expected.statistic, rel=1e-9)  # b - a here, a - b in scipy
    assert p == pytest.approx(expected.pvalue, rel=1e-9)
    se_a, se_b = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    by_hand = (se_a + se_b) ** 2 / (se_a**2 / (a.size - 1) + se_b**2 / (b.size - 1))
    assert df == pytest.approx(by_hand, rel=1e-12)
    # The comparison's sign reads as for accuracy: positive when b's errors are smaller.
    statistic, p_value = ab.test()
    assert statistic == pytest.approx(expected.statistic, rel=1e-9)
    assert p_value == pytest.approx(expected.pvalue, rel=1e-9)
    assert ab.favoured == "b"
    ab.update("a", math.inf)
    assert ab.skipped == 1 and ab.a_n == 300  # an infinite error cannot enter a mean


def _with_h(p_a: float, h: float) -> float:
    """The accuracy whose Cohen's h from ``p_a`` is ``h``."""
    return math.sin(math.asin(math.sqrt(p_a)) + h / 2) ** 2


@pytest.mark.parametrize("h, cohen", [(0.2, 392), (0.5, 63), (0.8, 25)])
def test_sample_size_for_proportions_is_cohens_table(h, cohen):
    # Cohen (1988), table 6.4.1: n per arm at alpha 0.05 two-sided, power 0.8.
    n_a, n_b = sample_size_proportions(0.5, _with_h(0.5, h))
    assert n_a == n_b and abs(n_a - cohen) < 1.0
    assert sample_size_proportions(0.3, 0.3) is None


@pytest.mark.parametrize("d, cohen", [(0.2, 393), (0.5, 64), (0.8, 26)])
def test_sample_size_for_means_is_cohens_table(d, cohen):
    # Cohen (1988), table 2.4.1: n per arm at alpha 0.05 two-sided, power 0.8.
    n_a, n_b = sample_size_means(d)
    assert abs(n_a - cohen) < 1.0 and n_b == n_a  # Cohen's tables round
    assert sample_size_means(0.0) is None
    assert sample_size_means(1e-12) is None  # beyond any traffic: no number, and no hang


@pytest.mark.parametrize("ratio", [0.1, 0.25, 1.0, 3.0])
def test_sample_sizes_reach_the_power_they_promise(ratio):
    # Proportions: at n, the normal power of the arcsine-transformed difference is the target.
    p_a, p_b = 0.80, 0.85
    n_a, n_b = sample_size_proportions(p_a, p_b, alpha=0.01, power=0.9, ratio=ratio)
    assert n_b == pytest.approx(ratio * n_a)
    h = 2 * math.asin(math.sqrt(p_b)) - 2 * math.asin(math.sqrt(p_a))
    power = stats.norm.cdf(abs(h) / math.sqrt(1 / n_a + 1 / n_b) - stats.norm.isf(0.005))
    assert power == pytest.approx(0.9, abs=1e-9)
    # Means: the noncentral t's power at n is the target, and one label less falls short.
    d = 0.3
    n_a, n_b = sample_size_means(d, power=0.8, ratio=ratio)

    def t_power(n_a: float) -> float:
        n_b = ratio * n_a
        df, nc = n_a + n_b - 2, d * math.sqrt(n_a * n_b / (n_a + n_b))
        crit = stats.t.isf(0.025, df)
        return stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc)

    assert t_power(n_a) == pytest.approx(0.8, abs=1e-6)
    assert t_power(n_a - 1) < 0.8


def counts(a_right: int, a_n: int, b_right: int, b_n: int) -> TwoSampleCounts:
    ab = TwoSampleCounts()
    for side, right, n in (("a", a_right, a_n), ("b", b_right, b_n)):
        for i in range(n):
            ab.update(side, i < right)
    return ab


def test_the_comparison_says_how_many_more_labels_it_needs():
    ab = counts(160, 200, 45, 50)  # 0.80 vs 0.90, a canary with a fifth of the labels
    needed = ab.labels_needed(alpha=0.05, power=0.8)
    n_a, n_b = sample_size_proportions(0.8, 0.9, ratio=50 / 200)
    assert (needed["a_needed"], needed["b_needed"]) == (math.ceil(n_a), math.ceil(n_b))
    # the labels keep splitting 4 to 1: the canary's arm binds
    assert needed["more_labels"] == math.ceil((math.ceil(n_b) - 50) / 0.2)
    assert needed["sentence"].startswith(
        f"{needed['more_labels']} more labels needed to detect 10 points at alpha 0.05, power 0.8"
    )
    assert counts(80, 100, 80, 100).labels_needed()["sentence"].startswith("no difference")
    assert TwoSampleCounts().labels_needed()["more_labels"] is None
    answer = ab.to_dict()
    assert answer["test"] == "two_proportion_z" and answer["sample_size"] == needed
    z, p = two_proportion_ztest(160, 200, 45, 50)
    assert (answer["statistic"], answer["p_value"]) == (z, p)


def test_a_label_counts_in_the_arm_of_the_version_that_answered_it():
    outputs = {
        "v1": {"label": True, "proba": None},
        "v2": {"label": False, "proba": None},
        "v3": {"label": True, "proba": None},
    }
    ab: dict = {}
    count_answered(ab, "v2", "classification", True, outputs, "v1")  # champion's answer: right
    count_answered(ab, "v2", "classification", True, outputs, "v2")  # canary's: wrong
    count_answered(ab, "v2", "classification", True, outputs, "v2")
    count_answered(ab, "v2", "classification", True, outputs, None)  # inline: nobody's
    assert set(ab) == {"v1", "v3"}
    assert (ab["v1"].a_n, ab["v1"].a_accuracy, ab["v1"].b_n, ab["v1"].b_accuracy) == (
        1,
        1.0,
        2,
        0.0,
    )
    assert (ab["v3"].a_n, ab["v3"].b_n) == (0, 2)  # v3 answered nothing: an empty arm
    count_answered(ab, "v2", "classification", True, outputs, "v2", by=-1)  # a correction
    count_answered(ab, "v2", "classification", False, outputs, "v2")
    assert (ab["v1"].b_n, ab["v1"].b_accuracy) == (2, 0.5)
    errors: dict = {}
    count_answered(errors, "v2", "regression", 2.0, outputs | {"v1": {"label": 1.5}}, "v1")
    assert errors["v1"].a_mae == 0.5 and errors["v1"].b_n == 0


# -- the decisions ----------------------------------------------------------------------------

AUTO = RolloutPolicy(policy="auto", min_labels=50)


def test_a_significantly_better_canary_is_promoted_on_the_ab_test():
    decision = decide_promotion(AUTO, None, None, counts(300, 400, 90, 100))
    assert decision.action is Action.PROMOTE
    assert decision.reason.startswith("promote: A/B test: the canary is significantly better")
    assert "0.900 on 100 labels of the canary's answers vs 0.750 on 400" in decision.reason
    assert decision.evidence["ab"]["test"] == "two_proportion_z"


def test_ab_holds_reject_and_manual():
    held = decide_promotion(AUTO, None, None, counts(300, 400, 40, 49))
    assert held.action is Action.HOLD and "only 49 labels in the smaller arm" in held.reason
    close = decide_promotion(AUTO, None, None, counts(300, 400, 78, 100))
    assert close.action is Action.HOLD and "not significantly better" in close.reason
    assert "more labels needed to detect 3 points" in close.reason
    worse = decide_promotion(AUTO, None, None, counts(360, 400, 70, 100))
    assert worse.action is Action.REJECT
    manual = decide_promotion(RolloutPolicy(min_labels=50), None, None, counts(300, 400, 90, 100))
    assert manual.action is Action.HOLD and "would be promoted" in manual.reason


def test_regression_ab_uses_welch():
    ab = TwoSampleErrors()
    rng = random.Random(1)
    for _ in range(400):
        ab.update("a", rng.expovariate(1.0))
    for _ in range(200):
        ab.update("b", rng.expovariate(2.0))  # half the error
    decision = decide_promotion(AUTO, None, None, ab)
    assert decision.action is Action.PROMOTE and "Welch t" in decision.reason


# -- a seeded simulation: loans, a label only for an approved loan ----------------------------


def loans(n: int, seed: int):
    """Applicants with a score x; one repays with probability x."""
    rng = random.Random(seed)
    for i in range(n):
        x = rng.random()
        yield f"applicant-{i}", x, rng.random() < x


def simulate(n: int, seed: int, share: float = 0.5):
    """Champion A approves x > 0.5, canary B x > 0.8, B answers a sticky share of applicants;
    the label (repaid or not) exists only when the answer served was to approve. Each version's
    scorecard takes the labels as the engine gives them (stored answers, who answered)."""
    states = {v: LearnerState(v, "classification", None) for v in ("A", "B")}
    for seq, (key, x, repays) in enumerate(loans(n, seed), start=1):
        outputs = {"A": {"label": x > 0.5, "proba": None}, "B": {"label": x > 0.8, "proba": None}}
        who = "B" if zlib.crc32(key.encode()) < share * 2**32 else "A"
        if not outputs[who]["label"]:
            continue  # refused: nobody ever learns whether it would have been repaid
        payload = {"label": repays, "outputs": outputs, "answered_by": who, "source": "app"}
        event = Event(EventKind.LABEL, payload, at=0.0, seq=seq)
        for state in states.values():
            state.learn(event, None)
    return states["B"].paired["A"], states["B"].ab["A"]


def test_paired_comparison_is_biased_when_labels_follow_the_answer_and_ab_is_not():
    # Truth: on the labels its own answers produce, A is right E[x | x > 0.5] = 75% of the time,
    # B E[x | x > 0.8] = 90%: B is the better version. Scored on A's approvals, B (refusing
    # 0.5 < x <= 0.8, right when they default) looks right 0.4 * 0.9 + 0.6 * 0.35 = 57% of the
    # time: the paired comparison favours A.
    paired, ab = simulate(20_000, seed=11)
    assert ab.a_accuracy == pytest.approx(0.75, abs=3 * math.sqrt(0.75 * 0.25 / ab.a_n))
    assert ab.b_accuracy == pytest.approx(0.90, abs=3 * math.sqrt(0.9 * 0.1 / ab.b_n))
    assert paired.a_only > paired.b_only  # the paired test says A is better...
    biased = decide_promotion(AUTO, None, None, paired)
    assert biased.action is Action.REJECT  # ...and would drop the better version
    fair = decide_promotion(AUTO, None, None, ab)
    assert fair.action is Action.PROMOTE, fair.reason
    # Over seeds, the A/B estimate of B's accuracy is unbiased (mean within 3 standard errors
    # of the truth); the paired one is off by about 20 points.
    estimates = [simulate(4000, seed=s)[1].b_accuracy for s in range(20)]
    assert abs(np.mean(estimates) - 0.9) < 3 * np.std(estimates) / math.sqrt(20)
    paired_b = [simulate(4000, seed=s)[0].b_accuracy for s in range(3)]
    assert all(p < 0.8 for p in paired_b)


# -- the engine: sticky split, answers, gates, refit holdout ----------------------------------


def loan_settings(url: str, **model):
    table = {
        "task": "classification",
        "classes": [True, False],
        "features": {"x": {"type": "number", "min": 0, "max": 1}},
        "pipeline": {"factory": "tests.core.factories:approver", "threshold": 0.5},
        "labels_follow_answer": True,
        "rollout": {"policy": "auto", "min_labels": 100},
        "refit": {"candidates": [{"factory": "tests.core.factories:approver", "threshold": 0.8}]},
        **model,
    }
    return settings_from_mapping(
        {"store": {"url": url}, "security": {"secret_key": "t"}, "models": {"loans": table}}
    )


def loan_engine(url: str, **model) -> Engine:
    from onlearn.keys import resolve_secret
    from onlearn.store import open_store

    engine = Engine(
        loan_settings(url, **model), open_store(url), secret=resolve_secret("t", url), clock=Clock()
    )
    return engine.start()


def serve(engine: Engine, applicants) -> None:
    """Predict with the applicant as the key; a label only for an approved loan."""
    for key, x, repays in applicants:
        p = engine.predict_one("loans", {"x": x}, key=key)
        if p.label:
            engine.feedback_one("loans", FeedbackItem(repays, prediction_id=p.prediction_id))


def test_a_canary_is_promoted_on_the_ab_test_where_the_paired_test_would_drop_it(tmp_path):
    engine = loan_engine(f"sqlite:///{tmp_path}/o.db")
    worker = Worker(engine)
    stream = list(loans(5000, seed=5))
    serve(engine, stream[:400])
    job = enqueue_refit(engine, "loans", reason="t", actor="t", options={"register_anyway": True})
    done = worker.run_job(engine.store.jobs.claim(worker.name, lease_s=60, now=engine.clock()))
    assert done.state is JobState.DONE and done.job_id == job.job_id, done.error
    rt = engine.runtime("loans")
    assert rt.roles == {"champion": "v1", "challenger": "v2"}
    worker.check_gates(rt)  # a challenger answers nothing: it becomes the canary
    assert rt.roles == {"champion": "v1", "canary": "v2"} and rt.canary_share == 0.1
    assert "A/B test" in engine.role_history("loans")[-1]["reason"]
    engine.change_roles("loans", {}, actor="t", reason="half", canary_share=0.5)
    serve(engine, stream[400:2400])
    versions = {v["version"]: v for v in engine.versions("loans")}
    ab = versions["v2"]["ab"]
    assert ab["compared"] and ab["against"] == "v1" and ab["favoured"] == "b"
    assert ab["a_accuracy"] < 0.8 < ab["b_accuracy"]
    assert "more labels needed" in ab["sample_size"]["sentence"]
    assert versions["v1"]["ab"]["compared"] is False
    # the paired comparison on the same labels says the opposite
    assert (
        versions["v2"]["paired"]["v1"]["a_accuracy"] > versions["v2"]["paired"]["v1"]["b_accuracy"]
    )
    worker.check_gates(rt)
    assert rt.roles == {"champion": "v2", "previous": "v1"}
    assert engine.role_history("loans")[-1]["reason"].startswith(
        "automatic promotion: promote: A/B"
    )
    worker.check_gates(rt)  # no automatic rollback: the previous champion answers nothing
    assert rt.roles["champion"] == "v2"
    engine.close()


def test_a_version_that_answers_nothing_is_not_compared_and_the_answer_says_why(tmp_path):
    engine = loan_engine(f"sqlite:///{tmp_path}/o.db", rollout={"policy": "manual"})
    worker = Worker(engine)
    serve(engine, loans(300, seed=2))
    enqueue_refit(engine, "loans", reason="t", actor="t", options={"register_anyway": True})
    worker.run_job(engine.store.jobs.claim(worker.name, lease_s=60, now=engine.clock()))
    engine.change_roles("loans", {"challenger": None, "shadow": "v2"}, actor="t", reason="t")
    rt = engine.runtime("loans")
    worker.check_gates(rt)  # manual: the worker moves nothing
    assert rt.roles == {"champion": "v1", "shadow": "v2"}
    serve(engine, loans(300, seed=3))
    shadow = {v["version"]: v for v in engine.versions("loans")}["v2"]["ab"]
    assert shadow["compared"] is False
    assert "holds shadow: it answers no request" in shadow["why"]
    answer = worker._evaluate_ab(rt, "v2")
    assert answer["ab"] == shadow and "decision" not in answer
    assert "no canary" in worker._evaluate_ab(rt, None)["error"]
    engine.close()


def test_refit_holdout_scores_only_labels_of_the_champions_answers(tmp_path):
    engine = loan_engine(f"sqlite:///{tmp_path}/o.db", rollout={"policy": "manual"})
    serve(engine, loans(300, seed=8))
    enqueue_refit(engine, "loans", reason="t", actor="t", options={"register_anyway": True})
    worker = Worker(engine)
    worker.run_job(engine.store.jobs.claim(worker.name, lease_s=60, now=engine.clock()))
    engine.change_roles(
        "loans", {"challenger": None, "canary": "v2"}, actor="t", reason="t", canary_share=0.5
    )
    stream = list(loans(800, seed=9))
    serve(engine, stream)
    for _, x, repays in stream[:100]:  # inline labels: no answer recorded
        engine.feedback_one("loans", FeedbackItem(repays, features={"x": x}))
    labels = [
        e
        for e in engine.store.log.read("loans", after=0, limit=10_000)
        if e.kind is EventKind.LABEL
    ]

    def run(follow: bool):
        return refit(
            engine.store,
            "loans",
            schema=engine.runtime("loans").schema,
            task="classification",
            classes=(True, False),
            champion_state_at=lambda seq: engine.version_state("loans", "v1", seq),
            candidates=[{"factory": "tests.core.factories:approver", "threshold": 0.8}],
            holdout=0.5,
            labels_follow_answer=follow,
        )

    every, own = run(False), run(True)
    holdout = [e for e in labels if e.seq >= every.holdout[0]]
    mine = [e for e in holdout if e.payload.get("answered_by") == "v1"]
    assert 0 < len(mine) < len(holdout)
    assert (every.holdout_labels, every.holdout_excluded) == (len(holdout), 0)
    assert (own.holdout_labels, own.holdout_excluded) == (len(mine), len(holdout) - len(mine))
    # oracle: the champion approves x > 0.5 with certainty; its holdout accuracy is the share
    # of the scored labels that were repaid
    repaid = sum(e.payload["label"] for e in mine) / len(mine)
    assert own.champion.metrics.accuracy == pytest.approx(repaid)
    assert own.to_dict()["holdout"]["excluded_not_champion"] == len(holdout) - len(mine)
    with pytest.raises(NotEnoughData, match="labels_follow_answer"):
        refit(
            engine.store,
            "loans",
            schema=engine.runtime("loans").schema,
            task="classification",
            classes=(True, False),
            champion_state_at=lambda seq: engine.version_state("loans", "v2", seq),
            candidates=[{"factory": "tests.core.factories:approver", "threshold": 0.8}],
            holdout=0.05,
            labels_follow_answer=True,
        )
    engine.close()


# -- config -----------------------------------------------------------------------------------


def test_labels_follow_answer_config(tmp_path):
    url = f"sqlite:///{tmp_path}/o.db"
    assert loan_settings(url).model("loans").labels_follow_answer is True
    assert (
        loan_settings(url, labels_follow_answer=False).model("loans").labels_follow_answer is False
    )
    table = loan_settings(url).model("loans")
    default = settings_from_mapping(
        {
            "models": {
                "m": {
                    "features": {"x": {"type": "number"}},
                    "pipeline": {"name": "logistic_regression"},
                }
            }
        }
    )
    assert default.model("m").labels_follow_answer is False
    assert table.rollout.policy == "auto"
    for bad in ("yes", 1, None, [True]):
        with pytest.raises(
            ConfigError, match=r"\[models.loans\]: labels_follow_answer must be true or false"
        ):
            loan_settings(url, labels_follow_answer=bad)
