"""Real ``onlearn serve`` processes for the end-to-end tests.

Starting a server costs seconds of imports, so the servers the selected tests need are launched
together, when the first of them is asked for, and start side by side (under pytest-xdist,
each when first asked for). The API tests share one
server (``server``, ``api``) and use models of their own in it (see configs.py); tests that stop
or kill a server get one of their own.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `pytest` (not `python -m pytest`) does not put the root there
    sys.path.insert(0, str(ROOT))

from tests.e2e.configs import (  # noqa: E402
    AUTH_CONFIG,
    BOUNDS_CONFIG,
    CONFIG,
    CONNECTIONS_CONFIG,
    DASHBOARD_CONFIG,
    FUZZ_CONFIG,
    LABEL_STUDIO_CONFIG,
    LIMITS_CONFIG,
    OBSERVABILITY_CONFIG,
    QUEUE_CONFIG,
    RESTART_CONFIG,
    ROLLOUT_CONFIG,
    WORKERS_CONFIG,
)
from tests.e2e.helpers import READY_TIMEOUT, launch, shutdown  # noqa: E402
from tests.servers import ServerProcess  # noqa: E402

# server name -> (config, worker processes, the test modules that use it)
SERVERS = {
    "main": (CONFIG, 1, {"test_api", "test_feedback", "test_metrics", "test_predict"}),
    "workers": (WORKERS_CONFIG, 2, {"test_workers"}),
    "restart-graceful": (RESTART_CONFIG, 1, {"test_restart"}),
    "restart-crash": (RESTART_CONFIG, 1, {"test_restart"}),
    "queue": (QUEUE_CONFIG, 1, {"test_queue", "test_label_page", "test_labeller"}),
    "rollout": (ROLLOUT_CONFIG, 1, {"test_rollout"}),
    "dashboard": (DASHBOARD_CONFIG, 1, {"test_dashboard"}),
    "auth": (AUTH_CONFIG, 1, {"test_auth"}),
    "limits": (LIMITS_CONFIG, 1, {"test_limits"}),
    "fuzz": (FUZZ_CONFIG, 1, {"test_fuzz"}),
    "bounds": (BOUNDS_CONFIG, 1, {"test_bounded_errors"}),
    "connections": (CONNECTIONS_CONFIG, 1, {"test_connections"}),
    "observability": (OBSERVABILITY_CONFIG, 1, {"test_observability"}),
    "label-studio": (LABEL_STUDIO_CONFIG, 1, {"test_label_studio"}),
}


class Servers(dict):
    """The servers of this session by name, launched when first asked for.

    Run alone, the first request launches every server the selected tests use, so that they
    start side by side. Under pytest-xdist a worker does not know which test files it will be
    given, so each server is launched by the worker that first needs it, and only then.
    """

    def __init__(self, directory: pytest.TempPathFactory, wanted: set[str]) -> None:
        super().__init__()
        self._directory = directory
        self._wanted = wanted

    def __missing__(self, name: str) -> ServerProcess:
        for other in {name} | self._wanted:
            if other not in self:
                config, workers, _ = SERVERS[other]
                self[other] = launch(self._directory.mktemp(other), config, workers=workers)
        self._wanted = set()
        return self[name]


@pytest.fixture(scope="session")
def launched(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Servers]:
    """The servers the selected tests use; ``wait_ready()`` before use."""
    selected = {Path(str(item.path)).stem for item in request.session.items}
    distributed = "PYTEST_XDIST_WORKER" in os.environ
    wanted = (
        set() if distributed else {n for n, (_, _, users) in SERVERS.items() if users & selected}
    )
    servers = Servers(tmp_path_factory, wanted)
    try:
        yield servers
    finally:
        for process in servers.values():
            shutdown(process)


@pytest.fixture(scope="session")
def server(launched: dict[str, ServerProcess]) -> ServerProcess:
    return launched["main"].wait_ready(READY_TIMEOUT)


@pytest.fixture(scope="session")
def api(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def queue_server(launched: dict[str, ServerProcess]) -> ServerProcess:
    return launched["queue"].wait_ready(READY_TIMEOUT)


@pytest.fixture(scope="session")
def queue_api(queue_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=queue_server.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def rollout_server(launched: dict[str, ServerProcess]) -> ServerProcess:
    return launched["rollout"].wait_ready(READY_TIMEOUT)


@pytest.fixture(scope="session")
def dashboard_server(launched: dict[str, ServerProcess]) -> ServerProcess:
    return launched["dashboard"].wait_ready(READY_TIMEOUT)


@pytest.fixture(scope="session")
def auth_server(launched: dict[str, ServerProcess]) -> ServerProcess:
    return launched["auth"].wait_ready(READY_TIMEOUT)


@pytest.fixture(scope="session")
def limits_server(launched: dict[str, ServerProcess]) -> ServerProcess:
    return launched["limits"].wait_ready(READY_TIMEOUT)


@pytest.fixture(scope="session")
def fuzz_server(launched: dict[str, ServerProcess]) -> ServerProcess:
    return launched["fuzz"].wait_ready(READY_TIMEOUT)


@pytest.fixture(scope="session")
def bounds_server(launched: dict[str, ServerProcess]) -> ServerProcess:
    return launched["bounds"].wait_ready(READY_TIMEOUT)


@pytest.fixture(scope="session")
def connections_server(launched: dict[str, ServerProcess]) -> ServerProcess:
    return launched["connections"].wait_ready(READY_TIMEOUT)


@pytest.fixture(scope="session")
def label_studio_server(launched: dict[str, ServerProcess]) -> ServerProcess:
    return launched["label-studio"].wait_ready(READY_TIMEOUT)
