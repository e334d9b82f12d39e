"""Lifecycle rules: which status changes are allowed, what each one does, the trail."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence

from fieldwatch.auth.principal import Principal
from fieldwatch.core.clock import utcnow
from fieldwatch.core.errors import ValidationFailed
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices import events
from fieldwatch.devices.models import Device
from fieldwatch.devices.repository import AgentTokenRepository, DeviceRepository
from fieldwatch.devices.service import DeviceService, flush_guarded, snapshot
from fieldwatch.inventory import audit
from fieldwatch.inventory.errors import TransitionRefused
from fieldwatch.inventory.lifecycle import (
    NAMED_ACTIONS,
    Action,
    DeviceStatus,
    allowed_targets,
    can_transition,
)
from fieldwatch.inventory.models import DeviceLog
from fieldwatch.inventory.repository import DeviceLogRepository, InventoryRepository
from fieldwatch.inventory.schemas import InventorySummary, StatusBreakdown

UNKNOWN_LOCATION = "(no location)"


class InventoryService:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self.devices = DeviceRepository(uow.session)
        self.tokens = AgentTokenRepository(uow.session)
        self.logs = DeviceLogRepository(uow.session)
        self.inventory = InventoryRepository(uow.session)

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
        target, sources = NAMED_ACTIONS[action]
        if claimed_status is not None and claimed_status != target:
            raise ValidationFailed(
                f"This action moves the device to {target.value}, not {claimed_status.value}.",
                errors=[{"field": "status", "message": f"must be {target.value} or omitted"}],
            )
        device = await self._device(principal, device_id)
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
        self.logs.append(
            audit.entry(
                workspace_id=device.workspace_id,
                device_id=device.id,
                action=action,
                actor=principal,
                old_status=current,
                new_status=target,
                notes=notes,
                changes=audit.diff(before, snapshot(device)),
            )
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

    def allowed(self, device: Device) -> list[DeviceStatus]:
        return allowed_targets(DeviceStatus(device.status))

    async def logs_for(
        self, principal: Principal, device_id: uuid.UUID, *, limit: int, before_id: int | None
    ) -> Sequence[DeviceLog]:
        # The trail of a purged device stays readable only through the database.
        await self._device(principal, device_id)
        return await self.logs.for_device(
            principal.workspace_id, device_id, limit=limit, before_id=before_id
        )

    async def summary(self, principal: Principal) -> InventorySummary:
        by_status: dict[DeviceStatus, int] = dict.fromkeys(DeviceStatus, 0)
        by_type: dict[DeviceStatus, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        by_loc: dict[DeviceStatus, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for status, type_, location, n in await self.inventory.counts(principal.workspace_id):
            s = DeviceStatus(status)
            by_status[s] += n
            by_type[s][type_] += n
            by_loc[s][location or UNKNOWN_LOCATION] += n
        breakdown = {
            s: StatusBreakdown(
                count=by_status[s],
                by_type=dict(sorted(by_type[s].items())),
                by_location=dict(sorted(by_loc[s].items())),
            )
            for s in DeviceStatus
        }
        return InventorySummary(
            total=sum(by_status.values()), by_status=by_status, breakdown=breakdown
        )
