"""Privacy API: consent per connection, disconnect (and purge), the access log."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from fieldwatch.auth.dependencies import Admin, Viewer
from fieldwatch.core.components import SettingsDep
from fieldwatch.core.paging import Limit, Offset, Page, page_of
from fieldwatch.db.dependencies import UowDep, WriteUow
from fieldwatch.integrations.dependencies import KeyRingDep
from fieldwatch.integrations.privacy.schemas import (
    ConsentRead,
    ConsentUpdate,
    DisconnectRead,
    HealthAccessRead,
)
from fieldwatch.integrations.privacy.service import PrivacyService
from fieldwatch.telemetry.dependencies import TelemetryDep

router = APIRouter(prefix="/api/v1/integrations", tags=["integrations"])


async def get_privacy(uow: UowDep, settings: SettingsDep, ring: KeyRingDep) -> PrivacyService:
    return PrivacyService(uow, settings, ring)


PrivacyDep = Annotated[PrivacyService, Depends(get_privacy)]


@router.get("/connections/{connection_id}/consent", response_model=ConsentRead)
async def get_consent(connection_id: uuid.UUID, principal: Viewer, service: PrivacyDep):
    return await service.consent(principal, connection_id)


@router.put("/connections/{connection_id}/consent", response_model=ConsentRead)
async def set_consent(
    connection_id: uuid.UUID, body: ConsentUpdate, principal: Admin, uow: WriteUow,
    service: PrivacyDep,
):  # fmt: skip
    """The data types the account holder shares (admins); later syncs fetch only those."""
    return await service.set_consent(principal, connection_id, body)


@router.delete("/connections/{connection_id}", response_model=DisconnectRead)
async def disconnect(
    connection_id: uuid.UUID,
    principal: Admin,
    uow: WriteUow,
    service: PrivacyDep,
    telemetry: TelemetryDep,
    purge: Annotated[bool, Query(description="Also delete its devices' synced data")] = False,
):
    """Disconnect (admins): revoke the grant at the vendor where it can be, mark the
    connection revoked, stop its devices' syncs; ``purge=true`` deletes their readings."""
    return await service.disconnect(principal, connection_id, purge=purge, telemetry=telemetry)


@router.get("/access-log", response_model=Page[HealthAccessRead])
async def access_log(
    principal: Admin,
    service: PrivacyDep,
    device_id: uuid.UUID | None = None,
    actor: Annotated[str | None, Query(max_length=200, description="Actor contains this")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
):
    """Reads, deletions, purges and vendor deletions of health data (devices fed by a
    vendor cloud or health exports, or registered as wearables), newest first; ``actor``
    keeps those whose actor contains it (any case)."""
    rows, total = await service.access_log(principal, device_id, limit=limit, offset=offset,
                                           actor=actor)  # fmt: skip
    return page_of(HealthAccessRead, rows, total, limit=limit, offset=offset)
