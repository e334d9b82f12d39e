"""What the device page shows, gathered from the services the API uses: the lifecycle
actions a device's status allows, its connectivity and latest values, its agent tokens,
its audit log and its alerts; and reading a page's form into the API's request shapes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from fieldwatch.alerts.models import Alert
from fieldwatch.alerts.service import AlertService
from fieldwatch.auth.principal import Principal
from fieldwatch.core.components import SETTINGS
from fieldwatch.core.errors import ValidationFailed, validation_errors
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.errors import TransitionRefused
from fieldwatch.devices.lifecycle import NAMED_ACTIONS, Action, DeviceStatus, can_transition
from fieldwatch.devices.models import AgentToken, Device, DeviceLog
from fieldwatch.devices.service import DeviceService
from fieldwatch.integrations.privacy.service import record_reads
from fieldwatch.integrations.schemas import HealthMetricRead, health_metrics
from fieldwatch.inventory.schemas import (
    DeployRequest,
    MaintenanceRequest,
    RecallRequest,
    ReserveRequest,
    RetireRequest,
    StatusChange,
)
from fieldwatch.inventory.service import InventoryService
from fieldwatch.monitoring.presence import PresenceTracker
from fieldwatch.monitoring.schemas import DeviceStatusRead
from fieldwatch.monitoring.service import MonitoringService
from fieldwatch.telemetry.query.queries import TelemetryQueries
from fieldwatch.telemetry.schemas import LatestValue, latest_value

M = TypeVar("M", bound=BaseModel)
S = DeviceStatus

LOG_PAGE = 20
TOKENS_SHOWN = 100
ACTIVE_ALERTS_SHOWN = 20
RECENT_ALERTS_SHOWN = 10
#: The lifetimes the new-token form offers (days; "" never expires).
TOKEN_LIFETIMES: tuple[tuple[str, str], ...] = (
    ("", "Never"),
    ("30", "30 days"),
    ("90", "90 days"),
    ("365", "1 year"),
)


def label(status: str | None) -> str:
    """A status as people read it: ``in_stock`` → ``in stock``."""
    return (status or "").replace("_", " ")


def number(value: Any) -> str:
    """A reading as the page shows it (device.js formats live values the same way):
    at most three decimals, no trailing zeros."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        text = f"{value:.3f}".rstrip("0").rstrip(".")
        return "0" if text == "-0" else text
    if value is None:
        return "–"
    return str(value)


def shown(value: Any) -> str:
    """A before/after value of the audit log, or a spec's value."""
    if value is None or value == "":
        return "(none)"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


# --- reading forms ---------------------------------------------------------------------


