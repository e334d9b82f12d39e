"""HTTP: the integrations (vendor-cloud connectors) and connections to them."""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query
from fastapi.responses import RedirectResponse

from fieldwatch.auth.dependencies import Operator, Viewer
from fieldwatch.core.paging import Limit, Offset, Page
from fieldwatch.db.dependencies import WriteUow
from fieldwatch.integrations.connections.schemas import (
    AuthStart,
    AuthStarted,
    ConnectionRead,
    IntegrationRead,
)
from fieldwatch.integrations.connections.service import OAUTH_CODE, CallbackFailed
from fieldwatch.integrations.dependencies import ConnectionServiceDep, DeviceImportDep
from fieldwatch.integrations.exports.router import router as exports_router
from fieldwatch.integrations.garmin.router import router as garmin_router
from fieldwatch.integrations.sync.schemas import ImportedDevice, ImportRequest, VendorDeviceRead
from fieldwatch.integrations.webhooks.router import router as vendor_webhooks
from fieldwatch.integrations.webhooks.subscriptions import router as subscriptions_router

router = APIRouter(prefix="/api/v1/integrations", tags=["integrations"])
router.include_router(garmin_router)  # Garmin's callbacks
router.include_router(vendor_webhooks)  # Oura's and Withings' notifications: /{kind}/webhook
router.include_router(exports_router)  # POST /{kind}/upload: health exports in bulk
router.include_router(subscriptions_router)  # GET /subscriptions: the vendors' (admins)

Kind = Annotated[str, Query(max_length=40)]


@router.get("", response_model=Page[IntegrationRead])
async def list_integrations(
    principal: Viewer, service: ConnectionServiceDep, limit: Limit = 50, offset: Offset = 0
):
    """Every connector: data types, push or poll, quotas, lifecycle (a sunset API shows
    as such), whether it is configured and can be connected, this workspace's
    connections by status."""
    every = await service.catalogue(principal)
    return Page(items=every[offset : offset + limit], total=len(every), limit=limit, offset=offset)


@router.get("/connections", response_model=Page[ConnectionRead])
async def list_connections(
    principal: Viewer,
    service: ConnectionServiceDep,
    limit: Limit = 50,
    offset: Offset = 0,
    connector: Annotated[str | None, Query(max_length=40)] = None,
):
    """This workspace's connections (their credentials are never shown)."""
    rows, total = await service.page(principal, connector, limit=limit, offset=offset)
    return Page(items=list(rows), total=total, limit=limit, offset=offset)


@router.post("/{kind}/auth", response_model=AuthStarted)
async def start_authorization(
    kind: str, body: AuthStart, principal: Operator, uow: WriteUow, service: ConnectionServiceDep
):
    """Start connecting an account: send its holder's browser to `authorization_url`
    (the vendor's consent page); the vendor sends it back to `redirect_uri`, which
    must be registered with the vendor as the app's redirect address."""
    return await service.begin(
        principal, kind, return_to=body.return_to, connection_id=body.connection_id
    )


@router.get("/{kind}/callback", response_model=ConnectionRead)
async def authorization_callback(
    kind: str,
    uow: WriteUow,
    service: ConnectionServiceDep,
    state: Annotated[str, Query(min_length=8, max_length=200)],
    code: Annotated[str | None, Query(max_length=2000)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
):
    """Where the vendor sends the browser back: the state (given once, short-lived)
    identifies the request, so no login is needed here. A flow started with `return_to`
    goes back there on success (`?connection=…&status=…`) and on failure too
    (`?error=access_denied|denied|expired|refused|unreachable|unavailable&connector=…`,
    with the vendor's OAuth error code as `vendor_error` where it sent a plain one);
    without it, a failure is a problem document."""
    try:
        connection, return_to = await service.complete(kind, state=state, code=code, error=error)
    except CallbackFailed as failed:
        if failed.return_to is None:
            raise failed.problem from None
        back = {"error": failed.reason, "connector": kind}
        vendor_error = failed.problem.extra.get("vendor_error")
        if isinstance(vendor_error, str) and OAUTH_CODE.fullmatch(vendor_error):
            back["vendor_error"] = vendor_error
        return RedirectResponse(f"{failed.return_to}?{urlencode(back)}", status_code=303)
    if return_to:
        await uow.session.flush()
        query = urlencode({"connection": str(connection.id), "status": connection.status})
        return RedirectResponse(f"{return_to}?{query}", status_code=303)
    return connection


@router.get("/{kind}/devices", response_model=Page[VendorDeviceRead])
async def vendor_devices(
    kind: str,
    connection_id: uuid.UUID,
    principal: Viewer,
    imports: DeviceImportDep,
    limit: Limit = 50,
    offset: Offset = 0,
):
    """The devices of a connection's vendor account (Oura: the ring), each with the
    Fieldwatch device it was imported as, if it was (asked of the vendor each time)."""
    every = await imports.vendor_devices(principal, kind, connection_id)
    return Page(items=every[offset : offset + limit], total=len(every), limit=limit, offset=offset)


@router.post("/{kind}/import", response_model=list[ImportedDevice], status_code=201)
async def import_devices(
    kind: str, body: ImportRequest, principal: Operator, uow: WriteUow, imports: DeviceImportDep
):
    """Create a Fieldwatch device for each vendor device, fed by the connection with
    these sync settings; its first sync (a backfill of `sync_historical_days`) is due at
    once when `auto_sync` is on. A device imported before is answered as it is."""
    return await imports.import_devices(principal, kind, body)
