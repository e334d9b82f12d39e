"""Getting commands and configuration to devices.

Transports (the WebSocket gateway, the MQTT gateway) ``attach`` a channel when a
device connects and ``detach`` it when it goes. The dispatcher then sends, in creation
order, the device's pending commands and any sent ones it never acknowledged, and its
desired configuration if it has not reported it applied.

A new command (the ``command.created`` event, which reaches every process on a
fan-out bus) is sent by the process that holds the device's channel. Each send is
claimed in the database first (a conditional UPDATE), so two processes never send the
same attempt. A sweeper expires commands past their TTL, resends commands whose ack is
overdue (to devices connected here) and fails them as ``undelivered`` after
``max_attempts`` sends. Nothing lives only in memory: after a restart the next connect
or sweep picks up where the database says.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fieldwatch.auth.principal import Principal
from fieldwatch.commands.events import COMMAND_CREATED, CONFIG_UPDATED
from fieldwatch.commands.models import SENT, Command, ConfigVersion
from fieldwatch.commands.schemas import CommandCreate
from fieldwatch.commands.service import CommandService, ConfigService
from fieldwatch.core import tasks
from fieldwatch.core.batching import Batcher
from fieldwatch.core.events import Event, EventBus
from fieldwatch.core.settings import Settings
from fieldwatch.db.uow import UnitOfWork

log = logging.getLogger(__name__)

SWEEP_BATCH = 500


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

    async def send_command(self, message: dict[str, Any]) -> bool: ...

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
        self._locks: dict[uuid.UUID, asyncio.Lock] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._arrivals = Batcher(self._waiting, name="command-arrivals")
        self._claimed_at_creation: set[uuid.UUID] = set()

    def subscribe(self, bus: EventBus) -> None:
        bus.subscribe(COMMAND_CREATED, self._on_created)
        bus.subscribe(CONFIG_UPDATED, self._on_config)

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.sessionmaker, self.bus)

    def service(self, uow: UnitOfWork) -> CommandService:
        return CommandService(uow, max_attempts=self.settings.command_max_attempts)

    async def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = tasks.every(
                self.settings.command_sweep_s, self.sweep, name="command-sweeper"
            )

    async def stop(self) -> None:
        await tasks.cancel(self._sweeper)
        self._sweeper = None

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

    async def create(
        self, service: CommandService, principal: Principal, device_id: uuid.UUID,
        body: CommandCreate,
    ) -> tuple[Command, bool]:  # fmt: skip
        """Queue a command through ``service`` (the caller commits, then calls
        ``after_commit``). For a device connected here the command is claimed in the
        same transaction, which saves the two transactions of a separate send."""
        channel = self.channels.get(device_id)
        command, created = await service.create(
            principal, device_id, body,
            send_over=channel.transport if channel is not None else None,
            ack_timeout_s=self.settings.command_ack_timeout_s,
        )  # fmt: skip
        if created and command.status == SENT:
            self._claimed_at_creation.add(command.id)
        return command, created

    async def after_commit(self, command: Command) -> None:
        """Send a command ``create`` claimed, now that it is committed."""
        if command.id not in self._claimed_at_creation:
            return
        self._claimed_at_creation.discard(command.id)
        channel = self.channels.get(command.device_id)
        if channel is None or not await channel.send_command(command_message(command)):
            # Gone meanwhile: the command stays sent and is resent when its ack is
            # overdue, or when the device connects again.
            log.info("command %s: device %s went away while sending", command.id,
                     command.device_id)  # fmt: skip

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
        ok = await channel.send_command(command_message(claimed))
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
        if uuid.UUID(str(event.payload.get("command_id"))) in self._claimed_at_creation:
            return  # claimed with its creation; after_commit sends it
        await self.flush(event.subject_id)

    async def _on_config(self, event: Event) -> None:
        if event.subject_id is not None and event.subject_id in self.channels:
            await self.push_config(event.subject_id)

    # --- sweeping -------------------------------------------------------------------

    async def sweep(self) -> None:
        """Expire commands past their TTL; resend or fail those whose ack is overdue."""
        async with self.uow() as uow:
            service = self.service(uow)
            for command in await service.past_ttl(SWEEP_BATCH):
                await service.expire(command)
            await uow.commit()
        async with self.uow() as uow:
            service = self.service(uow)
            overdue = await service.overdue(SWEEP_BATCH)
            for command in overdue:
                if command.attempts >= command.max_attempts:
                    await service.fail_undelivered(command)
            await uow.commit()
        for device_id in {c.device_id for c in overdue if c.attempts < c.max_attempts}:
            await self.flush(device_id)
