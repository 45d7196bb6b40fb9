"""The connection shared by the ports of one Redis store: the store URL and its options, the
client (one pool), timeouts, no blind retries, the breaker, and what counts as "unavailable".

What the options and the error handling promise is in the package docstring
(:mod:`onlearn.store.redis`). This module registers no script: each port registers its own.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis import exceptions as rx
from redis.backoff import NoBackoff
from redis.retry import Retry

from onlearn.errors import ConfigError, StoreUnavailable
from onlearn.store.generation import Generation, new_generation_id
from onlearn.store.redis.keys import PREFIX, RedisKeys

__all__ = [
    "BREAKER_OPEN_S",
    "DEFAULT_SOCKET_TIMEOUT_S",
    "SCHEMES",
    "Connection",
    "connect",
    "guarded",
    "parse_redis_url",
]

log = logging.getLogger(__name__)

DEFAULT_SOCKET_TIMEOUT_S = 2.0
# After a call timed out, calls fail at once for this long instead of each waiting out its own
# socket timeout: a hung Redis must not turn every request into a multi-second wait (nor pile up
# threads). Short, so that a Redis that is back is used again within a second.
BREAKER_OPEN_S = 1.0
SCHEMES = ("redis", "rediss", "unix")


# Error replies that mean "Redis cannot serve this now" rather than "this command is wrong":
# those redis-py maps to classes (it strips their code from the message), and the others by
# their code. The trailing space keeps e.g. BUSYGROUP (a real error) out.
_UNAVAILABLE_ERRORS = (rx.ReadOnlyError, rx.OutOfMemoryError, rx.TryAgainError, rx.ClusterDownError)
_UNAVAILABLE_REPLIES = ("MISCONF ", "BUSY ", "NOREPLICAS ", "LOADING ", "READONLY ", "OOM ")


def _unavailable_reply(exc: rx.ResponseError) -> bool:
    return isinstance(exc, _UNAVAILABLE_ERRORS) or str(exc).startswith(_UNAVAILABLE_REPLIES)


# The error a script raises when the store's generation id is not the caller's
# (lua/lib/append_events.lua), with the id it found (empty: none).
_GENERATION_REPLY = re.compile(r"ONLEARN_GENERATION ([0-9a-f]*)").search

_Method = TypeVar("_Method", bound=Callable[..., Any])


def guarded(action: str, *, idempotent: bool = False) -> Callable[[_Method], _Method]:
    """Turn Redis errors that mean "unavailable" into StoreUnavailable; leave others alone.

    ``idempotent`` calls (reads, and writes that may be applied twice with the effect of once)
    are retried once after a dropped connection, which a restart of Redis leaves behind.
    """

    def wrap(method: _Method) -> _Method:
        @functools.wraps(method)
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            conn: Connection = self._conn
            attempts = 2 if idempotent else 1
            for attempt in range(1, attempts + 1):
                conn.check_open()
                conn.check_breaker(action)
                try:
                    return method(self, *args, **kwargs)
                except rx.ConnectionError as exc:
                    retry = attempt < attempts and type(exc) is rx.ConnectionError
                    if not retry:
                        raise conn.unavailable(exc, action) from exc
                except rx.TimeoutError as exc:
                    conn.open_breaker()
                    raise conn.unavailable(exc, action) from exc
                except rx.ResponseError as exc:
                    replaced = _GENERATION_REPLY(str(exc))
                    if replaced is not None:  # a script's generation check (append_events)
                        raise conn.generation.mismatch(replaced[1] or None) from None
                    if not _unavailable_reply(exc):
                        raise
                    raise conn.unavailable(exc, action) from exc
            raise AssertionError("unreachable")  # pragma: no cover

        return call  # type: ignore[return-value]

    return wrap


def parse_redis_url(url: str) -> tuple[str, dict[str, Any]]:
    """Split a store URL into the URL for redis-py and onlearn's own options.

    >>> parse_redis_url("redis://h:6379/1?prefix=team-a&socket_timeout=0.5")
    ('redis://h:6379/1?socket_timeout=0.5', {'prefix': 'team-a'})
    """
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not url.startswith(f"{parts.scheme}://"):
        raise ConfigError(
            f"store URL {_redact(url)!r}: use redis://host:6379/0, rediss://... or "
            "unix:///path/to/redis.sock"
        )
    options: dict[str, Any] = {"prefix": PREFIX}
    rest = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "prefix":
            options["prefix"] = value
        elif name in ("decode_responses", "encoding"):
            raise ConfigError(
                f"store URL {_redact(url)!r}: option {name!r} is not supported (the store "
                "reads bytes)"
            )
        else:
            rest.append((name, value))
    if parts.path not in ("", "/") and parts.scheme != "unix":
        db = parts.path.lstrip("/")
        if not db.isdigit():
            raise ConfigError(
                f"store URL {_redact(url)!r}: the path must be a database number, e.g. /0"
            )
    try:
        RedisKeys(options["prefix"])
    except ValueError as exc:
        raise ConfigError(f"store URL {_redact(url)!r}: {exc}") from None
    # Rebuilt by hand: urlunsplit would turn unix:///path into unix:/path.
    base = url.split("?", 1)[0]
    return (f"{base}?{urlencode(rest)}" if rest else base), options


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


class Connection:
    """The client (one connection pool, thread-safe), key names and error messages shared by
    the ports of one store."""

    def __init__(self, url: str, client: redis.Redis, keys: RedisKeys):
        self.where = _redact(url).split("?", 1)[0]
        self.client = client
        self.keys = keys
        self.closed = False
        self.breaker_until = 0.0  # monotonic time until which calls fail without trying
        # The store's generation as read at open (onlearn.store.generation); set by
        # open_generation.
        self.generation: Generation = None  # type: ignore[assignment]

    def open_generation(self) -> Generation:
        """Read the store's generation id, giving one to a store that has none (a new one, or
        one of an earlier onlearn): SET NX, then GET, in one round trip."""
        key = self.keys.generation
        pipe = self.client.pipeline(transaction=False)
        pipe.set(key, new_generation_id(), nx=True)
        pipe.get(key)
        try:
            _, gid = pipe.execute()
        except (rx.ConnectionError, rx.TimeoutError) as exc:
            raise self.unavailable(exc, "open") from exc

        def read() -> str | None:
            try:
                value = self.client.get(key)
            except (rx.ConnectionError, rx.TimeoutError) as exc:
                raise self.unavailable(exc, "read the generation") from exc
            return None if value is None else value.decode()

        self.generation = Generation(gid.decode(), read, f"Redis store {self.where}")
        return self.generation

    def check_open(self) -> None:
        if self.closed:
            raise StoreUnavailable(f"Redis store {self.where} is closed")

    def open_breaker(self) -> None:
        self.breaker_until = time.monotonic() + BREAKER_OPEN_S

    def check_breaker(self, action: str) -> None:
        if time.monotonic() < self.breaker_until:
            raise StoreUnavailable(
                f"Redis store {self.where} is unavailable ({action}): a call timed out less "
                f"than {BREAKER_OPEN_S:g} s ago; retry later"
            )

    def unavailable(self, exc: Exception, action: str) -> StoreUnavailable:
        if isinstance(exc, rx.AuthenticationError | rx.AuthorizationError):
            hint = "; check the user and password of the store URL"
        elif isinstance(exc, rx.TimeoutError):
            hint = "; Redis did not answer within socket_timeout, retry later"
        else:
            hint = "; retry later"
        return StoreUnavailable(f"Redis store {self.where} is unavailable ({action}): {exc}{hint}")

    def close(self) -> None:
        self.closed = True
        self.client.close()


def connect(url: str) -> Connection:
    """Connect to the Redis store at ``url`` (see the package docstring for the URL).

    Raises :class:`~onlearn.errors.StoreUnavailable` when Redis cannot be reached and
    :class:`~onlearn.errors.ConfigError` when the URL is wrong. Logs a warning when Redis does
    not persist writes to an append-only file (acknowledged labels could be lost).
    """
    client_url, options = parse_redis_url(url)
    try:
        client = redis.Redis.from_url(
            client_url,
            socket_timeout=DEFAULT_SOCKET_TIMEOUT_S,
            socket_connect_timeout=DEFAULT_SOCKET_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),  # see the package docstring: no blind write retries
            decode_responses=False,
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"store URL {_redact(url)!r}: {exc}") from None
    conn = Connection(url, client, RedisKeys(options["prefix"]))
    try:
        _check_server(conn)
    except BaseException:
        conn.close()
        raise
    return conn


_warned: set[str] = set()


def _check_server(conn: Connection) -> None:
    try:
        conn.client.ping()
    except (rx.ConnectionError, rx.TimeoutError) as exc:
        raise conn.unavailable(exc, "open") from exc
    except rx.ResponseError as exc:
        if _unavailable_reply(exc):
            raise conn.unavailable(exc, "open") from exc
        raise
    except TypeError as exc:  # an unknown option of the URL reaches the connection here
        raise ConfigError(f"store URL {conn.where!r}: {exc}") from None
    try:
        persistence = conn.client.info("persistence")
    except rx.ResponseError:  # INFO may be forbidden by an ACL; the check is advisory
        return
    if not int(persistence.get("aof_enabled", 0)) and conn.where not in _warned:
        _warned.add(conn.where)  # once per process and server, not at every open
        log.warning(
            "Redis store %s has appendonly off: acknowledged labels are lost if Redis crashes; "
            "run it with appendonly yes (appendfsync everysec or always)",
            conn.where,
        )
