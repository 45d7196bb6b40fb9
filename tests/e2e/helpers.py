"""Small helpers of the end-to-end tests: configs, data streams and error assertions."""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.servers import ServerProcess

# Two numeric features; the label is "pos" above the diagonal x + y = 0. Learnable in a few dozen
# labels by a logistic regression with a large step.
XY_FEATURES = """
x = { type = "number", min = -10, max = 10 }
y = { type = "number", min = -10, max = 10 }
"""


def xy_model(
    name: str, *, pipeline: str = 'name = "logistic_regression", lr = 0.5', **extra
) -> str:
    """The TOML of a classification model on ``XY_FEATURES`` with classes "pos" and "neg"."""
    lines = [
        f"[models.{name}]",
        'task = "classification"',
        'classes = ["pos", "neg"]',
        f"pipeline = {{ {pipeline} }}",
        *(f"{key} = {json.dumps(value)}" for key, value in extra.items()),
        f"[models.{name}.features]",
        XY_FEATURES,
    ]
    return "\n".join(lines)


def xy_rows(n: int, seed: int) -> list[tuple[dict[str, float], str]]:
    """A seeded stream of (features, label) for the ``xy_model`` models."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        x, y = round(rng.uniform(-1, 1), 6), round(rng.uniform(-1, 1), 6)
        out.append(({"x": x, "y": y}, "pos" if x + y > 0 else "neg"))
    return out


PROBES = [
    {"x": x, "y": y} for x, y in [(-0.9, -0.8), (-0.3, 0.1), (0.0, 0.0), (0.2, 0.25), (0.9, 0.7)]
]


def write_config(directory: Path, text: str, name: str = "onlearn.toml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


# Generous: several servers may start side by side on a busy machine.
READY_TIMEOUT = 180.0


def launch(directory: Path, config_text: str, *, workers: int = 1) -> ServerProcess:
    """``onlearn serve`` on a config written in ``directory`` and a SQLite file there, launched
    but not waited for (``wait_ready()``)."""
    config = write_config(directory, config_text)
    return ServerProcess(config, sqlite_url(directory / "onlearn.db"), workers=workers).launch()


def restart(server: ServerProcess) -> ServerProcess:
    """A new server on the same config and store as ``server``, ready."""
    return ServerProcess(server.config, server.store_url).start(READY_TIMEOUT)


def shutdown(server: ServerProcess) -> None:
    """Stop gracefully; kill if that hangs (a teardown must not leave processes behind)."""
    try:
        server.stop(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()


def strict_json(response: httpx.Response) -> Any:
    """The body as JSON, refusing NaN and Infinity (not JSON: browsers cannot parse them)."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} in the body of {response.request.url}: not valid JSON")

    return json.loads(response.content, parse_constant=refuse)


def field_error(response: httpx.Response, loc: list, rule: str, *words: str) -> dict:
    """Assert a 422 whose detail lists an error at ``loc`` for ``rule``, its message naming
    every one of ``words``; return that error."""
    assert response.status_code == 422, (response.status_code, response.text)
    detail = strict_json(response)["detail"]
    assert isinstance(detail, list), detail
    matching = [e for e in detail if e["loc"] == loc and e["type"] == rule]
    assert matching, f"no {rule!r} error at {loc}: {detail}"
    for word in words:
        assert word in matching[0]["msg"], (word, matching[0])
    return matching[0]


def message(response: httpx.Response, status: int, *words: str) -> str:
    """Assert ``status`` with a ``{"detail": "..."}`` body naming every one of ``words``."""
    assert response.status_code == status, (response.status_code, response.text)
    detail = strict_json(response)["detail"]
    assert isinstance(detail, str), detail
    for word in words:
        assert word in detail, (word, detail)
    return detail


def well_formed_unknown_id() -> str:
    """A prediction id of the server's shape, made now, that no predict call returned."""
    return f"{int(time.time() * 1000):012x}" + "0" * 20


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, every: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met after {timeout}s: {condition}")
        time.sleep(every)


def learn(client: httpx.Client, model: str, rows, *, source: str = "app") -> Iterator[dict]:
    """Predict each row, then give its label by prediction id; yield (answer, label, ack)."""
    for features, label in rows:
        answer = client.post(f"/models/{model}/predict", json={"features": features})
        assert answer.status_code == 200, answer.text
        answer = answer.json()
        ack = client.post(
            f"/models/{model}/feedback",
            json={"prediction_id": answer["prediction_id"], "label": label, "source": source},
        )
        assert ack.status_code == 200, ack.text
        yield answer, label, ack.json()


def probe(client: httpx.Client, model: str, rows=PROBES) -> list[dict]:
    """The (label, proba) a model answers for ``rows``, one predict call each: the path a replay
    in the test takes (``predict_proba_one``); compared exactly (the batch route answers the
    same bits: tests/models/test_batch.py)."""
    answers = []
    for row in rows:
        response = client.post(f"/models/{model}/predict", json={"features": row})
        assert response.status_code == 200, response.text
        body = strict_json(response)
        answers.append((body["label"], body["proba"]))
    return answers


# Processes on a shared (Redis) store: test_replicas, test_redis_outage, test_redis_processes.

# A serving replica on a shared store runs neither the worker nor the monitor.
REPLICA_ENV = {"ONLEARN_RUN_WORKER": "false", "ONLEARN_RUN_MONITOR": "false"}


def start_role(role: str, config: Path, store_url: str, log_path: Path) -> subprocess.Popen:
    """``onlearn worker`` or ``onlearn monitor`` as a process of its own (own session: a kill
    of its group reaches everything it started), its output appended to ``log_path``."""
    import sys

    from tests.servers import ROOT

    with open(log_path, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "onlearn.tools.cli", role, "--config", str(config)]
            + ["--store", store_url, "--log-level", "info"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_role(process: subprocess.Popen, timeout: float = 30.0) -> int | None:
    """SIGTERM and wait; ``kill -9`` of its group if it hangs. The exit code of the graceful
    stop, or None when it had to be killed."""
    import os
    import signal

    if process.poll() is not None:
        return process.returncode
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return None


def described(client: httpx.Client, model: str) -> dict:
    """GET /models/{model}, asserted 200."""
    response = client.get(f"/models/{model}")
    assert response.status_code == 200, response.text
    return strict_json(response)
