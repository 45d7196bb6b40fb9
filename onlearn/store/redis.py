"""The ``redis://host:port/db`` backend: one store shared by many replicas on many machines.

Key names live in :mod:`onlearn.store.redis_keys`. Every change that touches several keys, or
reads a key and writes from what it read, is one Lua script (atomic: Redis runs nothing else
while it runs) or one MULTI/EXEC; each script says which race it prevents.

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
trims, purges) are retried, once, after a dropped connection: an append or a role change whose
reply was lost may have been applied, and repeating it would append a label twice (an append
retried by the caller with the same idempotency keys is safe). Connections are checked when taken from redis-py's pool, so once Redis is back the same
store object works again without being reopened. Scripts run by SHA with a fallback to loading
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
"""

from __future__ import annotations

import functools
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis import exceptions as rx
from redis.backoff import NoBackoff
from redis.retry import Retry

from onlearn.errors import ConfigError, StoreUnavailable
from onlearn.records import Event, PredictionRecord, Snapshot, VersionInfo
from onlearn.store.base import AppendResult, Store
from onlearn.store.codec import (
    decode_prediction,
    dumps,
    encode_prediction,
    event_from_dict,
    event_to_dict,
    loads,
)
from onlearn.store.redis_keys import PREFIX, RedisKeys

__all__ = [
    "RedisEventLog",
    "RedisPredictionStore",
    "RedisRegistry",
    "open_redis_store",
    "parse_redis_url",
]

log = logging.getLogger(__name__)

DEFAULT_SOCKET_TIMEOUT_S = 2.0
SCHEMES = ("redis", "rediss", "unix")

# Events per append script call. A group-committed batch (hundreds of events) is one call, so
# one atomic step; a larger batch is split so that no single script blocks Redis for long.
_APPEND_CHUNK = 5000
# Stream entries removed per trim script call, and prediction ids per purge call: bounded work
# per script (Redis serves nobody else while a script runs).
_TRIM_CHUNK = 1000
_PURGE_CHUNK = 1000
# The largest seq that fits a stream id's sequence part, with room to add one.
_MAX_SEQ = 2**63 - 1

# --- Lua scripts -------------------------------------------------------------------------------

# KEYS: log head counter, log stream, idempotency hash. ARGV: per event three values: "1" when
# it has a key (else "0"), the key, the event JSON.
#
# One script for the whole batch because many serve replicas append to the same log at once:
# reading the head, checking idempotency keys and adding entries must be one atomic step, or
# two appenders could take the same seq, leave a gap, or both append the same key. Redis runs a
# script alone, so the seqs of every call are unique and gapless, and a key is appended once.
# Stream ids are explicit (0-<seq>), so a seq is the entry's id; the counter is kept apart from
# the stream so that numbering continues after a trim has removed every entry; the stream's top
# entry is read too, so that a counter that fell behind (lost, or restored from an older backup)
# can never make XADD refuse the next id.
_APPEND = """
local counter = tonumber(redis.call('GET', KEYS[1]) or '0')
local head = counter
local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)[1]
if top then
  head = math.max(head, tonumber(string.match(top[1], '^0%-(%d+)$')))
end
local seqs = {}
for i = 1, #ARGV, 3 do
  local has_key, key, data = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local known = false
  if has_key == '1' then
    known = redis.call('HGET', KEYS[3], key)
  end
  if known then
    seqs[#seqs + 1] = -tonumber(known)  -- negative: a duplicate, not appended
  else
    head = head + 1
    local id = string.format('0-%d', head)
    if has_key == '1' then
      redis.call('XADD', KEYS[2], id, 'e', data, 'k', key)
      redis.call('HSET', KEYS[3], key, head)
    else
      redis.call('XADD', KEYS[2], id, 'e', data)
    end
    seqs[#seqs + 1] = head
  end
end
if head ~= counter then
  redis.call('SET', KEYS[1], head)
end
return seqs
"""

