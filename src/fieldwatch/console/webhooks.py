"""The console's webhooks pages: the list, creating one (its signing secret shown once),
a webhook's page with its deliveries and their results, a test delivery, enabling or
disabling, a new secret, deleting. Admins change webhooks, as in the API; others read.

Routes are thin: they call ``WebhookService`` like the API's webhook routes do.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from fieldwatch.console.access import CsrfChecked
from fieldwatch.console.pages import Admin, Viewer, page_context, problem_message, render
from fieldwatch.console.rules import FormProblem
from fieldwatch.core.components import SettingsDep
from fieldwatch.core.errors import AppError, validation_errors
from fieldwatch.core.settings import Settings
from fieldwatch.db.dependencies import UowDep, WriteUow
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.webhooks.dependencies import WebhookDispatcherDep
from fieldwatch.webhooks.schemas import WebhookCreate, WebhookUpdate, WebhookWithSecret
from fieldwatch.webhooks.service import WebhookService

router = APIRouter(include_in_schema=False)

LIST = "/console/webhooks"
PAGE_SIZE = 50
DELIVERIES = 25
EVENT_TYPES = (
    ("alert.*", "Every alert event"),
    ("alert.raised", "Alert raised"),
    ("alert.updated", "Alert repeated"),
    ("alert.acknowledged", "Alert acknowledged"),
    ("alert.cleared", "Alert cleared"),
)
NOTICES = {
    "deleted": "The webhook is deleted.",
    "enabled": "The webhook is enabled.",
    "disabled": "The webhook is disabled: it sends nothing until it is enabled again.",
}


def _service(settings: Settings, uow: UnitOfWork) -> WebhookService:
    return WebhookService(uow.session, settings)


def _page_number(request: Request) -> int:
    try:
        return max(1, int(request.query_params.get("page") or 1))
    except ValueError:
        return 1


async def _list_page(
    request: Request,
    user: Viewer,
    settings: Settings,
    uow: UnitOfWork,
    extra: dict[str, Any],
    status: int = 200,
) -> Response:
    page = _page_number(request)
    hooks, total = await _service(settings, uow).page(
        user.principal, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
    )
    context = await page_context(user, "webhooks")
    context.update(
        webhooks=hooks, total=total, page=page, page_size=PAGE_SIZE, event_choices=EVENT_TYPES,
        values={"event_types": ["alert.*"]}, errors={},
        notice=NOTICES.get(request.query_params.get("done") or ""),
    )  # fmt: skip
    context.update(extra)
    return render(request, "webhooks.html", context, status_code=status)


@router.get(LIST)
async def webhooks_page(
    request: Request, user: Viewer, settings: SettingsDep, uow: UowDep
) -> Response:
    return await _list_page(request, user, settings, uow, {})


def form_values(form: Mapping[str, Any], getlist: Any) -> dict[str, Any]:
    description = str(form.get("description") or "").strip()
    return {
        "url": str(form.get("url") or "").strip(),
        "description": description or None,
        "event_types": [str(v) for v in getlist("event_types")],
        "enabled": form.get("enabled") == "on",
    }


@router.post(LIST, dependencies=[CsrfChecked])
async def create_webhook(
    request: Request, user: Admin, settings: SettingsDep, uow: WriteUow
) -> Response:
    form = await request.form()
    values = form_values(form, form.getlist)
    try:
        try:
            body = WebhookCreate(**values)
        except ValidationError as exc:
            errors = validation_errors(list(exc.errors()))
            raise FormProblem("Check the highlighted fields.", errors) from None
        try:
            created = await _service(settings, uow).create(user.principal, body)
        except AppError as exc:
            await uow.rollback()
            raise FormProblem(problem_message(exc), exc.extra.get("errors") or []) from None
    except FormProblem as exc:
        extra = {"values": values, "errors": exc.fields, "problem": exc.message}
        return await _list_page(request, user, settings, uow, extra, status=422)
    return await _detail_page(request, user, settings, uow, created.id, {"secret": created})


async def _deliveries(
    settings: Settings, uow: UnitOfWork, user: Viewer, webhook_id: uuid.UUID
) -> dict[str, Any]:
    items, total = await _service(settings, uow).recent_deliveries(
        user.principal, webhook_id, status=None, limit=DELIVERIES, offset=0
    )
    return {
        "deliveries": items,
        "deliveries_total": total,
        "pending": any(d.status == "pending" for d in items),
    }


async def _detail_page(
    request: Request,
    user: Viewer,
    settings: Settings,
    uow: UnitOfWork,
    webhook_id: uuid.UUID,
    extra: dict[str, Any],
) -> Response:
    webhook = await _service(settings, uow).get(user.principal, webhook_id)
    context = await page_context(user, "webhooks")
    context.update(webhook=webhook, notice=NOTICES.get(request.query_params.get("done") or ""))
    context.update(await _deliveries(settings, uow, user, webhook_id))
    context.update(extra)
    return render(request, "webhooks_detail.html", context)


@router.get(LIST + "/{webhook_id}")
async def webhook_page(
    webhook_id: uuid.UUID, request: Request, user: Viewer, settings: SettingsDep, uow: UowDep
) -> Response:
    return await _detail_page(request, user, settings, uow, webhook_id, {})


@router.get(LIST + "/{webhook_id}/deliveries")
async def deliveries(
    webhook_id: uuid.UUID, request: Request, user: Viewer, settings: SettingsDep, uow: UowDep
) -> Response:
    """The deliveries alone: the page fetches them again while some are pending."""
    context = {"webhook_id": webhook_id, **await _deliveries(settings, uow, user, webhook_id)}
    return render(request, "_webhooks_deliveries.html", context)


@router.post(LIST + "/{webhook_id}/test", dependencies=[CsrfChecked])
async def send_test(
    webhook_id: uuid.UUID,
    request: Request,
    user: Admin,
    settings: SettingsDep,
    uow: WriteUow,
    dispatcher: WebhookDispatcherDep,
) -> Response:
    await _service(settings, uow).queue_test(user.principal, webhook_id)
    uow.after_commit(dispatcher.notify)
    if request.headers.get("hx-request") != "true":
        return RedirectResponse(f"{LIST}/{webhook_id}", status_code=303)
    context = {"webhook_id": webhook_id, **await _deliveries(settings, uow, user, webhook_id)}
    return render(request, "_webhooks_deliveries.html", context)


@router.post(LIST + "/{webhook_id}/enabled", dependencies=[CsrfChecked])
async def set_enabled(
    webhook_id: uuid.UUID, request: Request, user: Admin, settings: SettingsDep, uow: WriteUow
) -> Response:
    enabled = (await request.form()).get("enabled") == "true"
    await _service(settings, uow).update(user.principal, webhook_id, WebhookUpdate(enabled=enabled))
    done = "enabled" if enabled else "disabled"
    return RedirectResponse(f"{LIST}/{webhook_id}?done={done}", status_code=303)


@router.post(LIST + "/{webhook_id}/rotate-secret", dependencies=[CsrfChecked])
async def rotate_secret(
    webhook_id: uuid.UUID, request: Request, user: Admin, settings: SettingsDep, uow: WriteUow
) -> Response:
    rotated: WebhookWithSecret = await _service(settings, uow).rotate_secret(
        user.principal, webhook_id
    )
    extra = {"secret": rotated, "rotated": True}
    return await _detail_page(request, user, settings, uow, webhook_id, extra)


@router.post(LIST + "/{webhook_id}/delete", dependencies=[CsrfChecked])
async def delete_webhook(
    webhook_id: uuid.UUID, user: Admin, settings: SettingsDep, uow: WriteUow
) -> Response:
    await _service(settings, uow).delete(user.principal, webhook_id)
    return RedirectResponse(f"{LIST}?done=deleted", status_code=303)
