"""A labeller that claims items and vanishes: after the lease the items go back to the queue,
another labeller claims and labels them over HTTP, the expiries are counted, and the ghost's
late label is refused."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.e2e.helpers import (
    READY_TIMEOUT,
    launch,
    message,
    shutdown,
    strict_json,
    wait_until,
    xy_rows,
)

M = "/models/al"
LEASE_S = 1.0
N = 6
CONFIG = """
[engine]
snapshot_check_s = 0.2  # the maintenance loop returns expired leases this often

[models.al]
task = "classification"
classes = ["pos", "neg"]
pipeline = { name = "logistic_regression", lr = 0.5 }
active = { budget = 1.0, window = 50, evaluation_rate = 0.0, lease_s = 60 }
[models.al.features]
x = { type = "number", min = -10, max = 10 }
y = { type = "number", min = -10, max = 10 }
"""


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    server = launch(tmp_path_factory.mktemp("labeller"), CONFIG).wait_ready(READY_TIMEOUT)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield client
    finally:
        shutdown(server)
    assert "Traceback" not in server.output()


def stats(api) -> dict:
    response = api.get(f"{M}/queue/stats")
    assert response.status_code == 200, response.text
    return strict_json(response)


def claim(api, **body) -> list[dict]:
    response = api.post(f"{M}/queue/claim", json=body)
    assert response.status_code == 200, response.text
    return strict_json(response)["items"]


def fill(api, n: int, seed: int) -> dict[str, str]:
    """``n`` predictions, each queued (budget 1); their true labels by prediction id."""
    before = stats(api)["pushed"]
    truth = {}
    for features, label in xy_rows(n, seed=seed):
        answer = strict_json(api.post(f"{M}/predict", json={"features": features}))
        assert answer["queued"] is True  # budget 1: every prediction is asked for
        truth[answer["prediction_id"]] = label
    wait_until(lambda: stats(api)["pushed"] - before == n)
    return truth


def vanish(api, truth: dict) -> tuple[list[dict], float]:
    """The ghost claims every queued item with a short lease and is never heard of again.
    ``claimed_at`` is taken before the request: the server starts the lease while answering,
    so a time taken after the answer came back would be late by the round trip, and a lease
    that ran its full second could look shorter than that."""
    claimed_at = time.monotonic()
    ghost = claim(api, limit=len(truth), lease_s=LEASE_S, labeller="ghost")
    assert {i["prediction_id"] for i in ghost} == set(truth)
    return ghost, claimed_at


def label_all(api, items: list[dict], truth: dict, labeller: str) -> list[int]:
    seqs = []
    for item in items:
        body = {"label": truth[item["prediction_id"]], "claim_id": item["claim_id"]}
        response = api.post(
            f"{M}/queue/{item['item_id']}/label", json={**body, "labeller": labeller}
        )
        assert response.status_code == 200, response.text
        seqs.append(strict_json(response)["seq"])
    return seqs


def test_items_of_a_vanished_labeller_come_back_after_their_lease(api):
    start = stats(api)
    truth = fill(api, N, seed=11)
    ghost, claimed_at = vanish(api, truth)
    # While the lease runs, nobody else gets them.
    assert claim(api, limit=N, labeller="bob") == []
    assert time.monotonic() - claimed_at < LEASE_S, "the machine is too slow for this lease"
    assert stats(api)["claimed"] == N

    # The ghost never comes back. The maintenance loop returns the items and counts it.
    after = wait_until(
        lambda: (s := stats(api))["expired"] - start["expired"] == N and s, timeout=LEASE_S + 10
    )
    assert after["depth"] == N and after["claimed"] == 0
    assert time.monotonic() - claimed_at >= LEASE_S

    mine = claim(api, limit=N, labeller="bob")
    assert {i["item_id"] for i in mine} == {i["item_id"] for i in ghost}
    assert all(i["attempts"] == 2 for i in mine), [i["attempts"] for i in mine]
    first_seq = strict_json(api.get(f"{M}/metrics"))["applied_seq"] + 1
    seqs = label_all(api, mine, truth, "bob")
    assert sorted(seqs) == list(range(first_seq, first_seq + N))
    final = stats(api)
    assert final["labelled"] - start["labelled"] == N
    assert (final["depth"], final["claimed"]) == (0, 0)
    model = strict_json(api.get(f"{M}/metrics"))["versions"]["v1"]
    assert model["labels_by_source"]["human"] == final["labelled"]


def test_the_late_label_of_a_vanished_labeller_is_refused_after_another_finished(api):
    """README: "a label for an item whose lease ran out and that someone else claimed answers
    409". It does while the other labeller holds the item (tests/e2e/test_queue.py); once the
    other labeller has labelled it, the ghost's label with its stale claim_id is answered 200
    with the other's seq, and the ghost's label is silently dropped."""
    truth = fill(api, 1, seed=12)
    ghost, _ = vanish(api, truth)
    wait_until(lambda: stats(api)["claimed"] == 0, timeout=LEASE_S + 10)
    (mine,) = claim(api, limit=1, labeller="bob")
    (seq,) = label_all(api, [mine], truth, "bob")
    late = ghost[0]
    wrong = "neg" if truth[late["prediction_id"]] == "pos" else "pos"
    response = api.post(
        f"{M}/queue/{late['item_id']}/label",
        json={"label": wrong, "claim_id": late["claim_id"], "labeller": "ghost"},
    )
    assert response.status_code == 409, (
        f"the ghost's late label {wrong!r} (stale claim) was answered {response.status_code} "
        f"{response.text}; bob's label {truth[late['prediction_id']]!r} is seq {seq}"
    )
    message(response, 409, "someone else")
