"""Where the worker and the monitor run beside a server, for every store and flag: the one
decision both ``onlearn serve`` (processes) and the app (threads) take from onlearn.topology."""

from __future__ import annotations

from dataclasses import replace

import pytest

from onlearn.config import Settings
from onlearn.topology import Placement, Topology, serve_topology

P, T, E = Placement.PROCESS, Placement.THREAD, Placement.ELSEWHERE


@pytest.mark.parametrize(
    ("url", "config", "asked", "sidecars", "expected"),
    [
        # the embedded file with a config: sidecar processes for `onlearn serve`...
        ("sqlite:///x.db", "c.toml", None, True, (P, P)),
        # ...and threads for an app built in-process (no command line to give a process)
        ("sqlite:///x.db", "c.toml", None, False, (T, T)),
        ("sqlite:///x.db", None, None, True, (T, T)),
        ("memory://", "c.toml", None, True, (T, T)),
        # a shared store: their own deployments, unless asked for here (then threads)
        ("redis://127.0.0.1:6379/0", "c.toml", None, True, (E, E)),
        ("rediss://cache:6380/0", "c.toml", None, True, (E, E)),
        ("unix:///run/redis.sock", "c.toml", None, True, (E, E)),  # was run as threads
        ("redis://127.0.0.1:6379/0", "c.toml", True, True, (T, T)),
        # turned off (--no-worker, or a serve whose sidecars run them): elsewhere, always
        ("sqlite:///x.db", "c.toml", False, True, (E, E)),
        ("memory://", None, False, False, (E, E)),
    ],
)
def test_each_store_and_flag_places_the_worker_and_the_monitor(
    url, config, asked, sidecars, expected
):
    settings = replace(Settings(), store_url=url, config_path=config)
    settings = replace(settings, run_worker=asked, run_monitor=asked)
    assert serve_topology(settings, sidecars=sidecars) == Topology(*expected)


def test_the_worker_and_the_monitor_are_placed_each_on_its_own():
    settings = replace(Settings(), store_url="sqlite:///x.db", config_path="c.toml")
    topology = serve_topology(replace(settings, run_worker=False))
    assert topology == Topology(worker=E, monitor=P)
    assert topology.placed(P) == ["monitor"] and topology.placed(E) == ["worker"]
