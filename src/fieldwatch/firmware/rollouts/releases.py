"""What rollouts do with per-device updates beyond starting them (``UpdateService.start``):
withdraw one the device has not started on, in the server's name (an abort), through the
ledger, which the update follows."""

from __future__ import annotations

from collections.abc import Callable

from fieldwatch.commands.models import CANCELLED
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.firmware.models import FirmwareUpdate
from fieldwatch.firmware.updates.service import UpdateService

#: How the engine and the routes get the update service of a unit of work.
UpdatesFactory = Callable[[UnitOfWork], UpdateService]


async def withdraw(updates: UpdateService, update: FirmwareUpdate, *, by: str) -> None:
    """Cancel ``update`` (nothing if it ended meanwhile)."""
    command = await updates.commands.of_device(update.device_id, update.command_id)
    if command is not None:
        await updates.commands.close(command, CANCELLED, detail=f"cancelled by {by}")
