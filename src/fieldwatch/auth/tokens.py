"""Access tokens: HS256 JWTs with pinned algorithm and required ``exp``/``iat``/``aud``."""

from __future__ import annotations

import logging
import os
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jwt

from fieldwatch.core.clock import utcnow
from fieldwatch.core.settings import Settings

log = logging.getLogger(__name__)

ALGORITHM = "HS256"
SECRET_FILE = "jwt_secret"


def load_or_create_secret(settings: Settings) -> str:
    """The configured secret, else a random per-install key kept in the data directory."""
    if settings.jwt_secret:
        return settings.jwt_secret
    path = Path(settings.data_dir) / SECRET_FILE
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)
    log.info("generated a new JWT signing key in the data directory", extra={"path": str(path)})
    return value


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID
    expires_at: datetime


class TokenCodec:
    def __init__(self, secret: str, *, audience: str, issuer: str, ttl_s: int) -> None:
        self._secret = secret
        self.audience = audience
        self.issuer = issuer
        self.ttl_s = ttl_s

    def issue(self, user_id: uuid.UUID, session_id: uuid.UUID) -> tuple[str, int]:
        now = utcnow()
        claims: dict[str, Any] = {
            "sub": str(user_id),
            "sid": str(session_id),
            "iat": now,
            "nbf": now,
            "exp": now + timedelta(seconds=self.ttl_s),
            "aud": self.audience,
            "iss": self.issuer,
            "jti": secrets.token_hex(8),
            "typ": "access",
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM), self.ttl_s

    def decode(self, token: str) -> AccessClaims:
        """Raises ``jwt.InvalidTokenError`` for anything but a valid access token."""
        claims = jwt.decode(
            token,
            self._secret,
            algorithms=[ALGORITHM],
            audience=self.audience,
            issuer=self.issuer,
            options={"require": ["exp", "iat", "aud", "iss", "sub", "sid"]},
            leeway=5,
        )
        if claims.get("typ") != "access":
            raise jwt.InvalidTokenError("not an access token")
        try:
            return AccessClaims(
                user_id=uuid.UUID(claims["sub"]),
                session_id=uuid.UUID(claims["sid"]),
                expires_at=datetime.fromtimestamp(claims["exp"]).astimezone(),
            )
        except (ValueError, TypeError) as exc:
            raise jwt.InvalidTokenError("malformed subject") from exc
