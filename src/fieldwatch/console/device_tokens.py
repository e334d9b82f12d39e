"""The device page's agent tokens: the list, a new token (shown once, in the answer to
the form that made it, like ``POST /api/v1/devices/{id}/tokens``) and revoking one.
Operators and admins only, as in the API."""

from __future__ import annotations

import uuid
from datetime import timedelta
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from fieldwatch.console import device_parts as parts
from fieldwatch.console.access import ConsoleUser, CsrfChecked
from fieldwatch.console.device import device_url, is_htmx, part_context, whole_page
from fieldwatch.console.pages import Operator, Viewer, render
from fieldwatch.core.clock import utcnow
from fieldwatch.core.errors import ValidationFailed
from fieldwatch.db.dependencies import UowDep, WriteUow
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.dependencies import CredentialIssuedDep
from fieldwatch.devices.schemas import AgentTokenCreate, AgentTokenCreated
from fieldwatch.devices.service import DeviceService
from fieldwatch.monitoring.dependencies import PresenceDep
from fieldwatch.telemetry.dependencies import TelemetryDep

router = APIRouter(include_in_schema=False)

DAYS = {value for value, _ in parts.TOKEN_LIFETIMES}


async def _render(
    request: Request,
    user: ConsoleUser,
    uow: UnitOfWork,
    device_id: uuid.UUID,
    created: AgentTokenCreated | None = None,
) -> Response:
    device = await DeviceService(uow).get(user.principal, device_id)
    context: dict[str, Any] = part_context(user, device)
    context.update(
        tokens=await parts.tokens(uow, user.principal, device_id, request), created=created
    )
    return render(request, "_device_tokens.html", context)


@router.get("/console/devices/{device_id}/tokens")
async def tokens_part(
    device_id: uuid.UUID, request: Request, user: Viewer, uow: UowDep
) -> Response:
    return await _render(request, user, uow, device_id)


def _token_body(form: Any) -> AgentTokenCreate:
    fields = parts.form_fields(form, ("name",))
    days = form.get("expires_in_days") or ""
    if days not in DAYS:
        raise ValidationFailed(
            "Choose one of the lifetimes offered.",
            errors=[{"field": "expires_in_days", "message": "not one of the choices"}],
        )
    if days:
        fields["expires_at"] = utcnow() + timedelta(days=int(days))
    fields["mqtt"] = form.get("mqtt") == "on"
    return parts.parse_form(AgentTokenCreate, fields)


@router.post("/console/devices/{device_id}/tokens", dependencies=[CsrfChecked])
async def create_token(
    device_id: uuid.UUID,
    request: Request,
    user: Operator,
    uow: WriteUow,
    credential_issued: CredentialIssuedDep,
    presence: PresenceDep,
    telemetry: TelemetryDep,
) -> Response:
    """A new agent token; the answer is the only place it is ever shown."""
    body = _token_body(await request.form())
    created = await DeviceService(uow).issue_token(user.principal, device_id, body)
    uow.after_commit(
        partial(credential_issued, "device_token", created.device_id, created.id, created.token)
    )
    if not is_htmx(request):  # no redirect: the token would be lost
        return await whole_page(request, user, uow, presence, telemetry, device_id, created=created)
    response = await _render(request, user, uow, device_id, created)
    response.headers["HX-Trigger"] = "device-log-changed"
    return response


@router.post("/console/devices/{device_id}/tokens/{token_id}/revoke", dependencies=[CsrfChecked])
async def revoke_token(
    device_id: uuid.UUID, token_id: uuid.UUID, request: Request, user: Operator, uow: WriteUow
) -> Response:
    await DeviceService(uow).revoke_token(user.principal, device_id, token_id)
    if not is_htmx(request):
        return RedirectResponse(device_url(device_id) + "#tokens", status_code=303)
    response = await _render(request, user, uow, device_id)
    response.headers["HX-Trigger"] = "device-log-changed"
    return response
