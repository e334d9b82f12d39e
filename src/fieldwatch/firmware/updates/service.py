"""One device's firmware update: the rules (the device protocol's firmware section).

The interface other domains call (rollouts, the MQTT control topic)::

    service = UpdateService(uow, commands, settings, signer)
    # commands: CommandDispatcher.service(uow); signer: the runtime's FirmwareFiles.signer
    update = await service.start(
        workspace_id=..., device=device, artifact=artifact, created_by="user:ann",
        rollout_id=None, wave=None, max_tries=None, expires_at=None,
    )  # -> FirmwareUpdate, in the caller's transaction; UpdateRefused / UpdateRunning (409)

``start`` creates the ``firmware_update`` command in the ledger (its id is the update's)
and the update's row, pending (or sent, when the device is connected to this process:
then it is sent once the caller commits). Delivery is the ledger's: a device that
connects later gets it then. What devices report comes in through ``report`` and
``version_reported``; the sweeper (``sweeper``) times out states and retries.

The update is ``completed`` only when the device reports running the target version
(``version_reported``); a device never reports ``completed`` itself.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from fieldwatch.auth.principal import Principal
from fieldwatch.commands import models as ledger
from fieldwatch.commands.models import CommandTransition
from fieldwatch.commands.schemas import CommandCreate
from fieldwatch.core.clock import utcnow
from fieldwatch.core.errors import found_in_workspace
from fieldwatch.devices.models import Device
from fieldwatch.devices.service import DeviceService
from fieldwatch.firmware import compat
from fieldwatch.firmware.models import FirmwareArtifact, FirmwareUpdate
from fieldwatch.firmware.updates import messages
from fieldwatch.firmware.updates import states as st
from fieldwatch.firmware.updates.errors import (
    ArtifactNotFound,
    UpdateNotCancellable,
    UpdateNotFound,
    UpdateRefused,
    UpdateRunning,
)
from fieldwatch.firmware.updates.events import update_event
from fieldwatch.firmware.updates.machine import UpdateMachine

COMMAND = "firmware_update"
#: How long an update waits for its device by default (the command's TTL).
DEFAULT_TTL_S = 7 * 24 * 3600
UNSIGNED = compat.UNSIGNED
UPDATE_RUNNING = "update_running"
#: Where an update can still be cancelled: before the device installs it.
CANCELLABLE = tuple(s for s in st.OPEN if s not in st.NOT_CANCELLABLE)


class UpdateService(UpdateMachine):
    # --- operators and rollouts ---------------------------------------------------------

    async def start(
        self,
        *,
        workspace_id: uuid.UUID,
        device: Device,
        artifact: FirmwareArtifact,
        created_by: str,
        rollout_id: uuid.UUID | None = None,
        wave: int | None = None,
        max_tries: int | None = None,
        expires_at: datetime | None = None,
    ) -> FirmwareUpdate:
        """Start updating ``device`` to ``artifact`` (both of ``workspace_id``)."""
        await self._check(workspace_id, device, artifact)
        now = utcnow()
        ttl_s = DEFAULT_TTL_S
        if expires_at is not None:
            ttl_s = max(1, math.ceil((expires_at - now).total_seconds()))
        signing_key = None
        if artifact.signing_key_id is not None:
            signing_key = await self.updates.key_fingerprint(artifact.signing_key_id)
        tries = max_tries or self.settings.firmware_max_tries
        body = CommandCreate(
            command=COMMAND, params=messages.params(artifact, signing_key), ttl_s=ttl_s
        )
        command, _ = await self.commands.create_for(
            workspace_id, device.id, body, created_by,
            max_attempts=self.commands.max_attempts * tries,
        )  # fmt: skip
        state = st.SENT if command.status == st.SENT else st.PENDING
        update = FirmwareUpdate(
            command_id=command.id, workspace_id=workspace_id, device_id=device.id,
            artifact_id=artifact.id, rollout_id=rollout_id, wave=wave,
            from_version=device.firmware_version, target_version=artifact.version,
            state=state, state_deadline=st.deadline(state, self.settings, now), tries=1,
            max_tries=tries, downloaded_bytes=0, created_at=now, updated_at=now,
        )  # fmt: skip
        self.updates.add(update)
        await self.uow.session.flush()
        self.uow.emit(update_event(update, None))
        return update

    async def _check(
        self, workspace_id: uuid.UUID, device: Device, artifact: FirmwareArtifact
    ) -> None:
        assert device.workspace_id == workspace_id == artifact.workspace_id
        security = await self.updates.security_versions(workspace_id)
        refused = compat.refusal(device, artifact, security, require_deployed=False)
        if refused is not None:
            raise UpdateRefused(
                f"Firmware {artifact.version} can not go to this device: {refused.detail}.",
                reason=refused.reason,
            )
        if artifact.signature is None and await self.updates.require_signed(workspace_id):
            raise UpdateRefused(
                f"Firmware {artifact.version} is not signed, and this workspace's policy "
                "requires signed firmware.",
                reason=UNSIGNED,
            )
        await self.updates.lock_device(device.id)
        running = await self.updates.open_for(device.id)
        if running is not None:
            raise UpdateRunning(
                f"Update {running.command_id} to {running.target_version} is still "
                f"{running.state} on this device; cancel it or wait for it to end.",
                reason=UPDATE_RUNNING,
                update_id=str(running.command_id),
            )

    async def artifact(
        self, principal: Principal, artifact_id: uuid.UUID | None, version: str | None
    ) -> FirmwareArtifact:
        """The workspace's artifact, by id or version (404)."""
        if artifact_id is not None:
            found = await self.updates.artifact(principal.workspace_id, artifact_id)
        else:
            assert version is not None
            found = await self.updates.artifact_by_version(principal.workspace_id, version)
        ident = artifact_id or version
        return found_in_workspace(found, "firmware artifact", ident, ArtifactNotFound)

    async def start_for(
        self,
        principal: Principal,
        device_id: uuid.UUID,
        *,
        artifact_id: uuid.UUID | None,
        version: str | None,
        ttl_s: int | None,
        max_tries: int | None,
    ) -> FirmwareUpdate:
        """An operator's single update (the HTTP API)."""
        device = await DeviceService(self.uow).get(principal, device_id)
        artifact = await self.artifact(principal, artifact_id, version)
        expires_at = None if ttl_s is None else utcnow() + timedelta(seconds=ttl_s)
        return await self.start(
            workspace_id=principal.workspace_id, device=device, artifact=artifact,
            created_by=principal.actor, max_tries=max_tries, expires_at=expires_at,
        )  # fmt: skip

    async def get(self, principal: Principal, update_id: uuid.UUID) -> FirmwareUpdate:
        found = await self.updates.get(principal.workspace_id, update_id)
        return found_in_workspace(found, "firmware update", update_id, UpdateNotFound)

    async def transitions(self, update: FirmwareUpdate) -> Sequence[CommandTransition]:
        return await self.commands.transitions(await self._command(update))

    async def page(
        self,
        principal: Principal,
        *,
        device_id: uuid.UUID | None,
        states: Sequence[str],
        rollout_id: uuid.UUID | None,
        limit: int,
        offset: int,
    ) -> tuple[Sequence[FirmwareUpdate], int]:
        return await self.updates.page(
            principal.workspace_id, device_id=device_id, states=states, rollout_id=rollout_id,
            limit=limit, offset=offset,
        )  # fmt: skip

    async def cancel(self, principal: Principal, update_id: uuid.UUID) -> FirmwareUpdate:
        """An operator stops an update before the device installs it (409 from
        ``installing`` on, and once it has ended)."""
        update = await self.get(principal, update_id)
        changed = await self.cancel_by(update, principal.actor)
        if changed is not None:
            return changed
        await self.uow.session.refresh(update)
        if update.state in st.NOT_CANCELLABLE:
            message = "the device is installing"
        else:
            message = f"the update is already {update.state}"
        raise UpdateNotCancellable(
            f"Update {update_id} can not be cancelled: {message}.", state=update.state
        )

    async def cancel_by(
        self, update: FirmwareUpdate, actor: str, *, from_states: Sequence[str] = CANCELLABLE
    ) -> FirmwareUpdate | None:
        """The one way an update is cancelled, by an operator or by the server (a
        rollout's abort, ``actor`` naming it): the update and its ledger command end as
        cancelled, the transition "cancelled by <actor>" is kept and the change published
        after commit. None when the update is no longer in ``from_states``."""
        return await self._finish(
            update, st.CANCELLED, reason=None, detail=f"cancelled by {actor}",
            from_states=from_states,
        )  # fmt: skip

    async def expire_by(
        self, update: FirmwareUpdate, detail: str, *, from_states: Sequence[str]
    ) -> FirmwareUpdate | None:
        """The server ends an update that may no longer start (a rollout's window
        ended): the update and its ledger command end as expired, ``detail`` kept with
        the transition. None when the update is no longer in ``from_states``."""
        return await self._finish(
            update, st.EXPIRED, reason=None, detail=detail, from_states=from_states
        )

    # --- devices ------------------------------------------------------------------------

    async def report(
        self,
        device_id: uuid.UUID,
        update_id: uuid.UUID,
        state: str,
        bytes: int | None = None,
        reason: str | None = None,
        detail: str | None = None,
    ) -> FirmwareUpdate | None:
        """A device's report on its update (``messages.parse_state`` checked it). None
        for an update the device does not have. A report at or before the present state,
        or for an ended update, changes nothing (it is answered all the same)."""
        update = await self.updates.for_device(device_id, update_id)
        if update is None or update.state in st.FINAL:
            return update
        if state == st.FAILED:
            assert reason is not None
            cause = f"{reason} on the device" + (f": {detail}" if detail else "")
            return await self._retry_or_fail(update, reason, cause) or update
        values: dict[str, object] = {"detail": detail}
        if bytes is not None:
            values["downloaded_bytes"] = bytes
        if st.RANK[state] > st.RANK[update.state]:
            note = detail or "reported by the device"
            return await self._advance(update, state, values, note) or update
        if state == update.state == st.DOWNLOADING and bytes is not None:  # progress
            moved = await self._move(update, (st.DOWNLOADING,), st.DOWNLOADING, values=values)
            return moved or update
        return update

    async def report_at_once(
        self, device_id: uuid.UUID, update_id: uuid.UUID, state: str, bytes: int | None = None,
        detail: str | None = None,
    ) -> FirmwareUpdate | None:  # fmt: skip
        """``report``'s common case, a step forward from past ``sent`` or a download's
        progress, as one statement that commits on its own (PostgreSQL; this unit of work
        must not have run anything yet): no read first, no BEGIN, no COMMIT. None when it
        does not apply (another database, a failure, an update not yet acknowledged, an
        ended one, a repeated or stale report, another device's): ``report`` answers
        those in a transaction of its own."""
        if state == st.FAILED or not self.updates.one_statement():
            return None
        if state == st.ACKNOWLEDGED:
            return await self._acknowledge_at_once(device_id, update_id, detail)
        low, high = st.RANK[st.SENT], st.RANK[state]
        from_states = [s for s in st.OPEN if low < st.RANK[s] < high]
        if state == st.DOWNLOADING and bytes is not None:
            from_states.append(st.DOWNLOADING)  # progress
        if not from_states:
            return None
        now = utcnow()
        values: dict[str, Any] = {
            "state": state, "updated_at": now, "detail": detail,
            "state_deadline": st.deadline(state, self.settings, now),
        }  # fmt: skip
        if bytes is not None:
            values["downloaded_bytes"] = bytes
        await self.uow.autocommit()
        note = (now, detail or "reported by the device")
        found = await self.updates.change_and_note(device_id, update_id, from_states, values, note)
        if found is None:
            return None
        changed, previous = found
        self.uow.emit(update_event(changed, previous))
        return changed

    async def _acknowledge_at_once(
        self, device_id: uuid.UUID, update_id: uuid.UUID, detail: str | None
    ) -> FirmwareUpdate | None:
        """A device's first report (``acknowledged``) in one statement: the update and its
        ledger command both acknowledged, the command's transition kept, as ``report``
        does in a transaction. None when it does not apply (see ``report_at_once``)."""
        now = utcnow()
        values: dict[str, Any] = {
            "state": st.ACKNOWLEDGED, "updated_at": now, "detail": detail,
            "state_deadline": st.deadline(st.ACKNOWLEDGED, self.settings, now),
        }  # fmt: skip
        await self.uow.autocommit()
        note = (now, "acknowledged by the device")
        found = await self.updates.acknowledge_with_command(device_id, update_id, values, note)
        if found is None:
            return None
        changed, previous, command, command_previous = found
        self.uow.emit(update_event(changed, previous))
        if command is not None and command_previous is not None:
            self.commands.changed_elsewhere(command, command_previous, now)
        return changed

    async def version_reported(self, device_id: uuid.UUID, version: str) -> FirmwareUpdate | None:
        """The device runs ``version`` (a heartbeat, status, register or poll said so):
        its open update completes when that is the target version, and fails as rolled
        back when it was rebooting into another. The device's recorded version follows.
        The update it changed, if any."""
        await DeviceService(self.uow).firmware_reported(device_id, version)
        update = await self.updates.open_for(device_id)
        if update is None:
            return None
        if update.target_version == version:
            detail = f"the device runs {version}"
            return await self._finish(update, st.COMPLETED, reason=None, detail=detail)
        if update.state == st.REBOOTING:
            detail = f"the device came back on {version}, not {update.target_version}"
            return await self._finish(update, st.FAILED, reason=st.ROLLED_BACK, detail=detail)
        return None

    async def poll(self, device_id: uuid.UUID) -> tuple[dict[str, Any] | None, bool]:
        """A polling device's open update: its message (handing it out before the device
        acknowledged it is a delivery over ``http``), and whether an update is open."""
        update = await self.updates.open_for(device_id)
        if update is None:
            return None, False
        command = await self._command(update)
        if command.status in (ledger.PENDING, ledger.SENT):
            claimed = await self.commands.claim_send(
                command, transport="http", ack_timeout_s=self.settings.command_ack_timeout_s
            )
            if claimed is None:  # out of attempts (now failed), or claimed meanwhile
                return None, False
            command = claimed
            await self.uow.session.refresh(update)
        elif command.status != ledger.ACKNOWLEDGED:
            return None, False
        url = messages.url_for(self.settings, self.signer, command)
        return messages.update_message(command, url=url, attempt=update.tries), True

    async def sweep_one(self, update: FirmwareUpdate) -> FirmwareUpdate | None:
        """An update past its state's deadline: retried, or failed as a timeout."""
        cause = f"timeout in {update.state}"
        return await self._retry_or_fail(update, st.TIMEOUT, cause, due=True)
