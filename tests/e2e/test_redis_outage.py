"""A serving replica outlives its Redis: while Redis is down, requests that need the store fail
fast with 503 (never hang, never 500) and predict keeps answering; when Redis is back on the
same port and data directory, the replica recovers by itself and nothing it acknowledged is lost.

Redis runs with ``appendonly yes`` and ``appendfsync always`` and is killed with ``kill -9``, so
a label acknowledged the moment before the kill must still be in the log after the restart.
"""

from __future__ import annotations

import threading
import time

import httpx

from onlearn.store import open_store
from tests.e2e.helpers import (
    READY_TIMEOUT,
    REPLICA_ENV,
    described,
    learn,
    shutdown,
    strict_json,
    wait_until,
    write_config,
    xy_model,
    xy_rows,
)
from tests.servers import ServerProcess

MODEL = "out"
CONFIG = f"""
[security]
secret_key = "outage-test-key"

[engine]
poll_interval_ms = 20

{xy_model(MODEL)}
"""
BEFORE = 40  # labels learned before the outage
FAIL_FAST_S = 3.0  # a request that needs the store answers 503 within this (socket timeouts 2 s)


def timed(call):
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def unavailable(response: httpx.Response, elapsed: float) -> str:
    """A fast 503 with a JSON ``detail`` saying the store is unavailable, and a Retry-After."""
    assert response.status_code == 503, (response.status_code, response.text)
    assert elapsed < FAIL_FAST_S, f"503 after {elapsed:.2f} s"
    detail = strict_json(response)["detail"]
    assert isinstance(detail, str) and "unavailable" in detail, detail
    assert response.headers.get("retry-after"), response.headers
    return detail


def feedback(api: httpx.Client, body: dict) -> httpx.Response:
    return api.post(f"/models/{MODEL}/feedback", json=body)


def test_a_replica_fails_fast_while_redis_is_down_and_recovers_without_losing_a_label(
    tmp_path, redis_server_factory
):
    redis = redis_server_factory(appendonly=True, appendfsync="always")
    url = f"{redis.url}/0"
    config = write_config(tmp_path, CONFIG)
    server = ServerProcess(config, url, env=REPLICA_ENV).start(READY_TIMEOUT)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as api:
            rows = xy_rows(BEFORE + 10, seed=3)
            acked = {
                a["prediction_id"]: ack["seq"] for a, _, ack in learn(api, MODEL, rows[:BEFORE])
            }
            assert sorted(acked.values()) == list(range(1, BEFORE + 1))

            # A prediction whose record reached Redis, to be labelled only after the outage.
            early = api.post(f"/models/{MODEL}/predict", json={"features": rows[40][0]}).json()
            with open_store(url) as store:
                wait_until(lambda: store.predictions.get(early["prediction_id"]), timeout=10)

            # The last label acknowledged before Redis dies: kill -9 right after the answer.
            last = api.post(f"/models/{MODEL}/predict", json={"features": rows[41][0]}).json()
            ack = feedback(api, {"prediction_id": last["prediction_id"], "label": rows[41][1]})
            redis.kill()
            assert ack.status_code == 200, ack.text
            acked[last["prediction_id"]] = ack.json()["seq"]
            assert ack.json()["seq"] == BEFORE + 1

            # Redis is down.
            assert api.get("/healthz").status_code == 200  # alive, only not ready
            ready, elapsed = timed(lambda: api.get("/readyz"))
            assert ready.status_code == 503 and elapsed < FAIL_FAST_S, (ready.text, elapsed)
            assert "store unavailable" in strict_json(ready)["reason"], ready.text

            # Predict needs no store: it answers, and its record waits in memory for Redis.
            during, elapsed = timed(
                lambda: api.post(f"/models/{MODEL}/predict", json={"features": rows[42][0]})
            )
            assert during.status_code == 200 and elapsed < FAIL_FAST_S, (during.text, elapsed)
            during = during.json()

            # Feedback needs the store: 503 at once, whether the record must be read from
            # Redis, is still in this process's memory, or the features come inline.
            for body in (
                {"prediction_id": early["prediction_id"], "label": rows[40][1]},
                {"prediction_id": during["prediction_id"], "label": rows[42][1]},
                {"features": rows[43][0], "label": rows[43][1], "event_id": "inline-43"},
            ):
                unavailable(*timed(lambda body=body: feedback(api, body)))
            assert server.proc.poll() is None, server.output()[-3000:]

            # Redis comes back on the same port with its append-only file.
            redis.start()
            wait_until(lambda: api.get("/readyz").status_code == 200, timeout=30, every=0.1)

            # Nothing acknowledged was lost: the numbering goes on after the last label.
            with open_store(url) as store:
                events = store.log.read(MODEL, after=0, limit=10_000)
            logged = {e.payload["prediction_id"]: e.seq for e in events}
            assert logged == acked, (sorted(logged.values()), sorted(acked.values()))

            # And feedback works again, first time: for the prediction recorded before the
            # outage, the one made during it, and inline.
            seq = BEFORE + 1
            for body in (
                {"prediction_id": early["prediction_id"], "label": rows[40][1]},
                {"prediction_id": during["prediction_id"], "label": rows[42][1]},
                {"features": rows[43][0], "label": rows[43][1], "event_id": "inline-43"},
            ):
                seq += 1
                again = feedback(api, body)
                assert again.status_code == 200, (body, again.status_code, again.text)
                assert again.json()["seq"] == seq, again.json()
            assert described(api, MODEL)["applied_seq"] == seq
            metrics = strict_json(api.get(f"/models/{MODEL}/metrics"))
            assert metrics["applied_seq"] == seq
            assert metrics["versions"]["v1"]["n"] == seq  # every label learned exactly once
            with open_store(url) as store:
                assert store.log.head(MODEL) == seq
        assert server.proc.poll() is None
    finally:
        shutdown(server)


