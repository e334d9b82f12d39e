"""The console's integrations pages for admins: a connection's consent, the access log
of health data and the vendors' notification subscriptions.

- Consent: on the connections page each connection's data types as checkboxes (those
  the grant at the vendor no longer allows disabled, with why); saving calls
  ``PrivacyService.set_consent`` like ``PUT /api/v1/integrations/connections/{id}/consent``
  (htmx swaps the form with its new state; without JavaScript the page comes back).
- Access log: who read, purged or deleted which wearable's data, newest first, filtered
  by device and actor, paged (``PrivacyService.access_log``, as ``GET …/access-log``).
- Subscriptions: each notification subscription with its state, expiry and where its
  renewal stands, its failures (``webhooks.subscriptions``, as ``GET …/subscriptions``).
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from fieldwatch.console.access import CsrfChecked
from fieldwatch.console.integrations import (
    CATALOGUE,
    CONNECTIONS,
    consent_choices,
    synced_devices,
)
from fieldwatch.console.pages import Admin, page_context, render
from fieldwatch.core.components import SettingsDep
from fieldwatch.db.dependencies import UowDep, WriteUow
from fieldwatch.integrations.connectors.catalogue import CONNECTORS
from fieldwatch.integrations.dependencies import KeyRingDep, SyncServiceDep
from fieldwatch.integrations.privacy.schemas import ConsentUpdate
from fieldwatch.integrations.privacy.service import PrivacyService
from fieldwatch.integrations.webhooks.subscriptions import subscriptions

router = APIRouter(include_in_schema=False)

ACCESS_LOG = CATALOGUE + "/access-log"
SUBSCRIPTIONS = CATALOGUE + "/subscriptions"
PAGE_SIZE = 50


def _offset(raw: str | None) -> int:
    raw = raw or ""
    return min(int(raw), 10_000_000) if raw.isdigit() and len(raw) < 10 else 0


def _uuid(raw: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw) if raw else None
    except ValueError:
        return None


@router.post(CONNECTIONS + "/{connection_id}/consent", dependencies=[CsrfChecked])
async def set_consent(
    connection_id: uuid.UUID, request: Request, user: Admin, uow: WriteUow,
    settings: SettingsDep, ring: KeyRingDep,
) -> Response:  # fmt: skip
    form = await request.form()
    chosen = [str(v)[:40] for v in form.getlist("data_types")][:100]
    service = PrivacyService(uow, settings, ring)
    saved = await service.set_consent(user.principal, connection_id,
                                      ConsentUpdate(data_types=chosen))  # fmt: skip
    connection = await service.connections.get(user.principal.workspace_id, connection_id)
    await uow.commit()
    if request.headers.get("hx-request") != "true":
        return RedirectResponse(f"{CONNECTIONS}?done=consent#connection-{connection_id}", 303)
    scopes = list(connection.scopes) if connection is not None else []
    context = {"c": {"id": connection_id, "connector": saved.connector},
               "choices": consent_choices(saved.connector, scopes, saved.data_types),
               "csrf": user.session.csrf, "saved": True}  # fmt: skip
    return render(request, "_connection_consent.html", context)


@router.get(ACCESS_LOG)
async def access_log_page(
    request: Request, user: Admin, uow: UowDep, settings: SettingsDep, ring: KeyRingDep,
    sync: SyncServiceDep,
) -> Response:  # fmt: skip
    q = request.query_params
    device_id = _uuid(q.get("device"))
    actor = (q.get("actor") or "").strip()[:200] or None
    offset = _offset(q.get("offset"))
    privacy = PrivacyService(uow, settings, ring)
    rows, total = await privacy.access_log(
        user.principal, device_id, limit=PAGE_SIZE, offset=offset, actor=actor
    )
    devices = await synced_devices(sync, user)
    names = {d.device_id: d.device_name for d in devices}
    # a wearable whose companion app uploads has no sync: named from the registry
    names |= await privacy.device_names(user.principal, {e.device_id for e in rows} - set(names))
    query = "&".join(f"{k}={v}" for k, v in (("device", device_id), ("actor", actor)) if v)
    context = await page_context(user, "integrations")
    context.update(
        tab="access", entries=rows, total=total, offset=offset, page_size=PAGE_SIZE,
        device_id=device_id, actor=actor or "", devices_list=devices, filter_query=query,
        names=names,
    )  # fmt: skip
    return render(request, "access_log.html", context)


@router.get(SUBSCRIPTIONS)
async def subscriptions_page(
    request: Request, user: Admin, uow: UowDep, settings: SettingsDep
) -> Response:
    q = request.query_params
    connector = q.get("connector") if q.get("connector") in CONNECTORS else None
    offset = _offset(q.get("offset"))
    items, total = await subscriptions(uow, settings, user.principal, connector=connector,
                                       status=None, limit=PAGE_SIZE, offset=offset)  # fmt: skip
    context = await page_context(user, "integrations")
    context.update(
        tab="subscriptions", subscriptions=items, total=total, offset=offset,
        page_size=PAGE_SIZE, connector=connector, enabled=settings.vendor_webhooks,
        connectors=[k for k in ("oura", "withings") if settings.vendor_app(k).configured],
    )  # fmt: skip
    return render(request, "subscriptions.html", context)


__all__ = ["router"]
