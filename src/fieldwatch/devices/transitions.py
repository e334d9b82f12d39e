"""Lifecycle transitions: which status changes are allowed, what each one does, the log
entry it leaves. The registry (provisioning, retiring on delete) and the inventory's
named actions all change a device's status through here."""

from __future__ import annotations

import uuid

from fieldwatch.auth.principal import Principal
from fieldwatch.core.clock import utcnow
from fieldwatch.core.errors import ValidationFailed
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices import events
from fieldwatch.devices.errors import TransitionRefused
from fieldwatch.devices.lifecycle import NAMED_ACTIONS, Action, DeviceStatus, can_transition
from fieldwatch.devices.log import diff
from fieldwatch.devices.models import Device
from fieldwatch.devices.repository import AgentTokenRepository, DeviceLogRepository
from fieldwatch.devices.service import DeviceService, flush_guarded, snapshot


class LifecycleService:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self.tokens = AgentTokenRepository(uow.session)
        self.logs = DeviceLogRepository(uow.session)

    async def _device(self, principal: Principal, device_id: uuid.UUID) -> Device:
        return await DeviceService(self.uow).get(principal, device_id)

    async def perform(
        self,
        principal: Principal,
        device_id: uuid.UUID,
        action: Action,
        *,
        location: str | None = None,
        notes: str | None = None,
        claimed_status: DeviceStatus | None = None,
    ) -> Device:
        """A named lifecycle action: deploy, recall, maintenance, reserve, retire."""
        target, _ = NAMED_ACTIONS[action]
        if claimed_status is not None and claimed_status != target:
            raise ValidationFailed(
                f"This action moves the device to {target.value}, not {claimed_status.value}.",
                errors=[{"field": "status", "message": f"must be {target.value} or omitted"}],
            )
        device = await self._device(principal, device_id)
        return await self.perform_loaded(principal, device, action, location=location, notes=notes)

    async def perform_loaded(
        self,
        principal: Principal,
        device: Device,
        action: Action,
        *,
        location: str | None = None,
        notes: str | None = None,
    ) -> Device:
        """``perform`` on a device the caller has loaded (in the principal's workspace)."""
        assert device.workspace_id == principal.workspace_id
        target, sources = NAMED_ACTIONS[action]
        current = DeviceStatus(device.status)
        if sources is not None and current not in sources and can_transition(current, target):
            names = " or ".join(s.value for s in sorted(sources))
            raise TransitionRefused(
                current,
                target,
                reason=f"Only a {names} device can be {action.value}; this one is {current.value}.",
            )
        return await self._apply(principal, device, target, action, location, notes)

    async def change_status(
        self,
        principal: Principal,
        device_id: uuid.UUID,
        target: DeviceStatus,
        *,
        location: str | None = None,
        notes: str | None = None,
    ) -> Device:
        """``PUT /devices/{id}/status``: any allowed transition, named after its effect."""
        device = await self._device(principal, device_id)
        return await self.change_status_loaded(principal, device, target, location, notes)

    async def change_status_loaded(
        self,
        principal: Principal,
        device: Device,
        target: DeviceStatus,
        location: str | None = None,
        notes: str | None = None,
    ) -> Device:
        assert device.workspace_id == principal.workspace_id
        current = DeviceStatus(device.status)
        action = Action.status_changed
        for named, (named_target, sources) in NAMED_ACTIONS.items():
            if named_target == target and (sources is None or current in sources):
                action = named
                break
        return await self._apply(principal, device, target, action, location, notes)

    async def _apply(
        self,
        principal: Principal,
        device: Device,
        target: DeviceStatus,
        action: Action,
        location: str | None,
        notes: str | None,
    ) -> Device:
        current = DeviceStatus(device.status)
        if not can_transition(current, target):
            raise TransitionRefused(current, target)
        if target == DeviceStatus.deployed and not (location or "").strip():
            raise ValidationFailed(
                "Deploying needs the location the device goes to.",
                errors=[{"field": "location", "message": "required when deploying"}],
            )
        before = snapshot(device)
        today = utcnow().date()
        device.status = target
        if target == DeviceStatus.deployed:
            device.deploy_date = today
        if target == DeviceStatus.maintenance:
            device.last_maintenance = today
        if location is not None:
            device.location = location
        elif action == Action.recalled:
            device.location = None  # it has left the field site; say where it went
        device.updated_at = utcnow()
        revoked = 0
        if target == DeviceStatus.retired:
            revoked = await self.tokens.revoke_all(device.id, utcnow())
        await flush_guarded(self.uow)
        if revoked:
            notes = (notes + "\n" if notes else "") + f"{revoked} agent token(s) revoked"
        self.logs.record(
            device,
            action,
            principal,
            old_status=current,
            new_status=target,
            notes=notes,
            changes=diff(before, snapshot(device)),
        )
        self.uow.emit(
            events.device_event(
                events.DEVICE_STATUS_CHANGED,
                device,
                old_status=current.value,
                new_status=target.value,
                action=action.value,
            )
        )
        return device
