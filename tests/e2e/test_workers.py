"""``onlearn serve --workers 2`` on one SQLite file: every worker follows the same log.

A client cannot choose the worker that answers; each call here opens a connection of its own so
that the kernel spreads them over both, and agreement is checked over many calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.e2e.helpers import READY_TIMEOUT, strict_json, wait_until, xy_rows
from tests.servers import ServerProcess

PROBE = {"x": 0.2, "y": -0.1}


@pytest.fixture(scope="module")
def workers(launched: dict[str, ServerProcess]) -> ServerProcess:
    """``onlearn serve --workers 2`` with configs.WORKERS_CONFIG."""
    return launched["workers"].wait_ready(READY_TIMEOUT)


@pytest.fixture(scope="module")
def fresh(workers: ServerProcess) -> Iterator[httpx.Client]:
    """A client that opens a new connection per request (which may land on either worker)."""
    headers = {"Connection": "close"}
    with httpx.Client(base_url=workers.url, headers=headers, timeout=30) as client:
        yield client


def test_two_workers_answer_alike_once_they_applied_the_same_log(fresh):
    rows = xy_rows(30, seed=40)
    for features, label in rows:
        response = fresh.post(
            "/models/shared/feedback", json={"features": features, "label": label}
        )
        assert response.status_code == 200, response.text

    def at_once(call, n: int) -> list:
        # Calls in flight together: one after the other, they would all be accepted by the
        # process that went back to waiting last (the kernel wakes the newest waiter first).
        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(lambda _: call(), range(n)))

    def described() -> dict:
        return strict_json(fresh.get("/models/shared"))

    def predict() -> tuple:
        response = fresh.post("/models/shared/predict", json={"features": PROBE})
        assert response.status_code == 200, response.text
        body = strict_json(response)
        return body["label"], body["proba"]

    wait_until(
        lambda: all(d["applied_seq"] == len(rows) for d in at_once(described, 20)),
        timeout=20,
        every=0,
    )
    answers: list[tuple] = []

    def both_answered() -> bool:
        # Agreement proves something only if both workers answered: each process counts its
        # own predictions, so a count strictly between 0 and the total means the other did the
        # rest. The kernel may hand a burst to one process: send bursts until both took some.
        answers.extend(at_once(predict, 40))
        counts = {d["counters"]["predictions"] for d in at_once(described, 20)}
        return any(0 < c < len(answers) for c in counts)

    wait_until(both_answered, timeout=30, every=0)
    assert answers[0][1], "the probe must be answered by a trained model"
    assert all(a == answers[0] for a in answers), set(map(str, answers))


def test_feedback_joins_a_prediction_made_by_the_other_worker(workers):
    # A client with a few open connections sends a feedback right after its predict, likely on
    # another connection, so another worker: the prediction record must be found there too.
    clients = [httpx.Client(base_url=workers.url, timeout=30) for _ in range(4)]
    refused = []
    try:
        for i, (features, label) in enumerate(xy_rows(60, seed=41)):
            p = clients[i % 4].post("/models/joined/predict", json={"features": features})
            assert p.status_code == 200, p.text
            body = {"prediction_id": strict_json(p)["prediction_id"], "label": label}
            response = clients[(i + 1) % 4].post("/models/joined/feedback", json=body)
            if response.status_code != 200:
                refused.append((response.status_code, response.text))
    finally:
        for client in clients:
            client.close()
    assert not refused, f"{len(refused)} of 60 refused, e.g. {refused[0]}"
