"""The inventory's reads over the lifecycle: a device's log and the stock summary. The
transitions themselves (and the named actions) come from ``devices.transitions``."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence

from fieldwatch.auth.principal import Principal
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.lifecycle import DeviceStatus
from fieldwatch.devices.models import DeviceLog
from fieldwatch.devices.transitions import LifecycleService
from fieldwatch.inventory.repository import InventoryRepository
from fieldwatch.inventory.schemas import InventorySummary, StatusBreakdown

UNKNOWN_LOCATION = "(no location)"


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
