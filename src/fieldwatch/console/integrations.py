"""The console's integrations pages (vendor clouds of health wearables): the catalogue
of connectors and the workspace's connections.

- Integrations: each connector with its data types, push or poll, quotas and lifecycle
  (a deprecated or sunset API with a warning and its successor); operators connect an
  account: the form starts the OAuth flow (``ConnectionService.begin``, as the API's
  ``POST /integrations/{type}/auth``) and the browser goes on to the vendor's consent
  page, which sends it back to the connections page. A connector that takes no
  connections says why, with no button.
- Connections: each with its status, consent, devices (their last and next sync);
  operators import a connection's devices and sync a device now, re-authorise a
  connection that needs it; admins disconnect (optionally purging the synced data).

Routes are thin: they call ``ConnectionService``, ``DeviceImport``, ``SyncService`` and
``PrivacyService`` like the API's routes.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from fieldwatch.console.access import ConsoleUser, CsrfChecked
from fieldwatch.console.integrations_outcome import outcome
from fieldwatch.console.pages import Admin, Operator, Viewer, page_context, render
from fieldwatch.core.components import SettingsDep
from fieldwatch.core.errors import AppError
from fieldwatch.db.dependencies import WriteUow
from fieldwatch.integrations.connectors.catalogue import CONNECTORS
from fieldwatch.integrations.dependencies import (
    ConnectionServiceDep,
    DeviceImportDep,
    KeyRingDep,
    SyncServiceDep,
)
from fieldwatch.integrations.privacy.service import PrivacyService, vendor_permitted
from fieldwatch.integrations.sync.imports import DeviceImport
from fieldwatch.integrations.sync.schemas import DeviceSyncStatus, ImportRequest
from fieldwatch.integrations.sync.service import SyncService
from fieldwatch.telemetry.dependencies import TelemetryDep

router = APIRouter(include_in_schema=False)

CATALOGUE = "/console/integrations"
CONNECTIONS = CATALOGUE + "/connections"
PAGE_SIZE = 50
#: Devices a page names (their sync status, for the connections and the filters).
MAX_DEVICES = 500


def consent_choices(connector: str, scopes: list[str] | None,
                    consent: list[str]) -> list[dict[str, Any]]:  # fmt: skip
    """The connector's data types for the consent form: shared or not, and whether the
    grant at the vendor still allows them."""
    info = CONNECTORS.get(connector)
    allowed = vendor_permitted(connector, scopes)
    return [{"metric": m, "label": m.replace("_", " "), "shared": m in consent,
             "allowed": m in allowed} for m in (info.data_types if info else ())]  # fmt: skip


async def synced_devices(sync: SyncService, user: ConsoleUser) -> list[DeviceSyncStatus]:
    """The workspace's devices fed by a vendor cloud, by name (at most ``MAX_DEVICES``)."""
    items, _total = await sync.status(user.principal, None, limit=MAX_DEVICES, offset=0)
    return items


@router.get(CATALOGUE)
async def integrations_page(
    request: Request, user: Viewer, service: ConnectionServiceDep
) -> Response:
    context = await page_context(user, "integrations")
    context.update(integrations=await service.catalogue(user.principal), tab="catalogue")
    return render(request, "integrations.html", context)


@router.post(CATALOGUE + "/{kind}/connect", dependencies=[CsrfChecked])
async def connect(
    kind: str, request: Request, user: Operator, uow: WriteUow, service: ConnectionServiceDep
) -> Response:
    """Start the OAuth flow and send the browser to the vendor's consent page; it comes
    back to the connections page. ``connection_id``: re-authorise that connection."""
    raw = str((await request.form()).get("connection_id") or "")
    try:
        connection_id = uuid.UUID(raw) if raw else None
    except ValueError:
        connection_id = None
    started = await service.begin(
        user.principal, kind, return_to=CONNECTIONS, connection_id=connection_id
    )
    return RedirectResponse(started.authorization_url, status_code=303)


