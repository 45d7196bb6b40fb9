"""The worker computes feature importances with its snapshots, into the model's drift answer."""

from __future__ import annotations

import pytest

from onlearn.background.worker import Worker
from onlearn.registry import IMPORTANCE_REPORT as IMPORTANCE_DOCUMENT
from tests.core.test_worker import STREAM, engine_for, learn


@pytest.mark.parametrize("replay", [False, True])
def test_snapshots_bring_importances_into_the_drift_answer(tmp_path, replay):
    engine = engine_for(f"sqlite:///{tmp_path}/onlearn.db")
    worker = Worker(engine, replay_snapshots=replay)
    rt = engine.runtime("phishing")
    for rows in (STREAM[:300], STREAM[300:600]):
        learn(engine, rows)
        worker.write_snapshots(rt)
    document = engine.store.registry.get_document("phishing", IMPORTANCE_DOCUMENT)
    assert document["seq"] == rt.seq and document["labelled_rows"] == 600
    v1 = document["versions"]["v1"]
    assert v1["roles"] == ["champion"] and v1["method"] == "weights"
    assert set(v1["importances"]) == set(rt.schema.names)
    assert sum(v1["importances"].values()) == pytest.approx(1.0)
    assert v1["drift"]["reference"] and v1["drift"]["overlap"] is not None
    assert len(document["timeline"]) == 2
    # the weights are the live model's, whichever way the snapshot was made
    with rt.lock:
        from onlearn.drift.importance import linear_importance

        live = linear_importance(rt.states["v1"].estimator, list(rt.schema.names))
    assert v1["importances"] == pytest.approx(live)
    assert engine.drift("phishing")["importance"]["versions"]["v1"]["method"] == "weights"
    engine.close()


def test_importance_can_be_turned_off(tmp_path):
    engine = engine_for(f"sqlite:///{tmp_path}/onlearn.db")
    worker = Worker(engine, importance=None)
    learn(engine, STREAM[:200])
    assert worker.write_snapshots(engine.runtime("phishing"))
    assert engine.store.registry.get_document("phishing", IMPORTANCE_DOCUMENT) is None
    assert engine.drift("phishing")["importance"] is None
    engine.close()
