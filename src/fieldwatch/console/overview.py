"""The fleet overview's figures, gathered from the services the API uses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import get_args

from fieldwatch.alerts.schemas import Severity
from fieldwatch.alerts.service import AlertService
from fieldwatch.auth.principal import Principal
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.lifecycle import DeviceStatus
from fieldwatch.devices.schemas import StatusChangeRead
from fieldwatch.devices.service import DeviceService
from fieldwatch.monitoring.presence import PresenceTracker
from fieldwatch.monitoring.schemas import OfflineDevice
from fieldwatch.monitoring.service import MonitoringService

SEVERITIES: tuple[str, ...] = get_args(Severity)
#: The window of ``MonitoringService.stats``; the page shows the last full minute.
STATS_WINDOW_S = 60
#: "Went offline in the last hour": how far back, and how many devices the page lists.
OFFLINE_WITHIN = timedelta(hours=1)
OFFLINE_SHOWN = 20
#: How many of the latest lifecycle changes the page lists.
CHANGES_SHOWN = 10


@dataclass(frozen=True, slots=True)
class Figures:
    by_status: dict[str, int]
    online_by_status: dict[str, int]
    active_alerts: dict[str, int]
    readings_last_minute: int
    went_offline: list[OfflineDevice]
    went_offline_total: int
    status_changes: list[StatusChangeRead]
    generated_at: datetime

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    @property
    def online(self) -> int:
        return sum(self.online_by_status.values())

    @property
    def offline(self) -> int:
        return self.total - self.online

    def offline_by_status(self, status: str) -> int:
        return self.by_status[status] - self.online_by_status[status]

    @property
    def alerts_total(self) -> int:
        return sum(self.active_alerts.values())


async def figures(uow: UnitOfWork, presence: PresenceTracker, principal: Principal) -> Figures:
    monitoring = MonitoringService(uow, presence)
    stats = await monitoring.stats(principal, STATS_WINDOW_S)
    went_offline, offline_total = await monitoring.went_offline(
        principal, OFFLINE_WITHIN, OFFLINE_SHOWN
    )
    alerts = AlertService(uow)
    active: dict[str, int] = {}
    for severity in SEVERITIES:
        _, count = await alerts.page(principal, {"status": "active", "severity": severity}, 1, 0)
        active[severity] = count
    return Figures(
        by_status={s.value: stats.devices_by_status.get(s, 0) for s in DeviceStatus},
        online_by_status={s.value: stats.online_by_status.get(s, 0) for s in DeviceStatus},
        active_alerts=active,
        readings_last_minute=stats.readings_last_minute,
        went_offline=went_offline,
        went_offline_total=offline_total,
        status_changes=await DeviceService(uow).recent_status_changes(principal, CHANGES_SHOWN),
        generated_at=stats.generated_at,
    )
