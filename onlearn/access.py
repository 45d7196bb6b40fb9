"""API keys and roles: who may call what.

A key is a random secret given to one client. The server never holds the key itself, only its
SHA-256 digest: a config file, a memory dump or a log line never reveals a usable key. A key has
roles:

- ``predict``: predict and give feedback (an application);
- ``label``: claim, label and skip queued items, give feedback (a person labelling);
- ``admin``: everything, including promote, rollback, retrain and jobs (an operator).

Keys come from the config (``[security] api_keys``, hashed) and from ``$ONLEARN_API_KEYS``
(plain keys, as deployment secrets usually arrive)::

    ONLEARN_API_KEYS="app:predict:KEY1,labeller:label:KEY2,ops:admin:KEY3,both:predict+label:KEY4"

>>> ring = Keyring(parse_env_keys("app:predict:s3cret"))
>>> ring.find("s3cret").name, ring.find("guess")
('app', None)
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from onlearn.errors import ConfigError

KEY_PREFIX = "onl_"  # makes a leaked key easy to spot (secret scanners, logs)
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_HEX = re.compile(r"^[0-9a-f]{64}$")


class Role(str, enum.Enum):
    PREDICT = "predict"
    LABEL = "label"
    ADMIN = "admin"


ROLES = ", ".join(r.value for r in Role)


@dataclass(frozen=True)
class ApiKey:
    """A client's key as the server holds it: a name (for logs and the audit trail), the
    SHA-256 digest of the key, and its roles."""

    name: str
    digest: bytes
    roles: frozenset[Role]

    def allows(self, needed: frozenset[Role]) -> bool:
        return Role.ADMIN in self.roles or not self.roles.isdisjoint(needed)

    def __repr__(self) -> str:  # never print a digest: it is as good as the key for a lookup
        return f"ApiKey({self.name!r}, roles={sorted(r.value for r in self.roles)})"


def hash_key(key: str) -> str:
    """The hex SHA-256 of a key, as written in the config (``key_sha256``).

    A plain hash, not a slow password hash: keys are 256-bit random tokens, not words a person
    chose, so there is no dictionary to guess from, and the check runs on every request.

    >>> hash_key("s3cret")[:16]
    '1ec1c26b50d5d3c5'
    """
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh random key (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def parse_roles(value: Any, where: str) -> frozenset[Role]:
    """Roles from a list (config) or a ``+``/``,``-separated string (environment, CLI)."""
    items = re.split(r"[+,]", value) if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise ConfigError(f"{where}: roles must be a non-empty list of {ROLES}")
    roles = set()
    for item in items:
        try:
            roles.add(Role(str(item).strip()))
        except ValueError:
            raise ConfigError(f"{where}: unknown role {item!r}; roles are {ROLES}") from None
    return frozenset(roles)


def check_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ConfigError(
            f"{where}: a key needs a name of 1-64 letters, digits or _ . @ - (got {value!r})"
        )
    return value


def keys_from_config(entries: Any, where: str = "[security] api_keys") -> tuple[ApiKey, ...]:
    """``api_keys = [{ name = "app", key_sha256 = "<hex>", roles = ["predict"] }, ...]``."""
    if not isinstance(entries, list):
        raise ConfigError(f"{where} must be a list of {{ name, key_sha256, roles }} tables")
    keys = []
    for i, entry in enumerate(entries):
        at = f"{where}[{i}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{at} must be a table {{ name, key_sha256, roles }}")
        if "key" in entry:
            raise ConfigError(
                f"{at}: a plain key does not belong in a config file; write its hash as "
                "key_sha256 (`onlearn keys new` prints both) or pass the key in $ONLEARN_API_KEYS"
            )
        unknown = sorted(set(entry) - {"name", "key_sha256", "roles"})
        if unknown:
            raise ConfigError(f"{at}: unknown entries {', '.join(unknown)}")
        name = check_name(entry.get("name"), at)
        digest = entry.get("key_sha256")
        if not isinstance(digest, str) or not _HEX.match(digest.lower()):
            raise ConfigError(
                f"{at} ({name}): key_sha256 must be the 64 hex digits of the key's SHA-256 "
                "(`onlearn keys new` prints it)"
            )
        roles = parse_roles(entry.get("roles"), f"{at} ({name})")
        keys.append(ApiKey(name, bytes.fromhex(digest), roles))
    return unique(keys, where)


def parse_env_keys(value: str, where: str = "ONLEARN_API_KEYS") -> tuple[ApiKey, ...]:
    """``name:role+role:key`` entries separated by commas (keys from ``onlearn keys new`` hold
    neither ``,`` nor ``:``; a key may hold ``:`` anyway, as everything after the second one is
    the key)."""
    keys = []
    for i, entry in enumerate(e.strip() for e in value.split(",")):
        if not entry:
            continue
        parts = entry.split(":", 2)
        if len(parts) != 3 or not parts[2]:
            raise ConfigError(
                f"{where}: entry {i + 1} is not name:roles:key "
                "(e.g. app:predict:KEY,ops:admin:KEY2; roles joined with +)"
            )
        name = check_name(parts[0], f"{where} entry {i + 1}")
        roles = parse_roles(parts[1], f"{where} ({name})")
        keys.append(ApiKey(name, hashlib.sha256(parts[2].encode()).digest(), roles))
    return unique(keys, where)


def unique(keys: Iterable[ApiKey], where: str) -> tuple[ApiKey, ...]:
    """Refuse two keys with one name (the audit trail would not tell them apart) or one key
    given twice (its roles would depend on which entry a lookup meets first)."""
    keys = tuple(keys)
    names: set[str] = set()
    digests: set[bytes] = set()
    for key in keys:
        if key.name in names:
            raise ConfigError(f"{where}: two keys are named {key.name!r}; names must be unique")
        if key.digest in digests:
            raise ConfigError(f"{where}: key {key.name!r} is the same key as another entry")
        names.add(key.name)
        digests.add(key.digest)
    return keys


class Keyring:
    """The keys a server accepts. Empty means access control is off."""

    def __init__(self, keys: Iterable[ApiKey] = ()) -> None:
        self.keys = unique(keys, "API keys")

    def __bool__(self) -> bool:
        return bool(self.keys)

    def __len__(self) -> int:
        return len(self.keys)

    def replace(self, keys: Iterable[ApiKey]) -> None:
        """Accept ``keys`` from now on, in place of the current ones (a reload). Refused when
        they are none: a reload never turns access control off, a broken edit must not open
        the server."""
        keys = unique(keys, "API keys")
        if not keys:
            raise ConfigError("the new configuration has no API keys; keeping the current ones")
        self.keys = keys  # one assignment: a request sees the old keys or the new, never a mix

    def find(self, key: str | bytes) -> ApiKey | None:
        """The entry of ``key``, or None. Compares the digest with every entry, each in constant
        time, and never stops early: the time taken says nothing about which digest is close."""
        raw = key.encode() if isinstance(key, str) else key
        digest = hashlib.sha256(raw).digest()
        found = None
        for entry in self.keys:
            if hmac.compare_digest(entry.digest, digest):
                found = entry
        return found


def toml_entry(name: str, key: str, roles: Iterable[Role | str]) -> str:
    """The config line for a key: what ``onlearn keys new`` prints.

    >>> toml_entry("app", "s3cret", ["predict"])[:44]
    '{ name = "app", key_sha256 = "1ec1c26b50d5d3'
    """
    listed = ", ".join(f'"{Role(r).value}"' for r in roles)
    return f'{{ name = "{name}", key_sha256 = "{hash_key(key)}", roles = [{listed}] }}'
