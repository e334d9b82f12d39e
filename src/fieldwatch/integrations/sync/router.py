"""HTTP: sync runs of devices fed by vendor clouds (the seed's paths)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Query

from fieldwatch.auth.dependencies import Operator, Viewer
from fieldwatch.core.paging import Limit, Offset, Page
from fieldwatch.db.dependencies import WriteUow
from fieldwatch.integrations.dependencies import SyncServiceDep
from fieldwatch.integrations.sync.schemas import (
    BulkSyncRead,
    BulkSyncRequest,
    DeviceSyncStatus,
    RunStatus,
    SyncRequest,
    SyncRunRead,
    SyncSettingsUpdate,
    SyncType,
)

router = APIRouter(prefix="/api/v1", tags=["sync"])


@router.post("/devices/{device_id}/sync", response_model=SyncRunRead, status_code=202)
async def sync_device(
    device_id: uuid.UUID,
    principal: Operator,
    uow: WriteUow,
    service: SyncServiceDep,
    body: Annotated[SyncRequest | None, Body()] = None,
):
    """Queue a manual sync of the device; the answer is the run (follow it in
    `/sync/status` or `/sync/history`). A device with a sync still open answers 409
    naming it (`sync_id`)."""
    return await service.request(principal, device_id,
                                 data_types=body.data_types if body else None)  # fmt: skip


@router.patch("/devices/{device_id}/sync-settings", response_model=DeviceSyncStatus)
async def change_sync_settings(
    device_id: uuid.UUID,
    body: SyncSettingsUpdate,
    principal: Operator,
    uow: WriteUow,
    service: SyncServiceDep,
):
    """Change the device's sync settings: only the fields given change (`auto_sync`,
    `sync_interval_minutes`, `sync_historical_days`). With `auto_sync` on, the next sync
    is due an interval after the last one (at once if never synced), while the device's
    connection is active; off, only manual syncs run. Recorded in the device's log."""
    return await service.change_settings(principal, device_id, body)


@router.get("/sync/status", response_model=Page[DeviceSyncStatus])
async def sync_status(
    principal: Viewer,
    service: SyncServiceDep,
    device_id: uuid.UUID | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
):
    """Each synced device: its sync status, last and next sync, and its open run."""
    items, total = await service.status(principal, device_id, limit=limit, offset=offset)
    return Page(items=items, total=total, limit=limit, offset=offset)


@router.post("/sync/bulk", response_model=BulkSyncRead, status_code=202)
async def sync_bulk(
    body: BulkSyncRequest, principal: Operator, uow: WriteUow, service: SyncServiceDep
):
    """Queue a sync of each device (`device_ids`, or `all: true` for every synced device
    of the workspace), under one `bulk_id`; devices that cannot sync now are listed in
    `skipped` with the reason."""
    return await service.bulk(principal, None if body.all else body.device_ids)


@router.get("/sync/history", response_model=Page[SyncRunRead])
async def sync_history(
    principal: Viewer,
    service: SyncServiceDep,
    device_id: uuid.UUID | None = None,
    status: Annotated[RunStatus | None, Query()] = None,
    sync_type: Annotated[SyncType | None, Query()] = None,
    connection_id: uuid.UUID | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
):
    """Sync runs, newest first (of a device, a status, a type, a connection): start,
    end, duration, records processed, synced (stored new) and failed, error message and
    details."""
    rows, total = await service.history(principal, device_id=device_id, status=status,
                                        limit=limit, offset=offset, sync_type=sync_type,
                                        connection_id=connection_id)  # fmt: skip
    return Page(items=[SyncRunRead.model_validate(r) for r in rows], total=total,
                limit=limit, offset=offset)  # fmt: skip


@router.post("/sync/retry/{sync_id}", response_model=SyncRunRead, status_code=202)
async def sync_retry(sync_id: uuid.UUID, principal: Operator, uow: WriteUow,
                     service: SyncServiceDep):  # fmt: skip
    """Retry a failed, partial, cancelled or auth_required run (the last once the
    connection is authorised again): a new run (`retry_of`) resuming from the cursors."""
    return await service.retry(principal, sync_id)


@router.post("/sync/{sync_id}/cancel", response_model=SyncRunRead)
async def sync_cancel(sync_id: uuid.UUID, principal: Operator, uow: WriteUow,
                      service: SyncServiceDep):  # fmt: skip
    """Cancel a queued, waiting or running run (a running one stops at its next page;
    what it committed stays). 409 once it has ended."""
    return await service.cancel(principal, sync_id)
