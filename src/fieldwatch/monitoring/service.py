"""Monitoring rules: device status and health, fleet summaries and statistics."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from fieldwatch.auth.principal import Principal
from fieldwatch.core.clock import utcnow
from fieldwatch.core.events import Event
from fieldwatch.core.paging import Page
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.lifecycle import DeviceStatus
from fieldwatch.devices.models import Device
from fieldwatch.devices.repository import DeviceFilter
from fieldwatch.devices.schemas import DeviceListItem
from fieldwatch.devices.service import DeviceService
from fieldwatch.integrations.health import sync_counts, sync_health
from fieldwatch.monitoring.limits import RATE_LIMITS_CHANGED, TRANSPORTS, DeviceLimiter, Rate
from fieldwatch.monitoring.models import (
    DeviceRateLimit,
    DeviceTypeRateLimit,
    DeviceTypeSettings,
)
from fieldwatch.monitoring.presence import ONLINE, PresenceTracker
from fieldwatch.monitoring.repository import MonitoringRepository
from fieldwatch.monitoring.schemas import (
    DeviceHealthRead,
    DeviceStatusRead,
    HealthSummary,
    MetricStats,
    MonitoringStats,
    OfflineDevice,
    RateLimit,
    RateLimitRead,
)
from fieldwatch.telemetry.models import Series

HEALTH_METRICS = ("battery_level", "signal_strength")
LOW_BATTERY = 20.0


def _value(series: Series | None) -> Any:
    if series is None or series.last_ts is None:
        return None
    return series.last_text if series.kind == "text" else series.last_value


def window_start(now: datetime, window_s: int) -> datetime:
    """Where the statistics' window starts: ``window_s`` before the current minute."""
    return now.replace(second=0, microsecond=0) - timedelta(seconds=window_s)


