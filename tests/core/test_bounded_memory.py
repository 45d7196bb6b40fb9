"""A long run keeps Redis memory flat: prediction records expire, old snapshots go, the log is
trimmed to what is still needed, and the labelling queue is bounded."""

from __future__ import annotations

import time

import pytest
import redis as redis_client

from onlearn.background.worker import Worker
from onlearn.config import settings_from_mapping
from onlearn.engine import Engine, FeedbackItem
from tests.core.conftest import PHISHING_FEATURES, phishing_stream

ROWS = list(phishing_stream())


@pytest.mark.long  # a load run: `make test-long`
def test_redis_memory_stays_flat_over_a_long_run(redis_url):
    settings = settings_from_mapping(
        {
            "store": {"url": redis_url},
            "security": {"secret_key": "k"},
            "engine": {
                "snapshot_every_events": 500,
                "snapshot_every_s": 0,
                "keep_snapshots": 2,
                "retain_events": 500,
            },
            "models": {
                "phishing": {
                    "classes": [True, False],
                    "pipeline": {"name": "logistic_regression"},
                    "features": PHISHING_FEATURES,
                    "prediction_ttl_s": 1,
                    "active": {"budget": 0.5, "window": 100, "queue_max_size": 200},
                }
            },
        }
    )
    client = redis_client.Redis.from_url(redis_url)
    used = []
    with Engine.from_settings(settings) as engine:
        worker = Worker(engine)
        for _round in range(12):
            for x, y in ROWS[:500]:
                p = engine.predict_one("phishing", x)
                engine.feedback_one("phishing", FeedbackItem(y, prediction_id=p.prediction_id))
            engine._records.flush()
            time.sleep(1.1)  # the round's prediction records outlive their TTL
            engine.store.predictions.purge_expired(time.time())
            worker.tick()
            used.append(client.info("memory")["used_memory"])
        assert engine.store.queue.stats("phishing").depth <= 200
        head = engine.store.log.head("phishing")
        first = engine.store.log.read("phishing", 0, 1)[0].seq
        assert head == 6000 and head - first < 1500  # trimmed as it went
    client.close()
    # The log, the snapshots, the records and the queue all stay bounded: memory after the
    # warm-up rounds grows by less than a few percent, while 6000 labels went through.
    middle, last = max(used[3:7]), max(used[8:])
    assert last < middle * 1.1, used
