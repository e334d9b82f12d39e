"""The console's session cookie: who is signed in, in which workspace, and the CSRF token.

The cookie holds a small JSON document signed with an HMAC under a key derived from the
installation's secret; it is HttpOnly, SameSite=Lax, and Secure when the request came
over https. It names the login (user and login session ids), never a password or a
token: every request is checked again by ``AuthService`` (a logout or a disabled
account ends it at once). A visitor who is not signed in gets a cookie with only a CSRF
token, so that the login form is protected too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from fastapi import Request, Response

COOKIE = "fieldwatch_console"
#: How long a console login lasts before the user must sign in again.
SESSION_TTL_S = 12 * 3600
#: A visitor's cookie (the login form's CSRF token) lasts this long.
VISITOR_TTL_S = 2 * 3600
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    csrf: str
    expires_at: float
    user_id: uuid.UUID | None = None
    login_id: uuid.UUID | None = None
    workspace: str | None = None

    @property
    def signed_in(self) -> bool:
        return self.user_id is not None and self.login_id is not None

    @property
    def expired(self) -> bool:
        return time.time() >= self.expires_at

    def to_json(self) -> dict[str, Any]:
        return {
            "c": self.csrf,
            "e": self.expires_at,
            "u": str(self.user_id) if self.user_id else None,
            "s": str(self.login_id) if self.login_id else None,
            "w": self.workspace,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ConsoleSession:
        return cls(
            csrf=str(data["c"]),
            expires_at=float(data["e"]),
            user_id=uuid.UUID(data["u"]) if data.get("u") else None,
            login_id=uuid.UUID(data["s"]) if data.get("s") else None,
            workspace=data.get("w"),
        )


def visitor() -> ConsoleSession:
    return ConsoleSession(csrf=secrets.token_urlsafe(32), expires_at=time.time() + VISITOR_TTL_S)


def signed_in(user_id: uuid.UUID, login_id: uuid.UUID) -> ConsoleSession:
    """A new session after a login: a fresh CSRF token, so the visitor's one is spent."""
    return ConsoleSession(
        csrf=secrets.token_urlsafe(32),
        expires_at=time.time() + SESSION_TTL_S,
        user_id=user_id,
        login_id=login_id,
    )


def in_workspace(session: ConsoleSession, workspace: str) -> ConsoleSession:
    return replace(session, workspace=workspace)


class CookieSigner:
    """Signs and reads the cookie. The key is derived from the installation's secret, so
    a console cookie is never valid as anything else."""

    def __init__(self, secret: str) -> None:
        self._key = hmac.new(secret.encode(), b"fieldwatch console cookie", hashlib.sha256).digest()

    def _mac(self, body: bytes) -> str:
        digest = hmac.new(self._key, body, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def dumps(self, session: ConsoleSession) -> str:
        body = base64.urlsafe_b64encode(json.dumps(session.to_json()).encode()).decode()
        return f"{body.rstrip('=')}.{self._mac(body.rstrip('=').encode())}"

    def loads(self, value: str | None) -> ConsoleSession | None:
        """The session in ``value``; None when it is missing, altered or malformed."""
        if not value or "." not in value:
            return None
        body, mac = value.rsplit(".", 1)
        if not hmac.compare_digest(mac, self._mac(body.encode())):
            return None
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            return ConsoleSession.from_json(json.loads(raw))
        except (ValueError, KeyError, TypeError):
            return None


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def set_cookie(
    response: Response, request: Request, signer: CookieSigner, s: ConsoleSession
) -> None:
    response.set_cookie(
        COOKIE,
        signer.dumps(s),
        max_age=max(0, int(s.expires_at - time.time())),
        path="/",
        httponly=True,
        samesite="lax",
        secure=is_https(request),
    )


def clear_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="lax", secure=is_https(request)
    )


def csrf_ok(session: ConsoleSession | None, presented: str | None) -> bool:
    if session is None or not presented:
        return False
    return hmac.compare_digest(session.csrf.encode(), presented.encode())
