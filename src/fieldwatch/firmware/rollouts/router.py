"""HTTP: firmware rollouts — dry run, create, start, pause, resume, abort, figures."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from fieldwatch.auth.dependencies import Operator, Viewer
from fieldwatch.core.paging import Limit, Offset, Page
from fieldwatch.db.dependencies import UowDep, WriteUow
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.firmware.models import Rollout
from fieldwatch.firmware.rollouts.dependencies import RolloutServiceDep
from fieldwatch.firmware.rollouts.schemas import (
    DeviceState,
    DryRun,
    RolloutCreate,
    RolloutDetail,
    RolloutDeviceRead,
    RolloutRead,
    RolloutStatus,
    RolloutWaves,
)
from fieldwatch.firmware.rollouts.views import RolloutViews

router = APIRouter(prefix="/api/v1/firmware/rollouts", tags=["firmware rollouts"])

Id = uuid.UUID


async def _detail(uow: UnitOfWork, rollout: Rollout) -> RolloutDetail:
    return await RolloutViews(uow).detail(rollout)


@router.post("/dry-run", response_model=DryRun)
async def dry_run(
    body: RolloutCreate,
    principal: Operator,
    service: RolloutServiceDep,
    limit: Limit = 100,
    offset: Offset = 0,
):
    """What a rollout with this body would do, now: the devices it would update, per
    wave, and those it leaves out, with the reason. Nothing is stored."""
    return await service.dry_run(principal, body, limit=limit, offset=offset)


@router.post("", response_model=RolloutDetail, status_code=status.HTTP_201_CREATED)
async def create_rollout(
    body: RolloutCreate, principal: Operator, uow: WriteUow, service: RolloutServiceDep
):
    """Create a rollout as a draft (the same body as a dry run). Start it to release."""
    return await _detail(uow, await service.create(principal, body))


@router.get("", response_model=Page[RolloutRead])
async def list_rollouts(
    principal: Viewer,
    service: RolloutServiceDep,
    status_: Annotated[list[RolloutStatus] | None, Query(alias="status")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
):
    """The workspace's rollouts, newest first; ``status`` may be repeated."""
    items, total = await service.page(principal, status_ or [], limit=limit, offset=offset)
    return Page[RolloutRead](
        items=[RolloutRead.model_validate(r) for r in items], total=total, limit=limit,
        offset=offset,
    )  # fmt: skip


@router.get("/{rollout_id}", response_model=RolloutDetail)
async def get_rollout(rollout_id: Id, principal: Viewer, uow: UowDep, service: RolloutServiceDep):
    """The rollout with its figures, overall and per wave."""
    return await _detail(uow, await service.get(principal, rollout_id))


@router.get("/{rollout_id}/waves", response_model=RolloutWaves)
async def get_waves(rollout_id: Id, principal: Viewer, uow: UowDep, service: RolloutServiceDep):
    """Each wave with its figures, and the overall figures."""
    rollout = await service.get(principal, rollout_id)
    figures, waves = await RolloutViews(uow).waves(rollout)
    return RolloutWaves(figures=figures, waves=waves)


@router.get("/{rollout_id}/devices", response_model=Page[RolloutDeviceRead])
async def get_devices(
    rollout_id: Id,
    principal: Viewer,
    uow: UowDep,
    service: RolloutServiceDep,
    wave: Annotated[int | None, Query(ge=1, le=1000)] = None,
    state: DeviceState | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
):
    """The target devices (of one wave, in one state) with their update's state."""
    rollout = await service.get(principal, rollout_id)
    items, total = await RolloutViews(uow).devices(
        rollout, wave=wave, state=state, limit=limit, offset=offset
    )
    return Page[RolloutDeviceRead](items=list(items), total=total, limit=limit, offset=offset)


@router.get("/{rollout_id}/dry-run", response_model=DryRun)
async def dry_run_of(
    rollout_id: Id,
    principal: Viewer,
    service: RolloutServiceDep,
    limit: Limit = 100,
    offset: Offset = 0,
):
    """A draft's dry run, now (409 once started: see its devices)."""
    return await service.dry_run_of(principal, rollout_id, limit=limit, offset=offset)


@router.post("/{rollout_id}/start", response_model=RolloutDetail)
async def start_rollout(
    rollout_id: Id, principal: Operator, uow: WriteUow, service: RolloutServiceDep
):
    """Snapshot the eligible target devices into waves and start releasing (409 unless
    a draft; 409 when no target device can take the update)."""
    return await _detail(uow, await service.start(principal, rollout_id))


@router.post("/{rollout_id}/pause", response_model=RolloutDetail)
async def pause_rollout(
    rollout_id: Id, principal: Operator, uow: WriteUow, service: RolloutServiceDep
):
    """Release nothing new; updates already released go on (409 unless running)."""
    return await _detail(uow, await service.pause(principal, rollout_id))


@router.post("/{rollout_id}/resume", response_model=RolloutDetail)
async def resume_rollout(
    rollout_id: Id, principal: Operator, uow: WriteUow, service: RolloutServiceDep
):
    """Run again (409 unless paused). After a stop for failures, the failures so far
    are accepted: the wave is judged on the devices released from now on."""
    return await _detail(uow, await service.resume(principal, rollout_id))


@router.post("/{rollout_id}/abort", response_model=RolloutDetail)
async def abort_rollout(
    rollout_id: Id, principal: Operator, uow: WriteUow, service: RolloutServiceDep
):
    """Stop for good (409 unless running or paused): nothing more is released, released
    updates not started yet are cancelled, devices mid-update finish."""
    return await _detail(uow, await service.abort(principal, rollout_id))
