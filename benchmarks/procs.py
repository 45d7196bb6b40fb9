"""Child processes of a benchmark run (servers, load generator, library run) and a tiny client.

Every child starts in its own session, so a Ctrl-C in the terminal reaches only the runner, which
then stops its children itself (``stop_all`` in a ``finally``); none is left behind.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.loadgen import server_cpu_seconds

ROOT = Path(__file__).resolve().parent.parent

_children: list[subprocess.Popen] = []


class BenchError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(args: list[str], *, program: str = sys.executable, **kwargs: Any) -> subprocess.Popen:
    proc = subprocess.Popen([program, *args], cwd=ROOT, start_new_session=True, **kwargs)
    _children.append(proc)
    return proc


def stop(proc: subprocess.Popen, *, grace_s: float = 15.0) -> int | None:
    """SIGTERM (uvicorn then shuts down gracefully: the app's lifespan closes the engine), then
    SIGKILL after ``grace_s``. SIGTERM, not SIGINT: a shell starts background jobs with SIGINT
    ignored, and children inherit that."""
    if proc.poll() is None:
        try:
            proc.terminate()
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc in _children:
        _children.remove(proc)
    return proc.returncode


def stop_all() -> None:
    for proc in list(_children):
        stop(proc, grace_s=5.0)


def run_json(
    args: list[str], *, timeout: float, during: Callable[[], None] | None = None
) -> dict[str, Any]:
    """Run a child that prints one JSON object on stdout; its stderr passes through.

    ``during`` runs while the child runs (e.g. a profiler for the measured window).
    """
    proc = spawn(args, stdout=subprocess.PIPE)
    try:
        if during is not None:
            during()
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{' '.join(args[:2])} did not finish in {timeout:.0f} s") from None
    finally:
        stop(proc, grace_s=2.0)
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(args[:2])} failed with exit code {proc.returncode}")
    return json.loads(out)


class Client:
    """A keep-alive JSON client for set-up calls (not for load: see loadgen.py)."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 60.0) -> None:
        self.conn = http.client.HTTPConnection(host, port, timeout=timeout)

    def request(self, method: str, path: str, body: str | None = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        try:
            self.conn.request(method, path, body=body.encode() if body else None, headers=headers)
            response = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            if method != "GET":
                raise
            # The server closed the idle keep-alive connection (uvicorn: after 5 s); a GET is
            # safe to send again on a new one.
            self.conn.close()
            self.conn.request(method, path, headers=headers)
            response = self.conn.getresponse()
        data = response.read()
        ctype = response.getheader("content-type", "")
        return response.status, json.loads(data) if "json" in ctype else data.decode()

    def post(self, path: str, body: str) -> Any:
        status, data = self.request("POST", path, body)
        if status != 200:
            raise BenchError(f"POST {path} answered {status}: {str(data)[:300]}")
        return data

    def get_text(self, path: str) -> str:
        status, data = self.request("GET", path)
        if status != 200:
            raise BenchError(f"GET {path} answered {status}")
        return data if isinstance(data, str) else json.dumps(data)

    def close(self) -> None:
        self.conn.close()


class Server:
    """One server process (``python -m benchmarks.server``), pinned to ``cpu`` when given."""

    def __init__(
        self,
        kind: str,
        log_path: Path,
        *,
        store: str | None = None,
        cpu: int | None,
        config: Path | None = None,
    ):
        self.kind = kind
        self.port = free_port()
        self.log_path = log_path
        args = ["-m", "benchmarks.server", kind, "--port", str(self.port)]
        if store:
            args += ["--store", store]
        if config is not None:
            args += ["--config", str(config)]
        if cpu is not None:
            args += ["--cpu", str(cpu)]
        self._log = log_path.open("wb")
        self.proc = spawn(args, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"the {self.kind} server exited early:\n{self.log_tail()}")
            try:
                client = Client(self.port, timeout=2.0)
                try:
                    status, _ = client.request("GET", "/readyz")
                finally:
                    client.close()
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise BenchError(f"the {self.kind} server was not ready in {timeout:.0f} s")

    def settle(self, timeout: float = 30.0, busy: float = 0.05) -> float:
        """Wait until the server's processes are idle (under ``busy`` of a CPU over half a
        second), at most ``timeout`` s; the seconds waited. onlearn's worker and monitor start
        beside the server at a lower priority: measured right away, a window would take their
        start-up (imports, catching up the log, a first reference) for steady-state cost."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            before = server_cpu_seconds(self.pid)
            time.sleep(0.5)
            after = server_cpu_seconds(self.pid)
            if before is None or after is None or after - before < busy * 0.5:
                break
        return time.monotonic() - start

    def log_tail(self, n: int = 30) -> str:
        if not self._log.closed:
            self._log.flush()
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def close(self) -> None:
        code = stop(self.proc)
        # uvicorn re-raises the signal it shut down on, so -SIGTERM is a clean exit too.
        if code not in (0, -signal.SIGTERM, -signal.SIGINT):
            print(
                f"warning: the {self.kind} server exited with {code}:\n{self.log_tail()}",
                file=sys.stderr,
            )
        self._log.close()

    def __enter__(self) -> Server:
        try:
            self.wait_ready()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def loadgen(
    server: Server,
    path: str,
    bodies: Path,
    *,
    connections: int,
    warmup: float,
    duration: float,
    cpu: int | None,
    once: bool = False,
    expect: str | None = None,
    profile: Path | None = None,
) -> dict[str, Any]:
    """Load ``server`` from a load generator process; with ``profile``, py-spy records the
    server during the measured window into that flame graph (SVG)."""
    args = [
        "-m",
        "benchmarks.loadgen",
        "--port",
        str(server.port),
        "--path",
        path,
        "--bodies",
        str(bodies),
        "--connections",
        str(connections),
        "--warmup",
        str(warmup),
        "--duration",
        str(duration),
        "--server-pid",
        str(server.pid),
    ]
    if once:
        args.append("--once")
    if expect:
        args += ["--expect", expect]
    if cpu is not None:
        args += ["--cpu", str(cpu)]

    def record() -> None:
        time.sleep(warmup + 0.5)  # the load generator's start-up, then its warm-up
        py_spy(server.pid, duration - 0.5, profile)

    during = record if profile is not None else None
    return run_json(args, timeout=warmup + duration + 60, during=during)


def py_spy(pid: int, duration: float, output: Path) -> None:
    """``py-spy record`` of a process, only the threads holding the GIL (Python CPU time)."""
    exe = Path(sys.executable).with_name("py-spy")
    program = str(exe) if exe.exists() else shutil.which("py-spy")
    if program is None:
        print("warning: no profile: py-spy is not installed (pip install py-spy)", file=sys.stderr)
        return
    args = ["record", "--pid", str(pid), "--duration", str(max(1, int(duration) - 1))]
    args += ["--rate", "250", "--gil", "--threads", "--nonblocking", "--output", str(output)]
    if output.suffix == ".txt":  # collapsed stacks, one per line, to read or aggregate
        args += ["--format", "raw"]
    proc = spawn(args, program=program, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, err = proc.communicate(timeout=duration + 30)
    except subprocess.TimeoutExpired:
        err = b"timed out"
    finally:
        stop(proc, grace_s=2.0)
    if proc.returncode != 0:
        print(f"warning: py-spy failed: {err.decode(errors='replace')[-300:]}", file=sys.stderr)


def write_section(path: Path, begin: str, end: str, text: str) -> None:
    """Replace the section of ``path`` from ``begin`` to ``end`` where it stands, or append it
    (a new file gets a title); the rest of the file, readings written by hand around the section
    included, stays as it is."""
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = text.strip("\n")
    if pattern.search(old):
        new = pattern.sub(lambda _: text, old, count=1)
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(new)


def seeded_args(
    doc: str,
    argv: list[str] | None,
    *,
    seeds: int,
    jobs: int,
    quick: str,
    quick_seeds: int,
) -> argparse.Namespace:
    """The options of the seeded accuracy benchmarks (recovering tree, importance weights,
    self-training): ``--seeds``, ``--jobs``, ``--quick`` (``quick`` says what the smoke run
    cuts; it runs ``quick_seeds`` seeds unless ``--seeds`` is given) and ``--no-write``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument(
        "--seeds", type=int, default=seeds, help=f"seeds per cell (default {seeds})"
    )
    parser.add_argument("--jobs", type=int, default=jobs, help=f"worker processes (default {jobs})")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {quick}, {quick_seeds} seed(s) unless --seeds is given",
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print the table, leave RESULTS.md as it is"
    )
    args = parser.parse_args(argv)
    if args.quick and "--seeds" not in (argv if argv is not None else sys.argv[1:]):
        args.seeds = quick_seeds
    return args


def map_tasks(run_task: Callable[[Any], Any], tasks: list, jobs: int) -> list:
    """``run_task`` of each task, in order, over ``jobs`` processes (in this one for 1)."""
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            return list(pool.map(run_task, tasks))
    return [run_task(task) for task in tasks]


def install_sigterm_handler() -> None:
    """A SIGTERM to the runner unwinds like Ctrl-C, so the ``finally`` blocks stop the children."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def run_in(
    tmp: Path,
    run: Callable[[], None],
    *,
    keep: bool,
    what: str = "the benchmark",
    cleanup: Callable[[], None] | None = None,
    on_error: Callable[[], None] | None = None,
) -> int | None:
    """``run()`` with its temp dir ``tmp``; every process stopped and ``tmp`` removed (unless
    ``keep``) whatever happens. None when it finished, else the exit code to return."""
    import traceback

    try:
        run()
    except KeyboardInterrupt:
        print("\ninterrupted: servers stopped, nothing written", file=sys.stderr)
        return 130
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        if on_error is not None:
            on_error()
        return 1
    except Exception:
        traceback.print_exc()
        print(f"error: {what} failed (servers stopped, nothing written)", file=sys.stderr)
        return 1
    finally:
        if cleanup is not None:
            cleanup()
        stop_all()
        if keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return None
