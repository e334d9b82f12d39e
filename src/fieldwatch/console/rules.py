"""The console's alert rules pages: the list, a form to create a rule, one to edit it (the
built-in offline rule only takes its name, severity, scope and enabled), and deleting.

Plain forms (they work without JavaScript): a change answers with a redirect to the list
and a notice; a refused one shows the form again with each message next to its field,
from the same checks as the API (``AlertRuleCreate`` and the service's).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from fieldwatch.alerts.models import AlertRule
from fieldwatch.alerts.rules import OPERATORS, SCOPES, SEVERITIES
from fieldwatch.alerts.schemas import AlertRuleCreate, AlertRuleUpdate
from fieldwatch.alerts.service import AlertService
from fieldwatch.auth.principal import Principal
from fieldwatch.console.access import CsrfChecked
from fieldwatch.console.pages import Operator, Viewer, page_context, problem_message, render
from fieldwatch.core.errors import AppError, NotFound, validation_errors
from fieldwatch.db.dependencies import UowDep, WriteUow
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.service import DeviceService

router = APIRouter(include_in_schema=False)

LIST = "/console/alert-rules"
PAGE_SIZE = 100
FIELDS = ("name", "metric", "operator", "threshold", "duration_s", "severity", "scope",
          "scope_value")  # fmt: skip
#: What the built-in offline rule lets change (as the service does).
OFFLINE_FIELDS = ("name", "severity", "scope", "scope_value", "enabled")
NOTICES = {
    "created": "The rule is created.",
    "updated": "The rule is saved.",
    "deleted": "The rule is deleted; its open alerts are cleared.",
}
SCOPE_LABELS = {"all": "All devices", "device": "One device", "device_type": "A device type"}


class FormProblem(Exception):
    """A form refused: the messages by field, and one for the whole form."""

    def __init__(self, message: str, errors: Sequence[Mapping[str, Any]]) -> None:
        super().__init__(message)
        self.message = message
        self.fields = {str(e.get("field") or ""): str(e.get("message")) for e in errors}


def form_values(form: Mapping[str, Any]) -> dict[str, Any]:
    """The form as the API's body: text stripped, empty optional fields left out (their
    defaults apply), the checkbox as a boolean."""
    values: dict[str, Any] = {}
    for name in FIELDS:
        raw = form.get(name)
        text = raw.strip() if isinstance(raw, str) else ""
        if text or name in {"name", "metric", "threshold"}:
            values[name] = text
    values["enabled"] = form.get("enabled") == "on"
    if values.get("scope", "all") == "all":
        values.pop("scope_value", None)
    return values


def checked(values: dict[str, Any], offline: bool) -> dict[str, Any]:
    """The API's checks on the form's values; the fields to store."""
    try:
        if offline:  # the create checks on the fields it has (name, severity, scope)
            kept = {k: v for k, v in values.items() if k in OFFLINE_FIELDS}
            AlertRuleCreate(metric="-", operator=">", threshold=0, **kept)
            return {**kept, "scope_value": kept.get("scope_value")}
        return AlertRuleCreate(**values).model_dump()
    except ValidationError as exc:
        errors = validation_errors(list(exc.errors()))
        raise FormProblem("Check the highlighted fields.", errors) from None


def _condition(rule: AlertRule) -> str:
    if rule.kind == "offline":
        return "device goes offline"
    threshold = "" if rule.threshold is None else f"{rule.threshold:g}"
    return f"{rule.metric} {rule.operator} {threshold}"


async def _device_names(
    uow: UnitOfWork, principal: Principal, rules: Sequence[AlertRule]
) -> dict[str, str]:
    """The names of the devices that device-scoped rules are about."""
    names: dict[str, str] = {}
    devices = DeviceService(uow)
    for rule in rules:
        if rule.scope == "device" and rule.scope_value and rule.scope_value not in names:
            try:
                device = await devices.get(principal, uuid.UUID(rule.scope_value))
            except (NotFound, ValueError):
                continue
            names[rule.scope_value] = device.name
    return names


def _choices() -> dict[str, Any]:
    return {
        "operators": list(OPERATORS),
        "severities": SEVERITIES,
        "scopes": [(s, SCOPE_LABELS[s]) for s in SCOPES],
        "condition": _condition,
    }


async def _list_page(
    request: Request, user: Viewer, uow: UnitOfWork, extra: dict[str, Any], status: int = 200
) -> Response:
    try:
        page = max(1, int(request.query_params.get("page") or 1))
    except ValueError:
        page = 1
    rules, total = await AlertService(uow).list_rules(
        user.principal, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
    )
    context = await page_context(user, "rules")
    context.update(
        rules=rules, total=total, page=page, page_size=PAGE_SIZE,
        device_names=await _device_names(uow, user.principal, rules),
        notice=NOTICES.get(request.query_params.get("done") or ""),
        values={"enabled": True, "severity": "major", "scope": "all", "duration_s": 0},
        errors={}, **_choices(),
    )  # fmt: skip
    context.update(extra)
    return render(request, "rules.html", context, status_code=status)


@router.get(LIST)
async def rules_page(request: Request, user: Viewer, uow: WriteUow) -> Response:
    # WriteUow: listing creates the built-in offline rule once, as the API's list does.
    return await _list_page(request, user, uow, {})


@router.post(LIST, dependencies=[CsrfChecked])
async def create_rule(request: Request, user: Operator, uow: WriteUow) -> Response:
    values = form_values(await request.form())
    try:
        data = AlertRuleCreate.model_validate(checked(values, offline=False))
        await AlertService(uow).create_rule(user.principal, data)
    except FormProblem as exc:
        extra = {"values": values, "errors": exc.fields, "problem": exc.message}
        return await _list_page(request, user, uow, extra, status=422)
    return RedirectResponse(f"{LIST}?done=created", status_code=303)


async def _edit_page(
    request: Request,
    user: Viewer,
    uow: UnitOfWork,
    rule_id: uuid.UUID,
    extra: dict[str, Any],
    status: int = 200,
) -> Response:
    rule = await AlertService(uow).get_rule(user.principal, rule_id)
    context = await page_context(user, "rules")
    values = {name: getattr(rule, name) for name in (*FIELDS, "enabled")}
    context.update(rule=rule, values=values, errors={}, **_choices())
    context["device_names"] = await _device_names(uow, user.principal, [rule])
    context.update(extra)
    return render(request, "rules_edit.html", context, status_code=status)


@router.get(LIST + "/{rule_id}")
async def rule_page(rule_id: uuid.UUID, request: Request, user: Viewer, uow: UowDep) -> Response:
    return await _edit_page(request, user, uow, rule_id, {})


@router.post(LIST + "/{rule_id}", dependencies=[CsrfChecked])
async def update_rule(
    rule_id: uuid.UUID, request: Request, user: Operator, uow: WriteUow
) -> Response:
    service = AlertService(uow)
    rule = await service.get_rule(user.principal, rule_id)
    values = form_values(await request.form())
    try:
        fields = checked(values, offline=rule.kind == "offline")
        try:
            await service.update_rule(user.principal, rule_id, AlertRuleUpdate(**fields))
        except AppError as exc:  # the service's own checks: nothing of it is kept
            await uow.rollback()
            raise FormProblem(problem_message(exc), exc.extra.get("errors") or []) from None
    except FormProblem as exc:
        extra = {"values": values, "errors": exc.fields, "problem": exc.message}
        return await _edit_page(request, user, uow, rule_id, extra, status=422)
    return RedirectResponse(f"{LIST}?done=updated", status_code=303)


@router.post(LIST + "/{rule_id}/delete", dependencies=[CsrfChecked])
async def delete_rule(rule_id: uuid.UUID, user: Operator, uow: WriteUow) -> Response:
    await AlertService(uow).delete_rule(user.principal, rule_id)
    return RedirectResponse(f"{LIST}?done=deleted", status_code=303)
