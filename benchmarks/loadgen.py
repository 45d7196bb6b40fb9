"""A small, fast HTTP/1.1 load generator: keep-alive connections, one request in flight on each.

    python -m benchmarks.loadgen --port 8123 --path /predict --bodies bodies.jsonl \\
        --connections 32 --warmup 2 --duration 5 [--once] [--expect '"prediction_id"'] \\
        [--cpu 1] [--server-pid PID]

``--bodies`` holds one request body per line (JSON without raw newlines). Requests take the
bodies in order; by default they cycle, with ``--once`` each body is sent once and the run ends
early when they run out (the window then ends when the last answer arrives; its real length is
reported). Every response is parsed properly (status line, Content-Length, body) and checked: a
status other than ``--status`` (200) or a body without the ``--expect`` bytes is an error, as is
a lost connection or a malformed answer. A 503 is counted apart, as back-pressure
(``backpressure``, ``window_backpressure``): the server refused the request rather than take
more than it can hold (onlearn answers 503 with Retry-After when its record or label buffers are
full), which is not an error of the server; the connection sends its next request at once.
Results are printed as one JSON object on stdout.

Why not httpx: it costs about 1.5 ms of client CPU per request, far more than the server spends,
so it measures itself. This uses asyncio protocols on uvloop: a response is parsed in the
``data_received`` callback and the next request written from there, with no task switch between.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from typing import Any

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_MAX_HEAD = 64 * 1024


class ProtocolError(Exception):
    pass


def build_request(host: str, port: int, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Content-Type: application/json\r\n"
        "Accept: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode("ascii") + body


def parse_head(head: bytes) -> tuple[int, int, bool]:
    """``(status, content_length, close)`` of a response head (without the blank line)."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"bad status line {lines[0][:80]!r}")
    status = int(parts[1])
    length = None
    close = parts[0] == b"HTTP/1.0"
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise ProtocolError(f"bad header line {line[:80]!r}")
        name = name.strip().lower()
        if name == b"content-length":
            value = value.strip()
            if not value.isdigit() or (length is not None and int(value) != length):
                raise ProtocolError(f"bad Content-Length {value[:40]!r}")
            length = int(value)
        elif name == b"transfer-encoding":
            raise ProtocolError(f"Transfer-Encoding {value.strip()[:40]!r} is not supported")
        elif name == b"connection":
            lowered = value.lower()
            close = b"close" in lowered or (close and b"keep-alive" not in lowered)
    if length is None:
        if 100 <= status < 200 or status in (204, 304):
            length = 0
        else:
            raise ProtocolError("response without Content-Length")
    return status, length, close


