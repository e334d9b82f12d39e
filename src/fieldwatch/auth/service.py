"""Auth rules: login and token rotation, resolving credentials to a principal."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

import jwt
from sqlalchemy.ext.asyncio import AsyncSession

from fieldwatch.auth.errors import (
    InvalidCredentials,
    LoginThrottled,
    NoWorkspace,
    RefreshTokenReused,
)
from fieldwatch.auth.models import LoginSession, Membership, RefreshToken, User, Workspace
from fieldwatch.auth.passwords import hash_password, verify_password
from fieldwatch.auth.principal import Account, Caller, Principal
from fieldwatch.auth.repository import (
    ApiKeyRepository,
    LoginRepository,
    MembershipRepository,
    UserRepository,
)
from fieldwatch.auth.roles import Role
from fieldwatch.auth.schemas import MeRead, TokenPair, WorkspaceRef
from fieldwatch.auth.throttle import LoginThrottle
from fieldwatch.auth.tokens import TokenCodec
from fieldwatch.core import credentials
from fieldwatch.core.clock import usage_is_stale, utcnow
from fieldwatch.core.errors import BadRequest, NotFound, Unauthorized, ValidationFailed
from fieldwatch.core.settings import Settings

log = logging.getLogger(__name__)


class AuthService:
    def __init__(
        self,
        session: AsyncSession,
        *,
        codec: TokenCodec,
        settings: Settings,
        throttle: LoginThrottle,
    ) -> None:
        self.users = UserRepository(session)
        self.logins = LoginRepository(session)
        self.memberships = MembershipRepository(session)
        self.api_keys = ApiKeyRepository(session)
        self.codec = codec
        self.settings = settings
        self.throttle = throttle
        self._key_in_use: uuid.UUID | None = None
        #: When the credential ``authenticate`` last accepted expires (None: never).
        self.credential_expires_at: datetime | None = None

    # --- password login and refresh-token rotation -------------------------------

    async def login(self, email: str, password: str, user_agent: str | None = None) -> TokenPair:
        retry = self.throttle.retry_after(email)
        if retry is not None:
            raise LoginThrottled(
                f"Too many failed logins for this account; try again in {retry} s.",
                headers={"Retry-After": str(retry)},
            )
        user = await self.users.by_email(email)
        ok = await verify_password(user.password_hash if user else None, password)
        if not ok or user is None or not user.is_active:
            self.throttle.failed(email)
            log.info("login failed", extra={"reason": "bad credentials"})
            raise InvalidCredentials("Wrong email or password.")
        self.throttle.succeeded(email)
        now = utcnow()
        user.last_login_at = now
        login = LoginSession(user_id=user.id, user_agent=(user_agent or "")[:300] or None)
        self.logins.add(login)
        await self.logins.session.flush()
        return self._issue(user.id, login.id)

    def _issue(self, user_id: uuid.UUID, session_id: uuid.UUID) -> TokenPair:
        refresh = credentials.issue(credentials.REFRESH_TOKEN_PREFIX)
        self.logins.add(
            RefreshToken(
                session_id=session_id,
                token_digest=refresh.digest,
                expires_at=utcnow() + timedelta(seconds=self.settings.refresh_token_ttl_s),
            )
        )
        access, ttl = self.codec.issue(user_id, session_id)
        return TokenPair(access_token=access, refresh_token=refresh.secret, expires_in=ttl)

    async def refresh(self, refresh_token: str) -> TokenPair:
        """Rotate: the presented token is spent and a new pair issued. Presenting a spent
        token again means it leaked: the whole login is revoked (the caller must commit
        before raising, so the revocation sticks)."""
        stored = await self.logins.refresh_by_digest(credentials.digest(refresh_token))
        if stored is None:
            raise Unauthorized("Unknown refresh token.")
        login = await self.logins.get_session(stored.session_id)
        now = utcnow()
        if login is None or login.revoked_at is not None:
            raise Unauthorized("This login has ended; sign in again.")
        if stored.used_at is not None or not await self.logins.mark_used(stored.id, now):
            await self.logins.revoke(login, now, "refresh_token_reuse")
            log.warning("refresh token reuse; login revoked", extra={"session_id": str(login.id)})
            raise RefreshTokenReused(
                "This refresh token was already used. For safety the whole login has been "
                "revoked; sign in again."
            )
        if stored.expires_at <= now:
            raise Unauthorized("Refresh token expired; sign in again.")
        user = await self.users.get(login.user_id)
        if user is None or not user.is_active:
            raise Unauthorized("Account disabled.")
        login.last_refreshed_at = now
        return self._issue(user.id, login.id)

    async def logout(self, principal: Caller) -> None:
        if principal.session_id is None:
            raise BadRequest("API keys have no login to end; revoke the key instead.")
        login = await self.logins.get_session(principal.session_id)
        if login is not None:
            await self.logins.revoke(login, utcnow(), "logout")

    async def change_password(self, principal: Caller, current: str, new: str) -> None:
        if principal.user_id is None:
            raise BadRequest("Only users have passwords.")
        user = await self.users.get(principal.user_id)
        assert user is not None
        if not await verify_password(user.password_hash, current):
            raise ValidationFailed(
                "The current password is wrong.",
                errors=[{"field": "current_password", "message": "does not match"}],
            )
        user.password_hash = await hash_password(new)
        # Every other login of this user ends; the one that changed the password stays.
        await self.logins.revoke_all(
            user.id, utcnow(), "password_changed", keep=principal.session_id
        )

    # --- resolving a bearer credential -----------------------------------------

    async def authenticate(self, token: str, workspace_hint: str | None) -> Principal:
        if token.startswith(credentials.API_KEY_PREFIX):
            return await self._api_key_principal(token, workspace_hint)
        if token.startswith(credentials.DEVICE_TOKEN_PREFIX):
            raise Unauthorized("Device tokens are accepted only on device endpoints.")
        user, login = await self._signed_in(token)
        membership, workspace = await self._choose_workspace(user.id, workspace_hint)
        return Principal(
            kind="user",
            workspace_id=workspace.id,
            workspace_name=workspace.name,
            role=Role(membership.role),
            label=user.email,
            user_id=user.id,
            session_id=login.id,
        )

    async def account(self, token: str) -> Account:
        """The signed-in user of an access token, workspace or not (``authenticate``
        raised ``NoWorkspace``: the account routes still answer)."""
        user, login = await self._signed_in(token)
        return Account(user_id=user.id, session_id=login.id, label=user.email)

    async def _signed_in(self, token: str) -> tuple[User, LoginSession]:
        try:
            claims = self.codec.decode(token)
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("Access token expired; refresh it.") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthorized("Invalid access token.") from exc
        found = await self.logins.user_and_session(claims.user_id, claims.session_id)
        if found is None:
            raise Unauthorized("Invalid access token.")
        user, login = found
        if login.revoked_at is not None or not user.is_active:
            raise Unauthorized("This login has ended; sign in again.")
        self.credential_expires_at = claims.expires_at
        return user, login

    async def _choose_workspace(
        self, user_id: uuid.UUID, hint: str | None
    ) -> tuple[Membership, Workspace]:
        rows = await self.memberships.for_user(user_id)
        if not rows:
            raise NoWorkspace(
                "You are not a member of any workspace: ask an admin to add you, or create "
                "one with POST /api/v1/workspaces."
            )
        if hint is None:
            return rows[0]
        hint = hint.strip()
        for membership, workspace in rows:
            if str(workspace.id) == hint or workspace.name.lower() == hint.lower():
                return membership, workspace
        raise NotFound(f"No workspace {hint!r} among yours (X-Workspace header).")

    async def _api_key_principal(self, token: str, hint: str | None) -> Principal:
        found = await self.api_keys.by_digest(credentials.digest(token))
        if found is None or not credentials.matches(token, found[0].key_digest):
            raise Unauthorized("Invalid API key.")
        key, workspace = found
        now = utcnow()
        if key.revoked_at is not None:
            raise Unauthorized("This API key has been revoked.")
        if key.expires_at is not None and key.expires_at <= now:
            raise Unauthorized("This API key has expired.")
        if hint is not None and hint.strip() not in {str(workspace.id), workspace.name}:
            raise NotFound(f"No workspace {hint!r} for this API key (X-Workspace header).")
        if usage_is_stale(key.last_used_at, now):
            self._key_in_use = key.id
        self.credential_expires_at = key.expires_at
        return Principal(
            kind="api_key",
            workspace_id=workspace.id,
            workspace_name=workspace.name,
            role=Role(key.role),
            label=key.name,
            api_key_id=key.id,
        )

    async def record_credential_use(self) -> bool:
        """Note when the authenticated API key was last used (at most once a minute).
        True when there is a change for the caller to commit."""
        if self._key_in_use is None:
            return False
        await self.api_keys.touch(self._key_in_use, utcnow())
        self._key_in_use = None
        return True

    async def me(self, caller: Caller) -> MeRead:
        if isinstance(caller, Account):  # a user without a workspace
            user = await self.users.get(caller.user_id)
            assert user is not None
            return MeRead(
                kind="user", id=user.id, email=user.email, full_name=user.full_name,
                workspace=None, workspaces=[],
            )  # fmt: skip
        principal = caller
        current = WorkspaceRef(
            id=principal.workspace_id, name=principal.workspace_name, role=principal.role
        )
        if principal.user_id is None:
            assert principal.api_key_id is not None
            return MeRead(
                kind="api_key",
                id=principal.api_key_id,
                name=principal.label,
                workspace=current,
                workspaces=[current],
            )
        user = await self.users.get(principal.user_id)
        assert user is not None
        rows = await self.memberships.for_user(user.id)
        return MeRead(
            kind="user",
            id=user.id,
            email=user.email,
            full_name=user.full_name,
            workspace=current,
            workspaces=[WorkspaceRef(id=w.id, name=w.name, role=Role(m.role)) for m, w in rows],
        )
