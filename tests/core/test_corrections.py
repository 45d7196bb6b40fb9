"""Corrections (issue 13): a replay of a log with corrections equals the live model, each
prediction is scored once with its newest label, and two racing corrections cannot both land."""

from __future__ import annotations

import math
import threading

import pytest

from onlearn.config import settings_from_mapping
from onlearn.engine import Engine
from onlearn.errors import LabelConflict
from onlearn.records import FeedbackItem
from onlearn.store import open_store
from tests.core.conftest import phishing_settings, phishing_stream


def engine_on(url: str) -> Engine:
    return Engine(phishing_settings(url), open_store(url), secret=b"k")


def test_a_replay_with_corrections_equals_the_live_model_and_scores_once(store_url):
    with engine_on(store_url) as engine:
        rows = list(phishing_stream(120))
        answers = [engine.predict_one("phishing", x) for x, _ in rows]
        final = {}
        items = []
        for i, (a, (_, y)) in enumerate(zip(answers, rows, strict=True)):
            wrong = i % 4 == 0  # a quarter get a wrong first label, corrected later
            label = (not y) if wrong else y
            items.append(FeedbackItem(label, prediction_id=a.prediction_id, labeller="bot"))
            final[a.prediction_id] = label
        engine.feedback_many("phishing", items)
        fixes = [
            FeedbackItem(y, prediction_id=a.prediction_id, correction=True, labeller="ann")
            for i, (a, (_, y)) in enumerate(zip(answers, rows, strict=True))
            if i % 4 == 0
        ]
        for fix in fixes[:10]:  # one by one, and the rest in a batch
            assert engine.feedback_one("phishing", fix).correction is True
        assert all(r.correction for r in engine.feedback_many("phishing", fixes[10:]))
        # A correction of a correction: back to the first (wrong) label.
        twice = answers[0].prediction_id
        engine.feedback_one(
            "phishing", FeedbackItem(not rows[0][1], prediction_id=twice, correction=True)
        )
        for fix in fixes:
            final[fix.prediction_id] = fix.label
        final[twice] = not rows[0][1]
        rt = engine.runtime("phishing")
        head = engine.store.log.head("phishing")
        assert head == 120 + len(fixes) + 1 and rt.seq == head
        assert rt.labels_applied == head, "an online model learns each correction once more"
        live = rt.states["v1"]
        replayed = engine.version_state("phishing", "v1", head)
        probes = [x for x, _ in phishing_stream(200)][120:]
        assert [live.predict(x) for x in probes] == [replayed.predict(x) for x in probes]
        assert live.metrics.to_dict() == replayed.metrics.to_dict()
        # Scored once, with each prediction's newest label, on the answer it gave then.
        metrics = live.metrics.to_dict()
        right = [a.label == final[a.prediction_id] for a in answers]
        assert metrics["n"] == 120
        assert metrics["accuracy"] == pytest.approx(sum(right) / 120)
        loss = -sum(
            math.log(min(max((a.proba or {}).get(final[a.prediction_id], 0.0), 1e-15), 1.0))
            for a in answers
        )
        assert metrics["log_loss"] == pytest.approx(loss / 120)
        corrections = metrics["corrections"]
        assert corrections["total"] == len(fixes) + 1 == corrections["rescored"]
        assert corrections["by_labeller"] == {"ann": len(fixes)}
        assert corrections["corrected_by_labeller"] == {"bot": len(fixes), "ann": 1}
        assert corrections["disagreement_rate_by_labeller"]["bot"] == len(fixes) / 120


def test_two_racing_corrections_of_one_label_cannot_both_land(store_url):
    """Corrections of one label race for one key (correction:<key>:<seq>): one lands, the other
    is refused naming it, or (when it read the winner first) corrects the winner in turn. Never
    two corrections of the same label."""
    settings = settings_from_mapping(
        {
            "store": {"url": store_url},
            "models": {
                "m": {
                    "task": "classification",
                    "classes": ["a", "b", "c"],
                    "pipeline": {"name": "logistic_regression"},
                    "features": {"x": {"type": "number"}},
                }
            },
        }
    )
    with Engine(settings, open_store(store_url), secret=b"k") as engine:
        for round_ in range(12):
            p = engine.predict_one("m", {"x": float(round_)})
            engine.feedback_one("m", FeedbackItem("a", prediction_id=p.prediction_id))
            outcomes: list = [None, None]
            start = threading.Barrier(2)

            def correct(i, label, pid=p.prediction_id, start=start, outcomes=outcomes):
                start.wait()
                try:
                    item = FeedbackItem(label, prediction_id=pid, correction=True, labeller=label)
                    outcomes[i] = engine.feedback_one("m", item)
                except LabelConflict as conflict:
                    outcomes[i] = conflict

            threads = [threading.Thread(target=correct, args=(i, lb)) for i, lb in enumerate("bc")]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            events = [
                e
                for e in engine.store.log.read("m", 0, limit=10_000)
                if e.payload["prediction_id"] == p.prediction_id
            ]
            chain = [e.payload["corrects"] for e in events]
            assert chain[0] is None and chain[1:] == [e.seq for e in events[:-1]], chain
            landed = [o for o in outcomes if not isinstance(o, LabelConflict)]
            refused = [o for o in outcomes if isinstance(o, LabelConflict)]
            assert len(events) == 1 + len(landed) and landed, outcomes
            for refusal in refused:  # names the correction that won
                assert refusal.recorded["seq"] == events[-1].seq
                assert refusal.recorded["label"] == events[-1].payload["label"]