def parse_form(model: type[M], data: dict[str, Any]) -> M:
    """A form read into the API's request shape: a field the shape refuses is a 422
    naming the field, rendered next to the form like any API problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = validation_errors(list(exc.errors()))
        names = ", ".join(e["field"] for e in errors)
        raise ValidationFailed(f"Check the form: {names}.", errors=errors) from exc


def form_fields(form: Any, names: Sequence[str]) -> dict[str, Any]:
    """The named text fields of a submitted form; empty ones are left out."""
    out: dict[str, Any] = {}
    for name in names:
        value = form.get(name)
        if isinstance(value, str) and value.strip():
            out[name] = value
    return out


# --- lifecycle -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LifecycleAction:
    """A form of the lifecycle part: a named action of the inventory API, or (``action``
    None) a plain status change, offered where no named action leads to the status."""

    name: str
    button: str
    target: DeviceStatus
    action: Action | None
    schema: type[BaseModel]
    location: str | None = None  # the location field's label; None: no such field
    location_required: bool = False
    confirm: str | None = None

    def allowed_from(self, current: DeviceStatus) -> bool:
        if not can_transition(current, self.target):
            return False
        if self.action is None:
            return True
        sources = NAMED_ACTIONS[self.action][1]
        return sources is None or current in sources


ACTIONS: tuple[LifecycleAction, ...] = (
    LifecycleAction(
        "deploy", "Deploy", S.deployed, Action.deployed, DeployRequest,
        location="Location", location_required=True,
    ),
    LifecycleAction(
        "reserve", "Reserve", S.reserved, Action.reserved, ReserveRequest,
        location="Location (optional)",
    ),
    LifecycleAction(
        "maintenance", "Send to maintenance", S.maintenance, Action.maintenance,
        MaintenanceRequest, location="Workshop (optional)",
    ),
    LifecycleAction(
        "recall", "Recall to the warehouse", S.in_stock, Action.recalled, RecallRequest,
        location="Warehouse (optional)",
    ),
    LifecycleAction(
        "release", "Return to stock", S.in_stock, None, StatusChange,
        location="Location (optional)",
    ),
    LifecycleAction(
        "retire", "Retire", S.retired, Action.retired, RetireRequest,
        confirm="Retire this device? This is final, and its agent tokens are revoked.",
    ),
)  # fmt: skip
BY_NAME = {a.name: a for a in ACTIONS}


def available(current: DeviceStatus) -> list[LifecycleAction]:
    """The forms a device in ``current`` gets, in the order of ``ACTIONS``: a plain
    status change only where no named action reaches that status."""
    named = [a for a in ACTIONS if a.action is not None and a.allowed_from(current)]
    reached = {a.target for a in named}
    plain = [
        a
        for a in ACTIONS
        if a.action is None and a.target not in reached and a.allowed_from(current)
    ]
    return [a for a in ACTIONS if a in named or a in plain]


async def perform(
    uow: UnitOfWork, principal: Principal, device_id: uuid.UUID, act: LifecycleAction, form: Any
) -> Device:
    """The action through the inventory service, with the body the API would get."""
    fields = form_fields(form, ("location", "notes") if act.location else ("notes",))
    if act.action is None:
        fields["status"] = act.target.value
    body = parse_form(act.schema, fields)
    service = InventoryService(uow)
    location, notes = getattr(body, "location", None), getattr(body, "notes", None)
    if act.action is None:
        return await service.change_status(
            principal, device_id, act.target, location=location, notes=notes
        )
    return await service.perform(principal, device_id, act.action, location=location, notes=notes)


def refused_problem(exc: TransitionRefused, instance: str) -> dict[str, Any]:
    """The refusal's problem document with ``allowed`` (what the console's problem
    fragment lists) in readable words."""
    problem = exc.to_problem(instance)
    allowed = problem.get("allowed_statuses") or []
    problem["allowed"] = [label(s) for s in allowed] or ["nothing (retired is final)"]
    return problem


# --- connectivity and latest values ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reading:
    metric: str
    latest: LatestValue
    #: The health metric it is, on a health device (its LOINC code and UCUM unit).
    health: HealthMetricRead | None = None

    @property
    def text(self) -> str:
        return number(self.latest.value)


@dataclass(frozen=True, slots=True)
class DeviceState:
    status: DeviceStatusRead
    readings: list[Reading]

    def unit_of(self, metric: str, default: str | None = None) -> str | None:
        for r in self.readings:
            if r.metric == metric:
                return r.latest.unit or default
        return default


async def state(
    uow: UnitOfWork,
    presence: PresenceTracker,
    telemetry: TelemetryQueries,
    principal: Principal,
    device_id: uuid.UUID,
) -> DeviceState:
    """``GET /devices/{id}/status`` and ``GET /devices/{id}/data/latest`` together (the
    read of a health device's values is recorded in the access log, as there)."""
    status = await MonitoringService(uow, presence).status(principal, device_id)
    series = [s for s in await telemetry.series(device_id, None) if s.last_ts is not None]
    health = await record_reads(uow, principal, [device_id], "console latest values")
    described = health_metrics(s.metric for s in series) if health else {}
    readings = [Reading(s.metric, latest_value(s), described.get(s.metric)) for s in series]
    return DeviceState(status, sorted(readings, key=lambda r: r.metric))


# --- tokens, audit log, alerts ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tokens:
    items: Sequence[AgentToken]
    total: int
    every_login: bool  # every token may log in to MQTT, made for it or not


async def tokens(
    uow: UnitOfWork, principal: Principal, device_id: uuid.UUID, request: Request
) -> Tokens:
    items, total = await DeviceService(uow).list_tokens(
        principal, device_id, limit=TOKENS_SHOWN, offset=0
    )
    settings = SETTINGS.get(request.app)
    return Tokens(items, total, settings is None or settings.mqtt_device_logins == "all")


@dataclass(frozen=True, slots=True)
class LogPage:
    rows: Sequence[DeviceLog]
    before_id: int | None  # the page's start (None: the newest entries)
    older: int | None  # ``before_id`` of the next page, when there is one


async def log_page(
    uow: UnitOfWork, principal: Principal, device_id: uuid.UUID, before_id: int | None
) -> LogPage:
    """One page of the device log, newest first (one row more tells if there is more)."""
    rows = await InventoryService(uow).logs_for(
        principal, device_id, limit=LOG_PAGE + 1, before_id=before_id
    )
    shown_rows = rows[:LOG_PAGE]
    older = shown_rows[-1].id if len(rows) > LOG_PAGE else None
    return LogPage(shown_rows, before_id, older)


@dataclass(frozen=True, slots=True)
class DeviceAlerts:
    active: Sequence[Alert]
    active_total: int
    recent: Sequence[Alert]


async def alerts(uow: UnitOfWork, principal: Principal, device_id: uuid.UUID) -> DeviceAlerts:
    """The device's active alerts and its recently cleared ones (``GET /alerts``); the
    caller has found the device in the principal's workspace."""
    service = AlertService(uow)
    of_device: dict[str, Any] = {"device_id": device_id}
    active, total = await service.page(
        principal, {**of_device, "status": "active"}, ACTIVE_ALERTS_SHOWN, 0
    )
    recent, _ = await service.page(
        principal, {**of_device, "status": "cleared"}, RECENT_ALERTS_SHOWN, 0
    )
    return DeviceAlerts(active, total, recent)
