"""The signature of an alarm webhook's body: HMAC-SHA256 with a shared secret, over the time of
sending and the body, in the ``X-Onlearn-Signature`` header (Stripe's scheme, so a receiver
checks both that onlearn sent the body and that it was sent recently: a recorded delivery
replayed later is refused).

The header is ``t=<unix seconds>,v1=<hex digest of "<t>.<body>">``; a receiver needs no onlearn
to check it (README.md, "Alarm webhooks", has the same check in a dozen lines).

>>> header = sign("s3cret", b'{"kind":"input_drift"}', timestamp=1700000000)
>>> header.split(",")[0]
't=1700000000'
>>> verify("s3cret", header, b'{"kind":"input_drift"}', now=1700000010)
True
>>> verify("s3cret", header, b'{"kind":"concept_drift"}', now=1700000010)
False
>>> verify("s3cret", header, b'{"kind":"input_drift"}', now=1700000400)  # too old
False
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-Onlearn-Signature"
# How old a signature a receiver accepts by default: room for clock skew and a slow network, too
# little for a replay to be of use.
TOLERANCE_S = 300


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The header value for ``body`` sent at ``timestamp`` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(
    secret: str,
    header: str,
    body: bytes,
    *,
    tolerance_s: float = TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """Whether ``header`` signs ``body`` with ``secret``, at most ``tolerance_s`` from ``now``."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    timestamp = fields.get("t", "")
    # Digits only, compared as a float: int() of hundreds of digits does not fit a float, and
    # compare_digest raises on non-ASCII text: a forged header is False, never an exception.
    if not (timestamp.isascii() and timestamp.isdigit()):
        return False
    now = time.time() if now is None else now
    if abs(now - float(timestamp)) > tolerance_s:
        return False
    expected = sign(secret, body, int(timestamp)).split("v1=", 1)[1]
    return hmac.compare_digest(expected.encode(), fields.get("v1", "").encode())


__all__ = ["HEADER", "TOLERANCE_S", "sign", "verify"]
