"""The ``redis://host:port/db`` backend: one store shared by many replicas on many machines.

Key names live in :mod:`onlearn.store.redis_keys`. Every change that touches several keys, or
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
"""

from __future__ import annotations

import functools
import logging
import math
import re
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis import exceptions as rx
from redis.backoff import NoBackoff
from redis.retry import Retry

from onlearn.errors import ConfigError, StoreUnavailable
from onlearn.records import Event, Job, PredictionRecord, QueueItem, Snapshot, VersionInfo
from onlearn.store.base import (
    AppendResult,
    ClaimOutcome,
    PushOutcome,
    QueueStats,
    RolesState,
    Store,
)
from onlearn.store.codec import (
    decode_document,
    decode_prediction,
    dumps,
    encode_document,
    encode_prediction,
    event_from_dict,
    event_to_dict,
    job_from_dict,
    job_to_dict,
    loads,
    queue_item_from_dict,
    queue_item_to_dict,
)
from onlearn.store.leases import (
    check_canary_share,
    check_job,
    check_priority,
    check_pushable,
    new_claim_id,
    reclaim_error,
)
from onlearn.store.redis.keys import PREFIX, RedisKeys

__all__ = [
    "RedisEventLog",
    "RedisJobQueue",
    "RedisLabelQueue",
    "RedisPredictionStore",
    "RedisRegistry",
    "open_redis_store",
    "parse_redis_url",
]

log = logging.getLogger(__name__)

DEFAULT_SOCKET_TIMEOUT_S = 2.0
# After a call timed out, calls fail at once for this long instead of each waiting out its own
# socket timeout: a hung Redis must not turn every request into a multi-second wait (nor pile up
# threads). Short, so that a Redis that is back is used again within a second.
BREAKER_OPEN_S = 1.0
SCHEMES = ("redis", "rediss", "unix")

# Events per append script call. A group-committed batch (hundreds of events) is one call, so
# one atomic step; a larger batch is split so that no single script blocks Redis for long.
_APPEND_CHUNK = 5000
# Stream entries removed per trim script call, and prediction ids per purge call: bounded work
# per script (Redis serves nobody else while a script runs).
_TRIM_CHUNK = 1000
_PURGE_CHUNK = 1000
# Ids read per round by scan (the records of a round are fetched in one pipeline), and the
# fewest read by a round after one whose ids had partly expired.
_SCAN_CHUNK = 1000
_SCAN_MIN_STEP = 100
# The largest seq that fits a stream id's sequence part, with room to add one.
_MAX_SEQ = 2**63 - 1

# --- Lua scripts -------------------------------------------------------------------------------

# The log's append, a Lua function shared by the append script and the change_roles script, so
# that a control event is numbered and deduped exactly as any other event.
#
# append_events(head, stream, keys, args, first): head counter, log stream, idempotency hash;
# ``args`` from index ``first`` holds three values per event: "1" when it has a key (else "0"),
# the key, the event JSON. Returns one seq per event, negative for a duplicate (not appended).
#
# One script for the whole batch because many serve replicas append to the same log at once:
# reading the head, checking idempotency keys and adding entries must be one atomic step, or
# two appenders could take the same seq, leave a gap, or both append the same key. Redis runs a
# script alone, so the seqs of every call are unique and gapless, and a key is appended once.
# Stream ids are explicit (0-<seq>), so a seq is the entry's id; the counter is kept apart from
# the stream so that numbering continues after a trim has removed every entry; the stream's top
# entry is read too, so that a counter that fell behind (lost, or restored from an older backup)
# can never make XADD refuse the next id.
_LOG_LIB = """
local function append_events(head_key, stream, keys_hash, args, first)
  local counter = tonumber(redis.call('GET', head_key) or '0')
  local head = counter
  local top = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)[1]
  if top then
    head = math.max(head, tonumber(string.match(top[1], '^0%-(%d+)$')))
  end
  local seqs = {}
  for i = first, #args, 3 do
    local has_key, key, data = args[i], args[i + 1], args[i + 2]
    local known = false
    if has_key == '1' then
      known = redis.call('HGET', keys_hash, key)
    end
    if known then
      seqs[#seqs + 1] = -tonumber(known)  -- negative: a duplicate, not appended
    else
      head = head + 1
      local id = string.format('0-%d', head)
      if has_key == '1' then
        redis.call('XADD', stream, id, 'e', data, 'k', key)
        redis.call('HSET', keys_hash, key, head)
      else
        redis.call('XADD', stream, id, 'e', data)
      end
      seqs[#seqs + 1] = head
    end
  end
  if head ~= counter then
    redis.call('SET', head_key, string.format('%d', head))
  end
  return seqs
end
"""

# KEYS: log head counter, log stream, idempotency hash. ARGV: per event the three values of
# append_events.
_APPEND = (
    _LOG_LIB
    + """
return append_events(KEYS[1], KEYS[2], KEYS[3], ARGV, 1)
"""
)

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

# KEYS: the expiry index, the id -> model hash, then the n record keys, then the n model
# indexes (the expiry index again for an id without a model). ARGV: now, then the n ids, then
# for each the model Python read from the hash, as '=' .. model ('' for none). Returns how many
# records were purged.
#
# The score is checked again inside the script: between the caller's range query and this
# script, a put_many may have replaced a record with a later expires_at, which must survive.
# So is the model: an id put again under another model meanwhile is left for the next round,
# which reads its new model (its index key must be one this script was given).
_PURGE = """
local now = tonumber(ARGV[1])
local n = (#ARGV - 1) / 2
local purged = 0
for i = 1, n do
  local id = ARGV[1 + i]
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tonumber(score) <= now then
    local model = redis.call('HGET', KEYS[2], id)
    local read = ARGV[1 + n + i]
    if (model and '=' .. model == read) or (not model and read == '') then
      redis.call('DEL', KEYS[2 + i])
      redis.call('ZREM', KEYS[1], id)
      if model then
        redis.call('ZREM', KEYS[2 + n + i], id)
        redis.call('HDEL', KEYS[2], id)
      end
      purged = purged + 1
    end
  end
end
return purged
"""

# KEYS: a model's index of ids, the id -> model hash, then one record key per id. ARGV: the
# model, then the ids (ARGV[i + 1] is the id of KEYS[i + 2]). Returns how many were removed.
#
# scan found these ids' records gone (Redis expired them) or put again under another model; the
# check is repeated here, in one step with the removal, because a put_many may have written the
# record again (for this model) since scan read it. put_many writes the record, then the hash,
# then the index, so an entry removed just before such a put is added back by the put itself.
_SCAN_FORGET = """
local removed = 0
for i = 2, #ARGV do
  if redis.call('EXISTS', KEYS[i + 1]) == 0 or redis.call('HGET', KEYS[2], ARGV[i]) ~= ARGV[1] then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
"""

