"""All SQL of connections and OAuth requests in flight."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fieldwatch.integrations.models import Connection, OAuthState


class ConnectionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, obj: Connection | OAuthState) -> None:
        self.session.add(obj)

    async def get(self, workspace_id: uuid.UUID, connection_id: uuid.UUID) -> Connection | None:
        return await self.session.scalar(
            select(Connection).where(
                Connection.id == connection_id, Connection.workspace_id == workspace_id
            )
        )

    async def by_id(self, connection_id: uuid.UUID) -> Connection | None:
        """Any workspace's: for the sync engine, which works for every workspace."""
        return await self.session.get(Connection, connection_id, populate_existing=True)

    async def by_account(
        self, workspace_id: uuid.UUID, connector: str, external_user_id: str
    ) -> Connection | None:
        return await self.session.scalar(
            select(Connection).where(
                Connection.workspace_id == workspace_id,
                Connection.connector == connector,
                Connection.external_user_id == external_user_id,
            )
        )

    async def page(
        self, workspace_id: uuid.UUID, connector: str | None, *, limit: int, offset: int
    ) -> tuple[Sequence[Connection], int]:
        where = [Connection.workspace_id == workspace_id]
        if connector is not None:
            where.append(Connection.connector == connector)
        total = await self.session.scalar(
            select(func.count()).where(*where).select_from(Connection)
        )
        rows = await self.session.scalars(
            select(Connection).where(*where).order_by(Connection.created_at, Connection.id)
            .limit(limit).offset(offset)
        )  # fmt: skip
        return rows.all(), int(total or 0)

    async def counts(self, workspace_id: uuid.UUID) -> dict[tuple[str, str], int]:
        rows = await self.session.execute(
            select(Connection.connector, Connection.status, func.count())
            .where(Connection.workspace_id == workspace_id)
            .group_by(Connection.connector, Connection.status)
        )
        return {(c, s): n for c, s, n in rows.all()}

    async def take_state(self, digest: str, connector: str) -> OAuthState | None:
        """The request in flight with this state, removed (a state is good once); an
        expired one too (the caller refuses it, knowing where its browser came from)."""
        row = await self.session.get(OAuthState, digest)
        if row is None:
            return None
        await self.session.execute(delete(OAuthState).where(OAuthState.state_digest == digest))
        return row if row.connector == connector else None

    async def purge_states(self, now: datetime) -> int:
        result = await self.session.execute(delete(OAuthState).where(OAuthState.expires_at <= now))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def expire_token(self, connection_id: uuid.UUID, now: datetime) -> None:
        """The vendor refused the access token before its expiry (revoked, rotated): the
        next use refreshes it."""
        await self.session.execute(
            update(Connection)
            .where(Connection.id == connection_id, Connection.status == "active")
            .values(token_expires_at=now)
        )

    # --- the refresh lease ------------------------------------------------------------

    async def take_refresh_lease(
        self, connection_id: uuid.UUID, owner: str, now: datetime, until: datetime
    ) -> bool:
        result = await self.session.execute(
            update(Connection)
            .where(
                Connection.id == connection_id,
                or_(Connection.refreshing_until.is_(None), Connection.refreshing_until <= now),
            )
            .values(refreshing_by=owner, refreshing_until=until)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def store_tokens(
        self,
        connection_id: uuid.UUID,
        owner: str,
        *,
        credentials: str | None,
        expires_at: datetime | None,
        status: str,
        reason: str | None,
    ) -> bool:
        """Store refreshed tokens (or forget dead ones: ``credentials=None``) and end the
        lease: only by the lease's holder."""
        values: dict[str, object] = {
            "status": status, "status_reason": reason, "refreshing_by": None,
            "refreshing_until": None, "token_version": Connection.token_version + 1,
            "credentials": credentials, "token_expires_at": expires_at,
        }  # fmt: skip
        result = await self.session.execute(
            update(Connection)
            .where(Connection.id == connection_id, Connection.refreshing_by == owner)
            .values(**values)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def end_lease(self, connection_id: uuid.UUID, owner: str) -> None:
        await self.session.execute(
            update(Connection)
            .where(Connection.id == connection_id, Connection.refreshing_by == owner)
            .values(refreshing_by=None, refreshing_until=None)
        )
