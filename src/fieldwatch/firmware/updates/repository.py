"""All SQL of per-device firmware updates (and the artifact and policy reads they need).

State changes are conditional UPDATEs (``WHERE state IN (...)``, and the tries count for
retries) returning the row: of two processes (or a device report racing the sweeper)
only the one whose UPDATE matched owns the change.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fieldwatch.commands.models import Command
from fieldwatch.core.ids import new_id
from fieldwatch.devices.models import Device
from fieldwatch.firmware.models import FirmwareArtifact, FirmwarePolicy, FirmwareUpdate, SigningKey
from fieldwatch.firmware.updates import statements
from fieldwatch.firmware.updates.states import OPEN


class UpdateRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, obj: Any) -> None:
        self.session.add(obj)

    async def get(self, workspace_id: uuid.UUID, update_id: uuid.UUID) -> FirmwareUpdate | None:
        return await self.session.scalar(
            select(FirmwareUpdate).where(
                FirmwareUpdate.command_id == update_id, FirmwareUpdate.workspace_id == workspace_id
            )
        )

    async def by_id(self, update_id: uuid.UUID) -> FirmwareUpdate | None:
        return await self.session.get(FirmwareUpdate, update_id, populate_existing=True)

    async def for_device(self, device_id: uuid.UUID, update_id: uuid.UUID) -> FirmwareUpdate | None:
        return await self.session.scalar(
            select(FirmwareUpdate).where(
                FirmwareUpdate.command_id == update_id, FirmwareUpdate.device_id == device_id
            )
        )

    async def lock_device(self, device_id: uuid.UUID) -> None:
        """Hold the device's row until commit (PostgreSQL), so two updates started at
        once for one device see each other."""
        stmt = select(Device.id).where(Device.id == device_id).with_for_update()
        await self.session.execute(stmt)

    async def open_for(self, device_id: uuid.UUID) -> FirmwareUpdate | None:
        """The device's open update (at most one is started at a time), newest first."""
        return await self.session.scalar(
            select(FirmwareUpdate)
            .where(FirmwareUpdate.device_id == device_id, FirmwareUpdate.state.in_(OPEN))
            .order_by(FirmwareUpdate.created_at.desc())
            .limit(1)
        )

    async def devices_with_open(self) -> set[uuid.UUID]:
        rows = await self.session.scalars(
            select(FirmwareUpdate.device_id).where(FirmwareUpdate.state.in_(OPEN)).distinct()
        )
        return set(rows)

    async def page(
        self,
        workspace_id: uuid.UUID,
        *,
        device_id: uuid.UUID | None,
        states: Sequence[str],
        rollout_id: uuid.UUID | None,
        limit: int,
        offset: int,
    ) -> tuple[Sequence[FirmwareUpdate], int]:
        where = [FirmwareUpdate.workspace_id == workspace_id]
        if device_id is not None:
            where.append(FirmwareUpdate.device_id == device_id)
        if states:
            where.append(FirmwareUpdate.state.in_(states))
        if rollout_id is not None:
            where.append(FirmwareUpdate.rollout_id == rollout_id)
        total = await self.session.scalar(
            select(func.count()).select_from(FirmwareUpdate).where(*where)
        )
        rows = await self.session.scalars(
            select(FirmwareUpdate)
            .where(*where)
            .order_by(FirmwareUpdate.created_at.desc(), FirmwareUpdate.command_id)
            .limit(limit)
            .offset(offset)
        )
        return rows.all(), int(total or 0)

    async def change(
        self,
        update_id: uuid.UUID,
        from_states: Sequence[str],
        values: dict[str, Any],
        *,
        tries: int | None = None,
        due_by: datetime | None = None,
    ) -> FirmwareUpdate | None:
        """Apply ``values`` if the update is in one of ``from_states`` (and on try
        ``tries``, and past its deadline at ``due_by``, when given); the updated row, or
        None when another change won."""
        where = [FirmwareUpdate.command_id == update_id, FirmwareUpdate.state.in_(from_states)]
        if tries is not None:
            where.append(FirmwareUpdate.tries == tries)
        if due_by is not None:
            where.append(FirmwareUpdate.state_deadline <= due_by)
        stmt = (
            update(FirmwareUpdate)
            .where(*where)
            .values(**values)
            .returning(FirmwareUpdate)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        return (await self.session.scalars(stmt)).first()

    def one_statement(self) -> bool:
        """Whether ``change_and_note`` works here (PostgreSQL's writing CTEs)."""
        return self.session.get_bind().dialect.name == "postgresql"

    async def change_and_note(
        self,
        device_id: uuid.UUID,
        update_id: uuid.UUID,
        from_states: Sequence[str],
        values: dict[str, Any],
        note: tuple[datetime, str] | None,
    ) -> tuple[FirmwareUpdate, str] | None:
        """``change`` of the device's update and, when its state changed, the command's
        transition at its current attempt (``note``: when, detail), in one statement
        (PostgreSQL only: ``one_statement``). The updated row and the state it left, or
        None when the update is not in one of ``from_states`` (or not the device's)."""
        stmt = statements.change_and_note(tuple(values), tuple(from_states), note is not None)
        noted = None if note is None else (new_id(), *note)
        params = statements.change_params(device_id, update_id, values, noted)
        found = (await self.session.execute(stmt, params)).first()
        return None if found is None else (found[0], found[1])

    async def acknowledge_with_command(
        self,
        device_id: uuid.UUID,
        update_id: uuid.UUID,
        values: dict[str, Any],
        note: tuple[datetime, str],
    ) -> tuple[FirmwareUpdate, str, Command | None, str | None] | None:
        """The device's first report on its update: the update (pending or sent) moves
        to ``values``, its ledger command (pending or sent) to acknowledged with the
        command's transition (``note``: when, detail), in one statement (PostgreSQL
        only). The update and the state it left, the command and the status it left
        (None when the command was past sent already); None when the update is not the
        device's or is past sent."""
        stmt = statements.acknowledge_with_command(tuple(values))
        params = statements.change_params(device_id, update_id, values, (new_id(), *note))
        found = (await self.session.execute(stmt, params)).first()
        return None if found is None else (found[0], found[1], found[2], found[3])

    async def past_deadline(self, now: datetime, limit: int) -> Sequence[FirmwareUpdate]:
        rows = await self.session.scalars(
            select(FirmwareUpdate)
            .where(FirmwareUpdate.state.in_(OPEN), FirmwareUpdate.state_deadline <= now)
            .order_by(FirmwareUpdate.state_deadline)
            .limit(limit)
        )
        return rows.all()

    # --- artifacts and policy -----------------------------------------------------------

    async def artifact(
        self, workspace_id: uuid.UUID, artifact_id: uuid.UUID
    ) -> FirmwareArtifact | None:
        return await self.session.scalar(
            select(FirmwareArtifact).where(
                FirmwareArtifact.id == artifact_id, FirmwareArtifact.workspace_id == workspace_id
            )
        )

    async def artifact_by_version(
        self, workspace_id: uuid.UUID, version: str
    ) -> FirmwareArtifact | None:
        return await self.session.scalar(
            select(FirmwareArtifact).where(
                FirmwareArtifact.workspace_id == workspace_id, FirmwareArtifact.version == version
            )
        )

    async def security_versions(self, workspace_id: uuid.UUID) -> dict[str, int]:
        rows = await self.session.execute(
            select(FirmwareArtifact.version, FirmwareArtifact.security_version).where(
                FirmwareArtifact.workspace_id == workspace_id
            )
        )
        return {version: security for version, security in rows.tuples()}

    async def require_signed(self, workspace_id: uuid.UUID) -> bool:
        found = await self.session.scalar(
            select(FirmwarePolicy.require_signed).where(FirmwarePolicy.workspace_id == workspace_id)
        )
        return bool(found)

    async def key_fingerprint(self, key_id: uuid.UUID) -> str | None:
        stmt = select(SigningKey.fingerprint).where(SigningKey.id == key_id)
        return await self.session.scalar(stmt)