# KEYS: last version number, versions hash, idempotency keys hash. ARGV: the version JSON, "1"
# when there is a key (else "0"), the key. Returns {number} for a new version, or {number, JSON}
# of the version registered before under that key.
#
# INCR and HSET in one step: concurrent creators (worker, admin calls on several replicas) get
# unique numbers, and no number is ever taken without its version being stored (a MULTI could
# not feed INCR's result to HSET; WATCH would retry under contention). The key is looked up in
# the same step, so two workers running one retried job register one version, not two.
_CREATE_VERSION = """
if ARGV[2] == '1' then
  local known = redis.call('HGET', KEYS[3], ARGV[3])
  if known then
    return {tonumber(known), redis.call('HGET', KEYS[2], known)}
  end
end
local number = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], number, ARGV[1])
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[3], ARGV[3], number)
end
return {number}
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

# KEYS: log head counter, log stream, log idempotency hash, versions hash, roles hash, role
# history list, roles state hash. ARGV: the control event's three append_events values (has key,
# key, JSON), "1" when a canary share is given (else "0"), the share, the number of changes,
# then per change five values: role, "1" to give the role (else remove it), the version, its
# number, and the audit entry's JSON without its closing brace, ending in ',"seq":'.
# Returns {0, seq} when applied, {1, seq} when the event's key was in the log already (nothing
# changed), {2, version} when a version does not exist (nothing changed).
#
# The race this prevents: two admins promote at once through different replicas. Were the
# append and the role changes separate steps, A could append at seq 7, B append at seq 8 and set
# its roles, then A set its roles: the roles would say A while every follower of the log ends on
# B's event, and replicas would disagree with the registry forever. A crash between the two
# steps would leave an event without its roles, or roles without their event. In one script the
# event, the roles, the canary share, the state's seq and the audit rows change together, in
# log order. Versions are checked before anything is written (a script that raised halfway
# would keep its earlier writes).
_CHANGE_ROLES = (
    _LOG_LIB
    + """
if ARGV[1] == '1' then
  local known = redis.call('HGET', KEYS[3], ARGV[2])
  if known then
    return {1, tonumber(known)}
  end
end
local count = tonumber(ARGV[6])
for i = 0, count - 1 do
  local at = 7 + i * 5
  if ARGV[at + 1] == '1' and redis.call('HEXISTS', KEYS[4], ARGV[at + 3]) == 0 then
    return {2, ARGV[at + 2]}
  end
end
local seq = append_events(KEYS[1], KEYS[2], KEYS[3], {ARGV[1], ARGV[2], ARGV[3]}, 1)[1]
local seq_text = string.format('%d', seq)
for i = 0, count - 1 do
  local at = 7 + i * 5
  local role = ARGV[at]
  local version = false
  if ARGV[at + 1] == '1' then
    version = ARGV[at + 2]
  end
  local previous = redis.call('HGET', KEYS[5], role)
  if previous ~= version then
    if version then
      redis.call('HSET', KEYS[5], role, version)
    else
      redis.call('HDEL', KEYS[5], role)
    end
    local previous_json = 'null'
    if previous then
      previous_json = cjson.encode(previous)
    end
    redis.call('RPUSH', KEYS[6],
               ARGV[at + 4] .. seq_text .. ',"previous":' .. previous_json .. '}')
  end
end
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[7], 'canary_share', ARGV[5])
end
redis.call('HSET', KEYS[7], 'seq', seq_text)
return {0, seq}
"""
)

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
        self.breaker_until = 0.0  # monotonic time until which calls fail without trying
        self.append = client.register_script(_APPEND)
        self.trim = client.register_script(_TRIM)
        self.purge = client.register_script(_PURGE)
        self.scan_forget = client.register_script(_SCAN_FORGET)
        self.create_version = client.register_script(_CREATE_VERSION)
        self.set_role = client.register_script(_SET_ROLE)
        self.change_roles = client.register_script(_CHANGE_ROLES)
        self.queue_push = client.register_script(_QUEUE_PUSH)
        self.queue_peek = client.register_script(_QUEUE_PEEK)
        self.queue_reprioritize = client.register_script(_QUEUE_REPRIORITIZE)
        self.queue_claim = client.register_script(_QUEUE_CLAIM)
        self.queue_complete = client.register_script(_QUEUE_COMPLETE)
        self.queue_skip = client.register_script(_QUEUE_SKIP)
        self.queue_release = client.register_script(_QUEUE_RELEASE)
        self.queue_purge = client.register_script(_QUEUE_PURGE)
        self.job_enqueue = client.register_script(_JOB_ENQUEUE)
        self.job_claim = client.register_script(_JOB_CLAIM)
        self.job_fail_poisoned = client.register_script(_JOB_FAIL_POISONED)
        self.job_heartbeat = client.register_script(_JOB_HEARTBEAT)
        self.job_complete = client.register_script(_JOB_COMPLETE)
        self.job_fail = client.register_script(_JOB_FAIL)
        self.job_cancel = client.register_script(_JOB_CANCEL)
        self.job_commit = client.register_script(_JOB_COMMIT)
        self.job_release = client.register_script(_JOB_RELEASE)

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
    what expired; the writer's periodic purge keeps that index small.

    For ``scan``, each model has a sorted set of the ids of its records, all of score 0: members
    of equal score sort bytewise, which for ids is their order as Python strings (UTF-8 keeps
    code point order), so ``ZRANGEBYLEX (<after> +`` is exactly "ids greater than the cursor,
    in id order", whatever the ids look like. (A score by time would need the time parsed out
    of each id, would not order ids of one millisecond, and a cursor inside one score cannot
    be expressed as one range.) Records expire by TTL while their ids stay in these indexes:
    ``purge_expired`` removes them, finding an id's model in a hash (the record itself may be
    gone), and ``scan`` skips the ids whose record has gone and removes them as it passes.
    """

    def __init__(self, conn: _Connection):
        self._conn = conn

    @_guarded("put predictions", idempotent=True)
    def put_many(self, records: Sequence[PredictionRecord]) -> None:
        if not records:
            return
        k = self._conn.keys
        now = time.time()
        expiry: dict[str, float] = {}
        models: dict[str, str] = {}
        by_model: dict[str, dict[str, int]] = {}
        # No MULTI: each SET stands alone (a record is one key) and the writer retries a failed
        # batch whole, which is harmless because putting a record again replaces it. The
        # indexes come after the records, so that scan never meets an id before its record.
        pipe = self._conn.client.pipeline(transaction=False)
        for record in records:
            key = k.prediction(record.id)
            expires_at = record.expires_at
            if not expires_at > now:  # already expired (or NaN): what it replaces goes too
                pipe.delete(key)
                expires_at = expires_at if expires_at == expires_at else 0.0
            else:
                if math.isinf(expires_at):
                    pipe.set(key, encode_prediction(record))
                else:
                    # Rounded up to the millisecond: never deleted before its expires_at.
                    pipe.set(key, encode_prediction(record), pxat=math.ceil(expires_at * 1000))
                models[record.id] = record.model
                ids = by_model.get(record.model)
                if ids is None:
                    ids = by_model[record.model] = {}
                ids[record.id] = 0
            expiry[record.id] = expires_at
        pipe.zadd(k.predictions_expiry(), expiry)
        if models:
            pipe.hset(k.predictions_models(), mapping=models)
            for model, ids in by_model.items():
                pipe.zadd(k.predictions_of_model(model), ids)
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
        index, models_key = k.predictions_expiry(), k.predictions_models()
        client = self._conn.client
        total = 0
        while True:
            ids = client.zrangebyscore(index, "-inf", now, start=0, num=_PURGE_CHUNK)
            if not ids:
                return total
            models = client.hmget(models_key, ids)
            keys = [index, models_key]
            keys += [k.prediction(_decode(i)) for i in ids]
            keys += [index if m is None else k.predictions_of_model(_decode(m)) for m in models]
            read = [b"" if m is None else b"=" + m for m in models]
            total += self._conn.purge(keys=keys, args=[repr(float(now)), *ids, *read])
            if len(ids) < _PURGE_CHUNK:
                return total

    @_guarded("scan predictions", idempotent=True)
    def scan(
        self, model: str, after: str | None, limit: int = 1000, upto: str | None = None
    ) -> list[PredictionRecord]:
        found: list[PredictionRecord] = []
        if limit <= 0:
            return found
        k = self._conn.keys
        client = self._conn.client
        index = k.predictions_of_model(model)
        start: str | bytes = "-" if after is None else "(" + after
        stop = "+" if upto is None else "[" + upto
        count = min(limit, _SCAN_CHUNK)
        while True:
            ids = client.zrangebylex(index, start, stop, start=0, num=count)
            if not ids:
                return found
            pipe = client.pipeline(transaction=False)
            for rid in ids:
                pipe.get(k.prediction(_decode(rid)))
            texts = pipe.execute()
            now = time.time()
            gone = []
            for rid, text in zip(ids, texts, strict=True):
                if text is None:  # expired by Redis, or deleted by a put of an expired record
                    gone.append(rid)
                    continue
                record = decode_prediction(text)
                if record.model != model:  # put again under another model
                    gone.append(rid)
                elif record.expires_at > now:  # else expired by this clock, not yet by Redis's
                    found.append(record)
                    if len(found) == limit:
                        break
            if gone:
                self._conn.scan_forget(
                    keys=[index, k.predictions_models(), *(k.prediction(_decode(i)) for i in gone)],
                    args=[model, *gone],
                )
            if len(found) == limit or len(ids) < count:
                return found
            # Some ids were skipped: read on, in larger steps should many have expired.
            start = b"(" + ids[-1]
            count = min(max(limit - len(found), _SCAN_MIN_STEP), _SCAN_CHUNK)


