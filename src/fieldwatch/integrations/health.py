"""The sync side of device health: a device fed by a vendor cloud is healthy when its
syncs succeed, its connection is authorised and its connector still works.

``sync_health`` gives a device's sync status, last and next sync and the problems:
errors (the connection needs authorising again or was revoked, the connector's API is
switched off, syncs failing again and again) and warnings (a failed sync, an
unverified connection, a deprecated connector, data older than three sync intervals).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from fieldwatch.core.clock import utcnow
from fieldwatch.integrations.connections.repository import ConnectionRepository
from fieldwatch.integrations.connectors.catalogue import CONNECTORS, takes_uploads
from fieldwatch.integrations.models import Connection, DeviceSync
from fieldwatch.integrations.sync.repository import SyncRepository

#: Failed syncs in a row from which a device's health shows an error, not a warning.
REPEATED_FAILURES = 3
#: Data is stale after this many sync intervals without a successful sync.
STALE_INTERVALS = 3


@dataclass
class SyncHealth:
    sync_status: str
    last_sync: datetime | None
    next_sync: datetime | None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _connection_problems(connection: Connection | None, out: SyncHealth) -> None:
    """A connection that cannot sync makes the device's sync status its own (a device
    whose last run was fine does not sync while its connection is revoked)."""
    if connection is None:
        out.errors.append("sync: the device's vendor connection was removed")
    elif connection.status == "auth_required":
        out.sync_status = "auth_required"
        out.errors.append("sync: auth_required — the vendor connection needs authorising again")
    elif connection.status == "revoked":
        out.sync_status, out.next_sync = "revoked", None
        out.errors.append("sync: the vendor connection was disconnected (revoked): authorise "
                          "it again, then turn automatic sync on in the sync settings")  # fmt: skip
    elif connection.status == "pending":
        out.warnings.append("sync: the vendor connection is not verified yet (pending)")


def _connector_problems(kind: str, out: SyncHealth) -> None:
    info = CONNECTORS.get(kind)
    if info is None:
        return
    lifecycle = info.lifecycle(utcnow().date())
    successor = f"; move to {info.successor}" if info.successor else ""
    if lifecycle == "sunset":
        out.errors.append(f"sync: {info.title} is sunset{successor}")
    elif lifecycle == "deprecated":
        out.warnings.append(f"sync: {info.title} is deprecated{successor}")


def _run_problems(sync: DeviceSync, now: datetime, out: SyncHealth) -> None:
    if sync.sync_status == "paused" and out.sync_status == "paused":
        out.warnings.append("sync: paused since its connection was disconnected: turn "
                            "automatic sync on in the sync settings")  # fmt: skip
    if sync.sync_status == "auth_required" and not any("auth_required" in e for e in out.errors):
        out.errors.append("sync: auth_required — the vendor connection needs authorising again")
    if sync.failures >= REPEATED_FAILURES:
        out.errors.append(f"sync: {sync.failures} failed syncs in a row")
    elif sync.failures > 0:
        out.warnings.append(f"sync: the last sync failed ({sync.failures} in a row)")
    stale_after = timedelta(minutes=sync.interval_minutes * STALE_INTERVALS)
    since = sync.last_sync_at or sync.created_at
    if sync.auto_sync and since is not None and now - since > stale_after:
        when = sync.last_sync_at.isoformat() if sync.last_sync_at else "never"
        out.warnings.append(f"sync: stale data — last successful sync {when}")


async def sync_health(
    session: AsyncSession, workspace_id: uuid.UUID, device_id: uuid.UUID
) -> SyncHealth | None:
    """The device's sync health; None for a device not fed by a vendor cloud."""
    sync = await SyncRepository(session).device_sync(workspace_id, device_id)
    if sync is None:
        return None
    out = SyncHealth(sync.sync_status, sync.last_sync_at, sync.next_sync_at)
    connection = None
    if sync.connection_id is not None:
        connection = await ConnectionRepository(session).get(workspace_id, sync.connection_id)
    if not takes_uploads(sync.connector):
        _connection_problems(connection, out)
    _connector_problems(sync.connector, out)
    _run_problems(sync, utcnow(), out)
    return out


async def sync_counts(
    session: AsyncSession, workspace_id: uuid.UUID
) -> tuple[dict[str, int], list[uuid.UUID]]:
    """Devices fed by a vendor cloud by sync status, and those needing authorisation."""
    repo = SyncRepository(session)
    return await repo.status_counts(workspace_id), await repo.auth_required(workspace_id)
