"""Fixtures shared by every test directory: private ``redis-server`` processes.

Tests never touch a Redis they did not start (a shared one may run on 6379 for other uses):
``redis_server`` starts one for the session on a free port, ``redis_url`` hands each test a
flushed database of it, and ``redis_server_factory`` starts extra servers that a test may stop,
kill, pause or restart. Without ``redis-server`` those tests fail (a skip would hide the
missing dependency); ``make test`` installs it when it is missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

REDIS_SERVER = shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A ``redis-server`` child process on 127.0.0.1, with its data in ``directory``.

    ``appendonly=True`` makes data survive ``stop()``/``kill()`` and ``start()`` again (same
    port, same directory). ``start()`` returns once the server answers PING.
    """

    def __init__(
        self,
        directory: Path,
        *,
        appendonly: bool = False,
        appendfsync: str = "always",
        port: int | None = None,
    ):
        self.directory = directory
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.port = port
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        assert REDIS_SERVER is not None
        command = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--dir", str(self.directory), "--logfile", "redis.log", "--save", ""]
        command += ["--daemonize", "no", "--protected-mode", "yes"]
        if self.appendonly:
            command += ["--appendonly", "yes", "--appendfsync", self.appendfsync]
        else:
            command += ["--appendonly", "no"]
        return command

    def start(self, timeout: float = 15.0) -> RedisServer:
        """Start, on the same port as before when there was one; wait until PING answers."""
        self.directory.mkdir(parents=True, exist_ok=True)
        keep_port = self.port is not None
        for _ in range(1 if keep_port else 5):
            if not keep_port:
                self.port = _free_port()
            self.proc = subprocess.Popen(
                self._command(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=self.directory,
            )
            if self._wait_ready(timeout):
                return self
            self.kill()  # the port was taken meanwhile, or the server is stuck: try another
        raise RuntimeError(f"redis-server did not start on port {self.port}:\n{self.log()}")

    def _wait_ready(self, timeout: float) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        client = redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5
        )
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    return False
                try:
                    if client.ping():  # BusyLoadingError while it loads its data
                        return True
                except redis.RedisError:
                    time.sleep(0.02)
            return False
        finally:
            client.close()

    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def stop(self) -> None:
        """Graceful stop (SIGTERM): Redis writes and fsyncs its append-only file, then exits."""
        self._signal_and_wait(signal.SIGTERM)

    def kill(self) -> None:
        """``kill -9``, as a crash would."""
        self._signal_and_wait(signal.SIGKILL)

    def _signal_and_wait(self, sig: signal.Signals) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.resume()  # a stopped process ignores SIGTERM until continued
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections, but nothing answers (a hung server)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)


def _require_redis() -> None:
    if REDIS_SERVER is None:
        pytest.fail(
            "redis-server is not installed: run `make test` (it installs it) or apt-get install redis-server"
        )


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL (without a database number) of a private redis-server for the whole session."""
    _require_redis()
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """``redis://127.0.0.1:<port>/0`` of the session's private server, flushed for this test."""
    client = redis.Redis.from_url(redis_server, socket_timeout=5)
    try:
        client.flushall()
    finally:
        client.close()
    return f"{redis_server}/0"


@pytest.fixture
def redis_server_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., RedisServer]]:
    """Start extra private servers (``appendonly=True`` for restart tests); all are stopped
    after the test."""
    _require_redis()
    servers: list[RedisServer] = []

    def start(**options: object) -> RedisServer:
        server = RedisServer(tmp_path_factory.mktemp("redis-own"), **options).start()  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()
