"""The console's device page: the frame that holds the device's sections, and its
identity, lifecycle and connectivity parts.

The chart and control sections are fragments of their own (``device_charts``,
``device_control``), loaded into this page by htmx; the tokens, audit log and alerts
parts are served by ``device_tokens`` and ``device_history``. The page opens the one
live connection for the device (``static/console/device.js``) and passes its events on
to the sections as DOM events (``fw:telemetry``, ``fw:command``, …).

Every part is rendered into the page at once and can be fetched alone (the page
refreshes a part when a live event says it changed). Lifecycle actions go through
``InventoryService`` like ``PUT /api/v1/devices/{id}/deploy`` and its siblings.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from fieldwatch.auth.principal import Principal
from fieldwatch.auth.roles import Role
from fieldwatch.console import device_parts as parts
from fieldwatch.console.access import ConsoleUser, CsrfChecked
from fieldwatch.console.device_firmware_view import firmware
from fieldwatch.console.pages import Operator, Viewer, page_context, render
from fieldwatch.core.clock import utcnow
from fieldwatch.core.errors import NotFound
from fieldwatch.db.dependencies import UowDep, WriteUow
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.errors import TransitionRefused
from fieldwatch.devices.lifecycle import DeviceStatus, allowed_targets
from fieldwatch.devices.models import Device
from fieldwatch.devices.schemas import DeviceUpdate
from fieldwatch.devices.service import DeviceService
from fieldwatch.integrations.connectors.catalogue import takes_uploads
from fieldwatch.integrations.exports.service import export_kind
from fieldwatch.integrations.sync.schemas import DeviceSyncStatus
from fieldwatch.integrations.sync.service import SyncService
from fieldwatch.monitoring.dependencies import PresenceDep
from fieldwatch.monitoring.presence import PresenceTracker
from fieldwatch.telemetry.dependencies import TelemetryDep
from fieldwatch.telemetry.query.queries import TelemetryQueries

router = APIRouter(include_in_schema=False)

HELPERS: dict[str, Any] = {
    "label": parts.label,
    "number": parts.number,
    "shown": parts.shown,
    "token_lifetimes": parts.TOKEN_LIFETIMES,
    "export_kind": export_kind,  # a device fed by uploads shows the health export part
}
LogBefore = Annotated[int | None, Query(ge=1)]


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def device_url(device_id: uuid.UUID, part: str = "") -> str:
    return f"/console/devices/{device_id}" + (f"/{part}" if part else "")


def part_context(user: ConsoleUser, device: Device) -> dict[str, Any]:
    """What a part rendered alone needs: the device, the user's rights, the helpers."""
    return {
        **HELPERS,
        "now": utcnow(),
        "device": device,
        "csrf": user.session.csrf,
        "can_operate": user.principal.role.allows(Role.operator),
    }


def lifecycle_context(device: Device) -> dict[str, Any]:
    current = DeviceStatus(device.status)
    return {"actions": parts.available(current), "targets": allowed_targets(current)}


async def vendor_sync(
    uow: UnitOfWork, principal: Principal, device_id: uuid.UUID
) -> DeviceSyncStatus | None:
    """The device's sync from a vendor cloud (its settings form), if it has one; a
    device fed by uploads has its health export part instead."""
    items, _total = await SyncService(uow).status(principal, device_id, limit=1, offset=0)
    found = items[0] if items else None
    return found if found is not None and not takes_uploads(found.connector) else None


@router.get("/console/devices/{device_id}")
async def device_page(
    device_id: uuid.UUID,
    request: Request,
    user: Viewer,
    uow: UowDep,
    presence: PresenceDep,
    telemetry: TelemetryDep,
    log_before: LogBefore = None,
) -> Response:
    return await whole_page(request, user, uow, presence, telemetry, device_id, log_before)


async def whole_page(
    request: Request,
    user: ConsoleUser,
    uow: UnitOfWork,
    presence: PresenceTracker,
    telemetry: TelemetryQueries,
    device_id: uuid.UUID,
    log_before: int | None = None,
    **extra: Any,
) -> Response:
    """The page with every part (``extra``: what a part shows once, e.g. a new token, or
    ``firmware_problem``: why an update was refused)."""
    principal = user.principal
    device = await DeviceService(uow).get(principal, device_id)
    context = await page_context(user, "inventory")
    context.update(HELPERS, now=utcnow(), device=device, **lifecycle_context(device))
    context.update(
        state=await parts.state(uow, presence, telemetry, principal, device_id),
        tokens=await parts.tokens(uow, principal, device_id, request),
        log=await parts.log_page(uow, principal, device_id, log_before),
        alerts=await parts.alerts(uow, principal, device_id),
        firmware=await firmware(
            request, principal, uow, device, extra.pop("firmware_problem", None)
        ),
        vendor_sync=await vendor_sync(uow, principal, device_id),
        sync_settings_saved=request.query_params.get("sync_settings") == "saved",
        **extra,
    )
    return render(request, "device.html", context)


