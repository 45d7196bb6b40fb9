"""Request limits as plain ASGI middlewares (cheap on the predict path): the body size, and
the time a request may take."""

from __future__ import annotations

import asyncio
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimit:
    """Answers 413 when a body is larger than ``max_bytes``.

    A declared Content-Length is checked before anything is read (the common, cheap case). A
    body without one (chunked) is read here first, at most ``max_bytes`` of it, then handed to
    the app: the app's body parsing would turn an error raised mid-read into a 400.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_bytes:
                    return await _reject(send, self.max_bytes)
                return await self.app(scope, receive, send)
        if scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return await self.app(scope, receive, send)
        messages: list[Message] = []
        seen = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                return await _reject(send, self.max_bytes)
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


async def _reject(send: Send, limit: int) -> None:
    detail = (
        f"request body is larger than the limit of {limit} bytes ([limits] max_body_bytes); "
        "send fewer rows per call"
    )
    await answer(send, 413, detail, close=True)


class RequestTimeout:
    """Answers 504 when a request takes longer than ``timeout_s`` (408 when its body is still
    arriving), rather than hold the client, a connection and a task for as long as a stalled
    store takes.

    The request's task is cancelled at the deadline, as ``asyncio.timeout`` would, by one
    watchdog per event loop that looks at the requests in flight every ``timeout_s / 20`` (at
    most 50 ms): ``asyncio.timeout`` cost 5 us per request (a timer scheduled, then moved), 4% of
    a predict; a request now costs a dict entry. Work already handed to a thread or to the group
    commit goes on, which is why the detail says the call may still take effect. Once the
    answer has started, the deadline no longer applies.
    """

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.tick_s = min(timeout_s / 20, 0.05)
        # loop -> the requests in flight on it: their task -> their state
        self._flights: dict[asyncio.AbstractEventLoop, dict[asyncio.Task, _Flight]] = {}
        # loop -> its watchdog: held here, since the loop keeps only a weak reference to a task
        self._watchdogs: dict[asyncio.AbstractEventLoop, asyncio.Task] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.timeout_s:
            return await self.app(scope, receive, send)
        task = asyncio.current_task()
        loop = task.get_loop()
        flight = _Flight(loop.time() + self.timeout_s, task.cancelling())
        flights = self._flights.get(loop)
        if flights is None:
            flights = self._flights[loop] = {}
            self._watchdogs[loop] = loop.create_task(self._watch(loop, flights))
        flights[task] = flight

        async def receiving() -> Message:
            flight.reading = True
            message = await receive()
            flight.reading = message["type"] == "http.request" and message.get("more_body", False)
            return message

        async def sending(message: Message) -> None:
            if not flight.answered and message["type"] == "http.response.start":
                flight.answered = True
            await send(message)

        try:
            await self.app(scope, receiving, sending)
        except asyncio.CancelledError:
            # Ours only if the watchdog cancelled it and nobody else did (asyncio.timeout's
            # rule): then the task is no longer being cancelled once uncancelled.
            if not flight.expired or task.uncancel() > flight.cancelling:
                raise
            if flight.reading:
                detail = (
                    f"the request body did not arrive within {self.timeout_s:g} s "
                    "([limits] request_timeout_s)"
                )
                return await answer(send, 408, detail, close=True)
            detail = (
                f"the request took longer than {self.timeout_s:g} s ([limits] "
                "request_timeout_s), most likely waiting for the store; it may still take "
                "effect. Retrying is safe for feedback (one label per prediction_id or event_id)"
            )
            await answer(send, 504, detail, retry_after=True)
        finally:
            flights.pop(task, None)

    async def _watch(self, loop: asyncio.AbstractEventLoop, flights: dict) -> None:
        """Cancel the requests of ``loop`` past their deadline; ends with the loop's traffic."""
        try:
            while True:
                await asyncio.sleep(self.tick_s)
                if not flights:
                    return  # idle: stop waking the loop; the next request starts a new one
                now = loop.time()
                for task, flight in list(flights.items()):
                    if not flight.answered and not flight.expired and now >= flight.deadline:
                        flight.expired = True
                        task.cancel()
        finally:
            # Whatever ended it (idle, or the loop closing), requests still in flight here
            # would have no watchdog: there are none when idle, and none run on a closed loop.
            if self._flights.get(loop) is flights:
                del self._flights[loop]
                self._watchdogs.pop(loop, None)


class _Flight:
    """A request in flight: its deadline, and what the watchdog and the answer need to know."""

    __slots__ = ("deadline", "cancelling", "reading", "answered", "expired")

    def __init__(self, deadline: float, cancelling: int) -> None:
        self.deadline = deadline
        self.cancelling = cancelling
        self.reading = False
        self.answered = False
        self.expired = False


async def answer(
    send: Send, status: int, detail: str, *, close: bool = False, retry_after: bool = False
) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    if retry_after:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
