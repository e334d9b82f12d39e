"""What rollouts need of per-device updates: releasing one and cancelling one.

The app's assembly provides it (``UpdatesFactory``: the update service in a unit of
work); rollouts never build per-device updates themselves.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.models import Device
from fieldwatch.firmware.models import FirmwareArtifact, FirmwareUpdate


class Updates(Protocol):
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
        """Create the device's update in the caller's transaction (delivered after
        commit); an ``AppError`` when the device can not take it."""
        ...

    async def cancel(self, update: FirmwareUpdate, *, by: str) -> None:
        """Cancel an update that has not finished (nothing when it has)."""
        ...


UpdatesFactory = Callable[[UnitOfWork], Updates]
