"""The console's alerts page: the workspace's alerts with filters and paging, acknowledged
and cleared one or many at a time (each selected alert gets its own result), new alerts
and state changes shown live (``static/console/alerts.js``, alert events only).

Routes are thin: they call ``AlertService`` like the API's alert routes do.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fieldwatch.alerts.models import Alert
from fieldwatch.alerts.rules import SEVERITIES
from fieldwatch.alerts.service import AlertService
from fieldwatch.auth.principal import Principal
from fieldwatch.console.access import CsrfChecked
from fieldwatch.console.pages import Operator, Viewer, page_context, problem_message, render
from fieldwatch.core.errors import AppError, NotFound, ValidationFailed
from fieldwatch.core.paging import MAX_OFFSET
from fieldwatch.db.dependencies import UowDep, WriteUow
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.service import DeviceService

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
MAX_SELECTED = 500
STATUSES = ("active", "cleared", "all")
ACKS = ("any", "no", "yes")


def _uuid(raw: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class AlertFilter:
    """What the list shows; read from the query string or an action's form, leniently
    (an unknown value is the default)."""

    status: str = "active"
    ack: str = "any"
    severity: str = ""
    device: uuid.UUID | None = None
    page: int = 1

    @classmethod
    def read(cls, values: Mapping[str, Any]) -> AlertFilter:
        def pick(name: str, allowed: tuple[str, ...], default: str) -> str:
            value = values.get(name)
            return value if isinstance(value, str) and value in allowed else default

        try:
            page = max(1, min(int(str(values.get("page") or 1)), MAX_OFFSET // PAGE_SIZE))
        except ValueError:
            page = 1
        raw_device = values.get("device")
        return cls(
            status=pick("status", STATUSES, "active"),
            ack=pick("ack", ACKS, "any"),
            severity=pick("severity", SEVERITIES, ""),
            device=_uuid(raw_device) if raw_device else None,
            page=page,
        )

    @property
    def offset(self) -> int:
        return (self.page - 1) * PAGE_SIZE

    def service_filters(self) -> dict[str, Any]:
        return {
            "status": None if self.status == "all" else self.status,
            "acknowledged": {"yes": True, "no": False}.get(self.ack),
            "severity": self.severity or None,
            "device_id": self.device,
        }

    def fields(self) -> dict[str, str]:
        """The filter as form fields, defaults left out."""
        out = {"status": self.status, "ack": self.ack, "severity": self.severity}
        out["device"] = str(self.device) if self.device else ""
        out["page"] = str(self.page) if self.page > 1 else ""
        defaults = {"status": "active", "ack": "any"}
        return {k: v for k, v in out.items() if v and defaults.get(k) != v}

    def query(self, **changes: Any) -> str:
        return urlencode(replace(self, **changes).fields())


@dataclass(frozen=True, slots=True)
class Result:
    """What happened to one selected alert."""

    alert_id: uuid.UUID
    label: str
    outcome: str
    done: bool


def _label(alert: Alert) -> str:
    return f"{alert.rule_name} on {alert.device.name}"


async def listing(uow: UnitOfWork, principal: Principal, chosen: AlertFilter) -> dict[str, Any]:
    """The list's context: the page of alerts, their total and the filter's device."""
    device = await DeviceService(uow).get(principal, chosen.device) if chosen.device else None
    filters = chosen.service_filters()
    alerts, total = await AlertService(uow).page(principal, filters, PAGE_SIZE, chosen.offset)
    return {
        "alerts": alerts,
        "total": total,
        "filter": chosen,
        "filter_device": device,
        "page_size": PAGE_SIZE,
        "severities": SEVERITIES,
    }


@router.get("/console/alerts")
async def alerts_page(request: Request, user: Viewer, uow: UowDep) -> Response:
    context = await page_context(user, "alerts")
    context.update(await listing(uow, user.principal, AlertFilter.read(request.query_params)))
    return render(request, "alerts.html", context)


@router.get("/console/alerts/list")
async def alerts_list(request: Request, user: Viewer, uow: UowDep) -> Response:
    """The list alone: what the page swaps in when an alert event arrives."""
    context = await page_context(user, "alerts")
    context.update(await listing(uow, user.principal, AlertFilter.read(request.query_params)))
    return render(request, "_alerts_list.html", context)


Action = Callable[[AlertService, Principal, Alert], Awaitable[str | None]]


async def _acknowledge(service: AlertService, principal: Principal, alert: Alert) -> str | None:
    if alert.acknowledged:
        return "already acknowledged"
    await service.acknowledge(principal, alert.id, None)
    return None


async def _clear(service: AlertService, principal: Principal, alert: Alert) -> str | None:
    if alert.status == "cleared":
        return "already cleared"
    await service.clear_by_hand(principal, alert.id, None)
    return None


ACTIONS: dict[str, tuple[Action, str]] = {
    "ack": (_acknowledge, "acknowledged"),
    "clear": (_clear, "cleared"),
}


def selected(form: Mapping[str, Any], getlist: Callable[[str], list[Any]]) -> list[uuid.UUID]:
    """The alerts to act on: the row's own button (``one``), else the ticked boxes."""
    raw = getlist("one") or getlist("ids")
    if not raw:
        raise ValidationFailed("Select at least one alert.")
    if len(raw) > MAX_SELECTED:
        raise ValidationFailed(f"Select at most {MAX_SELECTED} alerts at a time.")
    ids = [_uuid(item) for item in raw]
    return list(dict.fromkeys(i for i in ids if i is not None))


async def act(
    uow: UnitOfWork, principal: Principal, name: str, ids: list[uuid.UUID]
) -> list[Result]:
    """Apply an action to each alert; one that can not take it says why, the others
    go ahead (a selection of mixed states works)."""
    action, done = ACTIONS[name]
    service = AlertService(uow)
    results = []
    for alert_id in ids:
        try:
            alert = await service.get(principal, alert_id)
        except NotFound:
            results.append(Result(alert_id, str(alert_id), "not found", False))
            continue
        try:
            refused = await action(service, principal, alert)
        except AppError as exc:
            refused = problem_message(exc)
        results.append(Result(alert_id, _label(alert), refused or done, refused is None))
    return results


async def _act_route(request: Request, user: Operator, uow: UnitOfWork, name: str) -> Response:
    form = await request.form()
    results = await act(uow, user.principal, name, selected(form, form.getlist))
    context = await page_context(user, "alerts")
    context.update(await listing(uow, user.principal, AlertFilter.read(form)))
    htmx = request.headers.get("hx-request") == "true"
    context.update(results=results, action=name, oob=htmx)
    return render(request, "_alerts_list.html" if htmx else "alerts.html", context)


@router.post("/console/alerts/ack", dependencies=[CsrfChecked])
async def acknowledge(request: Request, user: Operator, uow: WriteUow) -> Response:
    return await _act_route(request, user, uow, "ack")


@router.post("/console/alerts/clear", dependencies=[CsrfChecked])
async def clear(request: Request, user: Operator, uow: WriteUow) -> Response:
    return await _act_route(request, user, uow, "clear")
