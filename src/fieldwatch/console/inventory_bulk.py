"""The inventory's bulk actions: deploy, recall, maintenance or retire the devices
selected in the table, with the outcome for each (``InventoryService.perform_many``)."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.datastructures import FormData, QueryParams
from fastapi.responses import Response

from fieldwatch.console import inventory
from fieldwatch.console.access import CsrfChecked
from fieldwatch.console.inventory_query import PATH, InventoryQuery
from fieldwatch.console.pages import Operator, render
from fieldwatch.core.errors import ValidationFailed
from fieldwatch.db.dependencies import WriteUow
from fieldwatch.devices.lifecycle import Action
from fieldwatch.inventory.service import InventoryService
from fieldwatch.monitoring.dependencies import PresenceDep
from fieldwatch.monitoring.service import MonitoringService

router = APIRouter(include_in_schema=False)
#: The longest values the API's action bodies take.
MAX_LENGTH = {"location": 200, "notes": 2000}


def _device_ids(values: list[str]) -> list[uuid.UUID]:
    try:
        return [uuid.UUID(v) for v in values]
    except ValueError as exc:
        raise ValidationFailed(
            "The selection names a device that does not exist; reload the page.",
            errors=[{"field": "device", "message": "not a device id"}],
        ) from exc


def _text(form: FormData, name: str) -> str | None:
    value = str(form.get(name) or "").strip() or None
    if value is not None and len(value) > MAX_LENGTH[name]:
        raise ValidationFailed(
            f"The {name} is longer than {MAX_LENGTH[name]} characters.",
            errors=[{"field": name, "message": f"at most {MAX_LENGTH[name]} characters"}],
        )
    return value


def _return_query(value: str) -> InventoryQuery:
    """The table the form was sent from (its URL, kept in the form for the page without
    JS); the whole inventory when it is not an inventory URL."""
    parts = urlsplit(value)
    if parts.path != PATH or parts.netloc or parts.scheme:
        return InventoryQuery()
    try:
        return InventoryQuery.parse(QueryParams(parts.query))
    except ValidationFailed:
        return InventoryQuery()


@router.post("/console/inventory/bulk", dependencies=[CsrfChecked])
async def bulk_action(
    request: Request, user: Operator, uow: WriteUow, presence: PresenceDep
) -> Response:
    form = await request.form()
    action = str(form.get("action") or "")
    if action not in inventory.ACTIONS:
        raise ValidationFailed(
            "Choose what to do with the selected devices.",
            errors=[{"field": "action", "message": f"one of {', '.join(inventory.ACTIONS)}"}],
        )
    ids = _device_ids([str(v) for v in form.getlist("device")])
    location, notes = _text(form, "location"), _text(form, "notes")
    if action == Action.retired:  # as the API's retire: no location
        location = None
    outcomes = await InventoryService(uow).perform_many(
        user.principal, ids, Action(action), location=location, notes=notes
    )
    if request.headers.get("hx-request") == "true":
        context = {"outcomes": outcomes, "action": action, "actions": inventory.ACTIONS}
        response = render(request, "_inventory_bulk.html", context)
        response.headers["HX-Trigger"] = "inventory-changed"  # the table and stock reload
        return response
    query = _return_query(str(form.get("return") or ""))
    service = MonitoringService(uow, presence)
    return await inventory.page(request, user, service, query, outcomes=outcomes, action=action)
