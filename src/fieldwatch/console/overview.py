"""The fleet overview's figures, gathered from the services the API uses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import get_args

from fieldwatch.alerts.schemas import Severity
from fieldwatch.alerts.service import AlertService
from fieldwatch.auth.principal import Principal
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.lifecycle import DeviceStatus
from fieldwatch.monitoring.presence import PresenceTracker
from fieldwatch.monitoring.service import MonitoringService

SEVERITIES: tuple[str, ...] = get_args(Severity)
#: The window of ``MonitoringService.stats``; the page shows the last full minute.
STATS_WINDOW_S = 60


@dataclass(frozen=True, slots=True)
class Figures:
    by_status: dict[str, int]
    online: int
    offline: int
    active_alerts: dict[str, int]
    readings_last_minute: int
    generated_at: datetime

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    @property
    def alerts_total(self) -> int:
        return sum(self.active_alerts.values())


async def figures(uow: UnitOfWork, presence: PresenceTracker, principal: Principal) -> Figures:
    stats = await MonitoringService(uow, presence).stats(principal, STATS_WINDOW_S)
    alerts = AlertService(uow)
    active: dict[str, int] = {}
    for severity in SEVERITIES:
        _, count = await alerts.page(principal, {"status": "active", "severity": severity}, 1, 0)
        active[severity] = count
    return Figures(
        by_status={s.value: stats.devices_by_status.get(s, 0) for s in DeviceStatus},
        online=stats.online,
        offline=stats.offline,
        active_alerts=active,
        readings_last_minute=stats.readings_last_minute,
        generated_at=stats.generated_at,
    )