# --- registry --------------------------------------------------------------------------------

_VERSION_NAME = re.compile(r"v([1-9][0-9]*)")
_HISTORY_FIELDS = ("role", "version", "previous", "actor", "reason", "at")  # and "seq"
# Artifacts are written in parts: redis-py sends each large argument with one sendall, which
# must finish within socket_timeout, so a part of 1 MiB needs only 0.5 MB/s at the default 2 s
# while a forest's tens of MB in one piece would time out on a modest link.
_PART_BYTES = 1 << 20


class RedisRegistry:
    def __init__(self, conn: _Connection):
        self._conn = conn

    @_guarded("create version")
    def create_version(
        self,
        model: str,
        spec: dict,
        meta: dict,
        at: float,
        key: str | None = None,
        *,
        spec_signature: str | None = None,
    ) -> VersionInfo:
        text = dumps(
            {"created_at": at, "spec": spec, "meta": meta, "spec_signature": spec_signature}
        )
        k = self._conn.keys
        found = self._conn.create_version(
            keys=[k.versions_last(model), k.versions(model), k.versions_keys(model)],
            args=[text, "0" if key is None else "1", key or ""],
        )
        number = int(found[0])
        return self._info(model, number, found[1] if len(found) > 1 else text)

    @staticmethod
    def _info(model: str, number: int, text: bytes | str) -> VersionInfo:
        data = loads(text)
        created_at = float(data["created_at"])
        return VersionInfo(
            model,
            f"v{number}",
            created_at,
            data["spec"],
            data["meta"],
            data.get("spec_signature"),  # absent in a version stored by an earlier onlearn
        )

    @_guarded("set spec signature", idempotent=True)
    def set_spec_signature(self, model: str, version: str, signature: str) -> VersionInfo | None:
        match = _VERSION_NAME.fullmatch(version)
        if match is None:
            return None
        number = int(match.group(1))
        key = self._conn.keys.versions(model)
        # WATCH, then MULTI/EXEC: the JSON is read, changed in Python and written back. Python,
        # not a script, because cjson would re-encode the spec's floats with 14 digits (the
        # spec would no longer be the one signed). The race this prevents: another write of
        # the versions hash between the read and the write (a concurrent set_spec_signature,
        # a restore) being overwritten by this call's stale copy; EXEC fails and we read again.
        with self._conn.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)
                    text = pipe.hget(key, str(number))
                    if text is None:
                        return None
                    data = loads(text)
                    data["spec_signature"] = signature
                    pipe.multi()
                    pipe.hset(key, str(number), dumps(data))
                    pipe.execute()
                    return self._info(model, number, dumps(data))
                except rx.WatchError:
                    continue

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

    @_guarded("roles state", idempotent=True)
    def roles_state(self, model: str) -> RolesState:
        k = self._conn.keys
        # MULTI: both reads run in one step, so they see one state (change_roles is a script).
        pipe = self._conn.client.pipeline(transaction=True)
        pipe.hgetall(k.roles(model))
        pipe.hmget(k.roles_state(model), ["canary_share", "seq"])
        roles, (share, seq) = pipe.execute()
        return RolesState(
            {_decode(role): _decode(version) for role, version in sorted(roles.items())},
            0.0 if share is None else float(share),
            0 if seq is None else int(seq),
        )

    @staticmethod
    def _number(model: str, version: str | None) -> int:
        """The number of a version name; LookupError for a name that is no version."""
        if version is None:
            return 0
        match = _VERSION_NAME.fullmatch(version)
        if match is None:
            raise LookupError(f"model {model!r} has no version {version!r}")
        return int(match.group(1))

    @_guarded("set role")
    def set_role(
        self, model: str, role: str, version: str | None, *, actor: str, reason: str, at: float
    ) -> None:
        number = self._number(model, version)
        entry = dumps(
            {
                "role": role,
                "version": version,
                "actor": actor,
                "reason": reason,
                "at": at,
                "seq": None,
            }
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

    @_guarded("change roles")
    def change_roles(
        self,
        model: str,
        changes: Mapping[str, str | None],
        event: Event,
        *,
        actor: str,
        reason: str,
        at: float,
        canary_share: float | None = None,
    ) -> int:
        check_canary_share(canary_share)
        changes = dict(changes)
        data = event_to_dict(event)
        key = data.pop("key")  # in its own stream field, as append stores it
        args: list[Any] = ["0" if key is None else "1", key or "", dumps(data)]
        args += ["0", ""] if canary_share is None else ["1", repr(float(canary_share))]
        args.append(len(changes))
        for role, version in changes.items():
            entry = dumps(
                {"role": role, "version": version, "actor": actor, "reason": reason, "at": at}
            )
            args += [
                role,
                "0" if version is None else "1",
                version or "",
                self._number(model, version),
                entry[:-1] + ',"seq":',
            ]
        k = self._conn.keys
        status, value = self._conn.change_roles(
            keys=[
                k.log_head(model),
                k.log(model),
                k.log_keys(model),
                k.versions(model),
                k.roles(model),
                k.role_history(model),
                k.roles_state(model),
            ],
            args=args,
        )
        if status == 2:
            raise LookupError(f"model {model!r} has no version {_decode(value)!r}")
        return int(value)

    @_guarded("role history", idempotent=True)
    def role_history(self, model: str) -> list[dict]:
        rows = self._conn.client.lrange(self._conn.keys.role_history(model), 0, -1)
        history = []
        for row in rows:
            data = loads(row)
            entry = {name: data[name] for name in _HISTORY_FIELDS}
            entry["at"] = float(entry["at"])
            entry["seq"] = data.get("seq")  # absent from entries written before seqs were kept
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

    @_guarded("prune snapshots", idempotent=True)
    def prune_snapshots(self, model: str, version: str, keep: int) -> int:
        k = self._conn.keys
        index = k.snapshots(model, version)
        # The oldest first; everything but the newest ``keep``. A concurrent put of a newer
        # snapshot only makes the kept ones newer: the index and the blobs go together (MULTI).
        old = (
            self._conn.client.zrange(index, 0, -max(keep, 0) - 1)
            if keep > 0
            else (self._conn.client.zrange(index, 0, -1))
        )
        if not old:
            return 0
        pipe = self._conn.client.pipeline(transaction=True)
        for member in old:
            pipe.delete(k.snapshot(model, version, int(member)))
        pipe.zrem(index, *old)
        pipe.execute()
        return len(old)

    @_guarded("put document", idempotent=True)
    def put_document(self, model: str, name: str, document: Mapping[str, Any]) -> None:
        self._conn.client.hset(self._conn.keys.documents(model), name, encode_document(document))

    @_guarded("get document", idempotent=True)
    def get_document(self, model: str, name: str) -> dict | None:
        text = self._conn.client.hget(self._conn.keys.documents(model), name)
        return None if text is None else decode_document(text)

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

    @_guarded("latest snapshot seq", idempotent=True)
    def latest_snapshot_seq(self, model: str, version: str) -> int:
        found = self._conn.client.zrevrange(self._conn.keys.snapshots(model, version), 0, 0)
        return int(found[0]) if found else 0


# --- labelling queue -------------------------------------------------------------------------
#
# Per model: a sorted set of the queued items in claim order, a sorted set of the claimed ones by
# lease expiry, a sorted set of the finished ones by finished_at, a dedupe hash, a counters hash
# and one hash per item (see redis_keys). Every call that changes more than one key, or changes
# what it has just read, is one script: Redis runs a script alone, so a claim's pick and lease,
# a push's dedupe check, eviction and insert, and a complete's verdict and write are each one
# step that no other replica's call can interleave with.
#
# The order. leases.rank is (-priority, enqueued_at, item_id), smallest first. The sorted set's
# score is -priority (a double, written by Python's repr so Redis parses the very same double);
# ties in score sort by member, bytewise, and the member is 16 hex digits of enqueued_at, encoded
# so that bytewise order is numeric order (the IEEE-754 bits, sign bit flipped for positives,
# every bit flipped for negatives), followed by the item id (UTF-8 bytewise order is Python's
# code point order). So ZRANGE 0 n-1 is the head of leases.rank and ZRANGE -1 -1 its tail.
# Scripts never compare members themselves (Lua's string comparison follows the server's
# locale): a full queue adds the new item and lets the sorted set say which one is last.
#
# Floats are never re-encoded by Lua (cjson writes 14 significant digits): an item's fields
# that never change are one JSON ``body`` written by Python, and every number a script stores
# (lease expiry, finished_at, scores) is a string Python computed.

# Shared by the queue and job scripts.
_QUOTE_LIB = """
-- Percent-encoding as redis_keys does it (urllib.parse.quote with no safe characters), so that
-- the key built here for an id read from a sorted set is the key Python names for that id.
-- Byte ranges, not %w: Lua's character classes follow the server's locale.
local function quote(s)
  return (string.gsub(s, '[^A-Za-z0-9_%.~%-]', function(c)
    return string.format('%%%02X', string.byte(c))
  end))
end
"""

_QUEUE_LIB = (
    _QUOTE_LIB
    + """
-- leases.claim_verdict, rule for rule: why complete/skip with this claim id is refused, or nil
-- to accept. has_claim is '0' when the caller gave no claim id.
local function claim_verdict(state, item_claim, has_claim, claim)
  if state == 'done' then
    return 'already_done'
  end
  if state == 'skipped' or state == 'evicted' then
    return 'gone'
  end
  if has_claim == '0' or claim == item_claim then
    return nil
  end
  return 'conflict'
end

-- Take an item out of the queued order or the leases, whichever holds it.
local function unqueue(queue, leases, id, state, member)
  if state == 'queued' then
    redis.call('ZREM', queue, member)
  elseif state == 'claimed' then
    redis.call('ZREM', leases, id)
  end
end

-- Claimed items whose lease ran out (lease_expires_at <= now) go back to the queue, keeping
-- their claim id (a late complete of that claim is accepted until someone claims the item).
local function release_expired(queue, leases, counters, prefix, now)
  local ids = redis.call('ZRANGEBYSCORE', leases, '-inf', now)
  for _, id in ipairs(ids) do
    local key = prefix .. quote(id)
    local rank = redis.call('HMGET', key, 'score', 'member')
    redis.call('HSET', key, 'state', 'queued')
    redis.call('HDEL', key, 'lease_expires_at')
    redis.call('ZADD', queue, rank[1], rank[2])
    redis.call('ZREM', leases, id)
  end
  if #ids > 0 then
    redis.call('HINCRBY', counters, 'expired', #ids)
  end
  return #ids
end
"""
)

# KEYS: item, queue, dedupe, counters, finished. ARGV: item key prefix, item id, "1" when the
# item has a dedupe key (else "0"), the dedupe key, max_size, score, member, enqueued_at, then
# the item's hash as field, value pairs. Returns {status, item id, evicted id}.
#
# Races prevented: two replicas pushing one feature vector both passing the dedupe check; two
# pushes into a full queue both evicting the same victim, or together growing it past the bound.
_QUEUE_PUSH = (
    _QUEUE_LIB
    + """
local item, queue, dedupe, counters, finished = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id, member = ARGV[2], ARGV[7]
-- Pushing an item id again is a duplicate too, so that a retried push is harmless.
if redis.call('EXISTS', item) == 1 then
  redis.call('HINCRBY', counters, 'duplicates', 1)
  return {'duplicate', id, ''}
end
if ARGV[3] == '1' then
  local existing = redis.call('HGET', dedupe, ARGV[4])
  if existing then
    redis.call('HINCRBY', counters, 'duplicates', 1)
    return {'duplicate', existing, ''}
  end
end
local evicted = ''
redis.call('ZADD', queue, ARGV[6], member)
if redis.call('ZCARD', queue) > tonumber(ARGV[5]) then
  -- It was full: the last in rank leaves. When that is the new item, it ranked no better
  -- than every queued one and is rejected.
  local last = redis.call('ZRANGE', queue, -1, -1)[1]
  redis.call('ZREM', queue, last)
  if last == member then
    redis.call('HINCRBY', counters, 'rejected', 1)
    return {'rejected', '', ''}
  end
  evicted = string.sub(last, 17)
  local victim = ARGV[1] .. quote(evicted)
  -- push has no clock: the new item's enqueued_at is when the victim left.
  redis.call('HSET', victim, 'state', 'evicted', 'finished_at', ARGV[8])
  redis.call('ZADD', finished, ARGV[8], evicted)
  local key = redis.call('HGET', victim, 'dedupe')
  if key and redis.call('HGET', dedupe, key) == evicted then
    redis.call('HDEL', dedupe, key)
  end
  redis.call('HINCRBY', counters, 'evicted', 1)
end
redis.call('HSET', item, unpack(ARGV, 9))
if ARGV[3] == '1' then
  redis.call('HSET', dedupe, ARGV[4], id)
end
redis.call('HINCRBY', counters, 'pushed', 1)
return {'queued', id, evicted}
"""
)

# KEYS: queue. ARGV: item key prefix, limit. Returns the items' hashes. A script only so that
# the order and the items are read at one moment (no item claimed in between shows up).
_QUEUE_PEEK = (
    _QUOTE_LIB
    + """
local items = {}
for i, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)) do
  items[i] = redis.call('HGETALL', ARGV[1] .. quote(string.sub(member, 17)))
end
return items
"""
)

# KEYS: queue, then one item key per item. ARGV: per item its new priority and score.
#
# Race prevented: an item claimed meanwhile getting a queued rank again (it would be offered
# twice); only items still queued move.
_QUEUE_REPRIORITIZE = """
for i = 2, #KEYS do
  local item = redis.call('HMGET', KEYS[i], 'state', 'member')
  if item[1] == 'queued' then
    redis.call('HSET', KEYS[i], 'priority', ARGV[2 * i - 3], 'score', ARGV[2 * i - 2])
    redis.call('ZADD', KEYS[1], ARGV[2 * i - 2], item[2])
  end
end
return 0
"""

# KEYS: queue, leases, counters. ARGV: item key prefix, now, lease_expires_at, "1" when there
# is a labeller (else "0"), the labeller, limit, the claim ids (16 hex digits each, one per item
# that may be claimed), "1" when item ids follow (else "0"), the item ids. Returns the claimed
# items' hashes, in claim order.
#
# Race prevented: two labellers claiming at once getting the same item. Releasing expired
# leases, picking the head of the order (or the chosen ids still queued) and leasing them is
# one step, so an item is leased to one claim.
_QUEUE_CLAIM = (
    _QUEUE_LIB
    + """
local queue, leases, counters, prefix = KEYS[1], KEYS[2], KEYS[3], ARGV[1]
release_expired(queue, leases, counters, prefix, ARGV[2])
local limit, claim_ids = tonumber(ARGV[6]), ARGV[7]
local claimed = {}
local function take(id, key, member)
  local n = #claimed + 1
  redis.call('ZREM', queue, member)
  redis.call('HINCRBY', key, 'attempts', 1)
  redis.call('HSET', key, 'state', 'claimed', 'lease_expires_at', ARGV[3],
             'claim_id', string.sub(claim_ids, 16 * n - 15, 16 * n))
  if ARGV[4] == '1' then
    redis.call('HSET', key, 'labeller', ARGV[5])
  else
    redis.call('HDEL', key, 'labeller')
  end
  redis.call('ZADD', leases, ARGV[3], id)
  claimed[n] = redis.call('HGETALL', key)
end
if ARGV[8] == '1' then
  for i = 9, #ARGV do
    if #claimed >= limit then
      break
    end
    local key = prefix .. quote(ARGV[i])
    local item = redis.call('HMGET', key, 'state', 'member')
    if item[1] == 'queued' then
      take(ARGV[i], key, item[2])
    end
  end
elseif limit > 0 then
  for _, member in ipairs(redis.call('ZRANGE', queue, 0, limit - 1)) do
    local id = string.sub(member, 17)
    take(id, prefix .. quote(id), member)
  end
end
return claimed
"""
)

# KEYS: item, queue, leases, finished, counters. ARGV: item id, "1" when a claim id is given
# (else "0"), the claim id, the result JSON, now. Returns {status, item hash}.
#
# Race prevented: a labeller whose lease ran out finishing an item another labeller claimed
# since (the verdict and the write are one step), and two labels of one item both counting.
_QUEUE_COMPLETE = (
    _QUEUE_LIB
    + """
local item = redis.call('HMGET', KEYS[1], 'state', 'claim_id', 'member')
if not item[1] then
  return {'unknown'}
end
local refused = claim_verdict(item[1], item[2], ARGV[2], ARGV[3])
if refused then
  return {refused, redis.call('HGETALL', KEYS[1])}
end
unqueue(KEYS[2], KEYS[3], ARGV[1], item[1], item[3])
redis.call('HSET', KEYS[1], 'state', 'done', 'result', ARGV[4], 'finished_at', ARGV[5])
redis.call('HDEL', KEYS[1], 'lease_expires_at')
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[1])
redis.call('HINCRBY', KEYS[5], 'labelled', 1)
return {'ok', redis.call('HGETALL', KEYS[1])}
"""
)

# KEYS: item, queue, leases, finished, counters. ARGV: item id, "1" when a claim id is given
# (else "0"), the claim id, now, max_skips. Returns {status, item hash}. The same step as
# complete, for the same reasons.
_QUEUE_SKIP = (
    _QUEUE_LIB
    + """
local item = redis.call('HMGET', KEYS[1], 'state', 'claim_id', 'member')
if not item[1] then
  return {'unknown'}
end
local refused = claim_verdict(item[1], item[2], ARGV[2], ARGV[3])
if refused then
  return {refused, redis.call('HGETALL', KEYS[1])}
end
unqueue(KEYS[2], KEYS[3], ARGV[1], item[1], item[3])
local skips = redis.call('HINCRBY', KEYS[1], 'skips', 1)
redis.call('HDEL', KEYS[1], 'lease_expires_at')
if skips >= tonumber(ARGV[5]) then
  redis.call('HSET', KEYS[1], 'state', 'skipped', 'finished_at', ARGV[4])
  redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])
else
  redis.call('HSET', KEYS[1], 'state', 'queued')
  redis.call('ZADD', KEYS[2], redis.call('HGET', KEYS[1], 'score'), item[3])
end
redis.call('HINCRBY', KEYS[5], 'skipped', 1)
return {'ok', redis.call('HGETALL', KEYS[1])}
"""
)

# KEYS: queue, leases, counters. ARGV: item key prefix, now. Returns how many were released.
# One step, so that an item's lease, state and place in the queue never disagree.
_QUEUE_RELEASE = (
    _QUEUE_LIB
    + """
return release_expired(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])
"""
)

# KEYS: finished, dedupe. ARGV: item key prefix, before, chunk size. Returns how many items
# were forgotten. An item goes with its dedupe entry (if it still names that item), so that a
# key is free again exactly when its item is gone.
_QUEUE_PURGE = (
    _QUOTE_LIB
    + """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2],
                       'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  local key = ARGV[1] .. quote(id)
  local dedupe_key = redis.call('HGET', key, 'dedupe')
  if dedupe_key and redis.call('HGET', KEYS[2], dedupe_key) == id then
    redis.call('HDEL', KEYS[2], dedupe_key)
  end
  redis.call('DEL', key)
  redis.call('ZREM', KEYS[1], id)
end
return #ids
"""
)

# Items claimed per script call: bounds the claim ids sent and the time Redis spends in one
# script; a larger limit is served by several calls, each atomic.
_CLAIM_CHUNK = 1000
_QUEUE_PURGE_CHUNK = 1000
# Ids read per round by scan (the records of a round are fetched in one pipeline), and the
# fewest read by a round after one whose ids had partly expired.
_SCAN_CHUNK = 1000
_SCAN_MIN_STEP = 100
# The fields of an item that never change, kept as one JSON text; the others are hash fields.
_ITEM_BODY = (
    "item_id",
    "model",
    "features",
    "prediction_id",
    "dedupe_key",
    "proba",
    "uncertainty",
    "reason",
    "enqueued_at",
)
_QUEUE_COUNTERS = ("labelled", "skipped", "expired", "evicted", "rejected", "duplicates", "pushed")


def _sortable(value: float) -> str:
    """16 hex digits whose bytewise order is the numeric order of the doubles.

    >>> values = [2.5, -1.5, 1e300, 0.0, -1e-300, 1e-300, -0.0]
    >>> sorted(values, key=_sortable) == sorted(values), _sortable(-0.0) == _sortable(0.0)
    (True, True)
    """
    (bits,) = struct.unpack(">Q", struct.pack(">d", float(value) + 0.0))  # + 0.0: no -0.0
    bits = bits ^ 0xFFFF_FFFF_FFFF_FFFF if bits >> 63 else bits | 1 << 63
    return f"{bits:016x}"


def _member(item: QueueItem) -> str:
    """The item's member in the queue's sorted set: its rank after the score (see above)."""
    return _sortable(item.enqueued_at) + item.item_id


def _float_text(value: float) -> str:
    """A float as the exact text Redis parses back to the same double (scores, stored fields)."""
    return repr(float(value))


def _hash(reply: Any) -> dict[str, bytes]:
    """A hash from HGETALL: redis-py's dict, or a script's flat list of fields and values."""
    if isinstance(reply, dict):
        return {_decode(k): v for k, v in reply.items()}
    return {_decode(reply[i]): reply[i + 1] for i in range(0, len(reply), 2)}


def _optional(fields: dict[str, bytes], name: str) -> str | None:
    value = fields.get(name)
    return None if value is None else value.decode("utf-8")


def _item_hash(item: QueueItem) -> dict[str, str]:
    data = queue_item_to_dict(item)
    fields = {
        "body": dumps({name: data[name] for name in _ITEM_BODY}),
        "state": item.state.value,
        "priority": _float_text(item.priority),
        "score": _float_text(-float(item.priority)),
        "member": _member(item),
        "attempts": str(int(item.attempts)),
        "skips": str(int(item.skips)),
    }
    if item.dedupe_key is not None:
        fields["dedupe"] = item.dedupe_key
    for name in ("labeller", "claim_id"):
        if data[name] is not None:
            fields[name] = data[name]
    for name in ("lease_expires_at", "finished_at"):
        if data[name] is not None:
            fields[name] = _float_text(data[name])
    if item.result is not None:
        fields["result"] = dumps(item.result)
    return fields


def _item_from_hash(reply: Any) -> QueueItem | None:
    fields = _hash(reply)
    if "body" not in fields:
        return None
    data = loads(fields["body"])
    result = fields.get("result")
    data.update(
        state=_optional(fields, "state"),
        priority=float(fields["priority"]),
        attempts=int(fields["attempts"]),
        skips=int(fields["skips"]),
        labeller=_optional(fields, "labeller"),
        claim_id=_optional(fields, "claim_id"),
        lease_expires_at=_optional(fields, "lease_expires_at"),
        finished_at=_optional(fields, "finished_at"),
        result=None if result is None else loads(result),
    )
    return queue_item_from_dict(data)


class RedisLabelQueue:
    """The labelling queue of every model; see the comment above for the layout and order."""

    def __init__(self, conn: _Connection):
        self._conn = conn

    def _item_keys(self, model: str, item_id: str) -> list[str]:
        """The keys of complete and skip: item, queue, leases, finished, counters."""
        k = self._conn.keys
        return [
            k.queue_item(model, item_id),
            k.queue(model),
            k.queue_leases(model),
            k.queue_finished(model),
            k.queue_counters(model),
        ]

    @_guarded("push to queue")
    def push(self, item: QueueItem, *, max_size: int) -> PushOutcome:
        check_pushable(item)
        k, model = self._conn.keys, item.model
        fields = _item_hash(item)
        args: list[Any] = [
            k.queue_item_prefix(model),
            item.item_id,
            "0" if item.dedupe_key is None else "1",
            item.dedupe_key or "",
            int(max_size),
            fields["score"],
            fields["member"],
            _float_text(item.enqueued_at),
        ]
        for pair in fields.items():
            args += pair
        status, item_id, evicted = self._conn.queue_push(
            keys=[
                k.queue_item(model, item.item_id),
                k.queue(model),
                k.queue_dedupe(model),
                k.queue_counters(model),
                k.queue_finished(model),
            ],
            args=args,
        )
        status = _decode(status)
        if status == "rejected":
            return PushOutcome("rejected")
        return PushOutcome(status, _decode(item_id), _decode(evicted) or None)

    @_guarded("peek queue", idempotent=True)
    def peek(self, model: str, limit: int) -> list[QueueItem]:
        if limit <= 0:
            return []
        k = self._conn.keys
        found = self._conn.queue_peek(
            keys=[k.queue(model)], args=[k.queue_item_prefix(model), limit]
        )
        return [item for item in map(_item_from_hash, found) if item is not None]

    @_guarded("reprioritize queue", idempotent=True)
    def reprioritize(self, model: str, priorities: dict[str, float]) -> None:
        for priority in priorities.values():
            check_priority(priority)
        if not priorities:
            return
        k = self._conn.keys
        keys, args = [k.queue(model)], []
        for item_id, priority in priorities.items():
            keys.append(k.queue_item(model, item_id))
            args += [_float_text(priority), _float_text(-float(priority))]
        self._conn.queue_reprioritize(keys=keys, args=args)

    @_guarded("claim from queue")
    def claim(
        self,
        model: str,
        *,
        limit: int,
        lease_s: float,
        labeller: str | None,
        now: float,
        item_ids: Sequence[str] | None = None,
    ) -> list[QueueItem]:
        k = self._conn.keys
        keys = [k.queue(model), k.queue_leases(model), k.queue_counters(model)]
        chosen = [] if item_ids is None else list(dict.fromkeys(item_ids))
        base = [
            k.queue_item_prefix(model),
            _float_text(now),
            _float_text(now + lease_s),
            "0" if labeller is None else "1",
            labeller or "",
        ]
        claimed: list[QueueItem] = []
        while True:
            # At least one call, even for limit 0: a claim releases expired leases first.
            want = max(0, min(limit - len(claimed), _CLAIM_CHUNK))
            if item_ids is not None:
                want = min(want, len(chosen))
            claim_ids = "".join(new_claim_id() for _ in range(want))
            mode = ["0"] if item_ids is None else ["1", *chosen]
            found = self._conn.queue_claim(keys=keys, args=[*base, want, claim_ids, *mode])
            claimed += [item for item in map(_item_from_hash, found) if item is not None]
            if len(found) < want or want == 0 or len(claimed) >= limit:
                return claimed

    def _finish(self, script: Any, model: str, item_id: str, args: list[Any]) -> ClaimOutcome:
        reply = script(keys=self._item_keys(model, item_id), args=[item_id, *args])
        status = _decode(reply[0])
        if status == "unknown":
            return ClaimOutcome("unknown")
        return ClaimOutcome(status, _item_from_hash(reply[1]))

    @_guarded("complete queue item")
    def complete(
        self, model: str, item_id: str, claim_id: str | None, result: dict, now: float
    ) -> ClaimOutcome:
        args = ["0" if claim_id is None else "1", claim_id or "", dumps(result), _float_text(now)]
        return self._finish(self._conn.queue_complete, model, item_id, args)

    @_guarded("skip queue item")
    def skip(
        self, model: str, item_id: str, claim_id: str | None, now: float, *, max_skips: int
    ) -> ClaimOutcome:
        args = ["0" if claim_id is None else "1", claim_id or "", _float_text(now), max_skips]
        return self._finish(self._conn.queue_skip, model, item_id, args)

    @_guarded("release expired leases", idempotent=True)
    def release_expired(self, model: str, now: float) -> int:
        k = self._conn.keys
        return self._conn.queue_release(
            keys=[k.queue(model), k.queue_leases(model), k.queue_counters(model)],
            args=[k.queue_item_prefix(model), _float_text(now)],
        )

    @_guarded("get queue item", idempotent=True)
    def get(self, model: str, item_id: str) -> QueueItem | None:
        return _item_from_hash(
            self._conn.client.hgetall(self._conn.keys.queue_item(model, item_id))
        )

    @_guarded("queue stats", idempotent=True)
    def stats(self, model: str) -> QueueStats:
        k = self._conn.keys
        # MULTI: the depth, the leases and the counters of one moment.
        pipe = self._conn.client.pipeline(transaction=True)
        pipe.zcard(k.queue(model))
        pipe.zcard(k.queue_leases(model))
        pipe.hmget(k.queue_counters(model), list(_QUEUE_COUNTERS))
        depth, claimed, counters = pipe.execute()
        return QueueStats(
            depth=depth,
            claimed=claimed,
            **{
                name: int(value or 0) for name, value in zip(_QUEUE_COUNTERS, counters, strict=True)
            },
        )

    @_guarded("purge queue", idempotent=True)
    def purge_finished(self, model: str, before: float) -> int:
        k = self._conn.keys
        keys = [k.queue_finished(model), k.queue_dedupe(model)]
        args = [k.queue_item_prefix(model), _float_text(before), _QUEUE_PURGE_CHUNK]
        total = 0
        while True:
            purged = self._conn.queue_purge(keys=keys, args=args)
            total += purged
            if purged < _QUEUE_PURGE_CHUNK:
                return total


# --- job queue -------------------------------------------------------------------------------
#
# Sorted sets and hashes with Lua scripts, not a stream with a consumer group. The contract
# decides: claim takes the oldest runnable job by (created_at, job_id) - a stream delivers in
# arrival order and cannot hold back a failed job until its run_after; leases run on the
# caller's clock (``now``, as in the other backends and the contract checks), while a consumer
# group's pending entries are reclaimed by Redis's idle time; ``kinds`` would need a stream per
# kind; and get, list, the idempotency key and "who holds the job" need a hash per job anyway.
#
# Layout (redis_keys): one hash per job (``body``: the JSON of the fields that never change;
# the others one field each), ``active``: the queued and running job ids by created_at, which
# claim scans in order (ties: equal scores sort by member bytewise, which is job_id order), and
# ``all`` / ``model:<m>`` by created_at for list. A worker's queue is short (jobs are refits and
# snapshots), so scanning the active jobs is cheap, as in the other backends.

# KEYS: job, key index, active, all, the model's index. ARGV: job key prefix, job id, "1" when
# the job has a key (else "0"), the key, created_at, then the job's hash as field, value pairs.
# Returns the hash of the job found under that id or key, or nil when the job was stored.
#
# Race prevented: two workers enqueueing one idempotency key both storing a job.
_JOB_ENQUEUE = (
    _QUOTE_LIB
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HGETALL', KEYS[1])
end
if ARGV[3] == '1' then
  local other = redis.call('HGET', KEYS[2], ARGV[4])
  if other then
    return redis.call('HGETALL', ARGV[1] .. quote(other))
  end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[2], ARGV[4], ARGV[2])
end
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[2])
redis.call('ZADD', KEYS[5], ARGV[5], ARGV[2])
return false
"""
)

# KEYS: active. ARGV: job key prefix, worker, now, lease_expires_at, "1" when kinds follow
# (else "0"), the kinds. Returns {the claimed job's hash or an empty list, the hashes of the
# jobs skipped because their worker died on their last allowed attempt}.
#
# Race prevented: two workers leasing the same job (the pick and the lease are one step). The
# poisoned jobs are left as they are: the caller marks them failed with leases.reclaim_error
# through _JOB_FAIL_POISONED, which checks that nothing changed in between.
_JOB_CLAIM = (
    _QUOTE_LIB
    + """
