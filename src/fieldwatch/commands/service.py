"""Rules of the command ledger (device configuration: ``config``).

States: ``pending → sent → acknowledged → completed | failed``, plus ``expired`` (the
TTL passed before completion) and ``cancelled``. A resend keeps the state ``sent`` and
counts an attempt. Every change is kept as a transition row and published as a
``command.updated`` event after commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from fieldwatch.auth.principal import Principal
from fieldwatch.commands import events
from fieldwatch.commands.errors import CommandFinished, CommandNotFound, IdempotencyConflict
from fieldwatch.commands.ledger import CommandLedger, sent_detail
from fieldwatch.commands.messages import CommandResult
from fieldwatch.commands.models import (
    ACKNOWLEDGED,
    CANCELLED,
    FAILED,
    OPEN_STATES,
    PENDING,
    SENT,
    Command,
    CommandTransition,
)
from fieldwatch.commands.schemas import CommandCreate
from fieldwatch.core.clock import utcnow
from fieldwatch.core.errors import found_in_workspace
from fieldwatch.core.ids import new_id
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.errors import DeviceRetired
from fieldwatch.devices.lifecycle import DeviceStatus
from fieldwatch.devices.models import Device
from fieldwatch.devices.service import DeviceService

MAX_RESULT_CHARS = 16_000


async def live_device(uow: UnitOfWork, principal: Principal, device_id: uuid.UUID) -> Device:
    """The principal's device; 404 for another's, 409 for a retired one."""
    device = await DeviceService(uow).get(principal, device_id)
    if device.status == DeviceStatus.retired:
        raise DeviceRetired("A retired device takes no commands or configuration.")
    return device


class CommandService(CommandLedger):
    """Obtained from ``CommandDispatcher.service``, which applies the settings and sends
    what ``create`` claims once it is committed: callers only create and commit."""

    # --- operators ------------------------------------------------------------------

    async def create(
        self, principal: Principal, device_id: uuid.UUID, body: CommandCreate
    ) -> tuple[Command, bool]:
        """The new command and True; or, for a repeated idempotency key with the same
        command and params, the existing one and False (``create_for``)."""
        await live_device(self.uow, principal, device_id)
        return await self.create_for(principal.workspace_id, device_id, body, principal.actor)

    async def create_for(
        self,
        workspace_id: uuid.UUID,
        device_id: uuid.UUID,
        body: CommandCreate,
        created_by: str,
        *,
        max_attempts: int | None = None,
    ) -> tuple[Command, bool]:
        """``create`` for a device the caller has checked (another domain's service).
        When the device is connected to this process and nothing older waits for it
        (those go first, in creation order), the new command is stored as sent, with
        both transitions, in this one transaction and sent once it is committed."""
        if body.idempotency_key is not None:
            found = await self.commands.by_idempotency_key(device_id, body.idempotency_key)
            if found is not None:
                return self._same_key(found, body), False
        now = utcnow()
        via = await self._send_over(device_id, now)
        command = self._new(workspace_id, device_id, body, created_by, now)
        if max_attempts is not None:
            command.max_attempts = max_attempts
        created = self._transition(command, None, detail=f"created by {created_by}", at=now)
        later = []
        if via is not None and self.sender is not None:
            command.status = SENT
            command.attempts = 1
            command.sent_at = now
            command.next_attempt_at = now + timedelta(seconds=self.sender.ack_timeout_s)
            command.transport = via
            later.append(
                self._transition(command, PENDING, detail=sent_detail(PENDING, via), at=now)
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
        if via is not None and self.sender is not None:
            self.uow.emit(events.command_event(events.COMMAND_UPDATED, command, PENDING))
            self.uow.after_commit(partial(self.sender.send_claimed, command))
        for transition in (created, *later):
            self.commands.add(transition)
        return command, True

    async def _send_over(self, device_id: uuid.UUID, now: datetime) -> str | None:
        """The transport to send a new command over at once, if any: the device is
        connected here and nothing older waits for it."""
        if self.sender is None or self.max_attempts < 1:
            return None
        transport = self.sender.transport_to(device_id)
        if transport is None or await self.commands.anything_deliverable(device_id, now):
            return None
        return transport

    def _new(
        self,
        workspace_id: uuid.UUID,
        device_id: uuid.UUID,
        body: CommandCreate,
        created_by: str,
        now: datetime,
    ) -> Command:
        return Command(
            id=new_id(),
            workspace_id=workspace_id,
            device_id=device_id,
            command=body.command,
            params=body.params,
            status=PENDING,
            idempotency_key=body.idempotency_key,
            ttl_s=body.ttl_s,
            expires_at=now + timedelta(seconds=body.ttl_s),
            attempts=0,
            max_attempts=self.max_attempts,
            created_by=created_by,
            created_at=now,
            updated_at=now,
        )

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
        return found_in_workspace(command, "command", command_id, CommandNotFound)

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

    async def finish(self, device_id: uuid.UUID, message: CommandResult) -> Command | None:
        """The device's result (``completed`` or ``failed``). None for an unknown command."""
        command_id, status = message.command_id, message.status
        result = message.result
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
