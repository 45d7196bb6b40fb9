"""Signed model artifacts: a pickle behind an HMAC-SHA256 signature.

Why pickles at all: river models are plain Python objects with no other serialisation format, and
a snapshot must carry all of their state, random generators included, so that loading it and
replaying the tail of the log gives the same model as replaying the whole log (design section 3).
Unpickling runs arbitrary code, so (design section 9) artifacts are written by the engine alone,
signed with a secret from the config, and refused unless the signature matches; no endpoint
accepts a pickle from a client.

Layout of an artifact::

    b"onlearn-artifact" | version (1 byte) | HMAC-SHA256 (32 bytes) | pickle (protocol 5)

The HMAC covers the tag and version as well as the pickle, so none of them can be swapped.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import pickle
from collections.abc import Mapping
from typing import Any

from onlearn.errors import ArtifactRejected, ConfigError

__all__ = [
    "FORMAT_TAG",
    "FORMAT_VERSION",
    "check_spec_signature",
    "dump_signed",
    "load_signed",
    "sign_spec",
]

FORMAT_TAG = b"onlearn-artifact"
FORMAT_VERSION = 1
_DIGEST_SIZE = hashlib.sha256().digest_size
_PREFIX = FORMAT_TAG + bytes([FORMAT_VERSION])
_HEADER_SIZE = len(_PREFIX) + _DIGEST_SIZE
_PICKLE_PROTOCOL = 5


def _check_secret(secret: bytes) -> None:
    if not isinstance(secret, bytes | bytearray):
        raise TypeError(f"the artifact secret must be bytes, got {type(secret).__name__}")
    if not secret:
        raise ConfigError("the artifact secret is empty; set a secret to sign model artifacts")


def _sign(secret: bytes, payload: bytes | memoryview) -> bytes:
    mac = hmac.new(secret, _PREFIX, hashlib.sha256)
    mac.update(payload)
    return mac.digest()


def dump_signed(obj: Any, secret: bytes) -> bytes:
    """Pickle ``obj`` and sign it with ``secret``.

    >>> blob = dump_signed({"weights": [1.0, 2.0]}, b"secret")
    >>> load_signed(blob, b"secret")
    {'weights': [1.0, 2.0]}
    """
    _check_secret(secret)
    payload = pickle.dumps(obj, protocol=_PICKLE_PROTOCOL)
    return _PREFIX + _sign(secret, payload) + payload


def load_signed(blob: bytes, secret: bytes) -> Any:
    """The object in an artifact made by :func:`dump_signed` with the same ``secret``.

    Raises ``ArtifactRejected``, and unpickles nothing, unless the artifact is well formed and
    its signature matches.

    >>> load_signed(dump_signed(1, b"secret"), b"another secret")
    Traceback (most recent call last):
    ...
    onlearn.errors.ArtifactRejected: artifact signature does not match: it was altered, or signed with another secret; not loaded
    """
    _check_secret(secret)
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise TypeError(f"an artifact is bytes, got {type(blob).__name__}")
    view = memoryview(blob)
    if len(view) == 0:
        raise ArtifactRejected("artifact is empty; not loaded")
    if view[:1] == b"\x80":  # the PROTO opcode every pickle since protocol 2 starts with
        raise ArtifactRejected("artifact is an unsigned pickle, it has no signature; not loaded")
    if view[: len(FORMAT_TAG)] != FORMAT_TAG:
        if len(view) < len(FORMAT_TAG) and FORMAT_TAG.startswith(bytes(view)):
            raise ArtifactRejected(f"artifact is truncated ({len(view)} bytes); not loaded")
        raise ArtifactRejected("not an onlearn artifact (unknown format tag); not loaded")
    if len(view) == len(FORMAT_TAG):
        raise ArtifactRejected("artifact is truncated after its format tag; not loaded")
    version = view[len(FORMAT_TAG)]
    if version != FORMAT_VERSION:
        raise ArtifactRejected(
            f"artifact format version {version} is not supported (this onlearn reads version "
            f"{FORMAT_VERSION}); not loaded"
        )
    if len(view) < _HEADER_SIZE:
        raise ArtifactRejected("artifact signature is missing or truncated; not loaded")
    if len(view) == _HEADER_SIZE:
        raise ArtifactRejected("artifact has a signature but no content; not loaded")
    signature = bytes(view[len(_PREFIX) : _HEADER_SIZE])
    payload = view[_HEADER_SIZE:]
    if not hmac.compare_digest(signature, _sign(secret, payload)):
        raise ArtifactRejected(
            "artifact signature does not match: it was altered, or signed with another secret; "
            "not loaded"
        )
    return pickle.loads(payload)


# ---------------------------------------------------------------------------------------------
# version specs

_SPEC_TAG = b"onlearn-spec-v1\0"


def _canonical(model: str, spec: Mapping[str, Any]) -> bytes:
    # The model is signed with the spec: a spec moved from one model to another is refused.
    text = json.dumps(
        {"model": model, "spec": spec}, sort_keys=True, separators=(",", ":"), allow_nan=False
    )
    return _SPEC_TAG + text.encode()


def sign_spec(model: str, spec: Mapping[str, Any], secret: bytes) -> str:
    """The signature of a version's spec (hex HMAC-SHA256 of its canonical JSON and the model).

    A spec names the code a version is built with (a catalog pipeline, or a factory from the
    operator's config). Kept in the store, it could be edited there by anyone who can write to the
    store (a Redis shared by many machines): signed like snapshots, an edited spec is refused
    before anything it names is imported.

    >>> sig = sign_spec("m", {"pipeline": {"name": "hoeffding_tree"}}, b"secret")
    >>> check_spec_signature("m", "v1", {"pipeline": {"name": "hoeffding_tree"}}, sig, b"secret")
    >>> check_spec_signature("m", "v1", {"pipeline": {"factory": "os:system"}}, sig, b"secret")
    Traceback (most recent call last):
    ...
    onlearn.errors.ArtifactRejected: the spec of m v1 does not match its signature: it was edited in the store, or signed with another secret; refused (nothing it names was imported). Restore the store from a backup, or set the secret it was signed with
    """
    _check_secret(secret)
    # The store gives specs back as JSON: sign that form, so that a tuple and a list agree.
    spec = json.loads(json.dumps(dict(spec), allow_nan=False))
    return hmac.new(secret, _canonical(model, spec), hashlib.sha256).hexdigest()


def check_spec_signature(
    model: str, version: str, spec: Mapping[str, Any], signature: str | None, secret: bytes
) -> None:
    """Raise :class:`~onlearn.errors.ArtifactRejected`, naming the version and the fix, unless
    ``signature`` is ``spec``'s (see :func:`sign_spec`)."""
    if not signature:
        raise ArtifactRejected(
            f"the spec of {model} {version} is not signed (a store made by an earlier onlearn, or "
            "a version written into the store by hand); refused (nothing it names was imported). "
            "Check the specs and sign them: `onlearn store sign-specs --config FILE --store URL`"
        )
    if not isinstance(signature, str) or not hmac.compare_digest(
        signature.encode(), sign_spec(model, spec, secret).encode()
    ):
        raise ArtifactRejected(
            f"the spec of {model} {version} does not match its signature: it was edited in the "
            "store, or signed with another secret; refused (nothing it names was imported). "
            "Restore the store from a backup, or set the secret it was signed with"
        )
