"""The secret that signs model artifacts (HMAC), from config, environment or a key file."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from onlearn.errors import ConfigError
from onlearn.store import capabilities_of

log = logging.getLogger(__name__)


def resolve_secret(secret_key: str | None, store_url: str) -> bytes:
    """The signing key: the configured one, else one kept in a file next to the SQLite database.

    The embedded store gets a key file (mode 0600) so that ``make run`` works with no setup and
    every process on the same database shares the key; a memory store lives and dies with its
    process, so a random key is enough; a shared network store needs an explicit key.
    """
    if secret_key:
        return secret_key.encode()
    store = capabilities_of(store_url)
    if not store.shared:
        return secrets.token_bytes(32)
    if store.local_file:
        path = Path(sqlite_path(store_url) + ".key")
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
            log.warning("no secret key configured: generated %s to sign model artifacts", path)
        return path.read_text().strip().encode()
    raise ConfigError(
        "set a secret key to sign model artifacts: ONLEARN_SECRET_KEY or [security] secret_key"
    )


def sqlite_path(url: str) -> str:
    """``sqlite:///rel.db`` -> ``rel.db``; ``sqlite:////abs.db`` -> ``/abs.db``; query dropped."""
    return url.removeprefix("sqlite://").removeprefix("/").split("?", 1)[0]
