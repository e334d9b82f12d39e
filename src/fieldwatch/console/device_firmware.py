"""The device page's firmware part alone (the page refreshes it when a ``firmware``
event for the device comes), and its forms: starting an update to an artifact built for
the device's type, cancelling one that can still be cancelled.

Plain forms over ``UpdateService`` (like ``POST /api/v1/devices/{id}/firmware-update``
and ``POST /api/v1/firmware/updates/{id}/cancel``): a change answers with a redirect to
the part; a refusal (409 with its reason) comes back as the device page with the reason
shown in the part.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from fieldwatch.console import device
from fieldwatch.console.access import CsrfChecked
from fieldwatch.console.device_firmware_view import firmware, update_service
from fieldwatch.console.pages import Operator, Viewer, problem_message, render
from fieldwatch.core.errors import Conflict, NotFound
from fieldwatch.db.dependencies import UowDep, WriteUow
from fieldwatch.devices.service import DeviceService
from fieldwatch.firmware.updates.errors import UpdateNotCancellable, UpdateRefused, UpdateRunning
from fieldwatch.monitoring.dependencies import PresenceDep
from fieldwatch.telemetry.dependencies import TelemetryDep

router = APIRouter(include_in_schema=False)


def _back(device_id: uuid.UUID, done: str) -> Response:
    return RedirectResponse(device.device_url(device_id) + f"?fw={done}#firmware-part", 303)


@router.get("/console/devices/{device_id}/firmware")
async def firmware_part(
    device_id: uuid.UUID, request: Request, user: Viewer, uow: UowDep
) -> Response:
    found = await DeviceService(uow).get(user.principal, device_id)
    context = device.part_context(user, found)
    context["firmware"] = await firmware(request, user.principal, uow, found)
    return render(request, "_device_firmware.html", context)


async def _refused(
    request: Request, user: Operator, uow: WriteUow, presence: PresenceDep,
    telemetry: TelemetryDep, device_id: uuid.UUID, exc: Conflict,
) -> Response:  # fmt: skip
    await uow.rollback()
    page = await device.whole_page(request, user, uow, presence, telemetry, device_id,
                                   firmware_problem=problem_message(exc))  # fmt: skip
    page.status_code = exc.status
    return page


@router.post("/console/devices/{device_id}/firmware", dependencies=[CsrfChecked])
async def start_update(
    device_id: uuid.UUID, request: Request, user: Operator, uow: WriteUow,
    presence: PresenceDep, telemetry: TelemetryDep,
) -> Response:  # fmt: skip
    """Update the device to the artifact chosen in the form."""
    raw = (await request.form()).get("artifact_id")
    try:
        artifact_id = uuid.UUID(raw if isinstance(raw, str) else "")
    except ValueError:
        artifact_id = uuid.UUID(int=0)  # answered as an artifact that does not exist
    try:
        await update_service(request, uow).start_for(
            user.principal, device_id, artifact_id=artifact_id, version=None, ttl_s=None,
            max_tries=None,
        )  # fmt: skip
    except (UpdateRefused, UpdateRunning) as exc:
        return await _refused(request, user, uow, presence, telemetry, device_id, exc)
    return _back(device_id, "started")


@router.post("/console/devices/{device_id}/firmware/{update_id}/cancel", dependencies=[CsrfChecked])
async def cancel_update(
    device_id: uuid.UUID, update_id: uuid.UUID, request: Request, user: Operator,
    uow: WriteUow, presence: PresenceDep, telemetry: TelemetryDep,
) -> Response:  # fmt: skip
    service = update_service(request, uow)
    update = await service.get(user.principal, update_id)
    if update.device_id != device_id:
        raise NotFound(f"Update {update_id} is not one of this device's updates.")
    try:
        await service.cancel(user.principal, update_id)
    except UpdateNotCancellable as exc:
        return await _refused(request, user, uow, presence, telemetry, device_id, exc)
    return _back(device_id, "cancelled")
