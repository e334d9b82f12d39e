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
from typing import Any, Protocol

from fieldwatch.auth.principal import Principal
from fieldwatch.commands import events
from fieldwatch.commands.errors import CommandFinished, CommandNotFound, IdempotencyConflict
from fieldwatch.commands.messages import CommandResult
from fieldwatch.commands.models import (
    ACKNOWLEDGED,
    CANCELLED,
    EXPIRED,
    FAILED,
    OPEN_STATES,
    PENDING,
    SENT,
    Command,
    CommandTransition,
)
from fieldwatch.commands.repository import CommandRepository
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


class Sender(Protocol):
    """Reaches the devices connected to this process (the ``CommandDispatcher``)."""

    @property
    def ack_timeout_s(self) -> float: ...

    def transport_to(self, device_id: uuid.UUID) -> str | None: ...

    async def send_claimed(self, command: Command) -> None: ...

    def delivered(self, seconds: float) -> None: ...


async def live_device(uow: UnitOfWork, principal: Principal, device_id: uuid.UUID) -> Device:
    """The principal's device; 404 for another's, 409 for a retired one."""
    device = await DeviceService(uow).get(principal, device_id)
    if device.status == DeviceStatus.retired:
        raise DeviceRetired("A retired device takes no commands or configuration.")
    return device


class CommandService:
    """Obtained from ``CommandDispatcher.service``, which applies the settings and sends
    what ``create`` claims once it is committed: callers only create and commit."""

    def __init__(
        self, uow: UnitOfWork, *, max_attempts: int = 5, sender: Sender | None = None
    ) -> None:
        self.uow = uow
        self.commands = CommandRepository(uow.session)
        self.max_attempts = max_attempts
        self.sender = sender

    # --- operators ------------------------------------------------------------------

    async def create(
        self, principal: Principal, device_id: uuid.UUID, body: CommandCreate
    ) -> tuple[Command, bool]:
        """The new command and True; or, for a repeated idempotency key with the same
        command and params, the existing one and False. When the device is connected to
        this process and nothing older waits for it (those go first, in creation order),
        the new command is stored as sent, with both transitions, in this one transaction
        and sent once it is committed."""
        await live_device(self.uow, principal, device_id)
        if body.idempotency_key is not None:
            found = await self.commands.by_idempotency_key(device_id, body.idempotency_key)
            if found is not None:
                return self._same_key(found, body), False
        now = utcnow()
        via = await self._send_over(device_id, now)
        command = self._new(principal, device_id, body, now)
        created = self._transition(command, None, detail=f"created by {principal.actor}", at=now)
        later = []
        if via is not None and self.sender is not None:
            command.status = SENT
            command.attempts = 1
            command.sent_at = now
            command.next_attempt_at = now + timedelta(seconds=self.sender.ack_timeout_s)
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
        self, principal: Principal, device_id: uuid.UUID, body: CommandCreate, now: datetime
    ) -> Command:
        return Command(
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
        if "acknowledged_at" in values and self.sender is not None:  # from creation to device
            delay = (values["acknowledged_at"] - changed.created_at).total_seconds()
            self.uow.after_commit(partial(self.sender.delivered, delay))
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
