"""Webhooks API: admins manage them, viewers read them (never their secrets)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from fieldwatch.auth.dependencies import Admin, Viewer
from fieldwatch.core.components import SettingsDep
from fieldwatch.core.paging import Limit, Offset, Page, page_of
from fieldwatch.core.settings import Settings
from fieldwatch.db.dependencies import UowDep, WriteUow
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.webhooks.dependencies import WebhookDispatcherDep
from fieldwatch.webhooks.schemas import (
    DeliveryRead,
    DeliveryStatus,
    WebhookCreate,
    WebhookRead,
    WebhookUpdate,
    WebhookWithSecret,
)
from fieldwatch.webhooks.service import WebhookService

router = APIRouter(prefix="/api/v1", tags=["webhooks"])


def _service(settings: Settings, uow: UnitOfWork) -> WebhookService:
    return WebhookService(uow.session, settings)


@router.get("/webhooks", response_model=Page[WebhookRead])
async def list_webhooks(
    principal: Viewer, settings: SettingsDep, uow: UowDep, limit: Limit = 50, offset: Offset = 0
):
    """The workspace's webhooks, oldest first."""
    items, total = await _service(settings, uow).page(principal, limit=limit, offset=offset)
    return page_of(WebhookRead, items, total, limit=limit, offset=offset)


@router.post("/webhooks", response_model=WebhookWithSecret, status_code=status.HTTP_201_CREATED)
async def create_webhook(
    body: WebhookCreate, principal: Admin, settings: SettingsDep, uow: WriteUow
):
    """Create a webhook. The response holds the signing ``secret``: it is shown only
    here (and when rotated)."""
    return await _service(settings, uow).create(principal, body)


@router.get("/webhooks/{webhook_id}", response_model=WebhookRead)
async def get_webhook(webhook_id: uuid.UUID, principal: Viewer, settings: SettingsDep, uow: UowDep):
    return await _service(settings, uow).get(principal, webhook_id)


@router.patch("/webhooks/{webhook_id}", response_model=WebhookRead)
async def update_webhook(
    webhook_id: uuid.UUID,
    body: WebhookUpdate,
    principal: Admin,
    settings: SettingsDep,
    uow: WriteUow,
):
    return await _service(settings, uow).update(principal, webhook_id, body)


@router.delete("/webhooks/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_webhook(
    webhook_id: uuid.UUID, principal: Admin, settings: SettingsDep, uow: WriteUow
) -> Response:
    await _service(settings, uow).delete(principal, webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/webhooks/{webhook_id}/rotate-secret", response_model=WebhookWithSecret)
async def rotate_secret(
    webhook_id: uuid.UUID, principal: Admin, settings: SettingsDep, uow: WriteUow
):
    """A new signing secret, shown only in this response. The old one stops at once."""
    return await _service(settings, uow).rotate_secret(principal, webhook_id)


@router.post(
    "/webhooks/{webhook_id}/test",
    response_model=DeliveryRead,
    status_code=status.HTTP_202_ACCEPTED,
)
async def test_webhook(
    webhook_id: uuid.UUID,
    principal: Admin,
    settings: SettingsDep,
    uow: WriteUow,
    dispatcher: WebhookDispatcherDep,
):
    """Queue a ``webhook.test`` delivery; follow it in the deliveries list."""
    delivery = await _service(settings, uow).queue_test(principal, webhook_id)
    uow.after_commit(dispatcher.notify)
    return delivery


@router.get("/webhooks/{webhook_id}/deliveries", response_model=Page[DeliveryRead])
async def list_deliveries(
    webhook_id: uuid.UUID,
    principal: Viewer,
    settings: SettingsDep,
    uow: UowDep,
    status_: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
):
    """The most recent deliveries first."""
    items, total = await _service(settings, uow).recent_deliveries(
        principal, webhook_id, status=status_, limit=limit, offset=offset
    )
    return page_of(DeliveryRead, items, total, limit=limit, offset=offset)
