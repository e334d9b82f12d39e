"""How an update's state moves: forward, into a retry, to its end; and how it follows
its ledger command (``follow_ledger``, called by the ledger in the same transaction).

Every change is one conditional UPDATE (``UpdateRepository.change``), its
``command_transitions`` row (``to_status``: the state; the ledger writes that row itself
where its own status changes with it) and a ``firmware.update_changed`` event after
commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fieldwatch.commands import models as ledger
from fieldwatch.commands.models import Command
from fieldwatch.commands.service import CommandService
from fieldwatch.core.clock import utcnow
from fieldwatch.core.settings import Settings
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.firmware.artifacts.download import DownloadSigner
from fieldwatch.firmware.models import FirmwareUpdate
from fieldwatch.firmware.updates import states as st
from fieldwatch.firmware.updates.events import update_event
from fieldwatch.firmware.updates.repository import UpdateRepository

#: What an update becomes when its command ends without it (the ledger decided).
LEDGER_ENDS = {ledger.EXPIRED: st.EXPIRED, ledger.CANCELLED: st.CANCELLED, ledger.FAILED: st.FAILED}


class UpdateMachine:
    def __init__(
        self,
        uow: UnitOfWork,
        commands: CommandService,
        settings: Settings,
        signer: DownloadSigner,
    ) -> None:
        self.uow = uow
        self.commands = commands
        self.settings = settings
        #: Signs download links (the process's ``FirmwareFiles.signer``).
        self.signer = signer
        self.updates = UpdateRepository(uow.session)

    async def _move(
        self,
        update: FirmwareUpdate,
        from_states: Sequence[str],
        state: str,
        *,
        values: dict[str, Any] | None = None,
        tries: int | None = None,
        due: bool = False,
    ) -> FirmwareUpdate | None:
        """The conditional UPDATE into ``state`` (with its deadline) and its event; None
        when another change got there first (``due``: only if still past its deadline)."""
        now = utcnow()
        changes: dict[str, Any] = {
            "state": state,
            "updated_at": now,
            "state_deadline": st.deadline(state, self.settings, now),
            **(values or {}),
        }
        if state in st.FINAL:
            changes["finished_at"] = now
        previous = update.state
        changed = await self.updates.change(
            update.command_id, from_states, changes, tries=tries, due_by=now if due else None
        )
        if changed is not None:
            self.uow.emit(update_event(changed, previous))
        return changed

    async def _command(self, update: FirmwareUpdate) -> Command:
        command = await self.commands.of_device(update.device_id, update.command_id)
        assert command is not None  # the update's row goes with its command (cascade)
        return command

    async def _advance(
        self, update: FirmwareUpdate, state: str, values: dict[str, Any], detail: str
    ) -> FirmwareUpdate | None:
        """Forward to ``state`` (a device's report): the ledger command is acknowledged on
        the way if it was not yet."""
        previous = update.state
        changed = await self._move(update, (previous,), state, values=values)
        if changed is None:
            return None
        if previous not in (st.PENDING, st.SENT):
            # Past sent, its command was acknowledged with it (or requeued with it back
            # to sent): nothing to acknowledge, and the transition needs no SELECT.
            self.commands.note_by_id(changed.command_id, previous, state, detail)
            return changed
        command = await self._command(changed)
        if command.status in (ledger.PENDING, ledger.SENT):
            await self.commands.acknowledge(changed.device_id, command.id)
        if state != st.ACKNOWLEDGED:
            self.commands.note(command, previous, state, detail)
        return changed

    async def _finish(
        self,
        update: FirmwareUpdate,
        state: str,
        *,
        reason: str | None,
        detail: str,
        from_states: Sequence[str] = st.OPEN,
        due: bool = False,
    ) -> FirmwareUpdate | None:
        """End the update (and its command): completed, failed, cancelled, expired."""
        changed = await self._move(
            update, from_states, state, values={"reason": reason, "detail": detail}, due=due
        )
        if changed is None:
            return None
        command = await self._command(changed)
        status = {
            st.COMPLETED: ledger.COMPLETED, st.CANCELLED: ledger.CANCELLED,
            st.EXPIRED: ledger.EXPIRED,
        }.get(state, ledger.FAILED)  # fmt: skip
        if await self.commands.close(command, status, detail=detail, reason=reason) is None:
            self.commands.note(command, command.status, state, detail)  # ended meanwhile
        return changed

    async def _retry_or_fail(
        self, update: FirmwareUpdate, reason: str, cause: str, *, due: bool = False
    ) -> FirmwareUpdate | None:
        """After a timeout (``due``: only if still past its deadline) or a retryable
        failure: with tries left, try again (tries+1, back to sent, the message resent;
        the device resumes its download); else failed with ``reason``."""
        if reason not in st.RETRYABLE or update.tries >= update.max_tries:
            return await self._finish(
                update, st.FAILED, reason=reason, detail=cause, from_states=(update.state,),
                due=due,
            )  # fmt: skip
        detail = f"retry after {cause}"
        changed = await self._move(
            update, (update.state,), st.SENT, tries=update.tries, due=due,
            values={"tries": update.tries + 1, "reason": None, "detail": detail},
        )  # fmt: skip
        if changed is None:
            return None
        command = await self._command(changed)
        if await self.commands.requeue(command, detail=detail) is None:  # still pending
            self.commands.note(command, command.status, st.SENT, detail)
        sender, device_id = self.commands.sender, changed.device_id
        if sender is not None:  # a device connected here gets it at once

            async def resend() -> None:
                await sender.flush(device_id)

            self.uow.after_commit(resend)
        return changed

    async def follow_ledger(self, command: Command) -> None:
        """The ledger changed ``command``'s status: the update follows (delivered,
        acknowledged by a plain ``command_ack``, expired, cancelled, failed undelivered)."""
        update = await self.updates.by_id(command.id)
        if update is None or update.state in st.FINAL:
            return
        status = command.status
        if status == ledger.SENT and update.state == st.PENDING:
            await self._move(update, (st.PENDING,), st.SENT)
        elif status == ledger.ACKNOWLEDGED and update.state in (st.PENDING, st.SENT):
            await self._move(update, (st.PENDING, st.SENT), st.ACKNOWLEDGED)
        elif status in LEDGER_ENDS:
            reason = st.TIMEOUT if status == ledger.FAILED else None
            await self._move(
                update, st.OPEN, LEDGER_ENDS[status],
                values={"reason": reason, "detail": command.reason},
            )  # fmt: skip
