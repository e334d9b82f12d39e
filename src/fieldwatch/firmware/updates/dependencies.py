"""Request dependencies of firmware updates."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from fieldwatch.core.components import Slot
from fieldwatch.db.dependencies import UowDep
from fieldwatch.firmware.updates.service import UpdateService
from fieldwatch.firmware.updates.sweeper import FirmwareUpdates

FIRMWARE_UPDATES: Slot[FirmwareUpdates] = Slot("firmware_updates")
FirmwareUpdatesDep = Annotated[FirmwareUpdates, Depends(FIRMWARE_UPDATES)]


async def get_update_service(uow: UowDep, updates: FirmwareUpdatesDep) -> UpdateService:
    return updates.service(uow)


UpdateServiceDep = Annotated[UpdateService, Depends(get_update_service)]
