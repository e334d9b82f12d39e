"""The device page's history: its audit log (``GET /api/v1/devices/{id}/logs``, newest
first, a page at a time) and its alerts (``GET /api/v1/alerts?device_id=``)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fieldwatch.console import device_parts as parts
from fieldwatch.console.device import LogBefore, part_context
from fieldwatch.console.pages import Viewer, render
from fieldwatch.db.dependencies import UowDep
from fieldwatch.devices.service import DeviceService

router = APIRouter(include_in_schema=False)


@router.get("/console/devices/{device_id}/log")
async def log_part(
    device_id: uuid.UUID, request: Request, user: Viewer, uow: UowDep, before_id: LogBefore = None
) -> Response:
    """A page of the audit log: the newest (no ``before_id``) or those before an entry."""
    device = await DeviceService(uow).get(user.principal, device_id)
    context = part_context(user, device)
    context["log"] = await parts.log_page(uow, user.principal, device_id, before_id)
    return render(request, "_device_log.html", context)


@router.get("/console/devices/{device_id}/alerts")
async def alerts_part(
    device_id: uuid.UUID, request: Request, user: Viewer, uow: UowDep
) -> Response:
    device = await DeviceService(uow).get(user.principal, device_id)
    context = part_context(user, device)
    context["alerts"] = await parts.alerts(uow, user.principal, device_id)
    return render(request, "_device_alerts.html", context)