# KEYS: log stream, idempotency hash. ARGV: upto, chunk size. Returns how many were removed.
#
# The entries and their idempotency keys go together: a key must never outlive its event (the
# contract forgets trimmed keys, like the other backends), nor an event lose its key while it is
# still in the log, or a retried label could be appended twice.
_TRIM = """
local entries = redis.call('XRANGE', KEYS[1], '-', string.format('0-%d', ARGV[1]),
                           'COUNT', ARGV[2])
if #entries == 0 then
  return 0
end
for _, entry in ipairs(entries) do
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'k' then
      redis.call('HDEL', KEYS[2], fields[i + 1])
    end
  end
end
local last = tonumber(string.match(entries[#entries][1], '^0%-(%d+)$'))
redis.call('XTRIM', KEYS[1], 'MINID', string.format('0-%d', last + 1))
return #entries
"""

# KEYS: the expiry index, then one record key per id. ARGV: now, then the ids (ARGV[i] is the
# id of KEYS[i]). Returns how many records were purged.
#
# The score is checked again inside the script: between the caller's range query and this
# script, a put_many may have replaced a record with a later expires_at, which must survive.
_PURGE = """
local now = tonumber(ARGV[1])
local purged = 0
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) <= now then
    redis.call('DEL', KEYS[i])
    redis.call('ZREM', KEYS[1], ARGV[i])
    purged = purged + 1
  end
end
return purged
"""

# KEYS: last version number, versions hash. ARGV: the version JSON. Returns its number.
#
# INCR and HSET in one step: concurrent creators (worker, admin calls on several replicas) get
# unique numbers, and no number is ever taken without its version being stored (a MULTI could
# not feed INCR's result to HSET; WATCH would retry under contention).
_CREATE_VERSION = """
local number = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], number, ARGV[1])
return number
"""

# KEYS: versions hash, roles hash, role history list. ARGV: role, "1" to set (else remove), the
# version, its number, and the audit entry's JSON without its closing brace, ending in
# ',"previous":'. Returns 0 when the version does not exist (nothing changed), else 1.
#
# Checking the version, reading the previous holder, changing the role and appending the audit
# entry are one step: two concurrent promotions cannot both record the same "previous", a role
# never changes without its audit entry, and a version cannot be given a role unchecked.
# The previous version is spliced into the entry as a JSON string (cjson.encode of a string is
# exact) so that the floats of the entry, encoded by Python, are never re-encoded by cjson.
_SET_ROLE = """
if ARGV[2] == '1' and redis.call('HEXISTS', KEYS[1], ARGV[4]) == 0 then
  return 0
end
local previous = redis.call('HGET', KEYS[2], ARGV[1])
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
else
  redis.call('HDEL', KEYS[2], ARGV[1])
end
local previous_json = 'null'
if previous then
  previous_json = cjson.encode(previous)
end
redis.call('RPUSH', KEYS[3], ARGV[5] .. previous_json .. '}')
return 1
"""

# --- errors --------------------------------------------------------------------------------------

# Error replies that mean "Redis cannot serve this now" rather than "this command is wrong":
# those redis-py maps to classes (it strips their code from the message), and the others by
# their code. The trailing space keeps e.g. BUSYGROUP (a real error) out.
_UNAVAILABLE_ERRORS = (rx.ReadOnlyError, rx.OutOfMemoryError, rx.TryAgainError, rx.ClusterDownError)
_UNAVAILABLE_REPLIES = ("MISCONF ", "BUSY ", "NOREPLICAS ", "LOADING ", "READONLY ", "OOM ")


def _unavailable_reply(exc: rx.ResponseError) -> bool:
    return isinstance(exc, _UNAVAILABLE_ERRORS) or str(exc).startswith(_UNAVAILABLE_REPLIES)


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _guarded(action: str, *, idempotent: bool = False) -> Callable[[_Method], _Method]:
    """Turn Redis errors that mean "unavailable" into StoreUnavailable; leave others alone.

    ``idempotent`` calls (reads, and writes that may be applied twice with the effect of once)
    are retried once after a dropped connection, which a restart of Redis leaves behind.
    """

    def wrap(method: _Method) -> _Method:
        @functools.wraps(method)
        def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
            conn: _Connection = self._conn
            attempts = 2 if idempotent else 1
            for attempt in range(1, attempts + 1):
                conn.check_open()
                try:
                    return method(self, *args, **kwargs)
                except rx.ConnectionError as exc:
                    retry = attempt < attempts and type(exc) is rx.ConnectionError
                    if not retry:
                        raise conn.unavailable(exc, action) from exc
                except rx.TimeoutError as exc:
                    raise conn.unavailable(exc, action) from exc
                except rx.ResponseError as exc:
                    if not _unavailable_reply(exc):
                        raise
                    raise conn.unavailable(exc, action) from exc
            raise AssertionError("unreachable")  # pragma: no cover

        return guarded  # type: ignore[return-value]

    return wrap


