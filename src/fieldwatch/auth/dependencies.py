"""Per-route authorisation: declare the role a route needs as a dependency."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Protocol

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from fieldwatch.auth.errors import NoWorkspace
from fieldwatch.auth.principal import Caller, Principal
from fieldwatch.auth.roles import Role
from fieldwatch.auth.service import AuthService
from fieldwatch.auth.throttle import LoginThrottle
from fieldwatch.auth.tokens import TokenCodec
from fieldwatch.core.components import Slot
from fieldwatch.core.errors import Unauthorized
from fieldwatch.core.settings import Settings
from fieldwatch.core.ttlcache import TTLCache
from fieldwatch.db.dependencies import UowDep
from fieldwatch.db.uow import UnitOfWork

bearer = HTTPBearer(auto_error=False, description="A JWT access token or an API key")

#: API callers (``hint|bearer``) authenticated in the last ``auth_cache_s`` seconds: each
#: entry is the principal and, for an access token or an API key that expires, its
#: expiry (epoch seconds).
PrincipalCache = TTLCache[str, tuple[Principal, float | None]]


class AuthParts(Protocol):
    """What an ``AuthService`` is built from (the ``Authenticator`` below, the runtime)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def codec(self) -> TokenCodec: ...

    @property
    def throttle(self) -> LoginThrottle: ...


@dataclass(frozen=True, slots=True)
class Authenticator:
    """The process's side of authentication: settings, the token codec, the login
    throttle and the callers checked in the last seconds (``principals``)."""

    settings: Settings
    codec: TokenCodec
    throttle: LoginThrottle
    principals: PrincipalCache


AUTH: Slot[Authenticator] = Slot("authenticator")
AuthDep = Annotated[Authenticator, Depends(AUTH)]
#: Drops this process's cached credential checks at once (after a logout, a revocation,
#: a role change); the ``auth.credentials_changed`` event tells the other processes.
FORGET_CREDENTIALS: Slot[Callable[[], None]] = Slot("forget_credentials")
ForgetCredentialsDep = Annotated[Callable[[], None], Depends(FORGET_CREDENTIALS)]


def make_auth_service(parts: AuthParts, uow: UnitOfWork) -> AuthService:
    return AuthService(
        uow.session, codec=parts.codec, settings=parts.settings, throttle=parts.throttle
    )


# Dependencies are ``async def``: FastAPI runs plain ``def`` ones in a thread pool.
async def auth_service(auth: AuthDep, uow: UowDep) -> AuthService:
    return make_auth_service(auth, uow)


AuthServiceDep = Annotated[AuthService, Depends(auth_service)]


async def get_principal(
    request: Request,
    auth: AuthDep,
    uow: UowDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Unauthorized("Send 'Authorization: Bearer <access token or API key>'.")
    principal = await authenticate_caller(
        auth, uow, credentials.credentials, request.headers.get("x-workspace")
    )
    request.state.principal = principal
    return principal


async def get_caller(
    request: Request,
    auth: AuthDep,
    uow: UowDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    """For the account routes (``/auth/me``, password, logout, creating a workspace): a
    principal, or a signed-in user who belongs to no workspace (``Account``)."""
    try:
        return await get_principal(request, auth, uow, credentials)
    except NoWorkspace:
        assert credentials is not None
        return await make_auth_service(auth, uow).account(credentials.credentials)


async def authenticate_caller(
    auth: Authenticator, uow: UnitOfWork, token: str, hint: str | None
) -> Principal:
    """The principal of an access token or API key (``hint``: the X-Workspace header).
    A caller checked in the last couple of seconds is not looked up again: every API
    call would otherwise cost two queries before the route runs. Logouts, revocations
    and role changes drop the cache (``FORGET_CREDENTIALS``); an expiry is
    checked on every call."""
    cache_key = f"{hint or ''}|{token}"
    hit = auth.principals.get(cache_key)
    if hit is not None and (hit[1] is None or time.time() < hit[1]):
        return hit[0]
    service = make_auth_service(auth, uow)
    principal = await service.authenticate(token, hint)
    if await service.record_credential_use():
        await uow.commit()  # only the usage note: the route has not run yet
    until = service.credential_expires_at
    auth.principals.put(cache_key, (principal, until.timestamp() if until else None))
    return principal


def require_role(role: Role) -> Callable[[Principal], Awaitable[Principal]]:
    async def dependency(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        principal.require(role)
        return principal

    return dependency


AnyCaller = Annotated[Caller, Depends(get_caller)]
Viewer = Annotated[Principal, Depends(require_role(Role.viewer))]
Operator = Annotated[Principal, Depends(require_role(Role.operator))]
Admin = Annotated[Principal, Depends(require_role(Role.admin))]
