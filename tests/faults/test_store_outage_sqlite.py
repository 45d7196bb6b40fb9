"""The SQLite store becomes unavailable and comes back: another connection holds the database's
write lock (``BEGIN EXCLUSIVE``) longer than the server's ``busy_timeout_ms``.

While it is held, feedback answers 503 quickly with Retry-After and a detail that says what is
wrong, never a 500, and the server stays alive (predictions keep being answered: their records
wait in memory). Once the lock is released, the same feedback is accepted, nothing acknowledged
before is lost, and the model is exactly a replay of the log.
"""

from __future__ import annotations

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.e2e.helpers import (
    READY_TIMEOUT,
    shutdown,
    strict_json,
    wait_until,
    write_config,
    xy_model,
    xy_rows,
)
from tests.faults.helpers import described, log_events, replayed, served
from tests.servers import ServerProcess

M = "lin"
BUSY_TIMEOUT_MS = 200
# A feedback fails after waiting busy_timeout_ms for the lock, once per append; generous for a
# busy machine, far below the default 5 s wait and any client's timeout.
FAST_S = 2.0
CONFIG = xy_model(M)


@pytest.fixture
def server(tmp_path):
    config = write_config(tmp_path, CONFIG)
    url = f"sqlite:///{tmp_path / 'onlearn.db'}?busy_timeout_ms={BUSY_TIMEOUT_MS}"
    process = ServerProcess(config, url).start(READY_TIMEOUT)
    try:
        yield process
    finally:
        shutdown(process)


class WriteLock:
    """Another process's connection holding the write lock of the database, as a long backup,
    a stuck migration or a crashed tool holding a transaction would."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=10)

    def __enter__(self) -> WriteLock:
        self.conn.execute("BEGIN EXCLUSIVE")
        return self

    def events(self, model: str) -> int:
        """The events of ``model`` in the log, read inside the lock holder's transaction."""
        sql = "SELECT count(*) FROM events WHERE model = ?"
        return self.conn.execute(sql, (model,)).fetchone()[0]

    def __exit__(self, *exc) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


def feedback(api: httpx.Client, body: dict, **params) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = api.post(f"/models/{M}/feedback", json=body, params=params or None)
    return response, time.monotonic() - started


def unavailable(response: httpx.Response, took: float) -> None:
    """A 503 that came fast, says when to retry and why."""
    assert response.status_code == 503, (response.status_code, response.text)
    assert took < FAST_S, f"a 503 should come fast, took {took:.2f} s"
    assert response.headers.get("retry-after"), response.headers
    detail = strict_json(response)["detail"]
    assert isinstance(detail, str) and "unavailable" in detail and "retry" in detail, detail


def pending_records(api: httpx.Client) -> float:
    for line in api.get("/metrics").text.splitlines():
        if line.startswith("onlearn_prediction_records_pending "):
            return float(line.split()[1])
    raise AssertionError("no onlearn_prediction_records_pending in /metrics")


def test_feedback_fails_fast_while_the_database_is_locked_and_recovers(server):
    path = server.store_url.removeprefix("sqlite:///").split("?")[0]
    rows = xy_rows(60, seed=41)
    acked: dict[str, int] = {}  # event key -> seq
    with httpx.Client(base_url=server.url, timeout=30) as api:
        for features, label in rows[:20]:
            pid = strict_json(api.post(f"/models/{M}/predict", json={"features": features}))[
                "prediction_id"
            ]
            response, _ = feedback(api, {"prediction_id": pid, "label": label})
            assert response.status_code == 200, response.text
            acked[f"prediction:{pid}"] = strict_json(response)["seq"]

        refused = []  # (body, params) answered 503
        with WriteLock(path) as lock:
            # Predictions are answered: their records wait in memory for the store.
            pending = []
            for features, label in rows[20:40]:
                answer = api.post(f"/models/{M}/predict", json={"features": features})
                assert answer.status_code == 200, answer.text
                pending.append({"prediction_id": answer.json()["prediction_id"], "label": label})
            # Feedback by prediction id (joined from memory), inline, without waiting: 503.
            for body, params in [
                (pending[0], {}),
                (pending[1], {"wait": "false"}),
                ({"features": rows[40][0], "label": rows[40][1], "event_id": "inline-1"}, {}),
            ]:
                unavailable(*feedback(api, body, **params))
                refused.append((body, params))
            batch = api.post(f"/models/{M}/feedback/batch", json={"items": pending[2:5]})
            assert batch.status_code == 503, batch.text
            refused += [(body, {}) for body in pending[2:5]]
            # Many at once: every one answered 503 quickly, none 500.
            with ThreadPoolExecutor(8) as pool:
                burst = list(pool.map(lambda b: feedback(api, b), pending[5:21]))
            for response, took in burst:
                unavailable(response, took)
            refused += [(body, {}) for body in pending[5:21]]
            assert api.get("/healthz").status_code == 200
            # Nothing refused reached the log.
            assert lock.events(M) == len(acked)

        # The lock is gone: the same feedback is accepted, and nothing acknowledged is lost.
        for body, params in refused:
            response, _ = feedback(api, body, **params)
            assert response.status_code == 200, response.text
            key = f"event:{body['event_id']}" if "event_id" in body else None
            acked[key or f"prediction:{body['prediction_id']}"] = strict_json(response)["seq"]
        assert api.get("/readyz").status_code == 200
        events = log_events(server.store_url, M)
        assert {e.key: e.seq for e in events} == acked
        head = len(events)
        assert described(api, M)["applied_seq"] == head == len(acked)
        assert served(api, M) == replayed(server.store_url, M)
        # The records of the predictions made during the outage reached the store meanwhile.
        wait_until(lambda: pending_records(api) == 0)
    assert "Traceback" not in server.output(), server.output()[-3000:]
