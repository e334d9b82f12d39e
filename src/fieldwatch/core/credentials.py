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
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class Issued:
    """A new credential: the ``secret`` (shown once, never stored), what is stored of it
    (its ``digest``) and the ``prefix`` shown to tell keys apart."""

    secret: str
    digest: str
    prefix: str

    def __repr__(self) -> str:  # never show the secret
        return f"Issued(prefix={self.prefix!r})"


def issue(prefix: str) -> Issued:
    """A new random credential starting with ``prefix`` (``fwd_``, ``fwk_``…)."""
    secret = new_secret(prefix)
    return Issued(secret, digest(secret), display_prefix(secret))


def matches(secret: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(secret), stored_digest)


def display_prefix(secret: str) -> str:
    """The first characters of a secret, safe to show and log to tell keys apart."""
    return secret[:12]


def generate_password() -> str:
    return secrets.token_urlsafe(15)