class MonitoringService:
    def __init__(self, uow: UnitOfWork, presence: PresenceTracker) -> None:
        self.uow = uow
        self.presence = presence
        self.repo = MonitoringRepository(uow.session)
        self.devices = DeviceService(uow)

    async def _last_seen(self, device: Device) -> Any:
        return (await self.presence.last_seen_of([device.id]))[device.id] or device.last_seen

    async def status(self, principal: Principal, device_id: uuid.UUID) -> DeviceStatusRead:
        device = await self.devices.get(principal, device_id)
        metrics = (await self.repo.latest_metrics([device.id], HEALTH_METRICS)).get(device.id, {})
        return DeviceStatusRead(
            device_id=device.id,
            status=DeviceStatus(device.status),
            connectivity=(await self.presence.connectivity_of([device.id]))[device.id],
            last_seen=await self._last_seen(device),
            battery_level=_value(metrics.get("battery_level")),
            signal_strength=_value(metrics.get("signal_strength")),
            firmware_version=device.firmware_version,
        )

    async def device_page(
        self, principal: Principal, flt: DeviceFilter, *, limit: int, offset: int, sort: str
    ) -> Page[DeviceListItem]:
        """A page of the device list, each device with its connectivity and last_seen read
        from presence (in this process or in Redis: one batch for the page), like
        ``status``. The ``connectivity`` filter reads the database, where every
        online/offline transition is written when it happens."""
        devices, total = await self.devices.page(
            principal, flt, limit=limit, offset=offset, sort=sort
        )
        ids = [d.id for d in devices]
        connectivity = await self.presence.connectivity_of(ids)
        last_seen = await self.presence.last_seen_of(ids)
        items = [
            DeviceListItem.of(d, connectivity[d.id], last_seen[d.id] or d.last_seen)
            for d in devices
        ]
        return Page[DeviceListItem](items=items, total=total, limit=limit, offset=offset)

    def _problems(
        self, device: Device, connectivity: str, battery: Any
    ) -> tuple[list[str], list[str]]:
        errors: list[str] = []
        warnings: list[str] = []
        deployed = device.status == DeviceStatus.deployed
        if deployed and connectivity != ONLINE:
            (errors if device.last_seen else warnings).append(
                "offline" if device.last_seen else "deployed but never seen"
            )
        if isinstance(battery, float) and battery < LOW_BATTERY:
            warnings.append(f"battery low ({battery:g}%)")
        return errors, warnings

    async def health(self, principal: Principal, device_id: uuid.UUID) -> DeviceHealthRead:
        status = await self.status(principal, device_id)
        device = await self.devices.get(principal, device_id)
        errors, warnings = self._problems(device, status.connectivity, status.battery_level)
        synced = await sync_health(self.uow.session, principal.workspace_id, device.id)
        if synced is not None:
            errors, warnings = errors + synced.errors, warnings + synced.warnings
        return DeviceHealthRead(
            device_id=device.id,
            status=status.connectivity,
            lifecycle_status=status.status,
            last_seen=status.last_seen,
            battery_level=status.battery_level,
            signal_strength=status.signal_strength,
            sync_status=synced.sync_status if synced else None,
            last_sync=synced.last_sync if synced else None,
            next_sync=synced.next_sync if synced else None,
            errors=errors,
            warnings=warnings,
        )

    async def health_summary(self, principal: Principal) -> HealthSummary:
        rows = [r for r in await self.repo.devices(principal.workspace_id)
                if r[1] != DeviceStatus.retired]  # fmt: skip
        ids = [r[0] for r in rows]
        metrics = await self.repo.latest_metrics(ids, ("battery_level",))
        online_ids = await self.presence.online_in(principal.workspace_id)
        last_seen = await self.presence.last_seen_of(ids)
        by_type: dict[str, dict[str, int]] = defaultdict(lambda: {"online": 0, "offline": 0})
        never = low = 0
        with_errors: list[uuid.UUID] = []
        for device_id, status, type_ in rows:
            online = device_id in online_ids
            by_type[type_]["online" if online else "offline"] += 1
            battery = _value(metrics.get(device_id, {}).get("battery_level"))
            if isinstance(battery, float) and battery < LOW_BATTERY:
                low += 1
            if last_seen[device_id] is None:
                presence = await self.repo.presence(device_id)
                if presence is None or presence.last_seen is None:
                    never += 1
            if status == DeviceStatus.deployed and not online:
                with_errors.append(device_id)
        online_count = sum(1 for d in ids if d in online_ids)
        sync, blocked = await sync_counts(self.uow.session, principal.workspace_id)
        with_errors += [d for d in blocked if d not in with_errors]
        return HealthSummary(
            total=len(rows),
            online=online_count,
            offline=len(rows) - online_count,
            never_seen=never,
            low_battery=low,
            by_type=dict(sorted(by_type.items())),
            devices_with_errors=with_errors,
            sync=sync,
        )

    async def went_offline(
        self, principal: Principal, within: timedelta, limit: int
    ) -> tuple[list[OfflineDevice], int]:
        """The workspace's devices that went offline in the last ``within`` and are still
        offline (latest first, at most ``limit``), and how many there are: from the
        presence rows, where every transition is written when it happens."""
        since = self.presence.clock() - within
        rows, total = await self.repo.went_offline(principal.workspace_id, since, limit)
        items = [
            OfflineDevice(device_id=d, name=n, went_offline_at=at, last_seen=seen)
            for d, n, at, seen in rows
        ]
        return items, total

    async def history(
        self, principal: Principal, device_id: uuid.UUID, limit: int, before_id: int | None
    ) -> Any:
        await self.devices.get(principal, device_id)
        return await self.repo.history(device_id, limit, before_id)

    async def set_type_heartbeat(
        self, principal: Principal, type_: str, interval: int, tolerance: float
    ) -> DeviceTypeSettings:
        return await self.repo.set_type_settings(
            principal.workspace_id,
            type_,
            heartbeat_interval_s=interval,
            offline_tolerance=tolerance,
        )

    async def type_heartbeat(self, principal: Principal, type_: str) -> DeviceTypeSettings | None:
        return await self.repo.type_settings(principal.workspace_id, type_)

    async def set_device_heartbeat(
        self, principal: Principal, device_id: uuid.UUID, interval: int | None
    ) -> None:
        device = await self.devices.get(principal, device_id)
        await self.repo.set_heartbeat_interval(device.id, device.workspace_id, interval)

    # --- rate limits ------------------------------------------------------------------

    async def type_rate_limit(
        self, principal: Principal, type_: str, limiter: DeviceLimiter
    ) -> RateLimitRead:
        row = await self.repo.type_rate_limit(principal.workspace_id, type_)
        return _rate_read("type" if row else "default", row, limiter)

    async def set_type_rate_limit(
        self, principal: Principal, type_: str, limit: RateLimit | None
    ) -> None:
        """Set (or with None, remove) the rate limit of a device type."""
        if limit is None:
            await self.repo.delete_type_rate_limit(principal.workspace_id, type_)
        else:
            await self.repo.set_type_rate_limit(
                principal.workspace_id, type_, limit.messages, limit.window_s
            )
        await self.uow.session.flush()
        self.uow.emit(
            Event(type=RATE_LIMITS_CHANGED, workspace_id=principal.workspace_id, payload={})
        )

    async def device_rate_limit(
        self, principal: Principal, device_id: uuid.UUID, limiter: DeviceLimiter
    ) -> RateLimitRead:
        device = await self.devices.get(principal, device_id)
        own = await self.repo.device_rate_limit(device.id)
        if own is not None:
            return _rate_read("device", own, limiter)
        return await self.type_rate_limit(principal, device.type, limiter)

    async def set_device_rate_limit(
        self, principal: Principal, device_id: uuid.UUID, limit: RateLimit | None
    ) -> None:
        """Set (or with None, remove) the device's own rate limit."""
        device = await self.devices.get(principal, device_id)
        if limit is None:
            await self.repo.delete_device_rate_limit(device.id)
        else:
            await self.repo.set_device_rate_limit(
                device.id, device.workspace_id, limit.messages, limit.window_s
            )
        await self.uow.session.flush()
        self.uow.emit(
            Event(
                type=RATE_LIMITS_CHANGED,
                workspace_id=device.workspace_id,
                payload={"device_id": str(device.id)},
                subject_id=device.id,
            )
        )

    async def stats(self, principal: Principal, window_s: int) -> MonitoringStats:
        """The figures over ``[window_start(now, window_s), now)``."""
        now = utcnow()
        minute = now.replace(second=0, microsecond=0)
        by_status = dict.fromkeys(DeviceStatus, 0)
        online_by_status = dict.fromkeys(DeviceStatus, 0)
        rows = await self.repo.devices(principal.workspace_id)
        online_ids = await self.presence.online_in(principal.workspace_id)
        for device_id, status, _type in rows:
            by_status[DeviceStatus(status)] += 1
            online_by_status[DeviceStatus(status)] += device_id in online_ids
        active = [r for r in rows if r[1] != DeviceStatus.retired]
        online = sum(1 for r in active if r[0] in online_ids)
        since = window_start(now, window_s)
        last_minute = await self.repo.readings_per_minute(
            principal.workspace_id, minute - timedelta(minutes=1), minute
        )
        in_window = await self.repo.readings_per_minute(principal.workspace_id, since, now)
        metrics = {
            m: MetricStats(count=c, min=lo, avg=s / c if c else 0.0, max=hi)
            for m, c, s, lo, hi in await self.repo.metric_stats(principal.workspace_id, since, now)
        }
        return MonitoringStats(
            window_s=window_s,
            devices_by_status=by_status,
            online_by_status=online_by_status,
            online=online,
            offline=len(active) - online,
            readings_last_minute=last_minute,
            readings_per_minute=in_window / max(1.0, window_s / 60),
            metrics=metrics,
            generated_at=now,
        )


def _rate_read(
    source: str, row: DeviceRateLimit | DeviceTypeRateLimit | None, limiter: DeviceLimiter
) -> RateLimitRead:
    def shown(rate: Rate) -> RateLimit:
        return RateLimit(messages=max(1, round(rate.messages)), window_s=round(rate.window_s))

    limits = {
        t: shown(Rate(row.messages, row.window_s) if row else limiter.default(t))
        for t in TRANSPORTS
    }
    return RateLimitRead.model_validate({"source": source, "limits": limits})