# --- the connection --------------------------------------------------------------------------


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


class _Connection:
    """The client (one connection pool, thread-safe), key names, scripts and error messages
    shared by the three ports of one store."""

    def __init__(self, url: str, client: redis.Redis, keys: RedisKeys):
        self.where = _redact(url).split("?", 1)[0]
        self.client = client
        self.keys = keys
        self.closed = False
        self.append = client.register_script(_APPEND)
        self.trim = client.register_script(_TRIM)
        self.purge = client.register_script(_PURGE)
        self.create_version = client.register_script(_CREATE_VERSION)
        self.set_role = client.register_script(_SET_ROLE)

    def check_open(self) -> None:
        if self.closed:
            raise StoreUnavailable(f"Redis store {self.where} is closed")

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


def _decode(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


# --- event log -------------------------------------------------------------------------------


class RedisEventLog:
    def __init__(self, conn: _Connection):
        self._conn = conn

    @_guarded("append")
    def append(self, model: str, events: Sequence[Event]) -> AppendResult:
        if not events:
            return AppendResult()
        k = self._conn.keys
        keys = [k.log_head(model), k.log(model), k.log_keys(model)]
        seqs = AppendResult()
        for start in range(0, len(events), _APPEND_CHUNK):
            args: list[str] = []
            for event in events[start : start + _APPEND_CHUNK]:
                data = event_to_dict(event)
                key = data.pop("key")  # kept in its own field, which the trim script reads
                if key is None:
                    args += ("0", "", dumps(data))
                else:
                    args += ("1", key, dumps(data))
            for seq in self._conn.append(keys=keys, args=args):
                seqs.append(abs(seq))
                seqs.new.append(seq > 0)
        return seqs

    @_guarded("read", idempotent=True)
    def read(self, model: str, after: int, limit: int = 1000) -> list[Event]:
        if limit <= 0 or after >= _MAX_SEQ:
            return []
        start = "-" if after < 0 else f"0-{after + 1}"
        entries = self._conn.client.xrange(self._conn.keys.log(model), start, "+", count=limit)
        events = []
        for entry_id, fields in entries:
            data = loads(fields[b"e"])
            key = fields.get(b"k")
            data["key"] = None if key is None else key.decode("utf-8")
            events.append(event_from_dict(data, seq=int(entry_id[2:])))
        return events

    @_guarded("head", idempotent=True)
    def head(self, model: str) -> int:
        # The counter, or the stream's top entry should the counter have fallen behind (as the
        # append script does); one round trip.
        pipe = self._conn.client.pipeline(transaction=False)
        pipe.get(self._conn.keys.log_head(model))
        pipe.xrevrange(self._conn.keys.log(model), "+", "-", count=1)
        counter, top = pipe.execute()
        return max(int(counter or 0), int(top[0][0][2:]) if top else 0)

    @_guarded("trim", idempotent=True)
    def trim(self, model: str, upto: int) -> int:
        if upto <= 0:
            return 0
        upto = min(upto, _MAX_SEQ - 1)
        keys = [self._conn.keys.log(model), self._conn.keys.log_keys(model)]
        total = 0
        while True:
            removed = self._conn.trim(keys=keys, args=[upto, _TRIM_CHUNK])
            total += removed
            if removed < _TRIM_CHUNK:
                return total


# --- prediction records ----------------------------------------------------------------------


class RedisPredictionStore:
    """One string key per record, expiring at its ``expires_at`` (Redis deletes it by itself),
    and one sorted set of ids by ``expires_at`` so that ``purge_expired`` can count and delete
    what expired; the writer's periodic purge keeps that index small."""

    def __init__(self, conn: _Connection):
        self._conn = conn

    @_guarded("put predictions", idempotent=True)
    def put_many(self, records: Sequence[PredictionRecord]) -> None:
        if not records:
            return
        k = self._conn.keys
        now = time.time()
        expiry: dict[str, float] = {}
        # No MULTI: each SET stands alone (a record is one key) and the writer retries a failed
        # batch whole, which is harmless because putting a record again replaces it.
        pipe = self._conn.client.pipeline(transaction=False)
        for record in records:
            key = k.prediction(record.id)
            expires_at = record.expires_at
            if not expires_at > now:  # already expired (or NaN): what it replaces goes too
                pipe.delete(key)
                expires_at = expires_at if expires_at == expires_at else 0.0
            elif math.isinf(expires_at):
                pipe.set(key, encode_prediction(record))
            else:
                # Rounded up to the millisecond: never deleted before its expires_at.
                pipe.set(key, encode_prediction(record), pxat=math.ceil(expires_at * 1000))
            expiry[record.id] = expires_at
        pipe.zadd(k.predictions_expiry(), expiry)
        pipe.execute()

    @_guarded("get prediction", idempotent=True)
    def get(self, prediction_id: str) -> PredictionRecord | None:
        text = self._conn.client.get(self._conn.keys.prediction(prediction_id))
        if text is None:
            return None
        record = decode_prediction(text)
        # Redis expires by its own clock; this process's clock decides too, as in other backends.
        return record if record.expires_at > time.time() else None

    @_guarded("purge predictions", idempotent=True)
    def purge_expired(self, now: float) -> int:
        k = self._conn.keys
        index = k.predictions_expiry()
        client = self._conn.client
        total = 0
        while True:
            ids = client.zrangebyscore(index, "-inf", now, start=0, num=_PURGE_CHUNK)
            if not ids:
                return total
            keys = [index] + [k.prediction(_decode(i)) for i in ids]
            total += self._conn.purge(keys=keys, args=[repr(float(now)), *ids])
            if len(ids) < _PURGE_CHUNK:
                return total


# --- registry --------------------------------------------------------------------------------

_VERSION_NAME = re.compile(r"v([1-9][0-9]*)")
_HISTORY_FIELDS = ("role", "version", "previous", "actor", "reason", "at")
# Artifacts are written in parts: redis-py sends each large argument with one sendall, which
# must finish within socket_timeout, so a part of 1 MiB needs only 0.5 MB/s at the default 2 s
# while a forest's tens of MB in one piece would time out on a modest link.
_PART_BYTES = 1 << 20


class RedisRegistry:
    def __init__(self, conn: _Connection):
        self._conn = conn

    @_guarded("create version")
    def create_version(self, model: str, spec: dict, meta: dict, at: float) -> VersionInfo:
        text = dumps({"created_at": at, "spec": spec, "meta": meta})
        k = self._conn.keys
        number = self._conn.create_version(
            keys=[k.versions_last(model), k.versions(model)], args=[text]
        )
        return self._info(model, int(number), text)

    @staticmethod
    def _info(model: str, number: int, text: bytes | str) -> VersionInfo:
        data = loads(text)
        created_at = float(data["created_at"])
        return VersionInfo(model, f"v{number}", created_at, data["spec"], data["meta"])

    @_guarded("get version", idempotent=True)
    def get_version(self, model: str, version: str) -> VersionInfo | None:
        match = _VERSION_NAME.fullmatch(version)
        if match is None:
            return None
        number = int(match.group(1))
        text = self._conn.client.hget(self._conn.keys.versions(model), str(number))
        return None if text is None else self._info(model, number, text)

    @_guarded("list versions", idempotent=True)
    def list_versions(self, model: str) -> list[VersionInfo]:
        found = self._conn.client.hgetall(self._conn.keys.versions(model))
        numbered = sorted((int(number), text) for number, text in found.items())
        return [self._info(model, number, text) for number, text in numbered]

    @_guarded("roles", idempotent=True)
    def roles(self, model: str) -> dict[str, str]:
        found = self._conn.client.hgetall(self._conn.keys.roles(model))
        return {_decode(role): _decode(version) for role, version in sorted(found.items())}

    @_guarded("set role")
    def set_role(
        self, model: str, role: str, version: str | None, *, actor: str, reason: str, at: float
    ) -> None:
        number = 0
        if version is not None:
            match = _VERSION_NAME.fullmatch(version)
            if match is None:
                raise LookupError(f"model {model!r} has no version {version!r}")
            number = int(match.group(1))
        entry = dumps(
            {"role": role, "version": version, "actor": actor, "reason": reason, "at": at}
        )
        k = self._conn.keys
        done = self._conn.set_role(
            keys=[k.versions(model), k.roles(model), k.role_history(model)],
            args=[
                role,
                "0" if version is None else "1",
                version or "",
                number,
                entry[:-1] + ',"previous":',
            ],
        )
        if not done:
            raise LookupError(f"model {model!r} has no version {version!r}")

    @_guarded("role history", idempotent=True)
    def role_history(self, model: str) -> list[dict]:
        rows = self._conn.client.lrange(self._conn.keys.role_history(model), 0, -1)
        history = []
        for row in rows:
            data = loads(row)
            entry = {name: data[name] for name in _HISTORY_FIELDS}
            entry["at"] = float(entry["at"])
            history.append(entry)
        return history

    @_guarded("put snapshot", idempotent=True)
    def put_snapshot(self, snapshot: Snapshot) -> None:
        k = self._conn.keys
        model, version, seq = snapshot.model, snapshot.version, snapshot.seq
        artifact = memoryview(bytes(snapshot.artifact))
        parts = range(0, len(artifact), _PART_BYTES)
        blob: dict[str, Any] = {"at": repr(float(snapshot.at)), "parts": len(parts)}
        blob.update((str(n), artifact[i : i + _PART_BYTES]) for n, i in enumerate(parts))
        # MULTI: the index never points at a snapshot that is not stored whole, nor misses one
        # that is; a snapshot replaced at the same seq loses all its old parts (DEL first).
        pipe = self._conn.client.pipeline(transaction=True)
        pipe.delete(k.snapshot(model, version, seq))
        pipe.hset(k.snapshot(model, version, seq), mapping=blob)
        pipe.zadd(k.snapshots(model, version), {str(seq): seq})
        pipe.execute()

    @_guarded("latest snapshot", idempotent=True)
    def latest_snapshot(
        self, model: str, version: str, max_seq: int | None = None
    ) -> Snapshot | None:
        k = self._conn.keys
        client = self._conn.client
        found = client.zrevrangebyscore(
            k.snapshots(model, version), "+inf" if max_seq is None else max_seq, "-inf", 0, 1
        )
        if not found:
            return None
        seq = int(found[0])
        # Two reads, not one script: an artifact is megabytes, which a script would copy while
        # Redis serves nobody else. Snapshots are never deleted, so the index entry stays valid;
        # the blob itself is written whole by one MULTI.
        blob = client.hgetall(k.snapshot(model, version, seq))
        if b"parts" not in blob:
            return None
        artifact = b"".join(blob[str(n).encode()] for n in range(int(blob[b"parts"])))
        return Snapshot(model, version, seq, float(blob[b"at"]), artifact)


# --- opening -----------------------------------------------------------------------------------


def open_redis_store(url: str) -> Store:
    """Connect to the Redis store at ``url`` (see the module docstring for the URL).

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
            retry=Retry(NoBackoff(), 0),  # see the module docstring: no blind write retries
            decode_responses=False,
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"store URL {_redact(url)!r}: {exc}") from None
    conn = _Connection(url, client, RedisKeys(options["prefix"]))
    try:
        _check_server(conn)
    except BaseException:
        conn.close()
        raise
    return Store(
        url=url,
        log=RedisEventLog(conn),
        predictions=RedisPredictionStore(conn),
        registry=RedisRegistry(conn),
        closers=[conn.close],
    )


_warned: set[str] = set()


def _check_server(conn: _Connection) -> None:
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
