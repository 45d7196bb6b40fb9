"""Stop or kill a real server, start another on the same SQLite file: the model is the same.

The oracle of "the same" is twofold: the predictions the first server gave for a probe set, and a
replay of the log done here, in this process, from an untrained model.
"""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.e2e.configs import RESTART_MODELS as MODELS
from tests.e2e.helpers import (
    PROBES,
    READY_TIMEOUT,
    learn,
    probe,
    restart,
    shutdown,
    strict_json,
    xy_rows,
)
from tests.faults.helpers import replayed as replayed_rows


def replayed(url: str, model: str, upto: int | None = None) -> list[tuple]:
    """What an untrained model answers for PROBES after learning the log (up to ``upto``)."""
    return replayed_rows(url, model, PROBES, upto)


def snapshot_seq(url: str, model: str) -> int | None:
    from onlearn.store import open_store

    with open_store(url) as store:
        snapshot = store.registry.latest_snapshot(model, "v1")
        return None if snapshot is None else snapshot.seq


def described(api: httpx.Client, model: str) -> dict:
    response = api.get(f"/models/{model}")
    assert response.status_code == 200, response.text
    return strict_json(response)


def metrics(api: httpx.Client, model: str) -> dict:
    response = api.get(f"/models/{model}/metrics")
    assert response.status_code == 200, response.text
    return strict_json(response)


def teach(api: httpx.Client, model: str, seed: int) -> list[tuple[dict, str, dict]]:
    """Labels by prediction id, then inline ones; every call waits for its apply."""
    taught = list(learn(api, model, xy_rows(30, seed=seed)))
    for features, label in xy_rows(10, seed=seed + 1):
        response = api.post(
            f"/models/{model}/feedback", json={"features": features, "label": label}
        )
        assert response.status_code == 200, response.text
        taught.append(({"prediction_id": None}, label, strict_json(response)))
    return taught


def test_a_graceful_restart_serves_identical_predictions(launched):
    first = launched["restart-graceful"].wait_ready(READY_TIMEOUT)
    url = first.store_url
    try:
        with httpx.Client(base_url=first.url, timeout=30) as api:
            taught = {m: teach(api, m, seed=20) for m in MODELS}
            before = {m: probe(api, m) for m in MODELS}
            scores = {m: metrics(api, m)["versions"] for m in MODELS}
    finally:
        code = first.stop(timeout=60)
    # uvicorn re-raises the SIGTERM it handled once it has shut down: -15 is a clean exit too.
    assert code in (0, -signal.SIGTERM), first.output()
    assert "Traceback" not in first.output()
    for m in MODELS:
        assert before[m][0][1], "the probes must be answered by a trained model"
        assert snapshot_seq(url, m) == len(taught[m])  # a stop snapshots the live state

    second = restart(first)
    try:
        with httpx.Client(base_url=second.url, timeout=30) as api:
            for m in MODELS:
                assert described(api, m)["applied_seq"] == len(taught[m])
                assert probe(api, m) == before[m]  # exact: labels and float probabilities
                assert metrics(api, m)["versions"] == scores[m]
            # Idempotency outlives the process: the same feedback gives the same seq back.
            answer, label, acked = taught["lin"][0]
            body = {"prediction_id": answer["prediction_id"], "label": label}
            again = api.post("/models/lin/feedback", json=body)
            assert again.status_code == 200, again.text
            assert strict_json(again)["seq"] == acked["seq"]
            assert described(api, "lin")["applied_seq"] == len(taught["lin"])
    finally:
        shutdown(second)
    for m in MODELS:
        assert replayed(url, m) == before[m]


def test_after_kill_9_the_log_rebuilds_the_model_and_no_acknowledged_label_is_lost(launched):
    first = launched["restart-crash"].wait_ready(READY_TIMEOUT)
    url = first.store_url
    acked: dict[str, list[int]] = {m: [] for m in MODELS}
    try:
        with httpx.Client(base_url=first.url, timeout=30) as api:
            for m in MODELS:
                acked[m] += [a["seq"] for _, _, a in teach(api, m, seed=30)]
            settled = {m: probe(api, m) for m in MODELS}
            settled_seq = {m: max(acked[m]) for m in MODELS}

            # A burst of labels acknowledged without waiting for their apply, then the crash.
            def send(job):
                m, (features, label) = job
                response = api.post(
                    f"/models/{m}/feedback",
                    json={"features": features, "label": label},
                    params={"wait": "false"},
                )
                assert response.status_code == 200, response.text
                return m, strict_json(response)["seq"]

            jobs = [(m, row) for row in xy_rows(40, seed=31) for m in MODELS]
            with ThreadPoolExecutor(8) as pool:
                for m, seq in pool.map(send, jobs):
                    acked[m].append(seq)
    finally:
        first.kill()
    for m in MODELS:
        assert sorted(acked[m]) == list(range(1, len(acked[m]) + 1))
        # No snapshot was written: the next server must rebuild the model from the log.
        assert snapshot_seq(url, m) in (None, 0)
        # The replay here agrees with what the first server answered before the burst.
        assert replayed(url, m, upto=settled_seq[m]) == settled[m]

    second = restart(first)
    try:
        with httpx.Client(base_url=second.url, timeout=30) as api:
            for m in MODELS:
                # Every acknowledged label is in the log, and was applied, once.
                assert described(api, m)["applied_seq"] == max(acked[m]) == len(acked[m])
                assert metrics(api, m)["versions"]["v1"]["n"] == len(acked[m])
                assert probe(api, m) == replayed(url, m)
    finally:
        shutdown(second)
