"""All SQL of artifacts, signing keys and the signing policy; every query is scoped to
a workspace except the ones a device link needs (``by_id``, ``device``) and the blob's
reference count (blobs are shared by content across workspaces)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

from sqlalchemy import ColumnElement, Select, delete, func, select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from fieldwatch.db.paging import scalars_page
from fieldwatch.devices.models import Device
from fieldwatch.firmware.models import (
    FirmwareArtifact,
    FirmwarePolicy,
    FirmwareUpdate,
    Rollout,
    SigningKey,
)

#: Rollouts that still use their artifact; updates that have not finished.
UNFINISHED_ROLLOUTS = ("draft", "running", "paused")
FINISHED_UPDATES = ("completed", "failed", "cancelled", "expired")


class ArtifactRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, obj: object) -> None:
        self.session.add(obj)

    async def get(self, workspace_id: uuid.UUID, artifact_id: uuid.UUID) -> FirmwareArtifact | None:
        return await self.session.scalar(
            select(FirmwareArtifact).where(
                FirmwareArtifact.id == artifact_id, FirmwareArtifact.workspace_id == workspace_id
            )
        )

    async def by_id(self, artifact_id: uuid.UUID) -> FirmwareArtifact | None:
        """Any workspace's (a signed link names no workspace: its device decides)."""
        return await self.session.get(FirmwareArtifact, artifact_id)

    async def version_taken(self, workspace_id: uuid.UUID, version: str) -> bool:
        found = await self.session.scalar(
            select(FirmwareArtifact.id).where(
                FirmwareArtifact.workspace_id == workspace_id, FirmwareArtifact.version == version
            )
        )
        return found is not None

    def _has_type(self, device_type: str) -> ColumnElement[bool]:
        column = FirmwareArtifact.device_types
        if self.session.get_bind().dialect.name == "postgresql":
            return type_coerce(column, JSONB).contains([device_type])  # @>
        each = func.json_each(column).table_valued("value")
        return select(each.c.value).where(each.c.value == device_type).exists()

    async def page(
        self, workspace_id: uuid.UUID, *, device_type: str | None, limit: int, offset: int
    ) -> tuple[Sequence[FirmwareArtifact], int]:
        stmt = select(FirmwareArtifact).where(FirmwareArtifact.workspace_id == workspace_id)
        if device_type is not None:
            stmt = stmt.where(self._has_type(device_type))
        stmt = stmt.order_by(FirmwareArtifact.created_at.desc(), FirmwareArtifact.id.desc())
        return await scalars_page(self.session, stmt, limit=limit, offset=offset)

    async def unfinished_rollouts(self, artifact_id: uuid.UUID) -> int:
        return await self._count(
            select(func.count()).where(
                Rollout.artifact_id == artifact_id, Rollout.status.in_(UNFINISHED_ROLLOUTS)
            )
        )

    async def open_updates(self, artifact_id: uuid.UUID) -> int:
        return await self._count(
            select(func.count()).where(
                FirmwareUpdate.artifact_id == artifact_id,
                FirmwareUpdate.state.not_in(FINISHED_UPDATES),
            )
        )

    async def history(self, artifact_id: uuid.UUID) -> int:
        """Rollouts and updates (finished ones too) that refer to the artifact."""
        rollouts = select(func.count()).where(Rollout.artifact_id == artifact_id)
        updates = select(func.count()).where(FirmwareUpdate.artifact_id == artifact_id)
        return await self._count(rollouts) + await self._count(updates)

    async def _count(self, stmt: object) -> int:
        return int(await self.session.scalar(stmt) or 0)  # type: ignore[call-overload]

    async def delete(self, artifact: FirmwareArtifact) -> None:
        await self.session.execute(
            delete(FirmwareArtifact).where(FirmwareArtifact.id == artifact.id)
        )

    async def blob_referenced(self, sha256: str) -> bool:
        found = await self.session.scalar(
            select(FirmwareArtifact.id).where(FirmwareArtifact.sha256 == sha256).limit(1)
        )
        return found is not None

    async def device(self, device_id: uuid.UUID) -> Device | None:
        return await self.session.get(Device, device_id)


class SigningKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, obj: object) -> None:
        self.session.add(obj)

    async def get(self, workspace_id: uuid.UUID, key_id: uuid.UUID) -> SigningKey | None:
        return await self.session.scalar(
            select(SigningKey).where(
                SigningKey.id == key_id, SigningKey.workspace_id == workspace_id
            )
        )

    async def by_fingerprint(self, workspace_id: uuid.UUID, fingerprint: str) -> SigningKey | None:
        return await self.session.scalar(
            select(SigningKey).where(
                SigningKey.workspace_id == workspace_id, SigningKey.fingerprint == fingerprint
            )
        )

    async def by_ids(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, SigningKey]:
        wanted = set(ids)
        if not wanted:
            return {}
        rows = await self.session.scalars(select(SigningKey).where(SigningKey.id.in_(wanted)))
        return {key.id: key for key in rows}

    def _of(self, workspace_id: uuid.UUID) -> Select[tuple[SigningKey]]:
        return (
            select(SigningKey)
            .where(SigningKey.workspace_id == workspace_id)
            .order_by(SigningKey.created_at, SigningKey.id)
        )

    async def page(
        self, workspace_id: uuid.UUID, *, limit: int, offset: int
    ) -> tuple[Sequence[SigningKey], int]:
        return await scalars_page(self.session, self._of(workspace_id), limit=limit, offset=offset)

    async def active(self, workspace_id: uuid.UUID) -> Sequence[SigningKey]:
        stmt = self._of(workspace_id).where(SigningKey.revoked_at.is_(None))
        return (await self.session.scalars(stmt)).all()

    async def policy(self, workspace_id: uuid.UUID) -> FirmwarePolicy | None:
        return await self.session.get(FirmwarePolicy, workspace_id)
