"""Oracles and load for the fault and concurrency tests.

The oracle of "the model is right" is the design's own definition: a replay of the log, done here
in the test process from an untrained model, answers exactly (labels and float probabilities) what
the server answers.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.e2e.helpers import strict_json

# A probe set wider than the e2e PROBES: both sides of the boundary, corners, the origin.
PROBE_ROWS = [
    {"x": round(x, 3), "y": round(y, 3)}
    for x, y in itertools.product((-0.95, -0.5, -0.1, 0.0, 0.1, 0.5, 0.95), (-0.9, -0.2, 0.3, 0.8))
]


def replayed(
    url: str, model: str, rows: Iterable[dict] = PROBE_ROWS, upto: int | None = None
) -> list[tuple[Any, dict]]:
    """What v1 of ``model``, untrained, answers for ``rows`` after learning the log (up to
    ``upto``), replayed here from the store at ``url``."""
    from onlearn.schema import Schema
    from onlearn.snapshots import replay
    from onlearn.store import open_store
    from tests.specs import trusted_fresh_state

    with open_store(url) as store:
        info = store.registry.get_version(model, "v1")
        schema = Schema.from_config(**info.spec["schema"])
        state = replay(store, model, schema, trusted_fresh_state(info), upto)
    answers = []
    for row in rows:
        label, proba = state.predict(schema.model_input(schema.validate(row)))
        answers.append((label, {str(k): float(p) for k, p in (proba or {}).items()}))
    return answers


def served(client: httpx.Client, model: str, rows: Iterable[dict] = PROBE_ROWS) -> list[tuple]:
    """What the server answers for ``rows``, one predict call each, in the shape of
    ``replayed``, whose ``predict_proba_one`` the predict route calls too; compared exactly
    (the batch route answers the same bits: tests/models/test_batch.py)."""
    answers = []
    for row in rows:
        response = client.post(f"/models/{model}/predict", json={"features": row})
        assert response.status_code == 200, response.text
        body = strict_json(response)
        answers.append((body["label"], body["proba"] or {}))
    return answers


def log_events(url: str, model: str) -> list:
    """Every event of ``model``'s log, read from the store at ``url``."""
    from onlearn.store import open_store

    events = []
    with open_store(url) as store:
        while page := store.log.read(model, after=events[-1].seq if events else 0, limit=5000):
            events += page
    return events


def described(client: httpx.Client, model: str) -> dict:
    response = client.get(f"/models/{model}")
    assert response.status_code == 200, response.text
    return strict_json(response)


@dataclass(frozen=True)
class Ack:
    """A feedback the server acknowledged (200): the seq it gave and the event's key."""

    model: str
    seq: int
    key: str  # "prediction:<id>" or "event:<id>", as the log keys label events
    label: str
    wait: bool


@dataclass
class FeedbackLoad:
    """Concurrent clients that predict and give feedback in a loop, recording every ack.

    Each client takes seeded (x, y) rows and, by turns: feedback by prediction id (waiting for
    the apply), the same with ``?wait=false``, inline features with an ``event_id``, and the
    same feedback sent twice at once (both must get one seq). Any answer other than 200 while the
    server is meant to be up is recorded in ``failures``; transport errors end a client (the
    server was killed) and are counted in ``cut``.
    """

    base_url: str
    models: tuple[str, ...]
    clients: int = 16
    seed: int = 0
    acks: list[Ack] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    duplicates: list[tuple[int, int]] = field(default_factory=list)  # seqs of twin sends
    cut: int = 0
    cut_errors: list[str] = field(default_factory=list)
    stop: bool = False

    async def run(self, *, until: float | None = None, rounds: int | None = None) -> None:
        """Run the clients until ``stop`` is set, ``until`` seconds passed, or each client did
        ``rounds`` rounds."""
        # Idle connections expire on the client first: at httpx's default (5 s, the server's
        # keep-alive timeout too) a pooled connection can be reused just as the server closes
        # it, a transport error while the server is up.
        limits = httpx.Limits(
            max_connections=self.clients * 2, max_keepalive_connections=64, keepalive_expiry=2.0
        )
        async with httpx.AsyncClient(base_url=self.base_url, timeout=60, limits=limits) as http:
            loop = asyncio.get_running_loop()
            deadline = None if until is None else loop.time() + until
            await asyncio.gather(
                *(self._client(http, i, deadline, rounds) for i in range(self.clients))
            )

    async def _client(self, http, i: int, deadline, rounds) -> None:
        rng = random.Random(self.seed * 1000 + i)
        loop = asyncio.get_running_loop()
        for n in itertools.count():
            if self.stop or (rounds is not None and n >= rounds):
                return
            if deadline is not None and loop.time() >= deadline:
                return
            model = self.models[(i + n) % len(self.models)]
            x, y = round(rng.uniform(-1, 1), 6), round(rng.uniform(-1, 1), 6)
            label = "pos" if x + y > 0 else "neg"
            try:
                await self._round(http, model, {"x": x, "y": y}, label, n % 4, f"c{i}-{n}")
            except httpx.TransportError as error:
                self.cut += 1
                self.cut_errors.append(repr(error))
                return

    async def _round(self, http, model, features, label, kind, event_id) -> None:
        if kind == 2:  # inline features, idempotent by event_id
            body = {"features": features, "label": label, "event_id": f"{self.seed}-{event_id}"}
            await self._feedback(http, model, body, f"event:{body['event_id']}", wait=True)
            return
        answer = await http.post(f"/models/{model}/predict", json={"features": features})
        if answer.status_code != 200:
            self.failures.append(f"predict {answer.status_code}: {answer.text[:300]}")
            return
        pid = answer.json()["prediction_id"]
        body = {"prediction_id": pid, "label": label}
        key = f"prediction:{pid}"
        if kind == 3:  # the same feedback twice at once: one seq
            a, b = await asyncio.gather(
                self._feedback(http, model, body, key, wait=True),
                self._feedback(http, model, body, key, wait=True),
            )
            if a is not None and b is not None:
                self.duplicates.append((a, b))
            return
        await self._feedback(http, model, body, key, wait=kind == 0)

    async def _feedback(self, http, model, body, key, *, wait: bool) -> int | None:
        params = None if wait else {"wait": "false"}
        response = await http.post(f"/models/{model}/feedback", json=body, params=params)
        if response.status_code != 200:
            self.failures.append(f"feedback {response.status_code}: {response.text[:300]}")
            return None
        seq = response.json()["seq"]
        self.acks.append(Ack(model, seq, key, body["label"], wait))
        return seq


def check_log_holds(acks: Iterable[Ack], events_by_model: dict[str, list]) -> None:
    """Every acknowledged feedback is in its model's log, at its seq, under its key, with its
    label; seqs are gapless from 1; no key is in a log twice."""
    for model, events in events_by_model.items():
        seqs = [e.seq for e in events]
        assert seqs == list(range(1, len(seqs) + 1)), f"{model}: seqs are not gapless from 1"
        keys = [e.key for e in events if e.key is not None]
        assert len(keys) == len(set(keys)), f"{model}: a key is in the log twice"
    for ack in acks:
        events = events_by_model[ack.model]
        assert 1 <= ack.seq <= len(events), f"acknowledged {ack} is not in the log"
        event = events[ack.seq - 1]
        assert event.key == ack.key, (ack, event.key)
        assert event.payload["label"] == ack.label, (ack, event.payload)
