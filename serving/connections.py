"""The server's HTTP connections: idle ones are closed, and past a cap a request gets 503.

uvicorn closes a keep-alive connection that stays idle after a response (``timeout_keep_alive``),
but not one that never sends a request, nor one stalled in a request's headers: those stay for as
long as their client keeps them (24,000 such sockets once made ``/healthz`` fail until their
clients left). This protocol arms the same timer when a connection opens and again whenever data
arrives while no request is under way, so every connection with nothing to do goes in
``[limits] keep_alive_timeout_s``. A request whose body is late is the business of
``request_timeout_s`` (serving/limits.py).

uvicorn's ``limit_concurrency`` answers 503 past its cap with a bare "Service Unavailable"; the
cap here is the same number (it is passed as ``limit_concurrency``) with an answer that names
``[limits] max_connections``, says when to retry and closes the connection. ``/healthz`` is
answered even then: a process busy with connections is alive, and restarting it would drop them
all. ``/readyz`` gets the 503, which takes the server out of a load balancer while it is full.
"""

from __future__ import annotations

from typing import Any

from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from serving.limits import answer

EXEMPT = frozenset({"/healthz"})


class Connection(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP protocol (httptools, or h11 without it) with the two bounds above.
    uvicorn makes one per connection, from ``uvicorn.run(http="serving.connections:Connection")``
    (a name, so that the processes of ``--workers N`` import it too)."""

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.max_connections: int | None = config.limit_concurrency
        self.limit_concurrency = None  # checked below instead, with an answer that names it
        self._app, self.app = self.app, self._capped

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm_idle_timer()  # closed unless a request starts in time

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        cycle = self.cycle
        if cycle is None or cycle.response_complete:  # no request under way: headers to come
            self._arm_idle_timer()

    def _arm_idle_timer(self) -> None:
        if self.transport.is_closing():
            return
        self._unset_keepalive_if_required()
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    async def _capped(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.max_connections is not None
            and len(self.connections) > self.max_connections
            and scope["type"] == "http"
            and scope["path"] not in EXEMPT
        ):
            detail = (
                f"the server holds more than {self.max_connections} connections ([limits] "
                "max_connections); retry shortly, and reuse a connection rather than open many"
            )
            return await answer(send, 503, detail, close=True, retry_after=True)
        await self._app(scope, receive, send)
