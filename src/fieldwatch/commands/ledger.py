"""The ledger's state machine: conditional state changes with their transitions and
events, claiming sends, and what other domains use for a command kind of their own
(``kinds``). ``service.CommandService`` adds the operators' and devices' rules.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol

from fieldwatch.commands import events
from fieldwatch.commands.kinds import CommandKind
from fieldwatch.commands.models import (
    ACKNOWLEDGED,
    EXPIRED,
    FAILED,
    OPEN_STATES,
    PENDING,
    SENT,
    Command,
    CommandTransition,
)
from fieldwatch.commands.repository import CommandRepository
from fieldwatch.core.clock import utcnow
from fieldwatch.db.uow import UnitOfWork


class Sender(Protocol):
    """Reaches the devices connected to this process (the ``CommandDispatcher``)."""

    @property
    def ack_timeout_s(self) -> float: ...

    def transport_to(self, device_id: uuid.UUID) -> str | None: ...

    async def send_claimed(self, command: Command) -> None: ...

    def delivered(self, seconds: float) -> None: ...

    async def flush(self, device_id: uuid.UUID) -> int: ...


class CommandLedger:
    """State changes of commands, in the caller's unit of work."""

    def __init__(
        self,
        uow: UnitOfWork,
        *,
        max_attempts: int = 5,
        sender: Sender | None = None,
        kinds: Mapping[str, CommandKind] | None = None,
    ) -> None:
        self.uow = uow
        self.commands = CommandRepository(uow.session)
        self.max_attempts = max_attempts
        self.sender = sender
        self.kinds = kinds or {}

    # --- other domains (a command kind's own rules) ---------------------------------

    async def of_device(self, device_id: uuid.UUID, command_id: uuid.UUID) -> Command | None:
        return await self.commands.for_device(device_id, command_id)

    async def close(
        self, command: Command, status: str, *, detail: str, reason: str | None = None
    ) -> Command | None:
        """Finish an open command as ``status`` (the server decided); None if it is not
        open any more."""
        extra = {"reason": reason} if reason is not None else None
        return await self._change(
            command, OPEN_STATES, status, detail=detail, extra=extra, finished=True
        )

    async def requeue(self, command: Command, *, detail: str) -> Command | None:
        """Make a sent or acknowledged command deliverable again at once (sent, due now):
        the dispatcher sends it again, to the device connected here after this commits,
        elsewhere at the next sweep or connect. None if it is not sent or acknowledged."""
        now = utcnow()
        return await self._change(
            command, (SENT, ACKNOWLEDGED), SENT, detail=detail,
            extra={"next_attempt_at": now},
        )  # fmt: skip

    def note(self, command: Command, previous: str | None, state: str, detail: str) -> None:
        """Keep a change of a command kind's own state (``to_status``: that state) among
        the command's transitions; the ledger status does not change."""
        row = CommandTransition(command_id=command.id, from_status=previous, to_status=state)
        row.at, row.attempt, row.detail = utcnow(), command.attempts, detail
        self.commands.add(row)

    def note_by_id(self, command_id: uuid.UUID, previous: str, state: str, detail: str) -> None:
        """``note`` for a command not loaded here: its attempt number is read by the
        INSERT itself (one statement, not a SELECT first)."""
        row = CommandTransition(command_id=command_id, from_status=previous, to_status=state)
        row.at, row.detail = utcnow(), detail
        self.commands.add_transition_at_current_attempt(row)

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
        self._record(claimed, previous, detail=sent_detail(previous, transport), at=now)
        self.uow.emit(events.command_event(events.COMMAND_UPDATED, claimed, previous))
        await self._tell_kind(claimed, previous)
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
        await self._tell_kind(changed, previous)
        if "acknowledged_at" in values and self.sender is not None:  # from creation to device
            delay = (values["acknowledged_at"] - changed.created_at).total_seconds()
            self.uow.after_commit(partial(self.sender.delivered, delay))
        return changed

    def changed_elsewhere(self, command: Command, previous: str, at: datetime) -> None:
        """A change another domain's statement made to ``command`` together with its
        own (its transition row included): the event, and the delivery figure for an
        acknowledgement. The command kind is not told: that domain made the change."""
        self.uow.emit(events.command_event(events.COMMAND_UPDATED, command, previous))
        if command.status == ACKNOWLEDGED and self.sender is not None:
            delay = (at - command.created_at).total_seconds()
            self.uow.after_commit(partial(self.sender.delivered, delay))

    async def _tell_kind(self, command: Command, previous: str | None) -> None:
        kind = self.kinds.get(command.command)
        if kind is not None:
            await kind.changed(self.uow, command, previous)

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


def sent_detail(previous: str, transport: str) -> str:
    return f"sent over {transport}" if previous == PENDING else f"resent over {transport}"
