"""The console's device page: the frame that holds the device's sections.

The chart and control sections are fragments of their own (``device_charts``,
``device_control``), loaded into this page by htmx; the page opens the one live
connection for the device (``static/console/device.js``) and passes its events on to
the sections as DOM events (``fw:telemetry``, ``fw:command``, …).
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fieldwatch.console.pages import Viewer, page_context, render
from fieldwatch.db.dependencies import UowDep
from fieldwatch.devices.service import DeviceService

router = APIRouter(include_in_schema=False)


@router.get("/console/devices/{device_id}")
async def device_page(
    device_id: uuid.UUID, request: Request, user: Viewer, uow: UowDep
) -> Response:
    device = await DeviceService(uow).get(user.principal, device_id)
    context = await page_context(user, "inventory")
    context.update(device=device)
    return render(request, "device.html", context)
