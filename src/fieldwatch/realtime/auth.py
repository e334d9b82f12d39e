"""Who is connecting: the credential of a Socket.IO handshake, resolved like an HTTP one.

The token comes from the Socket.IO ``auth`` payload (``{"token": ..., "workspace": ...}``)
or from the ``Authorization: Bearer ...`` and ``X-Workspace`` headers of the handshake.
Tokens are kept in memory only to re-check a connection when credentials change; they
are never logged.

A refused connection tells the client why: its ``connect_error`` data is
``{"message": <the reason>, "data": {"code": <problem slug>, "status": <HTTP status>}}``
(``unauthorized`` 401, ``forbidden`` 403, ``not-found`` 404 for an unknown workspace,
``service-unavailable`` 503 while the server starts or its database is away).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from socketio.exceptions import ConnectionRefusedError as Refused

from fieldwatch.auth.dependencies import AuthParts, make_auth_service
from fieldwatch.auth.principal import Principal
from fieldwatch.auth.roles import Role
from fieldwatch.core import credentials
from fieldwatch.core.errors import AppError
from fieldwatch.core.events import EventBus
from fieldwatch.db.uow import UnitOfWork

log = logging.getLogger(__name__)

MISSING = (
    "Authentication required: connect with auth={'token': '<access token or API key>'} "
    "or an 'Authorization: Bearer <access token or API key>' header."
)
DEVICE_TOKEN = "Device tokens cannot open dashboard connections; use an access token or an API key."


def refusal(message: str, code: str = "unauthorized", status: int = 401) -> Refused:
    """A refusal whose ``connect_error`` data carries the reason and a code to act on."""
    return Refused(message, {"code": code, "status": status})


@dataclass(frozen=True, slots=True)
class Credential:
    token: str
    workspace: str | None = None

    def __repr__(self) -> str:  # never show the token
        return f"Credential(workspace={self.workspace!r})"


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _bearer(value: str | None) -> str | None:
    if value is None:
        return None
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == "bearer":
        return _text(rest)
    return value if " " not in value else None


def credential_from(environ: Mapping[str, Any], auth: Any) -> Credential:
    """The credential of a handshake; ``ConnectionRefusedError`` when there is none."""
    token = workspace = None
    if isinstance(auth, Mapping):
        token = _bearer(_text(auth.get("token")))
        workspace = _text(auth.get("workspace"))
    if token is None:
        header = _text(environ.get("HTTP_AUTHORIZATION"))
        scheme, _, rest = (header or "").partition(" ")
        token = _text(rest) if scheme.lower() == "bearer" else None
    if workspace is None:
        workspace = _text(environ.get("HTTP_X_WORKSPACE"))
    if token is None:
        raise refusal(MISSING)
    if token.startswith(credentials.DEVICE_TOKEN_PREFIX):
        raise refusal(DEVICE_TOKEN, "forbidden", 403)
    return Credential(token, workspace)


class RealtimeHost(AuthParts, Protocol):
    """What the realtime server runs on (the app's runtime): the event bus, units of
    work and what authentication is built from."""

    @property
    def bus(self) -> EventBus: ...

    def uow(self) -> UnitOfWork: ...


async def authenticate(host: RealtimeHost, credential: Credential) -> Principal:
    """Resolve the credential to a principal, or refuse the connection with the reason."""
    async with host.uow() as uow:
        service = make_auth_service(host, uow)
        try:
            principal = await service.authenticate(credential.token, credential.workspace)
            principal.require(Role.viewer)
        except AppError as exc:
            log.info("realtime connection refused", extra={"reason": exc.detail})
            raise refusal(exc.detail, exc.slug, exc.status) from exc
        if await service.record_credential_use():
            await uow.commit()
    return principal


async def still_valid(host: RealtimeHost, creds: Sequence[Credential]) -> list[bool]:
    """Re-check credentials after a logout, revocation or role change. A credential whose
    check fails for another reason than being refused (the database is down) counts as
    valid: an outage must not disconnect every dashboard."""
    results: list[bool] = []
    async with host.uow() as uow:
        service = make_auth_service(host, uow)
        for credential in creds:
            try:
                await service.authenticate(credential.token, credential.workspace)
                results.append(True)
            except AppError:
                results.append(False)
            except Exception:
                log.exception("re-checking a realtime connection failed")
                await uow.rollback()
                results.append(True)
    return results
