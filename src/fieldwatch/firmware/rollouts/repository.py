"""All SQL of firmware rollouts.

State changes are conditional UPDATEs returning the row: a pause and the engine, or the
engines of two processes, never apply the same change twice. The engine takes a
running rollout's row lock first (``lock_running``), so one process at a time advances
a rollout, and claims each device's release with ``released_at IS NULL``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fieldwatch.core.ids import new_id
from fieldwatch.db.paging import rows_page, scalars_page
from fieldwatch.devices.models import Device
from fieldwatch.firmware.models import (
    FirmwareUpdate,
    Rollout,
    RolloutDevice,
    RolloutWave,
)
from fieldwatch.firmware.rollouts.planning import Candidate
from fieldwatch.firmware.updates import states as st

#: States of an update the device has not started on: an abort cancels these.
UNSTARTED = (st.PENDING, st.SENT)


class RolloutRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, obj: Any) -> None:
        self.session.add(obj)

    # --- rollouts ---------------------------------------------------------------------

    async def get(self, workspace_id: uuid.UUID, rollout_id: uuid.UUID) -> Rollout | None:
        return await self.session.scalar(
            select(Rollout).where(Rollout.id == rollout_id, Rollout.workspace_id == workspace_id)
        )

    async def page(
        self, workspace_id: uuid.UUID, statuses: Sequence[str], *, limit: int, offset: int
    ) -> tuple[Sequence[Rollout], int]:
        stmt = select(Rollout).where(Rollout.workspace_id == workspace_id)
        if statuses:
            stmt = stmt.where(Rollout.status.in_(statuses))
        stmt = stmt.order_by(Rollout.created_at.desc(), Rollout.id.desc())
        return await scalars_page(self.session, stmt, limit=limit, offset=offset)

    async def change(
        self, rollout_id: uuid.UUID, from_statuses: Sequence[str], values: dict[str, Any]
    ) -> Rollout | None:
        """Apply ``values`` if the rollout is in one of ``from_statuses``; the updated
        row, or None when it is not (any more)."""
        stmt = (
            update(Rollout)
            .where(Rollout.id == rollout_id, Rollout.status.in_(from_statuses))
            .values(**values, version=Rollout.version + 1)
            .returning(Rollout)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        return (await self.session.scalars(stmt)).first()

    async def lock_running(self, rollout_id: uuid.UUID) -> Rollout | None:
        """The rollout if it is running, with its row locked until the transaction ends
        (one write: also SQLite's write lock, so what is read next is current)."""
        stmt = (
            update(Rollout)
            .where(Rollout.id == rollout_id, Rollout.status == "running")
            .values(version=Rollout.version)
            .returning(Rollout)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        return (await self.session.scalars(stmt)).first()

    async def running_ids(self) -> Sequence[uuid.UUID]:
        stmt = select(Rollout.id).where(Rollout.status == "running").order_by(Rollout.created_at)
        return (await self.session.scalars(stmt)).all()

    # --- what a plan needs ------------------------------------------------------------

    async def candidates(
        self, workspace_id: uuid.UUID, ids: Select[tuple[uuid.UUID]]
    ) -> list[Candidate]:
        rows = await self.session.execute(
            select(
                Device.id, Device.name, Device.type, Device.hardware_version,
                Device.firmware_version, Device.status,
            ).where(Device.workspace_id == workspace_id, Device.id.in_(ids))
        )  # fmt: skip
        return [Candidate(*row) for row in rows.tuples()]

    async def with_open_updates(
        self, workspace_id: uuid.UUID, ids: Select[tuple[uuid.UUID]]
    ) -> set[uuid.UUID]:
        rows = await self.session.scalars(
            select(FirmwareUpdate.device_id)
            .where(
                FirmwareUpdate.workspace_id == workspace_id,
                FirmwareUpdate.state.not_in(st.FINAL),
                FirmwareUpdate.device_id.in_(ids),
            )
            .distinct()
        )
        return set(rows.all())

    async def existing_devices(
        self, workspace_id: uuid.UUID, ids: Sequence[uuid.UUID]
    ) -> set[uuid.UUID]:
        rows = await self.session.scalars(
            select(Device.id).where(Device.workspace_id == workspace_id, Device.id.in_(ids))
        )
        return set(rows.all())

    # --- the snapshot -----------------------------------------------------------------

    async def insert_targets(
        self, rollout_id: uuid.UUID, waves: Sequence[Sequence[uuid.UUID]]
    ) -> None:
        rows = [
            {"id": new_id(), "rollout_id": rollout_id, "device_id": d, "wave": number}
            for number, devices in enumerate(waves, start=1)
            for d in devices
        ]
        for start in range(0, len(rows), 1000):
            await self.session.execute(insert(RolloutDevice), rows[start : start + 1000])

    async def waves(self, rollout_id: uuid.UUID) -> Sequence[RolloutWave]:
        stmt = (
            select(RolloutWave)
            .where(RolloutWave.rollout_id == rollout_id)
            .order_by(RolloutWave.number)
            .execution_options(populate_existing=True)
        )
        return (await self.session.scalars(stmt)).all()

    async def change_wave(
        self, wave_id: uuid.UUID, from_statuses: Sequence[str], values: dict[str, Any]
    ) -> RolloutWave | None:
        stmt = (
            update(RolloutWave)
            .where(RolloutWave.id == wave_id, RolloutWave.status.in_(from_statuses))
            .values(**values)
            .returning(RolloutWave)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        return (await self.session.scalars(stmt)).first()

    async def halt_waves(self, rollout_id: uuid.UUID) -> None:
        await self.session.execute(
            update(RolloutWave)
            .where(
                RolloutWave.rollout_id == rollout_id,
                RolloutWave.status.in_(("pending", "running", "soaking")),
            )
            .values(status="halted")
        )

    # --- releasing --------------------------------------------------------------------

    async def released_since(self, rollout_id: uuid.UUID, since: datetime) -> int:
        return int(
            await self.session.scalar(
                select(func.count()).where(
                    RolloutDevice.rollout_id == rollout_id, RolloutDevice.released_at >= since
                )
            )
            or 0
        )

    async def unreleased(
        self, rollout_id: uuid.UUID, wave: int, limit: int
    ) -> Sequence[tuple[RolloutDevice, Device]]:
        rows = await self.session.execute(
            select(RolloutDevice, Device)
            .join(Device, Device.id == RolloutDevice.device_id)
            .where(
                RolloutDevice.rollout_id == rollout_id,
                RolloutDevice.wave == wave,
                RolloutDevice.released_at.is_(None),
            )
            .order_by(RolloutDevice.id)
            .limit(limit)
        )
        return rows.tuples().all()

    async def count_unreleased(self, rollout_id: uuid.UUID) -> int:
        return int(
            await self.session.scalar(
                select(func.count()).where(
                    RolloutDevice.rollout_id == rollout_id, RolloutDevice.released_at.is_(None)
                )
            )
            or 0
        )

    async def claim(self, target_id: uuid.UUID, now: datetime) -> bool:
        """Mark one target released, unless it already is (another process did)."""
        result = await self.session.execute(
            update(RolloutDevice)
            .where(RolloutDevice.id == target_id, RolloutDevice.released_at.is_(None))
            .values(released_at=now)
            .returning(RolloutDevice.id)
        )
        return result.first() is not None

    async def set_update(self, target_id: uuid.UUID, command_id: uuid.UUID) -> None:
        await self.session.execute(
            update(RolloutDevice).where(RolloutDevice.id == target_id).values(command_id=command_id)
        )

    async def skip(self, target_id: uuid.UUID, reason: str, detail: str) -> None:
        """A released target that got no update: why."""
        await self.session.execute(
            update(RolloutDevice)
            .where(RolloutDevice.id == target_id)
            .values(skip_reason=reason, skip_detail=detail)
        )

    async def unstarted_updates(self, rollout_id: uuid.UUID) -> Sequence[FirmwareUpdate]:
        rows = await self.session.scalars(
            select(FirmwareUpdate).where(
                FirmwareUpdate.rollout_id == rollout_id,
                FirmwareUpdate.state.in_(UNSTARTED),
            )
        )
        return rows.all()

    # --- figures ----------------------------------------------------------------------

    async def state_counts(
        self, rollout_id: uuid.UUID, *, wave: int | None = None, since: datetime | None = None
    ) -> Sequence[tuple[int, bool, str | None, str | None, int]]:
        """(wave, released, update state, failure reason, count) of the rollout's
        targets (of one wave; released since ``since``). A released target without an
        update state was skipped."""
        released = RolloutDevice.released_at.is_not(None)
        stmt = (
            select(
                RolloutDevice.wave, released, FirmwareUpdate.state, FirmwareUpdate.reason,
                func.count(),
            )
            .select_from(RolloutDevice)
            .outerjoin(FirmwareUpdate, FirmwareUpdate.command_id == RolloutDevice.command_id)
            .where(RolloutDevice.rollout_id == rollout_id)
            .group_by(RolloutDevice.wave, released, FirmwareUpdate.state, FirmwareUpdate.reason)
        )  # fmt: skip
        if wave is not None:
            stmt = stmt.where(RolloutDevice.wave == wave)
        if since is not None:
            stmt = stmt.where(RolloutDevice.released_at >= since)
        rows = await self.session.execute(stmt)
        return [(w, bool(r), s, why, int(n)) for w, r, s, why, n in rows.tuples()]

    async def devices_page(
        self,
        rollout_id: uuid.UUID,
        *,
        wave: int | None,
        state: str | None,
        limit: int,
        offset: int,
    ) -> tuple[Sequence[tuple[RolloutDevice, str, FirmwareUpdate | None]], int]:
        stmt = (
            select(RolloutDevice, Device.name, FirmwareUpdate)
            .join(Device, Device.id == RolloutDevice.device_id)
            .outerjoin(FirmwareUpdate, FirmwareUpdate.command_id == RolloutDevice.command_id)
            .where(RolloutDevice.rollout_id == rollout_id)
            .order_by(RolloutDevice.wave, RolloutDevice.id)
        )
        if wave is not None:
            stmt = stmt.where(RolloutDevice.wave == wave)
        if state == "unreleased":
            stmt = stmt.where(RolloutDevice.released_at.is_(None))
        elif state == "skipped":
            stmt = stmt.where(
                and_(RolloutDevice.released_at.is_not(None), FirmwareUpdate.state.is_(None))
            )
        elif state is not None:
            stmt = stmt.where(FirmwareUpdate.state == state)
        return await rows_page(self.session, stmt, limit=limit, offset=offset)
