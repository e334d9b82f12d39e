"""Random credentials and their digests.

Device tokens, API keys and refresh tokens are 256-bit random values shown once and
stored only as SHA-256 digests. Looking one up is a digest lookup on a unique index
plus a constant-time comparison: fast (no slow hash on the hot path) and with no
timing signal about the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Awaitable, Callable

DEVICE_TOKEN_PREFIX = "fwd_"
API_KEY_PREFIX = "fwk_"
REFRESH_TOKEN_PREFIX = "fwr_"

#: Told after commit that a device token or a provisioning key was issued: (kind, owner
#: id, credential id, secret), kind "device_token" (owner: the device) or
#: "provisioning_key" (owner: the workspace).
CredentialListener = Callable[[str, uuid.UUID, uuid.UUID, str], Awaitable[None]]


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def matches(secret: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(secret), stored_digest)


def display_prefix(secret: str) -> str:
    """The first characters of a secret, safe to show and log to tell keys apart."""
    return secret[:12]


def generate_password() -> str:
    return secrets.token_urlsafe(15)
