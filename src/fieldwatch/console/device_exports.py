"""The device page's health export part, for a device fed by uploads (Apple Health,
Health Connect): a form uploading an export and the runs that read the device's
uploads, newest first, refreshed every two seconds while one is open.

The form streams its file like ``POST /api/v1/integrations/{type}/upload`` (and checks
the CSRF token read from the stream); htmx gets the part back with the new run, a plain
form a redirect to the device page. A refusal (not an export, entities declared, too
large, a run still open) is the part with the reason, at the API's status.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from fieldwatch.console import device
from fieldwatch.console import session as cookies
from fieldwatch.console.access import ConsoleUser, check_streamed_csrf, csrf_checked_as_streamed
from fieldwatch.console.pages import Operator, Viewer, page_context, render
from fieldwatch.core.components import SettingsDep
from fieldwatch.core.errors import AppError, NotFound
from fieldwatch.db.dependencies import UowDep, WriteUow
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.models import Device
from fieldwatch.devices.service import DeviceService
from fieldwatch.integrations.exports.base import exports_dir
from fieldwatch.integrations.exports.service import ExportService, export_kind
from fieldwatch.integrations.exports.upload import ExportForm, read_export_upload
from fieldwatch.integrations.sync.schemas import OPEN
from fieldwatch.integrations.sync.service import SyncService

router = APIRouter(include_in_schema=False)
SHOWN = 5


async def _context(
    user: ConsoleUser, uow: UnitOfWork, found: Device, **extra: Any
) -> dict[str, Any]:
    runs, total = await SyncService(uow).history(
        user.principal, device_id=found.id, status=None, limit=SHOWN, offset=0
    )
    context = device.part_context(user, found)
    context.update(
        export_kind=export_kind(found),
        export_runs=list(runs),
        export_total=total,
        export_open=any(r.status in OPEN for r in runs),
        **extra,
    )
    return context


@router.get("/console/devices/{device_id}/health-export")
async def export_part(
    device_id: uuid.UUID, request: Request, user: Viewer, uow: UowDep
) -> Response:
    found = await DeviceService(uow).get(user.principal, device_id)
    return render(request, "_device_exports.html", await _context(user, uow, found))


@router.post("/console/devices/{device_id}/health-export")
@csrf_checked_as_streamed
async def upload_export(
    device_id: uuid.UUID, request: Request, user: Operator, uow: WriteUow, settings: SettingsDep
) -> Response:
    """Upload an export to the device (its integration type from the device)."""
    found = await DeviceService(uow).get(user.principal, device_id)
    kind = export_kind(found)
    if kind is None:
        raise NotFound(f"Device {device_id} takes no health exports.")
    form: ExportForm | None = None
    try:
        form = await read_export_upload(request, exports_dir(settings),
                                        settings.health_export_max_bytes)  # fmt: skip
        check_streamed_csrf(request, user.session, [form.fields.pop(cookies.CSRF_FIELD, "")])
        form.fields["device_id"] = str(device_id)
        run = await ExportService(uow, settings).accept(user.principal, kind, form)
    except AppError as exc:
        await uow.rollback()
        problem = exc.to_problem(request.url.path)
        if device.is_htmx(request):  # shown in the form's error region
            return render(request, "_problem.html", {"problem": problem}, exc.status)
        context = {**await page_context(user, "inventory"), "problem": problem}
        return render(request, "problem.html", context, status_code=exc.status)
    finally:
        if form is not None:
            form.discard()
    if not device.is_htmx(request):
        return RedirectResponse(device.device_url(device_id) + "#health-export", 303)
    await uow.commit()  # the part shows the new run as stored
    notice = f"Export {form.filename or ''} uploaded: reading it (run {run.id})."
    context = await _context(user, uow, found, export_notice=notice)
    return render(request, "_device_exports.html", context, status_code=202)
