"""Changing a device's sync settings (``PATCH /api/v1/devices/{id}/sync-settings``, a
re-import with ``sync_settings``, the console's form): only the values given change,
the schedule follows and the change is in the device's log.

- ``auto_sync`` on: the next sync is due an interval after the last one (at once if
  that is past or the device never synced), but only while its connection is active:
  a revoked or ``auth_required`` connection schedules nothing until it is authorised
  again. Off: no next sync (manual syncs only).
- A device paused by a disconnect is unpaused once its connection is active again.
- ``sync_historical_days`` is capped at what the vendor keeps.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fieldwatch.auth.principal import Principal
from fieldwatch.core.clock import utcnow
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.lifecycle import Action
from fieldwatch.devices.log import diff
from fieldwatch.devices.models import Device
from fieldwatch.devices.repository import DeviceLogRepository
from fieldwatch.integrations.connections.repository import ConnectionRepository
from fieldwatch.integrations.connectors.catalogue import CONNECTORS, takes_uploads
from fieldwatch.integrations.models import DeviceSync

FIELDS = ("auto_sync", "sync_interval_minutes", "sync_historical_days")


def _snapshot(sync: DeviceSync) -> dict[str, Any]:
    return {"sync.auto_sync": sync.auto_sync, "sync.interval_minutes": sync.interval_minutes,
            "sync.historical_days": sync.historical_days, "sync.next_sync": sync.next_sync_at,
            "sync.status": sync.sync_status}  # fmt: skip


async def connection_active(uow: UnitOfWork, sync: DeviceSync) -> bool:
    if takes_uploads(sync.connector) or sync.connection_id is None:
        return False
    connection = await ConnectionRepository(uow.session).get(sync.workspace_id,
                                                             sync.connection_id)  # fmt: skip
    return connection is not None and connection.status == "active"


def reschedule(sync: DeviceSync, active: bool) -> None:
    """The next sync after a change of the settings or of the connection."""
    if active and sync.sync_status == "paused":
        sync.sync_status = "ok" if sync.last_sync_at else "pending"
    if not sync.auto_sync or not active:
        sync.next_sync_at = None
        return
    now, last = utcnow(), sync.last_sync_at
    interval = timedelta(minutes=sync.interval_minutes)
    sync.next_sync_at = now if last is None else max(last + interval, now)


async def change_settings(
    uow: UnitOfWork, principal: Principal, sync: DeviceSync, values: dict[str, Any]
) -> dict[str, Any]:
    """Apply the given settings (``FIELDWATCH`` names: ``auto_sync``,
    ``sync_interval_minutes``, ``sync_historical_days``; None or absent: unchanged);
    what changed, as the device log records it (empty: nothing did)."""
    before = _snapshot(sync)
    if values.get("auto_sync") is not None:
        sync.auto_sync = bool(values["auto_sync"])
    if values.get("sync_interval_minutes") is not None:
        sync.interval_minutes = int(values["sync_interval_minutes"])
    if values.get("sync_historical_days") is not None:
        days = int(values["sync_historical_days"])
        info = CONNECTORS.get(sync.connector)
        if info is not None and info.history_days is not None:
            days = min(days, info.history_days)
        sync.historical_days = days
    settings_changed = _snapshot(sync) != before
    if settings_changed or sync.sync_status == "paused":
        reschedule(sync, await connection_active(uow, sync))
    changes = diff(before, _snapshot(sync))
    if changes:
        device = await uow.session.get(Device, sync.device_id)
        if device is not None:
            DeviceLogRepository(uow.session).record(
                device, Action.updated, principal, old_status=device.status,
                new_status=device.status, changes=changes, notes="sync settings changed",
            )  # fmt: skip
        await uow.session.flush()
    return changes
