"""The inventory's reads over the lifecycle: a device's log and the stock summary. The
transitions themselves (and the named actions) come from ``devices.transitions``."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence

from fieldwatch.auth.principal import Principal
from fieldwatch.core.errors import ValidationFailed
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.errors import DeviceNotFound, TransitionRefused
from fieldwatch.devices.lifecycle import NAMED_ACTIONS, Action, DeviceStatus
from fieldwatch.devices.models import DeviceLog
from fieldwatch.devices.transitions import LifecycleService
from fieldwatch.inventory.repository import InventoryRepository
from fieldwatch.inventory.schemas import BulkOutcome, InventorySummary, StatusBreakdown

UNKNOWN_LOCATION = "(no location)"
#: The most devices one bulk action takes (a page of the console's table at most).
MAX_BULK = 500


class InventoryService(LifecycleService):
    def __init__(self, uow: UnitOfWork) -> None:
        super().__init__(uow)
        self.inventory = InventoryRepository(uow.session)

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

    async def perform_many(
        self,
        principal: Principal,
        device_ids: Sequence[uuid.UUID],
        action: Action,
        *,
        location: str | None = None,
        notes: str | None = None,
    ) -> list[BulkOutcome]:
        """A named action on several devices in the caller's transaction, an outcome for
        each (in the order given, repeats once). A device whose status does not allow
        the action, or that is not in this workspace, is refused with the reason and is
        left as it was; the others change. Each change is logged and emits its event as
        a single action does."""
        wanted = list(dict.fromkeys(device_ids))
        if not wanted:
            raise ValidationFailed(
                "Select at least one device.",
                errors=[{"field": "device", "message": "no device selected"}],
            )
        if len(wanted) > MAX_BULK:
            raise ValidationFailed(
                f"{len(wanted)} devices selected; one action takes at most {MAX_BULK}.",
                errors=[{"field": "device", "message": f"at most {MAX_BULK}"}],
            )
        if NAMED_ACTIONS[action][0] == DeviceStatus.deployed and not (location or "").strip():
            raise ValidationFailed(
                "Deploying needs the location the devices go to.",
                errors=[{"field": "location", "message": "required when deploying"}],
            )
        return [await self._perform_one(principal, d, action, location, notes) for d in wanted]

    async def _perform_one(
        self,
        principal: Principal,
        device_id: uuid.UUID,
        action: Action,
        location: str | None,
        notes: str | None,
    ) -> BulkOutcome:
        try:
            device = await self._device(principal, device_id)
        except DeviceNotFound as exc:
            return BulkOutcome(device_id=device_id, done=False, detail=exc.detail)
        outcome = BulkOutcome(
            device_id=device.id, name=device.name, serial_number=device.serial_number, done=False
        )
        try:
            await self.perform_loaded(principal, device, action, location=location, notes=notes)
        except TransitionRefused as exc:  # raised before anything changed
            outcome.detail = exc.detail
            outcome.allowed_statuses = [DeviceStatus(s) for s in exc.extra["allowed_statuses"]]
        else:
            outcome.done = True
        outcome.status = DeviceStatus(device.status)
        return outcome
