"""The device page's sync settings, for a device fed by a vendor cloud: automatic sync
on or off, the interval and how far back a first sync reaches, as
``PATCH /api/v1/devices/{id}/sync-settings`` (operators; the change is in the device's
log). The form posts, then the browser is sent back to the page, which says the
settings are saved; a refused value is a problem naming the field."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from fieldwatch.console import device_parts as parts
from fieldwatch.console.access import CsrfChecked
from fieldwatch.console.device import device_url
from fieldwatch.console.pages import Operator
from fieldwatch.db.dependencies import WriteUow
from fieldwatch.integrations.sync.schemas import SyncSettingsUpdate
from fieldwatch.integrations.sync.service import SyncService

router = APIRouter(include_in_schema=False)
SAVED = "sync_settings=saved"


@router.post("/console/devices/{device_id}/sync-settings", dependencies=[CsrfChecked])
async def save_sync_settings(
    device_id: uuid.UUID, request: Request, user: Operator, uow: WriteUow
) -> Response:
    form = await request.form()
    data = parts.form_fields(form, ("sync_interval_minutes", "sync_historical_days"))
    data["auto_sync"] = form.get("auto_sync") == "on"
    body = parts.parse_form(SyncSettingsUpdate, data)
    await SyncService(uow).change_settings(user.principal, device_id, body)
    return RedirectResponse(f"{device_url(device_id)}?{SAVED}#sync-settings", status_code=303)
