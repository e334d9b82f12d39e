"""The console's inventory page: the device table (server-side paging, sorting and
filters held in the URL), the CSV export of the current filter and the stock summary.

The table is the API's device list (``MonitoringService.device_page``, the same indexed
query as ``GET /api/v1/devices``); an htmx request aimed at the table gets the table
alone. Bulk actions are in ``inventory_bulk``, the CSV import in ``inventory_import``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from fieldwatch.auth.roles import Role
from fieldwatch.console.access import ConsoleUser
from fieldwatch.console.inventory_query import (
    CONNECTIVITY,
    PAGE_SIZES,
    SORTABLE,
    InventoryQuery,
)
from fieldwatch.console.pages import NO_STORE, Viewer, page_context, render
from fieldwatch.core.clock import utcnow
from fieldwatch.db.dependencies import SessionmakerDep, UowDep
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.csvio import export_csv
from fieldwatch.devices.groups import GroupService
from fieldwatch.devices.lifecycle import DeviceStatus
from fieldwatch.inventory.schemas import BulkOutcome
from fieldwatch.inventory.service import UNKNOWN_LOCATION, InventoryService
from fieldwatch.monitoring.dependencies import MonitoringDep
from fieldwatch.monitoring.service import MonitoringService

router = APIRouter(include_in_schema=False)

#: The id of the element that holds the table (what htmx requests for the table target).
RESULTS = "inventory-results"
#: The bulk actions (form value → heading); the inventory API's named actions.
ACTIONS = {
    "deployed": "Deploy",
    "recalled": "Recall to a warehouse",
    "maintenance": "Send to maintenance",
    "retired": "Retire",
}


def wants_fragment(request: Request, target: str) -> bool:
    """An htmx request aimed at ``target`` (not a history restore, which needs the page)."""
    headers = request.headers
    return (
        headers.get("hx-request") == "true"
        and headers.get("hx-target") == target
        and headers.get("hx-history-restore-request") != "true"
    )


async def group_scope(uow: UnitOfWork, user: ConsoleUser, query: InventoryQuery) -> Any:
    """The devices of the query's group (404: no such group in the workspace)."""
    return await GroupService(uow).scope(user.principal, query.group) if query.group else None


async def table_context(
    user: ConsoleUser, service: MonitoringService, query: InventoryQuery
) -> dict[str, Any]:
    """What the table fragment shows: a page of the API's device list."""
    flt = query.filter(await group_scope(service.uow, user, query))
    page = await service.device_page(
        user.principal, flt, limit=query.limit, offset=query.offset, sort=query.sort
    )
    return {
        "query": query,
        "page": page,
        "pager": query.pages(page.total),
        "sortable": SORTABLE,
        "can_operate": user.principal.role.allows(Role.operator),
    }


async def page(
    request: Request,
    user: ConsoleUser,
    service: MonitoringService,
    query: InventoryQuery,
    *,
    outcomes: list[BulkOutcome] | None = None,
    action: str | None = None,
    status_code: int = 200,
) -> Response:
    """The whole inventory page (with a bulk action's outcomes, after one without JS)."""
    context = await page_context(user, "inventory")
    context.update(await table_context(user, service, query))
    context.update(
        statuses=list(DeviceStatus), connectivities=CONNECTIVITY, page_sizes=PAGE_SIZES,
        actions=ACTIONS, outcomes=outcomes, action=action,
        groups=await GroupService(service.uow).all(user.principal),
    )  # fmt: skip
    return render(request, "inventory.html", context, status_code=status_code)


@router.get("/console/inventory")
async def inventory_page(request: Request, user: Viewer, service: MonitoringDep) -> Response:
    query = InventoryQuery.parse(request.query_params)
    if wants_fragment(request, RESULTS):
        context = await table_context(user, service, query)
        return render(request, "_inventory_table.html", context)
    return await page(request, user, service, query)


@router.get("/console/inventory/export")
async def export(
    request: Request, user: Viewer, uow: UowDep, sessionmaker: SessionmakerDep
) -> Response:
    """The API's CSV export (``GET /api/v1/devices/export``) of the table's filter."""
    query = InventoryQuery.parse(request.query_params)
    principal = user.principal
    flt = query.filter(await group_scope(uow, user, query))
    filename = f"devices-{principal.workspace_name}-{utcnow():%Y%m%d-%H%M%S}.csv"
    return StreamingResponse(
        export_csv(sessionmaker, principal, flt),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', **NO_STORE},
    )


@router.get("/console/inventory/stock")
async def stock(request: Request, user: Viewer, uow: UowDep) -> Response:
    """What is in stock where (the API's inventory summary): loaded into the inventory
    page by htmx, or a page of its own without JS."""
    summary = await InventoryService(uow).summary(user.principal)
    context: dict[str, Any] = {"summary": summary, "statuses": list(DeviceStatus)}
    if wants_fragment(request, "stock"):  # with the filter form's suggestions
        parts = summary.breakdown.values()
        context.update(
            oob=True,
            types=sorted({t for b in parts for t in b.by_type}),
            locations=sorted({p for b in parts for p in b.by_location} - {UNKNOWN_LOCATION}),
        )
        return render(request, "_inventory_stock.html", context)
    context.update(await page_context(user, "inventory"))
    return render(request, "inventory_stock.html", context)