def test_a_hung_redis_makes_store_calls_fail_fast_and_never_stalls_predict(
    tmp_path, redis_server_factory
):
    """A Redis that accepts connections but never answers (SIGSTOP): the calls that need it
    answer 503 after the socket timeout, and meanwhile predict, which needs no store, keeps
    answering at once: nothing waits for Redis on the event loop."""
    redis = redis_server_factory(appendonly=True, appendfsync="always")
    url = f"{redis.url}/0"
    config = write_config(tmp_path, CONFIG)
    server = ServerProcess(config, url, env=REPLICA_ENV).start(READY_TIMEOUT)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as api:
            rows = xy_rows(30, seed=4)
            list(learn(api, MODEL, rows[:20]))
            early = api.post(f"/models/{MODEL}/predict", json={"features": rows[20][0]}).json()
            with open_store(url) as store:
                wait_until(lambda: store.predictions.get(early["prediction_id"]), timeout=10)

            redis.pause()
            slow: dict[str, tuple[httpx.Response, float]] = {}

            def call(name, request):
                with httpx.Client(base_url=server.url, timeout=30) as own:
                    slow[name] = timed(lambda: request(own))

            body = {"prediction_id": early["prediction_id"], "label": rows[20][1]}
            callers = [
                threading.Thread(target=call, args=("readyz", lambda c: c.get("/readyz"))),
                threading.Thread(
                    target=call,
                    args=("feedback", lambda c: c.post(f"/models/{MODEL}/feedback", json=body)),
                ),
            ]
            for caller in callers:
                caller.start()
            latencies = []
            while any(c.is_alive() for c in callers):
                answer, elapsed = timed(
                    lambda: api.post(f"/models/{MODEL}/predict", json={"features": rows[21][0]})
                )
                assert answer.status_code == 200, answer.text
                latencies.append(elapsed)
            for caller in callers:
                caller.join()
            redis.resume()

            assert max(latencies) < 0.5, (
                f"predict took {max(latencies):.2f} s while Redis hung (readyz took "
                f"{slow['readyz'][1]:.2f} s, feedback {slow['feedback'][1]:.2f} s): a store "
                "call blocks the event loop"
            )
            ready, elapsed = slow["readyz"]
            assert ready.status_code == 503 and elapsed < FAIL_FAST_S, (ready.text, elapsed)
            unavailable(*slow["feedback"])

            wait_until(lambda: api.get("/readyz").status_code == 200, timeout=30, every=0.1)
            again = api.post(f"/models/{MODEL}/feedback", json=body)
            assert again.status_code == 200, again.text
            assert again.json()["seq"] == 21
        assert server.proc.poll() is None
    finally:
        redis.resume()
        shutdown(server)


def test_a_replica_whose_redis_restarted_empty_stops_before_learning_anything_new(
    tmp_path, redis_server_factory
):
    """Seen: 5 labels, Redis restarted empty, 12 labels within 0.3 s: /readyz stayed 200, the
    model learned old and new events under reused seqs, answered ``applied: true`` for labels
    it skipped, and the graceful stop saved the diverged state as a signed snapshot."""
    redis = redis_server_factory()  # no appendonly: a restart comes back empty
    url = f"{redis.url}/0"
    config = write_config(tmp_path, CONFIG)
    server = ServerProcess(config, url, env=REPLICA_ENV).start(READY_TIMEOUT)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as api:
            rows = xy_rows(17, seed=5)
            acks = [ack for _, _, ack in learn(api, MODEL, rows[:5])]
            assert [a["seq"] for a in acks] == [1, 2, 3, 4, 5]
            redis.stop()
            redis.start()
            ready = api.get("/readyz")
            assert ready.status_code == 503, ready.text
            assert "no generation id" in strict_json(ready)["reason"], ready.text
            for i, (features, label) in enumerate(rows[5:], start=5):
                answer = feedback(api, {"features": features, "label": label, "event_id": f"e{i}"})
                assert answer.status_code == 503, answer.text
                detail = strict_json(answer)["detail"]
                assert "not the one this process opened" in detail and "Restart" in detail
                assert answer.headers.get("retry-after"), answer.headers
            assert described(api, MODEL)["applied_seq"] == 5, "nothing new applied"
            assert api.get("/readyz").status_code == 503, "for good"
    finally:
        shutdown(server)
    assert "no snapshot at shutdown: the store was found changed" in server.output()
    with open_store(url) as store:
        assert store.log.head(MODEL) == 0, "no label went into the emptied store"
        assert store.registry.latest_snapshot(MODEL, "v1") is None, "no diverged snapshot"
