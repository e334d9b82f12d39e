"""The vendors' notification subscriptions as an admin sees them: each with its state
and where its renewal stands, so a subscription that keeps failing or is about to lapse
shows before notifications stop.

A workspace's admins see the subscriptions of its connections (Withings', one per
connection and ``appli``) and the app's own (Oura's, one per event and data type) once
the workspace has a connection of that vendor: they carry its notifications too.

``renewal`` says where a subscription stands: ``not_needed`` (it does not expire:
Withings'), ``scheduled`` (renewed at ``renew_at``, ``vendor_webhook_renew_before_s``
before it expires), ``due`` (in that window: the next check renews it), ``expired``
(past its expiry: notifications may be lost until it is made again), ``retrying`` (the
last attempt failed: tried again from ``next_attempt_at``) or ``none`` (revoked).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from fieldwatch.auth.dependencies import Admin
from fieldwatch.auth.principal import Principal
from fieldwatch.core.clock import utcnow
from fieldwatch.core.components import SettingsDep
from fieldwatch.core.paging import Limit, Offset, Page
from fieldwatch.core.settings import Settings
from fieldwatch.db.dependencies import UowDep
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.integrations.models import WebhookSubscription
from fieldwatch.integrations.webhooks.repository import WebhookRepository

Renewal = Literal["not_needed", "scheduled", "due", "expired", "retrying", "none"]
Status = Literal["pending", "active", "failed", "revoked"]

router = APIRouter()


class SubscriptionRead(BaseModel):
    id: uuid.UUID
    connector: str
    #: ``app`` (the app's own, Oura's) or ``connection`` (one connection's, Withings').
    scope: Literal["app", "connection"]
    connection_id: uuid.UUID | None
    topic: str
    status: str
    callback_url: str | None
    expires_at: datetime | None
    renew_at: datetime | None
    renewal: Renewal
    failures: int
    last_error: str | None
    next_attempt_at: datetime | None
    updated_at: datetime


def renewal_of(sub: WebhookSubscription, now: datetime, renew_before: timedelta) -> Renewal:
    if sub.status == "revoked":
        return "none"
    if sub.status == "failed" or (sub.failures and sub.status != "active"):
        return "retrying"
    if sub.expires_at is None:
        return "not_needed"
    if sub.expires_at <= now:
        return "expired"
    return "due" if sub.expires_at - renew_before <= now else "scheduled"


def read(sub: WebhookSubscription, now: datetime, settings: Settings) -> SubscriptionRead:
    before = timedelta(seconds=settings.vendor_webhook_renew_before_s)
    return SubscriptionRead(
        id=sub.id, connector=sub.connector,
        scope="connection" if sub.connection_id is not None else "app",
        connection_id=sub.connection_id, topic=sub.topic, status=sub.status,
        callback_url=sub.callback_url, expires_at=sub.expires_at,
        renew_at=sub.expires_at - before if sub.expires_at is not None else None,
        renewal=renewal_of(sub, now, before), failures=sub.failures,
        last_error=sub.last_error, next_attempt_at=sub.not_before, updated_at=sub.updated_at,
    )  # fmt: skip


async def subscriptions(
    uow: UnitOfWork, settings: Settings, principal: Principal, *, connector: str | None,
    status: str | None, limit: int, offset: int,
) -> tuple[list[SubscriptionRead], int]:  # fmt: skip
    """The workspace's subscriptions (see the module's description), by connector and
    topic."""
    rows, total = await WebhookRepository(uow.session).listing(
        principal.workspace_id, connector=connector, status=status, limit=limit, offset=offset
    )
    now = utcnow()
    return [read(s, now, settings) for s in rows], total


@router.get("/subscriptions", response_model=Page[SubscriptionRead])
async def list_subscriptions(
    principal: Admin,
    uow: UowDep,
    settings: SettingsDep,
    limit: Limit = 50,
    offset: Offset = 0,
    connector: Annotated[str | None, Query(max_length=40)] = None,
    status: Annotated[Status | None, Query()] = None,
) -> Page[SubscriptionRead]:
    """The vendors' notification subscriptions serving this workspace's connections
    (admins): state, expiry and renewal, failures."""
    items, total = await subscriptions(uow, settings, principal, connector=connector,
                                       status=status, limit=limit, offset=offset)  # fmt: skip
    return Page(items=items, total=total, limit=limit, offset=offset)