def server_cpu_seconds(pid: int | None) -> float | None:
    """CPU time a server used so far: its process and every descendant (``onlearn serve``'s
    training worker and monitor processes), so that work moved to a helper process counts."""
    own = process_cpu_seconds(pid)
    if own is None:
        return None
    return own + sum(process_cpu_seconds(p) or 0.0 for p in process_tree(pid)[1:])


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def process_cpu_seconds(pid: int | None) -> float | None:
    """CPU time (user + system, all threads) one process used so far, from /proc."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime (fields 14 and 15)


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


class Connection(asyncio.Protocol):
    __slots__ = ("gen", "transport", "buf", "length", "status", "close", "sent_at", "busy")

    def __init__(self, gen: LoadGenerator) -> None:
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.length = -1
        self.status = 0
        self.close = False
        self.sent_at = 0.0
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.gen.live.add(self)
        self.send_next()

    def send_next(self) -> None:
        request = self.gen.next_request()
        if request is None:
            self.busy = False
            self.gen.idle(self)
            return
        self.busy = True
        self.sent_at = time.perf_counter()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while True:
            if self.length < 0:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > _MAX_HEAD:
                        self.fail("response head too large")
                    return
                try:
                    self.status, self.length, self.close = parse_head(bytes(buf[:end]))
                except ProtocolError as e:
                    self.fail(str(e))
                    return
                del buf[: end + 4]
            if len(buf) < self.length:
                return
            if not self.busy:
                self.fail("an answer to no request")
                return
            body = bytes(buf[: self.length])
            del buf[: self.length]
            self.length = -1
            self.answered(body)
            if self.close:
                self.busy = False
                self.transport.close()  # connection_lost reconnects
                return
            self.send_next()

    def answered(self, body: bytes) -> None:
        """One complete answer to this connection's request; a subclass can read it (to chain a
        request on it, or to time it from another instant)."""
        self.gen.answered(self.status, body, time.perf_counter() - self.sent_at)

    def fail(self, why: str) -> None:
        self.gen.error(f"protocol: {why}")
        self.busy = False
        self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.gen.live.discard(self)
        if self.busy:
            self.gen.error("connection lost with a request in flight")
            self.busy = False
        self.gen.lost(self)


class LoadGenerator:
    def __init__(
        self,
        requests: list[bytes],
        *,
        host: str,
        port: int,
        connections: int,
        warmup: float,
        duration: float,
        once: bool,
        status: int,
        expect: bytes | None,
        server_pid: int | None,
    ) -> None:
        self.requests = requests
        self.host = host
        self.port = port
        self.connections = connections
        self.warmup = warmup
        self.duration = duration
        self.once = once
        self.expected_status = status
        self.expect = expect
        self.server_pid = server_pid

        self.live: set[Connection] = set()
        self.index = 0
        self.phase = "warmup"  # then "measure", then "drain"
        self.stopping = False
        self.exhausted = False
        self.sent = 0
        self.answers = 0
        self.errors = 0
        self.error_kinds: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.samples: list[str] = []
        self.latencies: list[float] = []
        self.window_ok = 0
        self.window_errors = 0
        self.backpressure = 0  # 503 answers: refused under pressure, not errors
        self.window_backpressure = 0
        self.t_start = self.t_end = 0.0
        self.cpu_start = self.cpu_end = None
        self.own_start = self.own_end = 0.0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.finished: asyncio.Future | None = None

    # Called by connections

    def next_request(self) -> bytes | None:
        if self.stopping:
            return None
        i = self.index
        if i >= len(self.requests):
            if self.once:
                self.exhausted = True
                self.stopping = True
                return None
            i = 0
        self.index = i + 1
        self.sent += 1
        return self.requests[i]

    def answered(self, status: int, body: bytes, latency: float) -> None:
        self.answers += 1
        self.statuses[status] += 1
        if status == 503 and self.expected_status != 503:
            self.backpressure += 1
            if self.phase == "measure":
                self.window_backpressure += 1
            return
        ok = status == self.expected_status and (self.expect is None or self.expect in body)
        if not ok:
            kind = f"status {status}" if status != self.expected_status else "unexpected body"
            self.error(kind, body)
        if self.phase == "measure":
            if ok:
                self.window_ok += 1
                self.latencies.append(latency)
            else:
                self.window_errors += 1

    def error(self, kind: str, body: bytes = b"") -> None:
        self.errors += 1
        self.error_kinds[kind] += 1
        if len(self.samples) < 5:
            self.samples.append(f"{kind}: {body[:300].decode('utf-8', 'replace')}")

    def idle(self, conn: Connection) -> None:
        self._check_done()

    def lost(self, conn: Connection) -> None:
        if not self.stopping:
            self.loop.create_task(self._reconnect())
        else:
            self._check_done()

    # Phases

    def _check_done(self) -> None:
        if not self.stopping or any(c.busy for c in self.live):
            return
        if self.phase == "measure":  # ran out of bodies: the window ends with the last answer
            self._end_window()
        if not self.finished.done():
            self.finished.set_result(None)

    def _start_window(self) -> None:
        if self.phase != "warmup":
            return
        self.phase = "measure"
        self.cpu_start = server_cpu_seconds(self.server_pid)
        self.own_start = own_cpu_seconds()
        self.t_start = time.perf_counter()

    def _end_window(self) -> None:
        if self.phase != "measure":
            return
        self.t_end = time.perf_counter()
        self.cpu_end = server_cpu_seconds(self.server_pid)
        self.own_end = own_cpu_seconds()
        self.phase = "drain"
        self.stopping = True

    async def _connect(self) -> None:
        await self.loop.create_connection(lambda: Connection(self), self.host, self.port)

    async def _reconnect(self) -> None:
        try:
            await self._connect()
        except OSError as e:
            self.error(f"connect: {e.__class__.__name__}")
            if not self.stopping:
                await asyncio.sleep(0.05)
                self.loop.create_task(self._reconnect())
            else:
                self._check_done()

    async def run(self) -> dict[str, Any]:
        self.loop = asyncio.get_running_loop()
        self.finished = self.loop.create_future()
        await asyncio.gather(*(self._connect() for _ in range(self.connections)))
        if self.warmup > 0:
            self.loop.call_later(self.warmup, self._start_window)
        else:
            self._start_window()
        self.loop.call_later(self.warmup + self.duration, self._end_window)
        self.loop.call_later(self.warmup + self.duration, self._check_done)
        try:
            # Answers still in flight at the end get a grace period, then the run is cut.
            await asyncio.wait_for(
                asyncio.shield(self.finished), self.warmup + self.duration + 30.0
            )
        except TimeoutError:
            self.error("timeout: answers still missing after the run")
        finally:
            for conn in list(self.live):
                conn.busy = False
                conn.transport.close()
        return self.report()

    def report(self) -> dict[str, Any]:
        if self.phase == "warmup":
            self.error("the run ended before the measurement window (too few bodies?)")
        window = max(self.t_end - self.t_start, 1e-9) if self.t_end else 0.0
        lat = sorted(self.latencies)

        def pct(q: float) -> float | None:
            if not lat:
                return None
            return lat[min(len(lat) - 1, max(0, int(q * len(lat) + 0.999999) - 1))] * 1000

        server_cpu = (
            self.cpu_end - self.cpu_start
            if self.cpu_start is not None and self.cpu_end is not None
            else None
        )
        return {
            "connections": self.connections,
            "warmup_s": self.warmup,
            "duration_s": self.duration,
            "window_s": window,
            "exhausted": self.exhausted,
            "requests": self.window_ok,
            "rps": self.window_ok / window if window else 0.0,
            "latency_ms": {
                "p50": pct(0.50),
                "p90": pct(0.90),
                "p99": pct(0.99),
                "max": lat[-1] * 1000 if lat else None,
                "mean": sum(lat) / len(lat) * 1000 if lat else None,
            },
            "sent": self.sent,
            "answers": self.answers,
            "errors": self.errors,
            "window_errors": self.window_errors,
            "backpressure": self.backpressure,
            "window_backpressure": self.window_backpressure,
            "error_kinds": dict(self.error_kinds),
            "error_samples": self.samples,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "server_cpu_s": server_cpu,
            "server_cpu_util": server_cpu / window if server_cpu is not None and window else None,
            "server_cpu_us_per_request": (
                server_cpu / self.window_ok * 1e6
                if server_cpu is not None and self.window_ok
                else None
            ),
            "loadgen_cpu_util": (self.own_end - self.own_start) / window if window else None,
        }


def read_bodies(path: str) -> list[bytes]:
    with open(path, "rb") as f:
        bodies = [line.rstrip(b"\r\n") for line in f]
    return [b for b in bodies if b]


def run(
    requests: list[bytes],
    *,
    host: str = "127.0.0.1",
    port: int,
    connections: int = 32,
    warmup: float = 2.0,
    duration: float = 5.0,
    once: bool = False,
    status: int = 200,
    expect: bytes | None = None,
    server_pid: int | None = None,
) -> dict[str, Any]:
    gen = LoadGenerator(
        requests,
        host=host,
        port=port,
        connections=connections,
        warmup=warmup,
        duration=duration,
        once=once,
        status=status,
        expect=expect,
        server_pid=server_pid,
    )
    try:
        import uvloop
    except ImportError:  # plain asyncio works, a bit slower
        return asyncio.run(gen.run())
    return uvloop.run(gen.run())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="HTTP/1.1 keep-alive load generator (POST); prints a JSON report."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True, help="request path, with its query string")
    parser.add_argument("--bodies", required=True, help="file with one request body per line")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds not measured")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured")
    parser.add_argument("--once", action="store_true", help="send each body once, then stop")
    parser.add_argument("--status", type=int, default=200, help="the expected status code")
    parser.add_argument("--expect", help="bytes every response body must contain")
    parser.add_argument("--cpu", type=int, help="pin the load generator to this CPU")
    parser.add_argument("--server-pid", type=int, help="measure this process's CPU time")
    args = parser.parse_args(argv)

    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    bodies = read_bodies(args.bodies)
    if not bodies:
        print(f"error: no bodies in {args.bodies}", file=sys.stderr)
        return 2
    requests = [build_request(args.host, args.port, args.path, b) for b in bodies]
    report = run(
        requests,
        host=args.host,
        port=args.port,
        connections=args.connections,
        warmup=args.warmup,
        duration=args.duration,
        once=args.once,
        status=args.status,
        expect=args.expect.encode() if args.expect else None,
        server_pid=args.server_pid,
    )
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
