"""How far behind things are, per model: learning lag, snapshot age, labelling queue age.

Each reads the store (one ``heads`` call for every model, then a snapshot time and an oldest
queue item per model: index reads, see ``Registry.latest_snapshot_at`` and
``LabelQueue.oldest_waiting``), so the readings are kept for ``ttl_s``: a scrape every second
costs the store at most one round of reads per ``ttl_s``. Ages are computed at each scrape from
the kept times, so they grow between reads as they should.
"""

from __future__ import annotations

import time

from prometheus_client.core import GaugeMetricFamily

from onlearn.errors import OnlearnError
from onlearn.registry import CHAMPION


class LagCollector:
    def __init__(self, engine, ttl_s: float = 5.0) -> None:
        self.engine = engine
        self.ttl_s = ttl_s
        self._read_at = float("-inf")  # monotonic
        self._heads: dict[str, int] = {}
        self._snapshot_at: dict[str, float | None] = {}
        self._oldest: dict[str, float | None] = {}

    def _read(self) -> None:
        if time.monotonic() - self._read_at < self.ttl_s:
            return
        store = self.engine.store
        names = list(self.engine.runtimes)
        try:
            self._heads = store.log.heads(names)
        except OnlearnError:
            self._heads = {}  # the store is away: no lag rather than a wrong one
        snapshot_at: dict[str, float | None] = {}
        oldest: dict[str, float | None] = {}
        for name in names:
            rt = self.engine.runtimes[name]
            try:
                snapshot_at[name] = store.registry.latest_snapshot_at(name, rt.roles[CHAMPION])
                if store.queue is not None:
                    oldest[name] = store.queue.oldest_waiting(name)
            except OnlearnError:
                continue
        self._snapshot_at, self._oldest = snapshot_at, oldest
        self._read_at = time.monotonic()

    def collect(self):
        self._read()
        now = time.time()
        head = GaugeMetricFamily(
            "onlearn_log_head_seq",
            "Highest seq of the model's log in the store (read at most every few seconds)",
            labels=["model"],
        )
        lag = GaugeMetricFamily(
            "onlearn_learning_lag_events",
            "Events in the model's log this process has not applied yet (log head minus "
            "applied seq)",
            labels=["model"],
        )
        snapshot_age = GaugeMetricFamily(
            "onlearn_snapshot_age_seconds",
            "Seconds since the newest snapshot of the champion was written (absent: none yet)",
            labels=["model"],
        )
        queue_age = GaugeMetricFamily(
            "onlearn_queue_oldest_age_seconds",
            "Seconds the oldest item still waiting for a label (queued or claimed) has waited; "
            "0 when none waits",
            labels=["model"],
        )
        for name, rt in self.engine.runtimes.items():
            if name in self._heads:
                head.add_metric([name], self._heads[name])
                # Applied may pass the head read a few seconds ago: never a negative lag.
                lag.add_metric([name], max(self._heads[name] - rt.seq, 0))
            at = self._snapshot_at.get(name)
            if at is not None:
                snapshot_age.add_metric([name], max(now - at, 0.0))
            if name in self._oldest:
                oldest = self._oldest[name]
                queue_age.add_metric([name], 0.0 if oldest is None else max(now - oldest, 0.0))
        yield from (head, lag, snapshot_age, queue_age)