local now = tonumber(ARGV[3])
local kinds = false
if ARGV[5] == '1' then
  kinds = {}
  for i = 6, #ARGV do
    kinds[ARGV[i]] = true
  end
end
local poisoned = {}
local start = 0
while true do
  local ids = redis.call('ZRANGE', KEYS[1], start, start + 99)
  for _, id in ipairs(ids) do
    local key = ARGV[1] .. quote(id)
    local job = redis.call('HMGET', key, 'state', 'run_after', 'lease_expires_at', 'attempts',
                           'max_attempts', 'kind')
    if not kinds or kinds[job[6]] then
      local runnable = job[1] == 'queued' and tonumber(job[2]) <= now
      if job[1] == 'running' and job[3] and tonumber(job[3]) <= now then
        if tonumber(job[4]) >= tonumber(job[5]) then
          poisoned[#poisoned + 1] = redis.call('HGETALL', key)
        else
          runnable = true
        end
      end
      if runnable then
        redis.call('HINCRBY', key, 'attempts', 1)
        redis.call('HSET', key, 'state', 'running', 'worker', ARGV[2],
                   'lease_expires_at', ARGV[4], 'updated_at', ARGV[3])
        return {redis.call('HGETALL', key), poisoned}
      end
    end
  end
  if #ids < 100 then
    return {{}, poisoned}
  end
  start = start + 100
end
"""
)

# KEYS: job, active. ARGV: job id, attempts and lease_expires_at as the claim script saw them,
# the error, now. Returns 1 when the job was marked failed, 0 when it changed meanwhile.
_JOB_FAIL_POISONED = """
local job = redis.call('HMGET', KEYS[1], 'state', 'attempts', 'lease_expires_at')
if job[1] ~= 'running' or job[2] ~= ARGV[2] or job[3] ~= ARGV[3] then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'failed', 'error', ARGV[4], 'updated_at', ARGV[5])
redis.call('HDEL', KEYS[1], 'lease_expires_at')
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS: job. ARGV: worker, lease_expires_at, now. Returns 1 when extended, 0 when the worker
# does not hold the job. One step: a lease is never extended for a worker that lost it.
_JOB_HEARTBEAT = """
local job = redis.call('HMGET', KEYS[1], 'state', 'worker')
if job[1] ~= 'running' or job[2] ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'lease_expires_at', ARGV[2], 'updated_at', ARGV[3])
return 1
"""

