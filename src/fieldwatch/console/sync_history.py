"""The console's sync history and data-quality pages.

- Sync history: the workspace's sync runs, newest first, filtered by status, type,
  connection and device: duration, records processed, synced and failed, the error.
  Operators retry a failed (partial, cancelled, auth_required) run — a new run, through
  ``SyncService.retry`` like ``POST /api/v1/sync/retry/{id}`` — and cancel an open one.
  The page follows the runs live: sync.js fetches the table again when a ``sync`` event
  comes over Socket.IO (a run created or changed status).
- Data quality: the data-quality analytics per device and metric over a period: the
  mean score and its parts (completeness, plausibility, duplicates, gaps), pages with
  implausible readings or gaps, anomalies flagged (``AnalyticsService.quality``).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, get_args

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from fieldwatch.auth.roles import Role
from fieldwatch.console.access import ConsoleUser, CsrfChecked
from fieldwatch.console.integrations import CATALOGUE, synced_devices
from fieldwatch.console.pages import Operator, Viewer, page_context, render
from fieldwatch.core.clock import utcnow
from fieldwatch.core.errors import NotFound
from fieldwatch.db.dependencies import UowDep, WriteUow
from fieldwatch.integrations.analytics.service import AnalyticsService, period
from fieldwatch.integrations.connectors.catalogue import CONNECTORS
from fieldwatch.integrations.dependencies import ConnectionServiceDep, SyncServiceDep
from fieldwatch.integrations.sync.schemas import OPEN, RETRYABLE, RunStatus, SyncType
from fieldwatch.integrations.sync.service import SyncService

router = APIRouter(include_in_schema=False)

HISTORY = CATALOGUE + "/sync"
QUALITY = CATALOGUE + "/quality"
PAGE_SIZE = 50
STATUSES: tuple[str, ...] = get_args(RunStatus)
TYPES: tuple[str, ...] = get_args(SyncType)
PERIODS = (1, 7, 30, 90)
ACTIONS = ("retry", "cancel")


def _uuid(raw: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw) if raw else None
    except ValueError:
        return None


def _filters(request: Request) -> dict[str, Any]:
    q = request.query_params
    status = q.get("status") if q.get("status") in STATUSES else None
    sync_type = q.get("type") if q.get("type") in TYPES else None
    raw = q.get("offset") or ""
    offset = min(int(raw), 10_000_000) if raw.isdigit() and len(raw) < 10 else 0
    return {"status": status, "sync_type": sync_type, "device_id": _uuid(q.get("device")),
            "connection_id": _uuid(q.get("connection")), "offset": offset}  # fmt: skip


def _query(chosen: dict[str, Any], offset: bool = True) -> str:
    names = {"status": "status", "sync_type": "type", "device_id": "device",
             "connection_id": "connection"}  # fmt: skip
    if offset:
        names["offset"] = "offset"
    return "&".join(f"{names[k]}={v}" for k, v in chosen.items() if k in names and v)


async def runs_context(
    request: Request, user: ConsoleUser, sync: SyncService, chosen: dict[str, Any]
) -> dict[str, Any]:
    """A page of the runs the filters choose, with the devices' names."""
    rows, total = await sync.history(
        user.principal, device_id=chosen["device_id"], status=chosen["status"],
        sync_type=chosen["sync_type"], connection_id=chosen["connection_id"],
        limit=PAGE_SIZE, offset=chosen["offset"],
    )  # fmt: skip
    devices = await synced_devices(sync, user)
    return {
        "runs": rows, "total": total, "offset": chosen["offset"], "page_size": PAGE_SIZE,
        "names": {d.device_id: d.device_name for d in devices}, "devices_list": devices,
        "open_statuses": OPEN, "retryable": RETRYABLE, "csrf": user.session.csrf,
        "can_operate": user.principal.role.allows(Role.operator),
        "filter_query": _query(chosen, offset=False), "refresh_query": _query(chosen),
        "any_open": any(r.status in OPEN for r in rows),
        "busy": {d.device_id for d in devices if d.open_runs},  # a retry would be refused
    }  # fmt: skip


@router.get(HISTORY)
async def history_page(
    request: Request, user: Viewer, sync: SyncServiceDep, service: ConnectionServiceDep
) -> Response:
    chosen = _filters(request)
    context = await page_context(user, "integrations")
    context.update(await runs_context(request, user, sync, chosen))
    connections, _ = await service.page(user.principal, None, limit=200, offset=0)
    context.update(
        tab="sync", chosen=chosen, statuses=STATUSES, types=TYPES, connections=connections,
        retried=_uuid(request.query_params.get("retried")),
    )  # fmt: skip
    return render(request, "sync_history.html", context)


@router.get(HISTORY + "/runs")
async def runs_part(request: Request, user: Viewer, sync: SyncServiceDep) -> Response:
    """The runs table alone: what the page swaps in when a sync event comes."""
    context = await runs_context(request, user, sync, _filters(request))
    return render(request, "_sync_runs.html", context)


@router.post(HISTORY + "/{sync_id}/{action}", dependencies=[CsrfChecked])
async def act(
    sync_id: uuid.UUID, action: str, request: Request, user: Operator, uow: WriteUow,
    sync: SyncServiceDep,
) -> Response:  # fmt: skip
    """Retry (a new run) or cancel a run; htmx gets the table as it is after it (the
    filters of the page sent along), a plain form a redirect to the history."""
    if action not in ACTIONS:
        raise NotFound("There is no such page.")
    run = await getattr(sync, action)(user.principal, sync_id)
    await uow.commit()
    if request.headers.get("hx-request") != "true":
        extra = f"?retried={run.id}" if action == "retry" else ""
        return RedirectResponse(HISTORY + extra, status_code=303)
    context = await runs_context(request, user, sync, _filters(request))
    context["retried"] = run.id if action == "retry" else None
    return render(request, "_sync_runs.html", context)


@router.get(QUALITY)
async def quality_page(
    request: Request, user: Viewer, uow: UowDep, sync: SyncServiceDep
) -> Response:
    q = request.query_params
    days = int(q["days"]) if q.get("days") in {str(d) for d in PERIODS} else 7
    device_id = _uuid(q.get("device"))
    connector = q.get("connector") if q.get("connector") in CONNECTORS else None
    devices = await synced_devices(sync, user)
    end = utcnow()
    report = await AnalyticsService(uow).quality(
        user.principal, period(end - timedelta(days=days), end), device_id, connector
    )
    context = await page_context(user, "integrations")
    context.update(
        tab="quality", report=report, days=days, periods=PERIODS, device_id=device_id,
        connector=connector, devices_list=devices, connectors=sorted(CONNECTORS),
        names={d.device_id: d.device_name for d in devices},
    )  # fmt: skip
    return render(request, "data_quality.html", context)
