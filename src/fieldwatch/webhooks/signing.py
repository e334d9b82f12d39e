"""Webhook signatures: HMAC-SHA256 over the timestamp and the raw body.

Every delivery is a ``POST`` with a JSON body and these headers::

    Content-Type: application/json
    User-Agent: Fieldwatch-Webhooks/<version>
    X-Fieldwatch-Event: alert.raised
    X-Fieldwatch-Delivery: 1234
    X-Fieldwatch-Timestamp: 1767225600
    X-Fieldwatch-Signature: sha256=<64 hex digits>

The signature is ``hex(HMAC-SHA256(key=secret, msg=f"{timestamp}.{raw body}"))``, where
``secret`` is the webhook's secret as UTF-8 bytes (the string shown when the webhook
was created or its secret rotated) and ``raw body`` the exact bytes received.

How a receiver verifies a delivery:

1. Read the raw body bytes *before* parsing the JSON (re-serialising changes bytes).
2. Reject the request when ``X-Fieldwatch-Timestamp`` is not an integer or is more
   than 5 minutes away from the receiver's clock: this stops replays of a captured
   request.
3. Compute ``hmac.new(secret.encode(), f"{timestamp}.".encode() + body, sha256)`` and
   compare ``"sha256=" + hexdigest`` with the header using a constant-time comparison
   (``hmac.compare_digest``). Reject on mismatch.
4. Use ``id`` (the event id, the same on every retry) to drop duplicates: a delivery
   may arrive more than once (at-least-once delivery).

``verify()`` below does steps 2 and 3 and can be copied into a Python receiver.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

SIGNATURE_PREFIX = "sha256="
DEFAULT_TOLERANCE_S = 300


def new_secret() -> str:
    """A random 32-byte secret, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Fieldwatch-Signature`` value for ``body`` sent at ``timestamp``."""
    message = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify(
    secret: str,
    signature: str,
    timestamp: str,
    body: bytes,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """True when ``signature`` matches and ``timestamp`` is within ``tolerance_s``."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)
