"""All SQL of the command ledger and device configuration.

State changes are conditional UPDATEs (``WHERE status IN (...)``) returning the row, so
concurrent processes (several gateways, the sweeper of each) never apply the same
change twice: whoever's UPDATE matched owns the transition.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, inspect, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fieldwatch.commands.models import (
    OPEN_STATES,
    PENDING,
    SENT,
    Command,
    CommandTransition,
    ConfigVersion,
    DeviceConfig,
)
from fieldwatch.db.upsert import insert_for


def _deliverable(device_id: uuid.UUID, now: datetime) -> tuple[ColumnElement[bool], ...]:
    """A device's commands to send now: pending ones, and sent ones whose ack is
    overdue; not expired."""
    return (
        Command.device_id == device_id,
        (Command.status == PENDING) | ((Command.status == SENT) & (Command.next_attempt_at <= now)),
        Command.expires_at > now,
    )


class CommandRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, obj: Any) -> None:
        self.session.add(obj)

    def add_transition_at_current_attempt(self, row: CommandTransition) -> None:
        """Add ``row`` with its ``attempt`` read from its command by the INSERT itself."""
        row.attempt = select(Command.attempts).where(Command.id == row.command_id).scalar_subquery()
        self.session.add(row)

    async def get(self, workspace_id: uuid.UUID, command_id: uuid.UUID) -> Command | None:
        return await self.session.scalar(
            select(Command).where(Command.id == command_id, Command.workspace_id == workspace_id)
        )

    async def for_device(self, device_id: uuid.UUID, command_id: uuid.UUID) -> Command | None:
        return await self.session.scalar(
            select(Command).where(Command.id == command_id, Command.device_id == device_id)
        )

    async def insert_unless_key_used(self, command: Command) -> Command | None:
        """Store ``command`` unless its device already has a command with its
        idempotency key (one statement: two requests with the same key at once cannot
        both insert). The stored command, or None when the key was taken."""
        given = inspect(command).dict  # the attributes set, so column defaults still apply
        values = {c.key: given[c.key] for c in Command.__table__.columns if c.key in given}
        stmt = (
            insert_for(self.session, Command)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["device_id", "idempotency_key"])
            .returning(Command.id)
        )
        if (await self.session.execute(stmt)).scalar() is None:
            return None
        return await self.session.get(Command, command.id)

    async def by_idempotency_key(self, device_id: uuid.UUID, key: str) -> Command | None:
        return await self.session.scalar(
            select(Command).where(Command.device_id == device_id, Command.idempotency_key == key)
        )

    async def page(
        self,
        workspace_id: uuid.UUID,
        *,
        device_id: uuid.UUID | None,
        statuses: Sequence[str],
        limit: int,
        offset: int,
    ) -> tuple[Sequence[Command], int]:
        where = [Command.workspace_id == workspace_id]
        if device_id is not None:
            where.append(Command.device_id == device_id)
        if statuses:
            where.append(Command.status.in_(statuses))
        total = await self.session.scalar(select(func.count()).select_from(Command).where(*where))
        rows = await self.session.scalars(
            select(Command)
            .where(*where)
            .order_by(Command.created_at.desc(), Command.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return rows.all(), int(total or 0)

    async def transitions(self, command_id: uuid.UUID) -> Sequence[CommandTransition]:
        rows = await self.session.scalars(
            select(CommandTransition)
            .where(CommandTransition.command_id == command_id)
            # A command sent as it is created has two transitions at the same instant;
            # the attempt number (0 when created, then 1…) keeps them in order.
            .order_by(CommandTransition.at, CommandTransition.attempt, CommandTransition.id)
        )
        return rows.all()

    async def change(
        self,
        command_id: uuid.UUID,
        from_states: Sequence[str],
        values: dict[str, Any],
        *,
        device_id: uuid.UUID | None = None,
    ) -> Command | None:
        """Apply ``values`` if the command (of ``device_id``, when given) is in one of
        ``from_states``; the updated row, or None when another change got there first."""
        where = [Command.id == command_id, Command.status.in_(from_states)]
        if device_id is not None:
            where.append(Command.device_id == device_id)
        stmt = (
            update(Command)
            .where(*where)
            .values(**values)
            .returning(Command)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        return (await self.session.scalars(stmt)).first()

    async def claim_send(
        self,
        command: Command,
        *,
        now: datetime,
        next_attempt_at: datetime,
        transport: str,
    ) -> Command | None:
        """Mark one delivery attempt, if nobody else did since ``command`` was read."""
        stmt = (
            update(Command)
            .where(
                Command.id == command.id,
                Command.status == command.status,
                Command.attempts == command.attempts,
            )
            .values(
                status=SENT,
                attempts=Command.attempts + 1,
                sent_at=func.coalesce(Command.sent_at, now),
                next_attempt_at=next_attempt_at,
                transport=transport,
                updated_at=now,
            )
            .returning(Command)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        return (await self.session.scalars(stmt)).first()

    async def anything_deliverable(self, device_id: uuid.UUID, now: datetime) -> bool:
        """Whether ``deliverable`` would return anything."""
        found = await self.session.scalar(
            select(Command.id).where(*_deliverable(device_id, now)).limit(1)
        )
        return found is not None

    async def deliverable(self, device_id: uuid.UUID, now: datetime) -> Sequence[Command]:
        """The device's commands to send now, oldest first: pending ones, and sent ones
        whose ack is overdue."""
        rows = await self.session.scalars(
            select(Command)
            .where(*_deliverable(device_id, now))
            .order_by(Command.created_at, Command.id)
        )
        return rows.all()

    async def deliverable_for(
        self, device_ids: Sequence[uuid.UUID], now: datetime
    ) -> dict[uuid.UUID, list[Command]]:
        """What to send devices that just connected: their pending and sent commands
        not yet expired (a sent one was never acknowledged), oldest first."""
        rows = await self.session.scalars(
            select(Command)
            .where(
                Command.device_id.in_(device_ids),
                Command.status.in_((PENDING, SENT)),
                Command.expires_at > now,
            )
            .order_by(Command.created_at, Command.id)
        )
        out: dict[uuid.UUID, list[Command]] = {}
        for command in rows:
            out.setdefault(command.device_id, []).append(command)
        return out

    async def overdue(self, now: datetime, limit: int) -> Sequence[Command]:
        """Sent commands whose ack is overdue, oldest first."""
        rows = await self.session.scalars(
            select(Command)
            .where(Command.status == SENT, Command.next_attempt_at <= now)
            .order_by(Command.next_attempt_at)
            .limit(limit)
        )
        return rows.all()

    async def past_ttl(self, now: datetime, limit: int) -> Sequence[Command]:
        rows = await self.session.scalars(
            select(Command)
            .where(Command.status.in_(OPEN_STATES), Command.expires_at <= now)
            .order_by(Command.expires_at)
            .limit(limit)
        )
        return rows.all()


class ConfigRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, obj: Any) -> None:
        self.session.add(obj)

    async def get(self, device_id: uuid.UUID, *, for_update: bool = False) -> DeviceConfig | None:
        stmt = select(DeviceConfig).where(DeviceConfig.device_id == device_id)
        if for_update:
            stmt = stmt.with_for_update()
        return await self.session.scalar(stmt)

    async def version(self, device_id: uuid.UUID, version: int) -> ConfigVersion | None:
        return await self.session.scalar(
            select(ConfigVersion).where(
                ConfigVersion.device_id == device_id, ConfigVersion.version == version
            )
        )

    async def unapplied(self, device_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, ConfigVersion]:
        """The desired configuration of each of these devices that has not reported it
        applied."""
        rows = await self.session.scalars(
            select(ConfigVersion)
            .join(
                DeviceConfig,
                (DeviceConfig.device_id == ConfigVersion.device_id)
                & (DeviceConfig.desired_version == ConfigVersion.version),
            )
            .where(
                DeviceConfig.device_id.in_(device_ids),
                DeviceConfig.desired_version > 0,
                func.coalesce(DeviceConfig.reported_version, 0) < DeviceConfig.desired_version,
            )
        )
        return {version.device_id: version for version in rows}

    async def mark_pushed(self, device_id: uuid.UUID, version: int, now: datetime) -> None:
        await self.session.execute(
            update(DeviceConfig)
            .where(DeviceConfig.device_id == device_id)
            .values(pushed_version=version, pushed_at=now)
        )

    async def report(
        self, device_id: uuid.UUID, version: int, now: datetime
    ) -> DeviceConfig | None:
        """Record ``version`` as applied unless a newer one is recorded already."""
        stmt = (
            update(DeviceConfig)
            .where(
                DeviceConfig.device_id == device_id,
                DeviceConfig.desired_version >= version,
                func.coalesce(DeviceConfig.reported_version, 0) < version,
            )
            .values(reported_version=version, reported_at=now)
            .returning(DeviceConfig)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        return (await self.session.scalars(stmt)).first()
