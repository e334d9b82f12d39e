from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, status

from fieldwatch.alerts.schemas import (
    AlertAction,
    AlertRead,
    AlertRuleCreate,
    AlertRuleRead,
    AlertRuleUpdate,
    Severity,
)
from fieldwatch.alerts.service import AlertService
from fieldwatch.auth.dependencies import Operator, Viewer
from fieldwatch.core.paging import Limit, Offset, Page, page_of
from fieldwatch.db.dependencies import UowDep, WriteUow

router = APIRouter(prefix="/api/v1", tags=["alerts"])


@router.get("/alert-rules", response_model=Page[AlertRuleRead])
async def list_rules(principal: Viewer, uow: WriteUow, limit: Limit = 50, offset: Offset = 0):
    """The workspace's rules, the built-in offline rule first."""
    # creates the offline rule once
    items, total = await AlertService(uow).list_rules(principal, limit=limit, offset=offset)
    return page_of(AlertRuleRead, items, total, limit=limit, offset=offset)


@router.post("/alert-rules", response_model=AlertRuleRead, status_code=status.HTTP_201_CREATED)
async def create_rule(body: AlertRuleCreate, principal: Operator, uow: WriteUow):
    return await AlertService(uow).create_rule(principal, body)


@router.get("/alert-rules/{rule_id}", response_model=AlertRuleRead)
async def get_rule(rule_id: uuid.UUID, principal: Viewer, uow: UowDep):
    return await AlertService(uow).get_rule(principal, rule_id)


@router.patch("/alert-rules/{rule_id}", response_model=AlertRuleRead)
async def update_rule(
    rule_id: uuid.UUID, body: AlertRuleUpdate, principal: Operator, uow: WriteUow
):
    """Changing the condition or disabling the rule clears its open alerts."""
    return await AlertService(uow).update_rule(principal, rule_id, body)


@router.delete("/alert-rules/{rule_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_rule(rule_id: uuid.UUID, principal: Operator, uow: WriteUow) -> Response:
    await AlertService(uow).delete_rule(principal, rule_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _page(
    principal: Viewer,
    uow: UowDep,
    status_: str | None,
    acknowledged: bool | None,
    severity: str | None,
    device_id: uuid.UUID | None,
    rule_id: uuid.UUID | None,
    limit: int,
    offset: int,
) -> Page[AlertRead]:
    filters = {
        "status": status_, "acknowledged": acknowledged, "severity": severity,
        "device_id": device_id, "rule_id": rule_id,
    }  # fmt: skip
    items, total = await AlertService(uow).page(principal, filters, limit, offset)
    return Page[AlertRead](
        items=[AlertRead.model_validate(a) for a in items], total=total, limit=limit, offset=offset
    )


@router.get("/alerts", response_model=Page[AlertRead])
async def list_alerts(
    principal: Viewer,
    uow: UowDep,
    status_: Annotated[Literal["active", "cleared"] | None, Query(alias="status")] = None,
    acknowledged: bool | None = None,
    severity: Severity | None = None,
    device_id: uuid.UUID | None = None,
    rule_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
):
    """Alerts, most recently triggered first."""
    return await _page(principal, uow, status_, acknowledged, severity, device_id, rule_id,
                       limit, offset)  # fmt: skip


@router.get("/monitoring/alerts", response_model=Page[AlertRead])
async def monitoring_alerts(
    principal: Viewer,
    uow: UowDep,
    severity: Severity | None = None,
    device_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
):
    """Seed 001: the active alerts."""
    return await _page(principal, uow, "active", None, severity, device_id, None, limit, offset)


@router.get("/alerts/{alert_id}", response_model=AlertRead)
async def get_alert(alert_id: uuid.UUID, principal: Viewer, uow: UowDep):
    return await AlertService(uow).get(principal, alert_id)


@router.post("/alerts/{alert_id}/ack", response_model=AlertRead)
async def acknowledge(
    alert_id: uuid.UUID, principal: Operator, uow: WriteUow, body: AlertAction | None = None
):
    return await AlertService(uow).acknowledge(principal, alert_id, body.note if body else None)


@router.post("/alerts/{alert_id}/clear", response_model=AlertRead)
async def clear(
    alert_id: uuid.UUID, principal: Operator, uow: WriteUow, body: AlertAction | None = None
):
    """Clear by hand. If the condition still holds, the next reading opens a new alert."""
    return await AlertService(uow).clear_by_hand(principal, alert_id, body.note if body else None)
