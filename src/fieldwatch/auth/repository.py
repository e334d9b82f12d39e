"""All SQL of the auth domain."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fieldwatch.auth.models import ApiKey, LoginSession, Membership, RefreshToken, User, Workspace
from fieldwatch.db.paging import rows_page, scalars_page


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: uuid.UUID) -> User | None:
        return await self.session.get(User, user_id)

    async def by_email(self, email: str) -> User | None:
        return await self.session.scalar(select(User).where(User.email == email))

    def add(self, user: User) -> None:
        self.session.add(user)

    async def count(self) -> int:
        return int(await self.session.scalar(select(func.count()).select_from(User)) or 0)


class WorkspaceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, workspace_id: uuid.UUID) -> Workspace | None:
        return await self.session.get(Workspace, workspace_id)

    async def by_name(self, name: str) -> Workspace | None:
        return await self.session.scalar(
            select(Workspace).where(func.lower(Workspace.name) == name.lower())
        )

    def add(self, workspace: Workspace) -> None:
        self.session.add(workspace)


class MembershipRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def for_user(self, user_id: uuid.UUID) -> Sequence[tuple[Membership, Workspace]]:
        rows = await self.session.execute(
            select(Membership, Workspace)
            .join(Workspace, Workspace.id == Membership.workspace_id)
            .where(Membership.user_id == user_id)
            .order_by(Membership.created_at, Workspace.name)
        )
        return [(m, w) for m, w in rows.tuples()]

    async def get(self, workspace_id: uuid.UUID, user_id: uuid.UUID) -> Membership | None:
        return await self.session.scalar(
            select(Membership).where(
                Membership.workspace_id == workspace_id, Membership.user_id == user_id
            )
        )

    async def members(
        self, workspace_id: uuid.UUID, *, limit: int, offset: int
    ) -> tuple[Sequence[tuple[Membership, User]], int]:
        stmt = (
            select(Membership, User)
            .join(User, User.id == Membership.user_id)
            .where(Membership.workspace_id == workspace_id)
            .order_by(User.email, User.id)
        )
        return await rows_page(self.session, stmt, limit=limit, offset=offset)

    async def count_admins(self, workspace_id: uuid.UUID) -> int:
        return int(
            await self.session.scalar(
                select(func.count())
                .select_from(Membership)
                .where(Membership.workspace_id == workspace_id, Membership.role == "admin")
            )
            or 0
        )

    def add(self, membership: Membership) -> None:
        self.session.add(membership)

    async def set_role(self, workspace_id: uuid.UUID, user_id: uuid.UUID, role: str) -> bool:
        """Whether the membership still existed to be changed (one statement: a member
        removed meanwhile is not brought back by a stale object)."""
        result = await self.session.execute(
            update(Membership)
            .where(Membership.workspace_id == workspace_id, Membership.user_id == user_id)
            .values(role=role)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0))

    async def delete(self, membership: Membership) -> None:
        await self.session.delete(membership)


class LoginRepository:
    """Login sessions and their rotating refresh tokens."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, obj: LoginSession | RefreshToken) -> None:
        self.session.add(obj)

    async def get_session(self, session_id: uuid.UUID) -> LoginSession | None:
        return await self.session.get(LoginSession, session_id)

    async def refresh_by_digest(self, token_digest: str) -> RefreshToken | None:
        return await self.session.scalar(
            select(RefreshToken).where(RefreshToken.token_digest == token_digest)
        )

    async def mark_used(self, token_id: uuid.UUID, at: datetime) -> bool:
        """Claim a refresh token. False when someone else already used it (a replay)."""
        result = await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.id == token_id, RefreshToken.used_at.is_(None))
            .values(used_at=at)
            .execution_options(synchronize_session=False)
        )
        return (result.rowcount or 0) == 1  # type: ignore[attr-defined]

    async def revoke(self, login: LoginSession, at: datetime, reason: str) -> None:
        if login.revoked_at is None:
            login.revoked_at = at
            login.revoked_reason = reason
        await self.session.flush()

    async def revoke_all(
        self, user_id: uuid.UUID, at: datetime, reason: str, *, keep: uuid.UUID | None = None
    ) -> None:
        stmt = (
            update(LoginSession)
            .where(LoginSession.user_id == user_id, LoginSession.revoked_at.is_(None))
            .values(revoked_at=at, revoked_reason=reason)
            .execution_options(synchronize_session=False)
        )
        if keep is not None:
            stmt = stmt.where(LoginSession.id != keep)
        await self.session.execute(stmt)

    async def user_and_session(
        self, user_id: uuid.UUID, session_id: uuid.UUID
    ) -> tuple[User, LoginSession] | None:
        row = (
            await self.session.execute(
                select(User, LoginSession)
                .join(LoginSession, LoginSession.user_id == User.id)
                .where(User.id == user_id, LoginSession.id == session_id)
            )
        ).first()
        return (row[0], row[1]) if row else None


class ApiKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, key: ApiKey) -> None:
        self.session.add(key)

    async def by_digest(self, key_digest: str) -> tuple[ApiKey, Workspace] | None:
        row = (
            await self.session.execute(
                select(ApiKey, Workspace)
                .join(Workspace, Workspace.id == ApiKey.workspace_id)
                .where(ApiKey.key_digest == key_digest)
            )
        ).first()
        return (row[0], row[1]) if row else None

    async def get(self, workspace_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey | None:
        return await self.session.scalar(
            select(ApiKey).where(ApiKey.id == key_id, ApiKey.workspace_id == workspace_id)
        )

    async def page(
        self, workspace_id: uuid.UUID, *, limit: int, offset: int
    ) -> tuple[Sequence[ApiKey], int]:
        stmt = (
            select(ApiKey)
            .where(ApiKey.workspace_id == workspace_id)
            .order_by(ApiKey.created_at, ApiKey.id)
        )
        return await scalars_page(self.session, stmt, limit=limit, offset=offset)

    async def touch(self, key_id: uuid.UUID, at: datetime) -> None:
        await self.session.execute(
            update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=at)
        )
