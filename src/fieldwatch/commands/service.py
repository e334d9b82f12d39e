"""Rules of the command ledger and of device configuration.

States: ``pending → sent → acknowledged → completed | failed``, plus ``expired`` (the
TTL passed before completion) and ``cancelled``. A resend keeps the state ``sent`` and
counts an attempt. Every change is kept as a transition row and published as a
``command.updated`` event after commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from fieldwatch.auth.principal import Principal
from fieldwatch.commands import events
from fieldwatch.commands.errors import CommandFinished, CommandNotFound, IdempotencyConflict
from fieldwatch.commands.models import (
    ACKNOWLEDGED,
    CANCELLED,
    COMPLETED,
    EXPIRED,
    FAILED,
    OPEN_STATES,
    PENDING,
    SENT,
    Command,
    CommandTransition,
    ConfigVersion,
    DeviceConfig,
)
from fieldwatch.commands.repository import CommandRepository, ConfigRepository
from fieldwatch.commands.schemas import CommandCreate, ConfigDifference, ConfigRead
from fieldwatch.core.clock import utcnow
from fieldwatch.core.ids import new_id
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.errors import DeviceRetired
from fieldwatch.devices.models import Device
from fieldwatch.devices.service import DeviceService
from fieldwatch.inventory.lifecycle import DeviceStatus

MAX_RESULT_CHARS = 16_000


class CommandService:
    def __init__(self, uow: UnitOfWork, *, max_attempts: int = 5) -> None:
        self.uow = uow
        self.commands = CommandRepository(uow.session)
        self.max_attempts = max_attempts

    # --- operators ------------------------------------------------------------------

    async def _live_device(self, principal: Principal, device_id: uuid.UUID) -> Device:
        device = await DeviceService(self.uow).get(principal, device_id)
        if device.status == DeviceStatus.retired:
            raise DeviceRetired("A retired device takes no commands or configuration.")
        return device

    async def create(
        self,
        principal: Principal,
        device_id: uuid.UUID,
        body: CommandCreate,
        *,
        send_over: str | None = None,
        ack_timeout_s: float = 30.0,
    ) -> tuple[Command, bool]:
        """The new command and True; or, for a repeated idempotency key with the same
        command and params, the existing one and False. With ``send_over`` (the device
        is connected to this process over that transport) the new command is also
        claimed for sending in the same transaction, when nothing older waits for the
        device: the caller sends it after the commit."""
        await self._live_device(principal, device_id)
        if body.idempotency_key is not None:
            found = await self.commands.by_idempotency_key(device_id, body.idempotency_key)
            if found is not None:
                return self._same_key(found, body), False
        now = utcnow()
        # Sent at once when the device is connected here and nothing older waits for it
        # (those go first, in creation order): then the command is stored as sent, with
        # both transitions, in this one transaction.
        via = (
            send_over
            if send_over is not None
            and self.max_attempts >= 1
            and not await self.commands.anything_deliverable(device_id, now)
            else None
        )
        command = Command(
            id=new_id(),
            workspace_id=principal.workspace_id,
            device_id=device_id,
            command=body.command,
            params=body.params,
            status=PENDING,
            idempotency_key=body.idempotency_key,
            ttl_s=body.ttl_s,
            expires_at=now + timedelta(seconds=body.ttl_s),
            attempts=0,
            max_attempts=self.max_attempts,
            created_by=principal.actor,
            created_at=now,
            updated_at=now,
        )
        created = self._transition(command, None, detail=f"created by {principal.actor}", at=now)
        later = []
        if via is not None:
            command.status = SENT
            command.attempts = 1
            command.sent_at = now
            command.next_attempt_at = now + timedelta(seconds=ack_timeout_s)
            command.transport = via
            later.append(
                self._transition(command, PENDING, detail=_sent_detail(PENDING, via), at=now)
            )
        if body.idempotency_key is None:
            self.commands.add(command)
            await self.uow.session.flush()  # before its transitions (no ORM relationship)
        else:  # the same key sent twice at once: one insert wins, the other gets its command
            stored = await self.commands.insert_unless_key_used(command)
            if stored is None:
                found = await self.commands.by_idempotency_key(device_id, body.idempotency_key)
                assert found is not None
                return self._same_key(found, body), False
            command = stored
        self.uow.emit(events.command_event(events.COMMAND_CREATED, command))
        if via is not None:
            self.uow.emit(events.command_event(events.COMMAND_UPDATED, command, PENDING))
        for transition in (created, *later):
            self.commands.add(transition)
        return command, True

    @staticmethod
    def _same_key(found: Command, body: CommandCreate) -> Command:
        """The command a repeated idempotency key stands for; 409 when the key was used
        for another command."""
        if (found.command, found.params) != (body.command, body.params):
            raise IdempotencyConflict(
                f"Idempotency key {body.idempotency_key!r} was used for another "
                f"command ({found.id}) on this device."
            )
        return found

    async def get(self, principal: Principal, command_id: uuid.UUID) -> Command:
        command = await self.commands.get(principal.workspace_id, command_id)
        if command is None:
            raise CommandNotFound(f"No command {command_id} in this workspace.")
        return command

    async def transitions(self, command: Command) -> Sequence[CommandTransition]:
        return await self.commands.transitions(command.id)

    async def page(
        self,
        principal: Principal,
        *,
        device_id: uuid.UUID | None,
        statuses: Sequence[str],
        limit: int,
        offset: int,
    ) -> tuple[Sequence[Command], int]:
        if device_id is not None:
            await DeviceService(self.uow).get(principal, device_id)  # 404 for another's
        return await self.commands.page(
            principal.workspace_id, device_id=device_id, statuses=statuses, limit=limit,
            offset=offset,
        )  # fmt: skip

    async def cancel(self, principal: Principal, command_id: uuid.UUID) -> Command:
        command = await self.get(principal, command_id)
        changed = await self._change(
            command, OPEN_STATES, CANCELLED, detail=f"cancelled by {principal.actor}",
            finished=True,
        )  # fmt: skip
        if changed is None:
            await self.uow.session.refresh(command)
            raise CommandFinished(
                f"Command {command_id} is already {command.status}; only pending, sent or "
                "acknowledged commands can be cancelled.",
                command_status=command.status,
            )
        return changed

    # --- devices --------------------------------------------------------------------

    async def acknowledge(self, device_id: uuid.UUID, command_id: uuid.UUID) -> Command | None:
        """The device got the command. None for a command it does not have."""
        values = {"acknowledged_at": utcnow()}
        # The usual case, a sent command, in one statement.
        changed = await self._change_for_device(
            device_id, command_id, SENT, ACKNOWLEDGED, detail="acknowledged by the device",
            extra=values,
        )  # fmt: skip
        if changed is not None:
            return changed
        command = await self.commands.for_device(device_id, command_id)
        if command is None:
            return None
        if command.status in (PENDING, SENT):
            changed = await self._change(
                command, (PENDING, SENT), ACKNOWLEDGED, detail="acknowledged by the device",
                extra=values,
            )  # fmt: skip
            if changed is not None:
                return changed
            await self.uow.session.refresh(command)
        return command  # a repeated ack, or one that came after the end: nothing changes

    async def finish(
        self, device_id: uuid.UUID, command_id: uuid.UUID, status: str, result: Any
    ) -> Command | None:
        """The device's result (``completed`` or ``failed``). None for an unknown command."""
        if status not in (COMPLETED, FAILED):
            raise ValueError("status is 'completed' or 'failed'")
        stored = result if isinstance(result, dict) else {"value": result}
        reason = None
        if status == FAILED:
            reason = str(stored.get("error") or "failed on the device")[:500]
        # The usual case, an acknowledged command, in one statement.
        extra: dict[str, Any] = {"result": stored}
        if reason is not None:
            extra["reason"] = reason
        changed = await self._change_for_device(
            device_id, command_id, ACKNOWLEDGED, status,
            detail=reason or "completed by the device", extra=extra, finished=True,
        )  # fmt: skip
        if changed is not None:
            return changed
        command = await self.commands.for_device(device_id, command_id)
        if command is None:
            return None
        if command.status not in OPEN_STATES:
            return command  # already finished (a resent result, or cancelled/expired)
        if command.acknowledged_at is None:
            extra["acknowledged_at"] = utcnow()
        changed = await self._change(
            command, OPEN_STATES, status, detail=reason or "completed by the device",
            extra=extra, finished=True,
        )  # fmt: skip
        if changed is None:
            await self.uow.session.refresh(command)
            return command
        return changed

    # --- delivery -------------------------------------------------------------------

    async def deliverable(self, device_id: uuid.UUID) -> Sequence[Command]:
        """What to send a connected device now: pending commands, and sent ones whose
        ack is overdue; in creation order."""
        return await self.commands.deliverable(device_id, utcnow())

    async def waiting_for(self, device_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[Command]]:
        """What to send devices that just connected: pending commands, and sent ones
        they never acknowledged; in creation order."""
        return await self.commands.deliverable_for(device_ids, utcnow())

    async def claim_send(
        self, command: Command, *, transport: str, ack_timeout_s: float
    ) -> Command | None:
        """Record one delivery attempt; None if another process claimed it first or the
        command has used up its attempts (it is then failed as undelivered)."""
        if command.attempts >= command.max_attempts:
            await self.fail_undelivered(command)
            return None
        now = utcnow()
        previous = command.status
        claimed = await self.commands.claim_send(
            command,
            now=now,
            next_attempt_at=now + timedelta(seconds=ack_timeout_s),
            transport=transport,
        )
        if claimed is None:
            return None
        self._record(claimed, previous, detail=_sent_detail(previous, transport), at=now)
        self.uow.emit(events.command_event(events.COMMAND_UPDATED, claimed, previous))
        return claimed

    async def fail_undelivered(self, command: Command) -> Command | None:
        return await self._change(
            command, (SENT,), FAILED, detail="undelivered",
            extra={"reason": "undelivered", "next_attempt_at": None}, finished=True,
        )  # fmt: skip

    async def expire(self, command: Command) -> Command | None:
        return await self._change(
            command, OPEN_STATES, EXPIRED, detail="time to live passed",
            extra={"reason": "expired", "next_attempt_at": None}, finished=True,
        )  # fmt: skip

    async def overdue(self, limit: int) -> Sequence[Command]:
        return await self.commands.overdue(utcnow(), limit)

    async def past_ttl(self, limit: int) -> Sequence[Command]:
        return await self.commands.past_ttl(utcnow(), limit)

    # --- plumbing -------------------------------------------------------------------

    async def _change(
        self,
        command: Command,
        from_states: Sequence[str],
        to_status: str,
        *,
        detail: str,
        extra: dict[str, Any] | None = None,
        finished: bool = False,
    ) -> Command | None:
        return await self._update(
            command.id, from_states, command.status, to_status, detail=detail, extra=extra,
            finished=finished,
        )  # fmt: skip

    async def _change_for_device(
        self,
        device_id: uuid.UUID,
        command_id: uuid.UUID,
        from_status: str,
        to_status: str,
        *,
        detail: str,
        extra: dict[str, Any],
        finished: bool = False,
    ) -> Command | None:
        """``_change`` by id for a command of ``device_id`` in exactly ``from_status``,
        without reading it first; None when it is not there or in another state."""
        return await self._update(
            command_id, (from_status,), from_status, to_status, detail=detail, extra=extra,
            finished=finished, device_id=device_id,
        )  # fmt: skip

    async def _update(
        self,
        command_id: uuid.UUID,
        from_states: Sequence[str],
        previous: str,
        to_status: str,
        *,
        detail: str,
        extra: dict[str, Any] | None,
        finished: bool,
        device_id: uuid.UUID | None = None,
    ) -> Command | None:
        """The conditional UPDATE, and its transition and event when it matched."""
        now = utcnow()
        values: dict[str, Any] = {"status": to_status, "updated_at": now, **(extra or {})}
        if finished:
            values["finished_at"] = now
            values.setdefault("next_attempt_at", None)
        changed = await self.commands.change(command_id, from_states, values, device_id=device_id)
        if changed is None:
            return None
        self._record(changed, previous, detail=detail, at=now)
        self.uow.emit(events.command_event(events.COMMAND_UPDATED, changed, previous))
        return changed

    def _record(self, command: Command, previous: str | None, *, detail: str, at: datetime) -> None:
        self.commands.add(self._transition(command, previous, detail=detail, at=at))

    @staticmethod
    def _transition(
        command: Command, previous: str | None, *, detail: str, at: datetime
    ) -> CommandTransition:
        """The transition into the command's present status (and attempt)."""
        return CommandTransition(
            command_id=command.id,
            from_status=previous,
            to_status=command.status,
            at=at,
            attempt=command.attempts,
            detail=detail,
        )


