"""Start a real ``onlearn serve`` process on a free port and talk HTTP to it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``onlearn serve`` in a subprocess. ``start()`` waits until /readyz answers 200."""

    def __init__(
        self,
        config: Path,
        store_url: str,
        *,
        workers: int = 1,
        env: dict | None = None,
        args: tuple[str, ...] = (),
    ):
        self.config = config
        self.args = tuple(args)  # more flags of `onlearn serve`
        self.store_url = store_url
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env or {}
        self.proc: subprocess.Popen | None = None
        self.log_path = config.parent / f"server-{self.port}.log"

    def start(self, timeout: float = 60.0) -> ServerProcess:
        return self.launch().wait_ready(timeout)

    def launch(self) -> ServerProcess:
        """Start the process and return at once (servers launched together start in parallel);
        ``wait_ready()`` then waits until it answers."""
        cmd = [
            sys.executable, "-m", "onlearn.tools.cli", "serve",
            "--config", str(self.config), "--store", self.store_url,
            "--port", str(self.port), "--workers", str(self.workers), "--log-level", "warning",
            *self.args,
        ]  # fmt: skip
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            start_new_session=True,
        )
        return self

    def wait_ready(self, timeout: float = 60.0) -> ServerProcess:
        """Wait until /readyz answers 200; raise with the server's output if it does not."""
        assert self.proc is not None, "launch() first"
        deadline = time.monotonic() + timeout
        relaunches = 0
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if "address already in use" in self.output() and relaunches < 3:
                    # free_port() only saw the port free: another process (a client's ephemeral
                    # port, a server launched alongside) can take it before this one binds.
                    relaunches += 1
                    self._log.close()
                    self.port = free_port()
                    self.url = f"http://127.0.0.1:{self.port}"
                    self.log_path = self.config.parent / f"server-{self.port}.log"
                    self.launch()
                    continue
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"server not ready after {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 30.0) -> int:
        """Graceful stop (SIGTERM to the whole process group), as an operator would."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        """``kill -9`` of every process of the server, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self._log.close()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def example_server(directory: Path, *, extra: str = "") -> ServerProcess:
    """``onlearn serve`` on the example config (``examples/phishing.toml``), copied with its
    store moved into ``directory`` and ``extra`` TOML added; launched, not waited for."""
    db = directory / "onlearn.db"
    config = directory / "phishing.toml"
    text = (ROOT / "examples" / "phishing.toml").read_text()
    assert 'url = "sqlite:///.data/onlearn.db"' in text
    config.write_text(text.replace("sqlite:///.data/onlearn.db", f"sqlite:///{db}") + extra)
    return ServerProcess(config, f"sqlite:///{db}").launch()
