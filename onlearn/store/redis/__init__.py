"""The ``redis://host:port/db`` backend: one store shared by many replicas on many machines.

Key names live in :mod:`onlearn.store.redis.keys`. Every change that touches several keys, or
reads a key and writes from what it read, is one Lua script (atomic: Redis runs nothing else
while it runs) or one MULTI/EXEC; each script says which race it prevents. Shapes: the log is a
stream per model; a prediction record a string with an expiry; the registry hashes and a list;
the labelling queue a sorted set by rank plus a sorted set of leases, claimed by a script; jobs
hashes and sorted sets driven by scripts (the comments of each section say why).

URL: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` (TLS) or
``unix:///path/to/redis.sock?db=0``, with optional query parameters:

- ``prefix`` (default ``onlearn``): the first part of every key, so that several deployments
  can share one database;
- ``socket_timeout`` and ``socket_connect_timeout`` in seconds (default 2 each): a Redis that
  is down or hangs makes calls fail with :class:`~onlearn.errors.StoreUnavailable` within this
  time instead of stalling requests;
- any other connection option of redis-py's ``from_url`` (``max_connections``,
  ``health_check_interval``, ``ssl_*``, ...), except ``decode_responses`` (artifacts are bytes).

Availability. Connection errors, timeouts, a Redis still loading its data (``LOADING``), a
read-only replica, a full memory (``OOM``) or refused writes (``MISCONF``) raise
``StoreUnavailable`` (HTTP 503). Only calls that are safe to repeat (reads, puts that replace,
trims, purges, heartbeats, job enqueues) are retried, once, after a dropped connection: an
append, a role change or a claim whose reply was lost may have been applied, and repeating it
would append a label twice or lease more items (an append or change_roles retried by the
caller with the same idempotency key is safe). Connections are checked when taken from
redis-py's pool, so once Redis is back the same store object works again without being
reopened. Scripts run by SHA with a fallback to loading
them (``NOSCRIPT``), so a restarted Redis with an empty script cache is fine.

Durability. ``append`` returns once Redis has executed it, and Redis persists what it executes
according to its own configuration, which is therefore part of onlearn's durability guarantee:

- ``appendonly yes`` + ``appendfsync always``: Redis fsyncs the AOF before it answers, so an
  acknowledged label survives a crash of Redis and of the machine. Each write pays an fsync;
  group commit upstream amortises it over a batch of labels.
- ``appendonly yes`` + ``appendfsync everysec`` (the usual choice): Redis normally writes the
  AOF to the OS before it answers, so a crash of the Redis *process* (``kill -9``) loses nothing
  acknowledged (unless a slow disk made Redis postpone that write); a crash of the *machine*
  (power, kernel) can lose the last one or two seconds of acknowledged labels. Much cheaper.
- ``appendonly no`` (RDB snapshots only, or nothing): acknowledged labels can be lost on any
  Redis crash. Opening such a store logs a warning.

With replicas, replication is asynchronous: a failover can lose the writes the old primary had
not yet sent. ``WAIT numreplicas timeout`` (and ``WAITAOF`` from Redis 7.2) after an append would
close that gap at the cost of a round trip to the replicas; this backend does not issue them.

Layout: one module per port (``log``, ``predictions``, ``registry``, ``label_queue``, ``jobs``),
each registering its own Lua scripts, which are package data in ``lua/`` (:mod:`.scripts`);
``connection`` holds the URL, the client, the timeouts and the error handling they share;
``shapes`` the compact encoding's shapes, which the log, the registry and the predictions share.
"""

from __future__ import annotations

from onlearn.store.base import Store
from onlearn.store.redis.connection import connect, parse_redis_url
from onlearn.store.redis.jobs import RedisJobQueue
from onlearn.store.redis.label_queue import RedisLabelQueue
from onlearn.store.redis.log import RedisEventLog
from onlearn.store.redis.predictions import RedisPredictionStore
from onlearn.store.redis.registry import RedisRegistry
from onlearn.store.redis.shapes import RedisShapes

__all__ = [
    "RedisEventLog",
    "RedisJobQueue",
    "RedisLabelQueue",
    "RedisPredictionStore",
    "RedisRegistry",
    "open_redis_store",
    "parse_redis_url",
]


def open_redis_store(url: str) -> Store:
    """Connect to the Redis store at ``url`` (see the module docstring for the URL).

    Raises :class:`~onlearn.errors.StoreUnavailable` when Redis cannot be reached and
    :class:`~onlearn.errors.ConfigError` when the URL is wrong. Logs a warning when Redis does
    not persist writes to an append-only file (acknowledged labels could be lost).
    """
    conn = connect(url)
    try:  # the ports read their scripts from package data: a broken install fails here
        generation = conn.open_generation()
        shapes = RedisShapes(conn)  # the compact encoding's, one cache for the store
        return Store(
            url=url,
            log=RedisEventLog(conn, shapes),
            predictions=RedisPredictionStore(conn, shapes),
            registry=RedisRegistry(conn, shapes),
            queue=RedisLabelQueue(conn, shapes),
            jobs=RedisJobQueue(conn),
            closers=[conn.close],
            generation=generation,
        )
    except BaseException:
        conn.close()
        raise
