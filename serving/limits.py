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

    The request's task is cancelled at the deadline (``asyncio.timeout``: no task of its own per
    request, a timer). Work already handed to a thread or to the group commit goes on, which is
    why the detail says the call may still take effect. Once the answer has started, the
    deadline no longer applies.
    """

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.timeout_s:
            return await self.app(scope, receive, send)
        answered = False
        reading = False

        async def receiving() -> Message:
            nonlocal reading
            reading = True
            message = await receive()
            reading = message["type"] == "http.request" and message.get("more_body", False)
            return message

        async def sending(message: Message) -> None:
            nonlocal answered
            if not answered and message["type"] == "http.response.start":
                answered = True
                deadline.reschedule(None)
            await send(message)

        try:
            async with asyncio.timeout(self.timeout_s) as deadline:
                await self.app(scope, receiving, sending)
        except TimeoutError:
            if answered or not deadline.expired():
                raise  # not ours: a TimeoutError of the app itself, a 500 like any error
            if reading:
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
