"""Account rules: users, workspaces, memberships and API keys."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from fieldwatch.auth.errors import LastAdmin
from fieldwatch.auth.models import ApiKey, Membership, User, Workspace
from fieldwatch.auth.passwords import hash_password
from fieldwatch.auth.principal import Caller, Principal
from fieldwatch.auth.repository import (
    ApiKeyRepository,
    MembershipRepository,
    UserRepository,
    WorkspaceRepository,
)
from fieldwatch.auth.roles import Role
from fieldwatch.auth.schemas import ApiKeyCreate, ApiKeyCreated, MemberCreated, MemberRead
from fieldwatch.core import credentials
from fieldwatch.core.clock import utcnow
from fieldwatch.core.errors import BadRequest, Conflict, NotFound, ValidationFailed


@dataclass
class UserCreated:
    user: User
    workspace: Workspace
    role: Role
    created_user: bool
    created_workspace: bool
    generated_password: str | None


class AccountService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.users = UserRepository(session)
        self.workspaces = WorkspaceRepository(session)
        self.memberships = MembershipRepository(session)
        self.api_keys = ApiKeyRepository(session)

    # --- workspaces ---------------------------------------------------------------

    async def ensure_workspace(self, name: str) -> tuple[Workspace, bool]:
        name = name.strip()
        if not name:
            raise ValidationFailed("A workspace needs a name.")
        existing = await self.workspaces.by_name(name)
        if existing is not None:
            return existing, False
        workspace = Workspace(name=name)
        self.workspaces.add(workspace)
        await self.session.flush()
        return workspace, True

    async def workspace_named(self, name: str) -> Workspace | None:
        return await self.workspaces.by_name(name.strip())

    async def create_workspace(self, principal: Caller, name: str) -> Workspace:
        if principal.user_id is None:
            raise BadRequest("Workspaces are created by users, not API keys.")
        if await self.workspaces.by_name(name) is not None:
            raise Conflict(f"A workspace named {name!r} exists already.")
        # A new one, never one that a request made meanwhile: two requests with the same
        # name at once meet on the name's unique key (409), not on the membership.
        workspace, created = await self.ensure_workspace(name)
        if not created:
            raise Conflict(f"A workspace named {name!r} exists already.")
        self.memberships.add(
            Membership(workspace_id=workspace.id, user_id=principal.user_id, role=Role.admin)
        )
        await self.session.flush()
        return workspace

    # --- users and members ------------------------------------------------------

    async def create_user(
        self,
        email: str,
        *,
        role: Role,
        workspace_name: str,
        password: str | None = None,
        full_name: str | None = None,
    ) -> UserCreated:
        """Create the user (or reuse an existing one) and give them ``role`` in the
        workspace, which is created when missing. Used by the CLI and bootstrap."""
        workspace, created_ws = await self.ensure_workspace(workspace_name)
        user, generated, created_user = await self._get_or_create_user(email, password, full_name)
        await self._set_role(workspace.id, user.id, role)
        return UserCreated(user, workspace, role, created_user, created_ws, generated)

    async def _get_or_create_user(
        self, email: str, password: str | None, full_name: str | None
    ) -> tuple[User, str | None, bool]:
        user = await self.users.by_email(email)
        if user is not None:
            if password:
                user.password_hash = await hash_password(password)
            return user, None, False
        generated = None if password else credentials.generate_password()
        user = User(
            email=email,
            password_hash=await hash_password(password or generated or ""),
            full_name=full_name,
        )
        self.users.add(user)
        await self.session.flush()
        return user, generated, True

    async def _set_role(self, workspace_id: uuid.UUID, user_id: uuid.UUID, role: Role) -> None:
        membership = await self.memberships.get(workspace_id, user_id)
        if membership is None:
            self.memberships.add(Membership(workspace_id=workspace_id, user_id=user_id, role=role))
        else:
            membership.role = role
        await self.session.flush()

    async def has_any_user(self) -> bool:
        return await self.users.count() > 0

    async def list_members(
        self, principal: Principal, *, limit: int, offset: int
    ) -> tuple[list[MemberRead], int]:
        rows, total = await self.memberships.members(
            principal.workspace_id, limit=limit, offset=offset
        )
        return [_member(m, u) for m, u in rows], total

    async def add_member(
        self,
        principal: Principal,
        email: str,
        role: Role,
        password: str | None,
        full_name: str | None,
    ) -> MemberCreated:
        existing = await self.users.by_email(email)
        if existing is not None:
            if await self.memberships.get(principal.workspace_id, existing.id) is not None:
                raise Conflict(f"{email} is already a member; change their role with PATCH.")
            if password:
                raise BadRequest("That user exists already; their password is theirs to set.")
        user, generated, _ = await self._get_or_create_user(email, password, full_name)
        await self._set_role(principal.workspace_id, user.id, role)
        membership = await self.memberships.get(principal.workspace_id, user.id)
        assert membership is not None
        return MemberCreated(**_member(membership, user).model_dump(), generated_password=generated)

    async def _membership(self, principal: Principal, user_id: uuid.UUID) -> Membership:
        membership = await self.memberships.get(principal.workspace_id, user_id)
        if membership is None:
            raise NotFound("No such member in this workspace.")
        return membership

    async def change_role(self, principal: Principal, user_id: uuid.UUID, role: Role) -> MemberRead:
        membership = await self._membership(principal, user_id)
        if membership.role == Role.admin and role != Role.admin:
            await self._keep_an_admin(principal.workspace_id)
        if not await self.memberships.set_role(principal.workspace_id, user_id, role):
            raise NotFound(f"No member {user_id} in this workspace (removed meanwhile).")
        set_committed_value(membership, "role", role)
        user = await self.users.get(user_id)
        assert user is not None
        return _member(membership, user)

    async def remove_member(self, principal: Principal, user_id: uuid.UUID) -> None:
        membership = await self._membership(principal, user_id)
        if membership.role == Role.admin:
            await self._keep_an_admin(principal.workspace_id)
        await self.memberships.delete(membership)
        await self.session.flush()

    async def _keep_an_admin(self, workspace_id: uuid.UUID) -> None:
        if await self.memberships.count_admins(workspace_id) <= 1:
            raise LastAdmin("This is the workspace's last admin; make someone else admin first.")

    # --- API keys -------------------------------------------------------------------

    async def create_api_key(self, principal: Principal, data: ApiKeyCreate) -> ApiKeyCreated:
        if data.expires_at is not None and data.expires_at <= utcnow():
            raise ValidationFailed(
                "expires_at is in the past.",
                errors=[{"field": "expires_at", "message": "must be in the future"}],
            )
        issued = credentials.issue(credentials.API_KEY_PREFIX)
        key = ApiKey(
            workspace_id=principal.workspace_id,
            name=data.name,
            role=data.role,
            prefix=issued.prefix,
            key_digest=issued.digest,
            created_by=principal.user_id,
            expires_at=data.expires_at,
        )
        self.api_keys.add(key)
        await self.session.flush()
        return ApiKeyCreated.model_validate({**_key_dict(key), "key": issued.secret})

    async def list_api_keys(
        self, principal: Principal, *, limit: int, offset: int
    ) -> tuple[Sequence[ApiKey], int]:
        return await self.api_keys.page(principal.workspace_id, limit=limit, offset=offset)

    async def revoke_api_key(self, principal: Principal, key_id: uuid.UUID) -> ApiKey:
        key = await self.api_keys.get(principal.workspace_id, key_id)
        if key is None:
            raise NotFound("No such API key in this workspace.")
        if key.revoked_at is None:
            key.revoked_at = utcnow()
            await self.session.flush()
        return key


def _member(m: Membership, u: User) -> MemberRead:
    return MemberRead(
        user_id=u.id,
        email=u.email,
        full_name=u.full_name,
        role=Role(m.role),
        joined_at=m.created_at,
    )


def _key_dict(key: ApiKey) -> dict[str, object]:
    return {c: getattr(key, c) for c in ApiKeyCreated.model_fields if c != "key"}
