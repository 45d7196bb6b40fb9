"""Many concurrent clients on one server: no lost and no doubled update.

32 asyncio clients predict and give feedback at once (by prediction id, waiting for the apply or
not, inline with an event id, and the same feedback twice at once), on a linear model and on a
seeded forest (whose ``learn_one`` is slow enough for predicts to overlap it). Then:

- every acknowledged feedback is in the log at its seq, the log is gapless, no key twice;
- the number of labels the model learned equals the number of distinct acknowledged seqs;
- the model answers exactly what a serial replay of the log answers (labels and float probas);
- a storm of the same feedback, sent concurrently through every route, gets one seq.
"""

from __future__ import annotations

import asyncio
import itertools

import httpx
import pytest

from tests.e2e.helpers import (
    READY_TIMEOUT,
    XY_FEATURES,
    launch,
    shutdown,
    strict_json,
    wait_until,
    xy_model,
)
from tests.faults.helpers import (
    FeedbackLoad,
    check_log_holds,
    described,
    log_events,
    replayed,
    served,
)

MODELS = ("lin", "forest")
CONFIG = f"""
{xy_model("lin")}

[models.forest]
task = "classification"
classes = ["pos", "neg"]
pipeline = {{ name = "adaptive_random_forest", n_models = 3 }}
[models.forest.features]
{XY_FEATURES}
"""
CLIENTS = 32
ROUNDS = 8  # per client: 256 rounds of predict + feedback


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = launch(tmp_path_factory.mktemp("concurrency"), CONFIG).wait_ready(READY_TIMEOUT)
    try:
        yield process
    finally:
        shutdown(process)
    assert "Traceback" not in process.output(), process.output()[-3000:]


def check_model_is_the_log(server, acks) -> None:
    url = server.store_url
    events = {m: log_events(url, m) for m in MODELS}
    check_log_holds(acks, events)
    with httpx.Client(base_url=server.url, timeout=30) as api:
        for m in MODELS:
            distinct = {a.seq for a in acks if a.model == m}
            head = len(events[m])
            assert head == len(distinct), m
            # Answers given without waiting for the apply: the learner applies them shortly.
            wait_until(lambda m=m, head=head: described(api, m)["applied_seq"] >= head)
            assert described(api, m)["applied_seq"] == head, m
            learned = strict_json(api.get(f"/models/{m}/metrics"))["versions"]["v1"]["n"]
            assert learned == len(distinct), m
            assert served(api, m) == replayed(url, m), m


def test_concurrent_predict_and_feedback_equal_a_serial_replay(server):
    load = FeedbackLoad(server.url, MODELS, clients=CLIENTS, seed=3)
    asyncio.run(load.run(rounds=ROUNDS))
    assert not load.failures, load.failures[:5]
    assert load.cut == 0, load.cut_errors
    assert load.duplicates and all(a == b for a, b in load.duplicates), load.duplicates
    assert len({(a.model, a.seq) for a in load.acks}) >= CLIENTS * ROUNDS * 3 // 4
    check_model_is_the_log(server, load.acks)


async def storm(base_url: str, model: str, n_predictions: int, copies: int) -> dict[str, set]:
    """Each prediction's feedback sent ``copies`` times at once through every route (single,
    ``?wait=false``, batch, with a batch holding it twice); the seqs each key got."""
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as http:
        rows = [
            {"x": i / n_predictions - 0.5, "y": 0.25 - i / n_predictions / 2}
            for i in range(n_predictions)
        ]
        answers = await asyncio.gather(
            *(http.post(f"/models/{model}/predict", json={"features": r}) for r in rows)
        )
        bodies = [
            {"prediction_id": a.json()["prediction_id"], "label": "pos" if i % 2 else "neg"}
            for i, a in enumerate(answers)
        ]
        inline = [
            {"features": r, "label": "pos", "event_id": f"storm-{model}-{i}"}
            for i, r in enumerate(rows)
        ]

        async def single(body, wait):
            params = None if wait else {"wait": "false"}
            r = await http.post(f"/models/{model}/feedback", json=body, params=params)
            assert r.status_code == 200, r.text
            return [(body, r.json()["seq"])]

        async def batch(body):
            r = await http.post(f"/models/{model}/feedback/batch", json={"items": [body, body]})
            assert r.status_code == 200, r.text
            return [(body, item["seq"]) for item in r.json()["results"]]

        calls = []
        for body, copy in itertools.product(bodies + inline, range(copies)):
            kind = copy % 3
            calls.append(batch(body) if kind == 2 else single(body, wait=kind == 0))
        results = await asyncio.gather(*calls)
    seqs: dict[str, set] = {}
    for body, seq in itertools.chain.from_iterable(results):
        key = body.get("prediction_id") or body["event_id"]
        seqs.setdefault(key, set()).add(seq)
    return seqs


@pytest.mark.parametrize("model", MODELS)
def test_the_same_feedback_sent_concurrently_gets_one_seq(server, model):
    before = log_events(server.store_url, model)
    seqs = asyncio.run(storm(server.url, model, n_predictions=10, copies=6))
    assert len(seqs) == 20
    doubled = {key: s for key, s in seqs.items() if len(s) != 1}
    assert not doubled, f"feedback for one prediction got several seqs: {doubled}"
    after = log_events(server.store_url, model)
    assert len(after) - len(before) == len(seqs)  # one event per prediction, however sent
    with httpx.Client(base_url=server.url, timeout=30) as api:
        wait_until(lambda: described(api, model)["applied_seq"] >= len(after))
        assert described(api, model)["applied_seq"] == len(after)
        assert served(api, model) == replayed(server.store_url, model)