# KEYS: job, active. ARGV: job id, worker, result JSON, now. Returns the job's hash, or nil
# when the worker does not hold it. Race prevented: a worker whose lease ran out finishing a job
# that another worker reclaimed, and a job finished twice (a done job is returned unchanged).
_JOB_COMPLETE = """
local job = redis.call('HMGET', KEYS[1], 'state', 'worker')
if job[1] == 'done' then
  return redis.call('HGETALL', KEYS[1])
end
if job[1] ~= 'running' or job[2] ~= ARGV[2] then
  return false
end
redis.call('HSET', KEYS[1], 'state', 'done', 'result', ARGV[3], 'updated_at', ARGV[4])
redis.call('HDEL', KEYS[1], 'lease_expires_at')
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HGETALL', KEYS[1])
"""

# KEYS: job, active. ARGV: job id, worker, error, now, run_after ("" when the error cannot go
# away: FAILED at once). Returns the job's hash, or nil when the worker does not hold it. The
# same step as complete, for the same reasons.
_JOB_FAIL = """
local job = redis.call('HMGET', KEYS[1], 'state', 'worker', 'attempts', 'max_attempts')
if job[1] ~= 'running' or job[2] ~= ARGV[2] then
  return false
end
if ARGV[5] == '' or tonumber(job[3]) >= tonumber(job[4]) then
  redis.call('HSET', KEYS[1], 'state', 'failed')
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('HSET', KEYS[1], 'state', 'queued', 'run_after', ARGV[5])
end
redis.call('HSET', KEYS[1], 'error', ARGV[3], 'updated_at', ARGV[4])
redis.call('HDEL', KEYS[1], 'lease_expires_at')
return redis.call('HGETALL', KEYS[1])
"""

