"""HTTP for operators: start a device's firmware update, follow updates, cancel one."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from fieldwatch.auth.dependencies import Operator, Viewer
from fieldwatch.commands.schemas import CommandTransitionRead
from fieldwatch.core.paging import Limit, Offset, Page
from fieldwatch.db.dependencies import WriteUow
from fieldwatch.firmware.updates.dependencies import UpdateServiceDep
from fieldwatch.firmware.updates.schemas import (
    UpdateCreate,
    UpdateDetail,
    UpdateRead,
    UpdateState,
)

router = APIRouter(prefix="/api/v1", tags=["firmware updates"])


@router.post(
    "/devices/{device_id}/firmware-update",
    response_model=UpdateRead,
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "Refused (compatibility, policy) or one already running"}},
)
async def start_update(
    device_id: uuid.UUID,
    body: UpdateCreate,
    principal: Operator,
    uow: WriteUow,
    service: UpdateServiceDep,
):
    """Update one device to an artifact (by id or version). It is sent at once to a
    connected device, otherwise when the device next connects or polls. 409 when the
    artifact may not go to the device (``reason``: incompatible_type,
    incompatible_hardware, below_min_from_version, already_on_version, anti_rollback,
    retired, unsigned) or an update is already running on it."""
    update = await service.start_for(
        principal, device_id, artifact_id=body.artifact_id, version=body.version,
        ttl_s=body.ttl_s, max_tries=body.max_tries,
    )  # fmt: skip
    return UpdateRead.model_validate(update)


@router.get("/firmware/updates", response_model=Page[UpdateRead])
async def list_updates(
    principal: Viewer,
    service: UpdateServiceDep,
    device_id: uuid.UUID | None = None,
    rollout_id: uuid.UUID | None = None,
    state: Annotated[list[UpdateState] | None, Query()] = None,
    limit: Limit = 50,
    offset: Offset = 0,
):
    """Updates, newest first; ``state`` may be repeated."""
    items, total = await service.page(
        principal, device_id=device_id, states=state or [], rollout_id=rollout_id,
        limit=limit, offset=offset,
    )  # fmt: skip
    return Page[UpdateRead](
        items=[UpdateRead.model_validate(u) for u in items], total=total, limit=limit,
        offset=offset,
    )  # fmt: skip


@router.get("/firmware/updates/{update_id}", response_model=UpdateDetail)
async def get_update(update_id: uuid.UUID, principal: Viewer, service: UpdateServiceDep):
    """One update with every state it went through."""
    update = await service.get(principal, update_id)
    transitions = await service.transitions(update)
    return UpdateDetail(
        **UpdateRead.model_validate(update).model_dump(),
        transitions=[CommandTransitionRead.model_validate(t) for t in transitions],
    )


@router.post("/firmware/updates/{update_id}/cancel", response_model=UpdateRead)
async def cancel_update(
    update_id: uuid.UUID, principal: Operator, uow: WriteUow, service: UpdateServiceDep
):
    """Stop an update before the device installs it; 409 once it is installing or over."""
    return UpdateRead.model_validate(await service.cancel(principal, update_id))