def _sent_detail(previous: str, transport: str) -> str:
    return f"sent over {transport}" if previous == PENDING else f"resent over {transport}"


def config_difference(
    desired: dict[str, Any], reported: dict[str, Any] | None
) -> list[ConfigDifference]:
    """Leaf-by-leaf difference, with dotted paths into nested objects."""
    out: list[ConfigDifference] = []

    def walk(path: str, want: Any, have: Any, present: bool) -> None:
        if isinstance(want, dict) and isinstance(have, dict):
            for key in sorted(set(want) | set(have), key=str):
                sub = f"{path}.{key}" if path else str(key)
                if key not in want:
                    out.append(ConfigDifference(path=sub, reported=have[key], change="removed"))
                else:
                    walk(sub, want[key], have.get(key), key in have)
        elif not present:
            out.append(ConfigDifference(path=path, desired=want, change="added"))
        elif want != have:
            out.append(ConfigDifference(path=path, desired=want, reported=have, change="changed"))

    walk("", desired, reported or {}, True)
    return out


class ConfigService:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self.configs = ConfigRepository(uow.session)

    async def put(
        self, principal: Principal, device_id: uuid.UUID, document: dict[str, Any]
    ) -> DeviceConfig:
        """Set the desired configuration; the version goes up unless nothing changed."""
        device = await CommandService(self.uow)._live_device(principal, device_id)
        config = await self.configs.get(device.id, for_update=True)
        now = utcnow()
        if config is None:
            config = DeviceConfig(
                device_id=device.id, workspace_id=device.workspace_id, desired={},
                desired_version=0, desired_at=now,
            )  # fmt: skip
            self.configs.add(config)
        elif config.desired == document and config.desired_version > 0:
            return config
        config.desired = document
        config.desired_version += 1
        config.desired_at = now
        config.desired_by = principal.actor
        version = ConfigVersion(
            device_id=device.id, version=config.desired_version, document=document,
            created_at=now, created_by=principal.actor,
        )  # fmt: skip
        self.configs.add(version)
        await self.uow.session.flush()
        self.uow.emit(events.config_event(events.CONFIG_UPDATED, config))
        return config

    async def read(self, principal: Principal, device_id: uuid.UUID) -> ConfigRead:
        device = await DeviceService(self.uow).get(principal, device_id)
        config = await self.configs.get(device.id)
        if config is None:
            return ConfigRead(
                device_id=device.id, desired={}, desired_version=0, desired_at=None,
                reported=None, reported_version=None, reported_at=None, pushed_version=None,
                pushed_at=None, in_sync=True, difference=[],
            )  # fmt: skip
        reported = None
        if config.reported_version:
            row = await self.configs.version(device.id, config.reported_version)
            reported = row.document if row is not None else None
        return ConfigRead(
            device_id=device.id,
            desired=config.desired,
            desired_version=config.desired_version,
            desired_at=config.desired_at,
            reported=reported,
            reported_version=config.reported_version,
            reported_at=config.reported_at,
            pushed_version=config.pushed_version,
            pushed_at=config.pushed_at,
            in_sync=config.reported_version == config.desired_version,
            difference=config_difference(config.desired, reported),
        )

    async def to_push(self, device_id: uuid.UUID) -> tuple[DeviceConfig, ConfigVersion] | None:
        """The desired configuration, if the device has not reported it applied."""
        config = await self.configs.get(device_id)
        if config is None or config.desired_version == 0:
            return None
        if (config.reported_version or 0) >= config.desired_version:
            return None
        version = await self.configs.version(device_id, config.desired_version)
        return (config, version) if version is not None else None

    async def to_push_for(self, device_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, ConfigVersion]:
        """``to_push`` for many devices at once (devices that just connected)."""
        return await self.configs.unapplied(device_ids)

    async def mark_pushed(self, device_id: uuid.UUID, version: int) -> None:
        await self.configs.mark_pushed(device_id, version, utcnow())

    async def applied(self, device_id: uuid.UUID, version: int) -> DeviceConfig | None:
        """The device applied ``version``; None if that is not news (older, unknown)."""
        config = await self.configs.report(device_id, version, utcnow())
        if config is not None:
            self.uow.emit(events.config_event(events.CONFIG_APPLIED, config, version=version))
        return config
