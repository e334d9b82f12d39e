"""Ending a connection's notifications at the vendor when it is disconnected (Withings
``action=revoke`` for each ``appli``, with the connection's token while it still has
one). Best effort: a vendor that does not answer is logged; the rows are marked
``revoked`` by the caller's transaction (``WebhookRepository.revoke_all``) either way,
and notifications for a revoked connection queue nothing."""

from __future__ import annotations

import json
import logging

import httpx

from fieldwatch.core.settings import Settings
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.integrations.connections.service import credentials_context
from fieldwatch.integrations.connectors.base import VendorError, endpoints
from fieldwatch.integrations.connectors.withings import WithingsConnector
from fieldwatch.integrations.crypto import KeyRing
from fieldwatch.integrations.models import Connection
from fieldwatch.integrations.webhooks import withings
from fieldwatch.integrations.webhooks.repository import WebhookRepository

log = logging.getLogger(__name__)
TIMEOUT_S = 10.0


async def revoke_notifications(uow: UnitOfWork, settings: Settings, ring: KeyRing,
                               connection: Connection) -> int:  # fmt: skip
    """Revoke the connection's subscriptions at the vendor; how many it accepted. The
    unit of work's connection is given back while the vendor answers (nothing pending
    is kept: call it before changing anything)."""
    if connection.connector != "withings" or not connection.credentials:
        return 0
    subs = [s for s in await WebhookRepository(uow.session).of_connection(connection.id)
            if s.status == "active" and s.callback_url]  # fmt: skip
    if not subs:
        return 0
    token = json.loads(ring.open(connection.credentials, credentials_context(connection)))
    access = str(token.get("access_token") or "")
    targets = [(str(s.callback_url), withings.appli_of(s.topic)) for s in subs]
    await uow.release()
    base = endpoints(WithingsConnector(), settings.withings).api
    done = 0
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT_S) as http:
        for url, appli in targets:
            try:
                await withings.revoke(http, access, url, appli)
                done += 1
            except (VendorError, httpx.HTTPError) as exc:
                log.warning("notification revoke failed", extra={
                    "connection": str(connection.id), "appli": appli,
                    "error": type(exc).__name__})  # fmt: skip
    return done