# KEYS: job, active. ARGV: job id, reason, now. Returns the job's hash (cancelled, or unchanged
# when it cannot be cancelled), or nil for an unknown job. A ``committed`` field other than
# '1' (absent in jobs of an earlier onlearn) is not committed: leases.cancellable, rule for rule.
#
# Race prevented: a worker's commit (or claim, complete, fail, release) landing between reading
# the job's state and ``committed`` and writing 'cancelled': the job would end cancelled while
# its worker writes a version, or be leased again after it was cancelled. In one script, and
# with commit a script too, every job ends cancelled or committed, never both. Leaving the
# active set here is what keeps a cancelled job from ever being claimed again.
_JOB_CANCEL = """
local job = redis.call('HMGET', KEYS[1], 'state', 'committed')
if not job[1] then
  return false
end
if job[1] == 'queued' or (job[1] == 'running' and job[2] ~= '1') then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'error', ARGV[2], 'updated_at', ARGV[3])
  redis.call('HDEL', KEYS[1], 'lease_expires_at')
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return redis.call('HGETALL', KEYS[1])
"""

# KEYS: job. ARGV: worker, now. Returns the job's hash, or nil when the worker does not hold it
# (cancelled, reclaimed by another worker, finished). The other half of cancel's race: the check
# that the worker still holds the (uncancelled) job and the flag that stops cancel are one step.
# Committing again writes nothing.
_JOB_COMMIT = """
local job = redis.call('HMGET', KEYS[1], 'state', 'worker', 'committed')
if job[1] ~= 'running' or job[2] ~= ARGV[1] then
  return false
end
if job[3] ~= '1' then
  redis.call('HSET', KEYS[1], 'committed', '1', 'updated_at', ARGV[2])
end
return redis.call('HGETALL', KEYS[1])
"""

