"""Getting commands and configuration to devices.

Transports (the WebSocket gateway, the MQTT gateway) ``attach`` a channel when a
device connects and ``detach`` it when it goes. The dispatcher then sends, in creation
order, the device's pending commands and any sent ones it never acknowledged, and its
desired configuration if it has not reported it applied.

Every ``CommandService`` comes from ``CommandDispatcher.service``. A command created
for a device connected to this process is claimed in its creating transaction and sent
once that commits (an ``after_commit`` callback of the unit of work): callers only
create and commit. Otherwise the ``command.created`` event, which reaches every process
on a fan-out bus, has it sent by the process that holds the device's channel. Each send
is claimed in the database first (a conditional UPDATE), so two processes never send
the same attempt. What devices report (acks, results, configuration applied) comes in
as typed messages (``messages``) and is recorded by ``record``.

Two periodic jobs (``sweep`` runs both): ``expire_due`` expires commands past their TTL
and fails as ``undelivered`` those still unacknowledged after ``max_attempts`` sends (a
worker's, once per tick over the installation); ``resend_due`` resends the overdue ones of
the devices connected here (a gateway's, in each gateway process).
Nothing lives only in memory: after a restart the next connect or sweep picks up where
the database says.

Another domain gives a command name a message and rules of its own by registering a
``kinds.CommandKind`` (``register``); channels then send its message as that kind's
``frame`` (``DeviceChannel.send_command``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fieldwatch.commands.config import ConfigService
from fieldwatch.commands.events import COMMAND_CREATED, CONFIG_UPDATED
from fieldwatch.commands.kinds import COMMAND_FRAME, CommandKind
from fieldwatch.commands.messages import CommandAck, ConfigApplied, DeviceReport
from fieldwatch.commands.models import SENT, Command, ConfigVersion
from fieldwatch.commands.service import CommandService
from fieldwatch.core.batching import Batcher
from fieldwatch.core.events import Event, EventBus
from fieldwatch.core.observability import Distribution
from fieldwatch.core.settings import Settings
from fieldwatch.db.uow import UnitOfWork

log = logging.getLogger(__name__)

SWEEP_BATCH = 500
#: Seconds from creation to the device (a command may wait for its device for hours).
DELIVERY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 86400)


def command_message(command: Command) -> dict[str, Any]:
    """The transport-neutral command a device receives."""
    return {
        "command_id": str(command.id),
        "command": command.command,
        "params": command.params,
        "attempt": command.attempts,
        "expires_at": command.expires_at.isoformat(),
    }


def config_message(version: ConfigVersion) -> dict[str, Any]:
    return {
        "config_id": str(version.id),
        "version": version.version,
        "config": version.document,
    }


class DeviceChannel(Protocol):
    """How one transport reaches one connected device."""

    transport: str

    async def send_command(self, message: dict[str, Any], frame: str = COMMAND_FRAME) -> bool:
        """Send a command's message as ``frame`` (``command``, or a command kind's own)."""
        ...

    async def send_config(self, message: dict[str, Any]) -> bool: ...


class CommandDispatcher:
    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        bus: EventBus,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.bus = bus
        self.channels: dict[uuid.UUID, DeviceChannel] = {}
        #: Command name → its kind (``register``).
        self.kinds: dict[str, CommandKind] = {}
        self._locks: dict[uuid.UUID, asyncio.Lock] = {}
        self._arrivals = Batcher(self._waiting, name="command-arrivals")
        #: Seconds from a command's creation to the device's acknowledgement (or result).
        self.delivery = Distribution(DELIVERY_BUCKETS)

    def subscribe(self, bus: EventBus) -> None:
        bus.subscribe(COMMAND_CREATED, self._on_created)
        bus.subscribe(CONFIG_UPDATED, self._on_config)

    def register(self, name: str, kind: CommandKind) -> None:
        """Commands named ``name`` get ``kind``'s message and follow-up (at start-up)."""
        self.kinds[name] = kind

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.sessionmaker, self.bus)

    def service(self, uow: UnitOfWork) -> CommandService:
        """The one way to a ``CommandService``: with the settings applied, and this
        dispatcher to send what it creates for a device connected here."""
        return CommandService(
            uow, max_attempts=self.settings.command_max_attempts, sender=self, kinds=self.kinds
        )

    async def message(self, command: Command) -> tuple[dict[str, Any], str]:
        """What the device receives for ``command``, and the frame it goes as."""
        kind = self.kinds.get(command.command)
        if kind is None:
            return command_message(command), COMMAND_FRAME
        return await kind.message(command), kind.frame

    async def _deliver(self, channel: DeviceChannel, command: Command) -> bool:
        message, frame = await self.message(command)
        return await channel.send_command(message, frame)

    @property
    def ack_timeout_s(self) -> float:
        return self.settings.command_ack_timeout_s

    def delivered(self, seconds: float) -> None:
        """A command reached its device (committed): how long it took."""
        self.delivery.observe(seconds)

    # --- channels -------------------------------------------------------------------

    async def attach(self, device_id: uuid.UUID, channel: DeviceChannel) -> None:
        """A device connected: send what is waiting for it (its commands in creation
        order, then its configuration). Devices that connect together are looked up
        together."""
        self.channels[device_id] = channel
        async with self._lock(device_id):
            waiting, config = await self._arrivals.submit(device_id)
            for command in waiting:
                if self.channels.get(device_id) is not channel:
                    return  # gone again, or replaced: the next attach sends the rest
                await self._send(channel, command)
        if config is not None:
            await self._push(device_id, channel, config)

    async def _waiting(
        self, device_ids: list[uuid.UUID]
    ) -> list[tuple[list[Command], ConfigVersion | None]]:
        async with self.uow() as uow:
            commands = await self.service(uow).waiting_for(device_ids)
            configs = await ConfigService(uow).to_push_for(device_ids)
        return [(commands.get(d, []), configs.get(d)) for d in device_ids]

    def transport_to(self, device_id: uuid.UUID) -> str | None:
        """The transport of the device's channel here, if it is connected here."""
        channel = self.channels.get(device_id)
        return channel.transport if channel is not None else None

    async def send_claimed(self, command: Command) -> None:
        """Send a command claimed with its creation, now that it is committed (the
        service registers this with the unit of work)."""
        channel = self.channels.get(command.device_id)
        if channel is None or not await self._deliver(channel, command):
            # Gone meanwhile: the command stays sent and is resent when its ack is
            # overdue, or when the device connects again.
            log.info("command %s: device %s went away while sending", command.id,
                     command.device_id)  # fmt: skip

    async def record(
        self, uow: UnitOfWork, device_id: uuid.UUID, report: DeviceReport
    ) -> Command | None:
        """Record what a device reports, in ``uow`` (the caller commits). The command it
        is about; None for a configuration, or a command the device does not have."""
        if isinstance(report, ConfigApplied):
            await ConfigService(uow).applied(device_id, report.version)
            return None
        service = self.service(uow)
        if isinstance(report, CommandAck):
            return await service.acknowledge(device_id, report.command_id)
        return await service.finish(device_id, report)

    def detach(self, device_id: uuid.UUID, channel: DeviceChannel) -> None:
        if self.channels.get(device_id) is channel:
            del self.channels[device_id]
            self._locks.pop(device_id, None)

    def _lock(self, device_id: uuid.UUID) -> asyncio.Lock:
        lock = self._locks.get(device_id)
        if lock is None:
            lock = self._locks[device_id] = asyncio.Lock()
        return lock

    # --- sending --------------------------------------------------------------------

    async def flush(self, device_id: uuid.UUID) -> int:
        """Send the device's deliverable commands in creation order; how many were sent."""
        channel = self.channels.get(device_id)
        if channel is None:
            return 0
        sent = 0
        async with self._lock(device_id):
            async with self.uow() as uow:
                service = self.service(uow)
                waiting = await service.deliverable(device_id)
                await uow.release()
            for command in waiting:
                if await self._send(channel, command):
                    sent += 1
        return sent

    async def _send(self, channel: DeviceChannel, command: Command) -> bool:
        async with self.uow() as uow:
            claimed = await self.service(uow).claim_send(
                command,
                transport=channel.transport,
                ack_timeout_s=self.settings.command_ack_timeout_s,
            )
            await uow.commit()
        if claimed is None:
            return False
        ok = await self._deliver(channel, claimed)
        if not ok:
            log.info("command %s: device %s went away while sending", claimed.id, claimed.device_id)
        return ok

    async def push_config(self, device_id: uuid.UUID) -> bool:
        channel = self.channels.get(device_id)
        if channel is None:
            return False
        async with self.uow() as uow:
            found = await ConfigService(uow).to_push(device_id)
        return found is not None and await self._push(device_id, channel, found[1])

    async def _push(
        self, device_id: uuid.UUID, channel: DeviceChannel, version: ConfigVersion
    ) -> bool:
        if not await channel.send_config(config_message(version)):
            return False
        async with self.uow() as uow:
            await ConfigService(uow).mark_pushed(device_id, version.version)
            await uow.commit()
        return True

    async def _on_created(self, event: Event) -> None:
        if event.subject_id is None or event.subject_id not in self.channels:
            return
        if event.payload.get("status") == SENT:
            return  # claimed with its creation, and sent after its commit
        await self.flush(event.subject_id)

    async def _on_config(self, event: Event) -> None:
        if event.subject_id is not None and event.subject_id in self.channels:
            await self.push_config(event.subject_id)

    # --- sweeping -------------------------------------------------------------------

    async def sweep(self) -> None:
        """Expire, fail and resend what is due (``expire_due``, then ``resend_due``)."""
        await self.expire_due()
        await self.resend_due()

    async def expire_due(self) -> None:
        """Expire commands past their TTL; fail as ``undelivered`` those whose ack is
        overdue after their last attempt. Database work only: a worker's periodic job."""
        async with self.uow() as uow:
            service = self.service(uow)
            for command in await service.past_ttl(SWEEP_BATCH):
                await service.expire(command)
            await uow.commit()
        async with self.uow() as uow:
            service = self.service(uow)
            for command in await service.overdue(SWEEP_BATCH):
                if command.attempts >= command.max_attempts:
                    await service.fail_undelivered(command)
            await uow.commit()

    async def resend_due(self) -> None:
        """Resend the overdue commands of the devices connected to this process (each
        send is claimed: a device's commands go out from the process holding it)."""
        if not self.channels:
            return
        async with self.uow() as uow:
            overdue = await self.service(uow).overdue(SWEEP_BATCH)
        due = {c.device_id for c in overdue if c.attempts < c.max_attempts}
        for device_id in due & self.channels.keys():
            await self.flush(device_id)
