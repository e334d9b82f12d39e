"""The monitoring domain's request dependencies: presence, device rate limits and the
request's ``MonitoringService``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from fieldwatch.core.components import Slot
from fieldwatch.db.dependencies import UowDep
from fieldwatch.monitoring.limits import DeviceLimiter
from fieldwatch.monitoring.presence import PresenceTracker
from fieldwatch.monitoring.service import MonitoringService

PRESENCE: Slot[PresenceTracker] = Slot("presence")
LIMITS: Slot[DeviceLimiter] = Slot("limits")

PresenceDep = Annotated[PresenceTracker, Depends(PRESENCE)]
LimitsDep = Annotated[DeviceLimiter, Depends(LIMITS)]


async def monitoring_service(uow: UowDep, presence: PresenceDep) -> MonitoringService:
    return MonitoringService(uow, presence)


MonitoringDep = Annotated[MonitoringService, Depends(monitoring_service)]
