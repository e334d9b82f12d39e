"""Per-device updates as rollouts use them: the update service's ``start``, and a
cancel in the server's name (an abort) through the ledger, which the update follows."""

from __future__ import annotations

import uuid
from datetime import datetime

from fieldwatch.commands.models import CANCELLED
from fieldwatch.devices.models import Device
from fieldwatch.firmware.models import FirmwareArtifact, FirmwareUpdate
from fieldwatch.firmware.rollouts.ports import UpdatesFactory
from fieldwatch.firmware.updates.service import UpdateService
from fieldwatch.firmware.updates.sweeper import FirmwareUpdates


class RolloutUpdates:
    def __init__(self, service: UpdateService) -> None:
        self.service = service

    async def start(
        self,
        *,
        workspace_id: uuid.UUID,
        device: Device,
        artifact: FirmwareArtifact,
        created_by: str,
        rollout_id: uuid.UUID | None = None,
        wave: int | None = None,
        max_tries: int | None = None,
        expires_at: datetime | None = None,
    ) -> FirmwareUpdate:
        return await self.service.start(
            workspace_id=workspace_id, device=device, artifact=artifact, created_by=created_by,
            rollout_id=rollout_id, wave=wave, max_tries=max_tries, expires_at=expires_at,
        )  # fmt: skip

    async def cancel(self, update: FirmwareUpdate, *, by: str) -> None:
        ledger = self.service.commands
        command = await ledger.of_device(update.device_id, update.command_id)
        if command is not None:  # closed (None) when it ended meanwhile
            await ledger.close(command, CANCELLED, detail=f"cancelled by {by}")


def rollout_updates(firmware: FirmwareUpdates) -> UpdatesFactory:
    """The factory the rollout engine and routes get their per-device updates from."""
    return lambda uow: RolloutUpdates(firmware.service(uow))