# KEYS: job. ARGV: worker, now. Returns the job's hash, or nil when the worker does not hold it.
# The job stays in the active set (queued and running jobs both are). Race prevented: a worker
# whose lease ran out and whose job another worker reclaimed giving that job back (the check
# and the write are one step), and a release undoing a cancel that landed just before it.
_JOB_RELEASE = """
local job = redis.call('HMGET', KEYS[1], 'state', 'worker', 'attempts')
if job[1] ~= 'running' or job[2] ~= ARGV[1] then
  return false
end
local attempts = math.max(tonumber(job[3]) - 1, 0)
redis.call('HSET', KEYS[1], 'state', 'queued', 'run_after', ARGV[2],
           'attempts', string.format('%d', attempts), 'updated_at', ARGV[2])
redis.call('HDEL', KEYS[1], 'lease_expires_at', 'worker')
return redis.call('HGETALL', KEYS[1])
"""

_JOB_BODY = ("job_id", "kind", "model", "params", "created_at", "key", "max_attempts")


def _job_hash(job: Job) -> dict[str, str]:
    data = job_to_dict(job)
    fields = {
        "body": dumps({name: data[name] for name in _JOB_BODY}),
        "kind": job.kind,
        "max_attempts": str(int(job.max_attempts)),
        "state": job.state.value,
        "attempts": str(int(job.attempts)),
        "run_after": _float_text(job.run_after),
        # '1' or '0'; absent in a job stored by an earlier onlearn, which reads as '0'.
        "committed": "1" if job.committed else "0",
    }
    for name in ("worker", "error"):
        if data[name] is not None:
            fields[name] = data[name]
    for name in ("lease_expires_at", "updated_at"):
        if data[name] is not None:
            fields[name] = _float_text(data[name])
    if job.result is not None:
        fields["result"] = dumps(job.result)
    return fields