async def _connections_page(
    request: Request,
    user: ConsoleUser,
    service: ConnectionServiceDep,
    sync: SyncService,
    extra: dict[str, Any],
    status: int = 200,
) -> Response:
    raw = request.query_params.get("offset") or ""
    offset = min(int(raw), 10_000_000) if raw.isdigit() and len(raw) < 10 else 0
    rows, total = await service.page(user.principal, None, limit=PAGE_SIZE, offset=offset)
    devices: dict[uuid.UUID | None, list[DeviceSyncStatus]] = defaultdict(list)
    for item in await synced_devices(sync, user):
        devices[item.connection_id].append(item)
    context = await page_context(user, "integrations")
    back = request.query_params
    connected = None
    if back.get("connection") and back.get("status"):
        found = [c for c in rows if str(c.id) == back.get("connection")]
        connected = found[0] if found else None
    choices = {c.id: consent_choices(c.connector, c.scopes, c.consent) for c in rows}
    context.update(
        connections=rows, total=total, offset=offset, page_size=PAGE_SIZE, devices=devices,
        connected=connected, tab="connections", **outcome(back, rows),
        consent_choices=choices,
    )  # fmt: skip
    context.update(extra)
    return render(request, "connections.html", context, status_code=status)


@router.get(CONNECTIONS)
async def connections_page(
    request: Request, user: Viewer, service: ConnectionServiceDep, sync: SyncServiceDep
) -> Response:
    return await _connections_page(request, user, service, sync, {})


async def _import_all(
    imports: DeviceImport, user: ConsoleUser, kind: str, connection_id: uuid.UUID
) -> int:
    found = await imports.vendor_devices(user.principal, kind, connection_id)
    new = [d.vendor_device_id for d in found if d.device_id is None]
    if not new:
        return 0
    body = ImportRequest(connection_id=connection_id, devices=new[:100])
    return sum(d.created for d in await imports.import_devices(user.principal, kind, body))


def _refusal(exc: AppError) -> str:
    """The code of a refused import or sync, for the page after the redirect."""
    if exc.extra.get("sync_id"):
        return "sync_open"
    if exc.extra.get("connection_status"):
        return "needs_auth"
    return "unreachable" if exc.status == 503 else "refused"


def _back(**query: object) -> RedirectResponse:
    """Post, redirect, get: the connections page says what happened."""
    return RedirectResponse(f"{CONNECTIONS}?{urlencode(query)}", status_code=303)


@router.post(CONNECTIONS + "/{connection_id}/import", dependencies=[CsrfChecked])
async def import_devices(
    connection_id: uuid.UUID,
    request: Request,
    user: Operator,
    uow: WriteUow,
    imports: DeviceImportDep,
) -> Response:
    """Import the devices of the connection's vendor account not imported yet (default
    sync settings: their first sync, a backfill, is due at once)."""
    kind = str((await request.form()).get("connector") or "")[:40]
    try:
        made = await _import_all(imports, user, kind, connection_id)
    except AppError as exc:
        await uow.rollback()
        return _back(refused=_refusal(exc), of=connection_id)
    return _back(done="imported", count=made)


@router.post(CONNECTIONS + "/devices/{device_id}/sync", dependencies=[CsrfChecked])
async def sync_now(
    device_id: uuid.UUID, user: Operator, uow: WriteUow, sync: SyncServiceDep
) -> Response:
    """A manual run of the device (refused while one is open: said next to the button)."""
    try:
        run = await sync.request(user.principal, device_id)
    except AppError as exc:
        await uow.rollback()
        return _back(refused=_refusal(exc), of=device_id)
    return _back(done="queued", run=run.id)


@router.post(CONNECTIONS + "/{connection_id}/disconnect", dependencies=[CsrfChecked])
async def disconnect(
    connection_id: uuid.UUID,
    request: Request,
    user: Admin,
    uow: WriteUow,
    settings: SettingsDep,
    ring: KeyRingDep,
    telemetry: TelemetryDep,
) -> Response:
    """Disconnect (revoke at the vendor where it can, stop the syncs); with ``purge``
    the synced readings of its devices are deleted too."""
    purge = (await request.form()).get("purge") == "on"
    done = await PrivacyService(uow, settings, ring).disconnect(
        user.principal, connection_id, purge=purge, telemetry=telemetry
    )
    return _back(done="purged" if purge else "disconnected", of=connection_id,
                 vendor="revoked" if done.revoked_at_vendor else "kept",
                 deleted=done.readings_deleted)  # fmt: skip