@router.get("/console/devices/{device_id}/identity")
async def identity_part(
    device_id: uuid.UUID, request: Request, user: Viewer, uow: UowDep
) -> Response:
    device = await DeviceService(uow).get(user.principal, device_id)
    return render(request, "_device_identity.html", part_context(user, device))


@router.get("/console/devices/{device_id}/lifecycle")
async def lifecycle_part(
    device_id: uuid.UUID, request: Request, user: Viewer, uow: UowDep
) -> Response:
    device = await DeviceService(uow).get(user.principal, device_id)
    context = part_context(user, device)
    context.update(lifecycle_context(device))
    return render(request, "_device_lifecycle.html", context)


@router.get("/console/devices/{device_id}/state")
async def state_part(
    device_id: uuid.UUID,
    request: Request,
    user: Viewer,
    uow: UowDep,
    presence: PresenceDep,
    telemetry: TelemetryDep,
) -> Response:
    """Connectivity, last seen, battery, signal, firmware and the latest values."""
    device = await DeviceService(uow).get(user.principal, device_id)
    context = part_context(user, device)
    context["state"] = await parts.state(uow, presence, telemetry, user.principal, device_id)
    return render(request, "_device_state.html", context)


@router.post("/console/devices/{device_id}/tags", dependencies=[CsrfChecked])
async def save_tags(
    device_id: uuid.UUID, request: Request, user: Operator, uow: WriteUow
) -> Response:
    """The device's tags from the identity part's form (``;`` between tags), through
    ``PATCH /api/v1/devices/{id}``'s checks; back to the page."""
    raw = (await request.form()).get("tags")
    tags = [t for t in (raw if isinstance(raw, str) else "").split(";") if t.strip()]
    data = parts.parse_form(DeviceUpdate, {"tags": tags})
    await DeviceService(uow).update(user.principal, device_id, data)
    return RedirectResponse(device_url(device_id) + "#identity", status_code=303)


@router.post("/console/devices/{device_id}/actions/{name}", dependencies=[CsrfChecked])
async def lifecycle_action(
    device_id: uuid.UUID, name: str, request: Request, user: Operator, uow: WriteUow
) -> Response:
    """A lifecycle action from its form. htmx gets the lifecycle part back, with the
    identity and the newest audit log swapped in beside it; a plain form a redirect to
    the page. A refused transition answers 409 with the statuses allowed from here."""
    act = parts.BY_NAME.get(name)
    if act is None:
        raise NotFound(f"No lifecycle action {name!r}.")
    try:
        device = await parts.perform(uow, user.principal, device_id, act, await request.form())
    except TransitionRefused as exc:
        return await _refused(request, user, uow, device_id, exc)
    if not is_htmx(request):
        return RedirectResponse(device_url(device_id) + "#lifecycle", status_code=303)
    return await _after_change(request, user, uow, device)


async def _after_change(
    request: Request, user: ConsoleUser, uow: UnitOfWork, device: Device
) -> Response:
    await uow.commit()  # the parts shown next are read back as stored
    context = part_context(user, device)
    context.update(
        lifecycle_context(device),
        log=await parts.log_page(uow, user.principal, device.id, None),
    )
    return render(request, "_device_changed.html", context)


async def _refused(
    request: Request, user: ConsoleUser, uow: UnitOfWork, device_id: uuid.UUID,
    exc: TransitionRefused,
) -> Response:  # fmt: skip
    problem = parts.refused_problem(exc, request.url.path)
    if not is_htmx(request):
        context = await page_context(user, "inventory")
        context["problem"] = problem
        return render(request, "problem.html", context, status_code=exc.status)
    device = await DeviceService(uow).get(user.principal, device_id)
    context = {**part_context(user, device), "problem": problem, **lifecycle_context(device)}
    return render(request, "_device_refused.html", context, status_code=exc.status)