def _job_from_hash(reply: Any) -> Job | None:
    fields = _hash(reply)
    if "body" not in fields:
        return None
    data = loads(fields["body"])
    result = fields.get("result")
    data.update(
        state=_optional(fields, "state"),
        attempts=int(fields["attempts"]),
        run_after=float(fields["run_after"]),
        worker=_optional(fields, "worker"),
        lease_expires_at=_optional(fields, "lease_expires_at"),
        updated_at=_optional(fields, "updated_at"),
        result=None if result is None else loads(result),
        error=_optional(fields, "error"),
        committed=fields.get("committed") == b"1",
    )
    return job_from_dict(data)


class RedisJobQueue:
    """Jobs of every model; see the comment above for why not a stream."""

    def __init__(self, conn: _Connection):
        self._conn = conn

    @_guarded("enqueue job", idempotent=True)
    def enqueue(self, job: Job) -> Job:
        check_job(job)
        k = self._conn.keys
        fields = _job_hash(job)
        args: list[Any] = [
            k.job_prefix(),
            job.job_id,
            "0" if job.key is None else "1",
            job.key or "",
            _float_text(job.created_at),
        ]
        for pair in fields.items():
            args += pair
        found = self._conn.job_enqueue(
            keys=[
                k.job(job.job_id),
                k.job_keys(),
                k.jobs_active(),
                k.jobs_all(),
                k.jobs_of_model(job.model),
            ],
            args=args,
        )
        existing = None if found is None else _job_from_hash(found)
        return job if existing is None else existing

    @_guarded("claim job")
    def claim(
        self, worker: str, *, lease_s: float, now: float, kinds: Sequence[str] | None = None
    ) -> Job | None:
        if kinds is not None and not kinds:
            return None
        k = self._conn.keys
        kind_args = ["0"] if kinds is None else ["1", *kinds]
        found, poisoned = self._conn.job_claim(
            keys=[k.jobs_active()],
            args=[k.job_prefix(), worker, _float_text(now), _float_text(now + lease_s), *kind_args],
        )
        for reply in poisoned:
            # Its worker died on the last allowed attempt: a job that kills its worker must not
            # be handed out forever.
            fields = _hash(reply)
            dead = _job_from_hash(reply)
            assert dead is not None
            self._conn.job_fail_poisoned(
                keys=[k.job(dead.job_id), k.jobs_active()],
                args=[
                    dead.job_id,
                    fields["attempts"],
                    fields["lease_expires_at"],
                    reclaim_error(dead),
                    _float_text(now),
                ],
            )
        return _job_from_hash(found) if found else None

    @_guarded("heartbeat job", idempotent=True)
    def heartbeat(self, job_id: str, worker: str, *, lease_s: float, now: float) -> bool:
        held = self._conn.job_heartbeat(
            keys=[self._conn.keys.job(job_id)],
            args=[worker, _float_text(now + lease_s), _float_text(now)],
        )
        return bool(held)

    @_guarded("complete job")
    def complete(self, job_id: str, worker: str, result: dict, now: float) -> Job | None:
        k = self._conn.keys
        found = self._conn.job_complete(
            keys=[k.job(job_id), k.jobs_active()],
            args=[job_id, worker, dumps(result), _float_text(now)],
        )
        return None if found is None else _job_from_hash(found)

    @_guarded("fail job")
    def fail(
        self, job_id: str, worker: str, error: str, now: float, *, retry_in: float | None
    ) -> Job | None:
        k = self._conn.keys
        run_after = "" if retry_in is None else _float_text(now + retry_in)
        found = self._conn.job_fail(
            keys=[k.job(job_id), k.jobs_active()],
            args=[job_id, worker, error, _float_text(now), run_after],
        )
        return None if found is None else _job_from_hash(found)

    # Cancelling or committing twice has the effect of once, so both are retried after a
    # dropped connection; a release is not (its reply says whether this call gave the job back).

    @_guarded("cancel job", idempotent=True)
    def cancel(self, job_id: str, now: float, *, reason: str) -> Job | None:
        k = self._conn.keys
        found = self._conn.job_cancel(
            keys=[k.job(job_id), k.jobs_active()], args=[job_id, reason, _float_text(now)]
        )
        return None if found is None else _job_from_hash(found)

    @_guarded("commit job", idempotent=True)
    def commit(self, job_id: str, worker: str, now: float) -> Job | None:
        found = self._conn.job_commit(
            keys=[self._conn.keys.job(job_id)], args=[worker, _float_text(now)]
        )
        return None if found is None else _job_from_hash(found)

    @_guarded("release job")
    def release(self, job_id: str, worker: str, now: float) -> Job | None:
        found = self._conn.job_release(
            keys=[self._conn.keys.job(job_id)], args=[worker, _float_text(now)]
        )
        return None if found is None else _job_from_hash(found)

    @_guarded("get job", idempotent=True)
    def get(self, job_id: str) -> Job | None:
        return _job_from_hash(self._conn.client.hgetall(self._conn.keys.job(job_id)))

    @_guarded("list jobs", idempotent=True)
    def list(self, model: str | None = None, limit: int = 100) -> list[Job]:
        if limit <= 0:
            return []
        k = self._conn.keys
        index = k.jobs_all() if model is None else k.jobs_of_model(model)
        ids = self._conn.client.zrevrange(index, 0, limit - 1)
        pipe = self._conn.client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(k.job(_decode(job_id)))
        jobs = (_job_from_hash(reply) for reply in pipe.execute())
        return [job for job in jobs if job is not None]


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
        queue=RedisLabelQueue(conn),
        jobs=RedisJobQueue(conn),
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
