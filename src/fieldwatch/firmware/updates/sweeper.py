"""The process's part of firmware updates (``Runtime.firmware``): the ledger's
``firmware_update`` command kind (its message, and the update following its command),
device reports, version reports kept cheap, the deadline sweep (``sweep``, a worker's
periodic job) and HTTP polling.

Everything lives in the database: a restart loses nothing, and a sweep handles an update
past its deadline only if its conditional UPDATE wins.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fieldwatch.commands.delivery import CommandDispatcher
from fieldwatch.commands.models import Command
from fieldwatch.core.clock import utcnow
from fieldwatch.core.errors import ConcurrentModification
from fieldwatch.core.events import Event, EventBus
from fieldwatch.core.settings import Settings
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.events import DEVICE_UPDATED
from fieldwatch.firmware.artifacts.download import DownloadSigner
from fieldwatch.firmware.models import FirmwareUpdate
from fieldwatch.firmware.updates import messages
from fieldwatch.firmware.updates.events import UPDATE_CHANGED
from fieldwatch.firmware.updates.messages import StateReport
from fieldwatch.firmware.updates.repository import UpdateRepository
from fieldwatch.firmware.updates.service import COMMAND, UpdateService
from fieldwatch.firmware.updates.states import FAILED, FINAL

log = logging.getLogger(__name__)

SWEEP_BATCH = 200


class FirmwareUpdates:
    #: The ledger's command kind (``commands.kinds.CommandKind``): how it is sent.
    frame = messages.FRAME

    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        bus: EventBus,
        commands: CommandDispatcher,
        signer: DownloadSigner,
    ) -> None:
        self.settings = settings
        #: Signs the download links of update messages (the runtime's
        #: ``FirmwareFiles.signer``, which checks them too).
        self.signer = signer
        self.sessionmaker = sessionmaker
        self.bus = bus
        self.commands = commands
        #: The version each device last reported here (a report of the same version
        #: costs a dict lookup) …
        self.known: dict[uuid.UUID, str] = {}
        #: … unless the device has an open update (kept from ``firmware.update_changed``
        #: events, which reach every process; loaded on first use).
        self.open_devices: set[uuid.UUID] = set()
        self._loaded = False
        self._load_lock = asyncio.Lock()
        commands.register(COMMAND, self)
        bus.subscribe(UPDATE_CHANGED, self._on_changed)
        bus.subscribe(DEVICE_UPDATED, self._on_device_updated)

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.sessionmaker, self.bus)

    def service(self, uow: UnitOfWork) -> UpdateService:
        return UpdateService(uow, self.commands.service(uow), self.settings, self.signer)

    # --- the ledger's command kind --------------------------------------------------------

    async def message(self, command: Command) -> dict[str, Any]:
        """The update message, with a fresh signed URL and the update's try number."""
        async with self.uow() as uow:
            update = await UpdateRepository(uow.session).by_id(command.id)
        attempt = update.tries if update is not None else 1
        return messages.update_message(
            command, url=messages.url_for(self.settings, self.signer, command), attempt=attempt
        )

    async def changed(self, uow: UnitOfWork, command: Command, previous: str | None) -> None:
        await self.service(uow).follow_ledger(command)

    # --- devices --------------------------------------------------------------------------

    async def report(self, device_id: uuid.UUID, report: StateReport) -> FirmwareUpdate | None:
        """A device's state report, committed. None for an update it does not have.
        Most reports are one statement (``report_at_once``); the rest a transaction."""
        if report.state != FAILED:
            async with self.uow() as uow:
                update = await self.service(uow).report_at_once(
                    device_id, report.update_id, report.state, report.bytes, report.detail
                )
                await uow.commit()
            if update is not None:
                return update
        async with self.uow() as uow:
            update = await self.service(uow).report(
                device_id, report.update_id, report.state, report.bytes, report.reason,
                report.detail,
            )  # fmt: skip
            await uow.commit()
        return update

    async def version_reported(self, device_id: uuid.UUID, version: str) -> None:
        """The device runs ``version`` (``UpdateService.version_reported``, committed).
        The same version again, with no update open, costs only a lookup here."""
        if not self._loaded:
            await self._load()
        if self.known.get(device_id) == version and device_id not in self.open_devices:
            return
        try:
            async with self.uow() as uow:
                await self.service(uow).version_reported(device_id, version)
                await uow.commit()
        except ConcurrentModification:  # an operator edited the device just now
            log.info("device %s: version report lost a race; taken next time", device_id)
            return
        self.known[device_id] = version

    async def _load(self) -> None:
        async with self._load_lock:
            if self._loaded:
                return
            async with self.uow() as uow:
                self.open_devices |= await UpdateRepository(uow.session).devices_with_open()
            self._loaded = True

    async def _on_changed(self, event: Event) -> None:
        if event.subject_id is None:
            return
        if event.payload.get("state") in FINAL:
            self.open_devices.discard(event.subject_id)
        else:
            self.open_devices.add(event.subject_id)

    async def _on_device_updated(self, event: Event) -> None:
        """A device was edited (its recorded version, perhaps): its next report is
        checked against the database again."""
        if event.subject_id is not None:
            self.known.pop(event.subject_id, None)

    # --- sweeping -------------------------------------------------------------------------

    async def sweep(self) -> int:
        """Updates past their state's deadline: retried (tries+1, resent) or failed as a
        timeout. How many were handled here."""
        handled = 0
        async with self.uow() as uow:
            service = self.service(uow)
            for update in await service.updates.past_deadline(utcnow(), SWEEP_BATCH):
                if await service.sweep_one(update) is not None:
                    handled += 1
            await uow.commit()
        return handled
