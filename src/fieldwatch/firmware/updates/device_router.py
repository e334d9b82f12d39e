"""HTTP for devices (agent token): poll for an update, report its state. For devices
that sleep between polls (like hawkBit's device API)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from fieldwatch.db.dependencies import WriteUow
from fieldwatch.devices.dependencies import DeviceAuth
from fieldwatch.firmware.updates.dependencies import FirmwareUpdatesDep, UpdateServiceDep
from fieldwatch.firmware.updates.errors import BadReport, UpdateNotFound
from fieldwatch.firmware.updates.messages import MAX_VERSION, parse_state
from fieldwatch.firmware.updates.schemas import PollAnswer, StateAnswer

router = APIRouter(prefix="/api/v1/device/firmware", tags=["device api"])

#: How soon a device with an update in progress polls again.
BUSY_POLL_S = 30


@router.get("/next", response_model=PollAnswer)
async def next_update(
    device: DeviceAuth,
    uow: WriteUow,
    service: UpdateServiceDep,
    updates: FirmwareUpdatesDep,
    version: Annotated[
        str | None, Query(min_length=1, max_length=MAX_VERSION, description="Running version")
    ] = None,
):
    """The device's open update, if any (handing it out is a delivery). ``version``
    reports the version the device runs: the update completes when it is the target."""
    if version is not None:
        await updates.version_reported(device.device_id, version)
    interval = service.settings.firmware_poll_interval_s
    message, busy = await service.poll(device.device_id)
    poll_after_s = min(interval, BUSY_POLL_S) if busy else interval
    if message is None:
        return PollAnswer(action="none", poll_after_s=poll_after_s)
    return PollAnswer(action="update", update=message, poll_after_s=poll_after_s)


@router.post("/updates/{update_id}/state", response_model=StateAnswer)
async def report_state(
    update_id: uuid.UUID,
    device: DeviceAuth,
    uow: WriteUow,
    service: UpdateServiceDep,
    body: Annotated[dict[str, Any], Body()],
):
    """How far the update got: ``{"state", "bytes"?, "reason"?, "detail"?}``; answered
    after commit. A state at or before the present one is answered and ignored."""
    try:
        report = parse_state(body, update_id)
    except ValueError as exc:
        raise BadReport(str(exc)) from None
    update = await service.report(
        device.device_id, update_id, report.state, report.bytes, report.reason, report.detail
    )
    if update is None:
        raise UpdateNotFound(f"No firmware update {update_id} for this device.")
    return StateAnswer.model_validate(
        {"update_id": update.command_id, "state": update.state, "tries": update.tries}
    )
