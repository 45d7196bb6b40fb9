"""Serving replicas on one Redis store converge: they apply the same log, in the same order, and
answer identical predictions; a replica started later loads the newest snapshot and replays
only the tail of the log.

Three ``onlearn serve`` processes share a private ``redis-server``. Clients predict on one
replica and give the label (by prediction id) to another, chosen at random, several at once.
A worker process then writes snapshots (and, with ``retain_events = 0``, trims the log up to
them, so a replica that ignored the snapshots could not rebuild the model at all); more labels
follow; a fourth replica starts from the snapshot and must agree with the others to the last
bit of every probability.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from onlearn.store import open_store
from tests.e2e.helpers import (
    PROBES,
    READY_TIMEOUT,
    REPLICA_ENV,
    XY_FEATURES,
    described,
    probe,
    shutdown,
    start_role,
    stop_role,
    strict_json,
    wait_until,
    write_config,
    xy_model,
    xy_rows,
)
from tests.servers import ServerProcess

MODELS = ("lin", "forest")
CONFIG = f"""
[security]
secret_key = "replicas-share-this-key"

[engine]
poll_interval_ms = 20
snapshot_every_events = 100
snapshot_every_s = 0
worker_poll_s = 0.1
retain_events = 0

{xy_model("lin")}

[models.forest]
task = "classification"
classes = ["pos", "neg"]
pipeline = {{ name = "adaptive_random_forest", n_models = 3 }}
[models.forest.features]
{XY_FEATURES}
"""
# Rows alternate between the two models: 120 labels each before the snapshot, 30 after.
FIRST, SECOND = 240, 60
CLIENTS = 4
# More probes than the shared ones: points near the boundary, where models differ most.
PROBE_ROWS = PROBES + [
    {"x": round(0.1 * i - 1.0, 2), "y": round(0.9 - 0.1 * i, 2)} for i in range(20)
]


class Traffic:
    """Predict on one replica, label on another (random, seeded), from several threads."""

    def __init__(self, urls: list[str], seed: int):
        self.urls = urls
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.acks: dict[str, list[int]] = {m: [] for m in MODELS}
        self.crossed = 0  # labels given to another replica than the one that predicted
        self.local = threading.local()

    def client(self, url: str) -> httpx.Client:
        clients = self.local.__dict__.setdefault("clients", {})
        if url not in clients:
            clients[url] = httpx.Client(base_url=url, timeout=30)
        return clients[url]

    def send(self, rows, start: int) -> None:
        plan = []
        for i, (features, label) in enumerate(rows):
            model = MODELS[(start + i) % len(MODELS)]
            a, b = self.rng.randrange(len(self.urls)), self.rng.randrange(len(self.urls))
            plan.append((model, features, label, self.urls[a], self.urls[b]))
        with ThreadPoolExecutor(CLIENTS) as pool:
            for outcome in pool.map(lambda step: self.one(*step), plan):
                assert outcome is None

    def one(self, model, features, label, predict_url, feedback_url) -> None:
        answer = self.client(predict_url).post(
            f"/models/{model}/predict", json={"features": features}
        )
        assert answer.status_code == 200, answer.text
        pid = answer.json()["prediction_id"]
        ack = self.client(feedback_url).post(
            f"/models/{model}/feedback", json={"prediction_id": pid, "label": label}
        )
        # A prediction made on one replica and labelled on another is joined: its record is
        # written within milliseconds and the other replica waits for it.
        assert ack.status_code == 200, (predict_url, feedback_url, ack.status_code, ack.text)
        with self.lock:
            self.acks[model].append(ack.json()["seq"])
            self.crossed += predict_url != feedback_url


def converged(clients: list[httpx.Client], expected: dict[str, int], timeout: float = 60.0):
    """Wait until every replica applied exactly ``expected[model]`` events of each model."""

    def seqs():
        return {m: [described(c, m)["applied_seq"] for c in clients] for m in MODELS}

    try:
        wait_until(
            lambda: all(s == [expected[m]] * len(clients) for m, s in seqs().items()),
            timeout=timeout,
            every=0.1,
        )
    except AssertionError:
        raise AssertionError(f"replicas did not converge: {seqs()} (expected {expected})") from None


def agree(clients: list[httpx.Client]) -> dict[str, list]:
    """Every replica answers the same labels and bit-identical probabilities, and has measured
    the same prequential metrics; returns the answers."""
    answers = {}
    for model in MODELS:
        probes = [probe(c, model, PROBE_ROWS) for c in clients]
        for i, other in enumerate(probes[1:], start=1):
            assert other == probes[0], (
                f"{model}: replica {i} answers {other}, replica 0 {probes[0]}"
            )
        metrics = [strict_json(c.get(f"/models/{model}/metrics"))["versions"] for c in clients]
        for i, other in enumerate(metrics[1:], start=1):
            assert other == metrics[0], f"{model}: replica {i} measured {other}, not {metrics[0]}"
        answers[model] = probes[0]
    return answers


def test_replicas_converge_and_a_new_replica_starts_from_the_newest_snapshot(tmp_path, redis_url):
    config = write_config(tmp_path, CONFIG)
    replicas = [ServerProcess(config, redis_url, env=REPLICA_ENV).launch() for _ in range(3)]
    late = None
    worker = None
    clients: list[httpx.Client] = []
    try:
        for replica in replicas:
            replica.wait_ready(READY_TIMEOUT)
        clients = [httpx.Client(base_url=r.url, timeout=30) for r in replicas]
        for model in MODELS:
            assert [described(c, model)["applied_seq"] for c in clients] == [0, 0, 0]

        rows = xy_rows(FIRST + SECOND, seed=11)
        traffic = Traffic([r.url for r in replicas], seed=5)
        traffic.send(rows[:FIRST], 0)
        per_model = {m: FIRST // len(MODELS) for m in MODELS}
        assert traffic.crossed > FIRST // 3, traffic.crossed
        for model in MODELS:
            # One log for all replicas: unique, gapless seqs, one per label.
            assert sorted(traffic.acks[model]) == list(range(1, per_model[model] + 1))
        converged(clients, per_model)
        before = agree(clients)
        for model in MODELS:
            assert (
                strict_json(clients[0].get(f"/models/{model}/metrics"))["versions"]["v1"]["n"]
                == per_model[model]
            )

        # Snapshots by a worker process. With retain_events = 0 it trims the log up to them.
        store = open_store(redis_url)
        try:
            worker = start_role("worker", config, redis_url, tmp_path / "worker.log")
            wait_until(
                lambda: all(store.registry.latest_snapshot(m, "v1") for m in MODELS),
                timeout=120,
                every=0.2,
            )
            code = stop_role(worker)
            assert code == 0, (code, (tmp_path / "worker.log").read_text()[-3000:])
            snapshots = {m: store.registry.latest_snapshot(m, "v1") for m in MODELS}
            for model, snapshot in snapshots.items():
                assert snapshot.seq == per_model[model], (model, snapshot.seq)
                first = store.log.read(model, after=0, limit=1)
                assert not first, f"{model}: the log still starts at {first[0].seq}"
        finally:
            store.close()

        # The snapshot changed nothing the replicas serve.
        assert agree(clients) == before

        traffic.send(rows[FIRST:], FIRST)
        for model in MODELS:
            per_model[model] += SECOND // len(MODELS)
            assert sorted(traffic.acks[model]) == list(range(1, per_model[model] + 1))
        converged(clients, per_model)

        started = time.monotonic()
        late = ServerProcess(config, redis_url, env=REPLICA_ENV).start(READY_TIMEOUT)
        print(f"fourth replica ready in {time.monotonic() - started:.1f} s")
        clients.append(httpx.Client(base_url=late.url, timeout=30))
        for model in MODELS:
            restored = described(clients[-1], model)["restored"]
            # Started from the newest snapshot and replayed only the labels after it: the log
            # before the snapshot is gone, so there was nothing else to start from.
            assert restored["at_seq"] == per_model[model], (model, restored)
            assert restored["from_snapshots"] == {"v1": snapshots[model].seq}, (model, restored)
            assert 0 < snapshots[model].seq < restored["at_seq"]
        converged(clients, per_model)
        agree(clients)
    finally:
        for client in clients:
            client.close()
        if worker is not None:
            stop_role(worker)
        for replica in [*replicas, late]:
            if replica is not None:
                shutdown(replica)
