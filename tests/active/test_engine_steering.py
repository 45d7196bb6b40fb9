"""The engine wires the sampler's steering: alarms and bought labels reach its credit line."""

from __future__ import annotations

import time

from onlearn.engine import Engine
from onlearn.records import FeedbackItem
from onlearn.store import open_store
from tests.core.conftest import Clock, phishing_settings, phishing_stream


def engine_with_sampler(**active):
    table = {"budget": 0.1, "window": 100, "evaluation_rate": 0.0, **active}
    settings = phishing_settings("memory://", active=table)
    return Engine(settings, open_store("memory://"), secret=b"k", clock=Clock())


def test_a_drift_alarm_in_the_log_opens_the_samplers_credit_line():
    with engine_with_sampler() as engine:
        x = next(iter(phishing_stream(1)))[0]
        engine.predict_one("phishing", x)
        strategy = engine.runtime("phishing").sampler.strategy
        engine.raise_alarm("phishing", {"kind": "agreement_drop", "detail": "x"})
        seq = engine.raise_alarm("phishing", {"kind": "concept_drift", "detail": "x"})
        runtime = engine.runtime("phishing")
        deadline = time.monotonic() + 10
        while runtime.seq < seq and time.monotonic() < deadline:  # the learner applies it
            time.sleep(0.01)
        assert runtime.seq >= seq
        assert strategy.n_drifts == 1


def test_labels_a_sampler_bought_steer_it_and_others_do_not():
    # It buys every prediction: any uncertainty is above 0 (the variable strategies' threshold
    # would move with their step and buy fewer).
    with engine_with_sampler(budget=1.0, strategy="fixed_uncertainty", threshold=0.0) as engine:
        rows = list(phishing_stream(600))
        strategy = engine.runtime("phishing").sampler.strategy
        # Inline labels (no prediction joined) teach the model but say nothing about the
        # sampler's purchases.
        for x, y in rows[:300]:
            engine.feedback_one("phishing", FeedbackItem(y, features=x))
        assert strategy.n_drifts == 0
        answers = [engine.predict_one("phishing", x) for x, _ in rows[300:]]
        # Confident answers, labelled wrong: more errors than promised.
        sure = [a for a in answers if max(a.proba.values()) > 0.75 and a.queued]
        assert len(sure) >= 30
        for a in sure[:30]:
            engine.feedback_one(
                "phishing", FeedbackItem(not a.label, prediction_id=a.prediction_id)
            )
        assert strategy.n_drifts >= 1
