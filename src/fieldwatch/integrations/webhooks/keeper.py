"""Keeping the vendors' subscriptions: a worker's periodic job (each
``vendor_webhook_check_s``, ``run_if_on``), safe with several processes.

1. plan: the subscriptions wanted become rows — Oura's six (create, update, delete ×
   daily_activity, heartrate) for the app once an Oura account is connected, and one
   per ``appli`` each active Withings connection consented to;
2. claim: rows not made yet (or failed, once their backoff is over), expiring within
   ``vendor_webhook_renew_before_s``, or made for another callback address (the public
   URL changed) are claimed one by one with a conditional UPDATE that one process wins;
3. work: Oura — a subscription Fieldwatch made is renewed (or made again if Oura lost
   it); a new one adopts an existing subscription to the same address (listed) or is
   created with a fresh verification token, whose digest was committed first because
   Oura calls the callback before it answers; one made for an old address is deleted.
   Withings — ``subscribe`` with the account's token (they do not expire). A failure is
   retried with backoff, the claim given back either way.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial

import httpx

from fieldwatch.core.settings import Settings
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.integrations.connections.tokens import TokenSource
from fieldwatch.integrations.connectors.base import VendorError
from fieldwatch.integrations.connectors.withings import WithingsConnector
from fieldwatch.integrations.models import WebhookSubscription
from fieldwatch.integrations.sync.vendor import VendorSession
from fieldwatch.integrations.webhooks import oura, withings
from fieldwatch.integrations.webhooks.repository import APP_SCOPE, WebhookRepository
from fieldwatch.integrations.webhooks.service import token_digest

log = logging.getLogger(__name__)

BATCH = 50
LEASE = timedelta(minutes=2)
MAX_BACKOFF_S = 6 * 3600.0


def callback_url(settings: Settings, kind: str) -> str:
    return f"{settings.resolved_public_url}/api/v1/integrations/{kind}/webhook"


class SubscriptionKeeper:
    def __init__(self, uow: Callable[[], UnitOfWork], settings: Settings, tokens: TokenSource,
                 *, owner: str, clock: Callable[[], datetime]) -> None:  # fmt: skip
        self.uow = uow
        self.settings = settings
        self.tokens = tokens
        self.owner = owner
        self.clock = clock
        self._last: datetime | None = None

    def _kinds(self) -> dict[str, str]:
        """The connectors whose notifications are wanted, and their callback address."""
        kinds = ("oura", "withings")
        return {k: callback_url(self.settings, k) for k in kinds
                if self.settings.vendor_app(k).configured}  # fmt: skip

    async def maybe_run(self) -> int:
        """Run if it is on and its period has passed since this process last ran it."""
        now = self.clock()
        period = timedelta(seconds=self.settings.vendor_webhook_check_s)
        if self._last and now - self._last < period:
            return 0
        self._last = now
        return await self.run_if_on()

    async def run_if_on(self) -> int:
        """Run if vendor notifications are on (a periodic job's tick); failures logged."""
        if not self.settings.vendor_webhooks:
            return 0
        try:
            return await self.run()
        except Exception:
            log.exception("vendor subscriptions could not be kept")
            return 0

    async def run(self) -> int:
        """Plan, claim and work; how many subscriptions were worked on."""
        kinds = self._kinds()
        if not kinds:
            return 0
        await self.plan(kinds)
        done = 0
        for sub_id in await self._due(kinds):
            token = secrets.token_urlsafe(32)
            now = self.clock()
            async with self.uow() as uow:
                sub = await WebhookRepository(uow.session).claim(
                    sub_id, self.owner, now, now + LEASE, self._renew_by(now), kinds,
                    token_digest=token_digest(token),
                )  # fmt: skip
                await uow.commit()
            if sub is not None:
                await self.work(sub, kinds[sub.connector], token)
                done += 1
        return done

    async def plan(self, kinds: dict[str, str]) -> None:
        async with self.uow() as uow:
            repo = WebhookRepository(uow.session)
            if "oura" in kinds and await repo.active_connections("oura"):
                await repo.ensure("oura", APP_SCOPE, None, oura.topics())
            if "withings" in kinds:
                for connection in await repo.active_connections("withings"):
                    topics = [withings.topic(a) for a in withings.wanted(connection.consent)]
                    await repo.ensure("withings", str(connection.id), connection.id, topics)
            await uow.commit()

    def _renew_by(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.settings.vendor_webhook_renew_before_s)

    async def _due(self, kinds: dict[str, str]) -> list[uuid.UUID]:
        now = self.clock()
        async with self.uow() as uow:
            return await WebhookRepository(uow.session).due(now, self._renew_by(now), kinds, BATCH)

    async def work(self, sub: WebhookSubscription, url: str, token: str) -> None:
        vendor_id: str | None
        expires: datetime | None
        try:
            if sub.connector == "oura":
                vendor_id, expires = await self._oura(sub, url, token)
            else:
                vendor_id, expires = await self._withings(sub, url)
        except Exception as exc:  # vendor trouble, a lost grant, a defect: retried later
            await self._failed(sub, exc)
            return
        async with self.uow() as uow:
            await WebhookRepository(uow.session).settle(
                sub.id, self.owner, status="active", vendor_id=vendor_id, expires_at=expires,
                callback_url=url, failures=0, last_error=None, not_before=None,
            )  # fmt: skip
            await uow.commit()
        log.info("vendor subscription kept", extra={"connector": sub.connector,
                                                    "topic": sub.topic})  # fmt: skip

    async def _failed(self, sub: WebhookSubscription, exc: Exception) -> None:
        wait = min(60.0 * 2**sub.failures, MAX_BACKOFF_S)
        error = str(exc) if isinstance(exc, VendorError) else type(exc).__name__
        status = "active" if sub.status == "active" else "failed"  # it may not have expired
        async with self.uow() as uow:
            await WebhookRepository(uow.session).settle(
                sub.id, self.owner, status=status, failures=sub.failures + 1,
                last_error=error[:500], not_before=self.clock() + timedelta(seconds=wait),
            )  # fmt: skip
            await uow.commit()
        log.warning(
            "vendor subscription failed",
            extra={"connector": sub.connector, "topic": sub.topic, "error": error},
        )

    async def _oura(self, sub: WebhookSubscription, url: str,
                    token: str) -> tuple[str, datetime | None]:  # fmt: skip
        event, kind = sub.topic.split(":", 1)
        async with oura.OuraSubscriptions(self.settings.oura) as api:
            if sub.vendor_id and sub.callback_url == url:
                try:
                    renewed = await api.renew(sub.vendor_id)
                    return renewed.id, renewed.expires_at
                except VendorError as exc:
                    if exc.status not in (404, 410):
                        raise
            elif sub.vendor_id:
                await api.delete(sub.vendor_id)  # made for an old address
            for known in await api.list():
                if (known.callback_url, known.event_type, known.data_type) == (url, event, kind):
                    renewed = await api.renew(known.id)
                    return renewed.id, renewed.expires_at
            made = await api.create(url, token, event, kind)
            return made.id, made.expires_at

    async def _withings(self, sub: WebhookSubscription,
                        url: str) -> tuple[str | None, datetime | None]:  # fmt: skip
        assert sub.connection_id is not None
        appli = withings.appli_of(sub.topic)
        connector = WithingsConnector()
        async with VendorSession(self.tokens, self.settings, connector,
                                 sub.connection_id) as vendor:  # fmt: skip
            if sub.callback_url and sub.callback_url != url:
                with contextlib.suppress(VendorError):  # forgotten either way
                    await vendor.call(partial(_revoke, sub.callback_url, appli))
            await vendor.call(partial(_subscribe, url, appli))
        return None, None


async def _subscribe(url: str, appli: int, http: httpx.AsyncClient, token: str) -> None:
    await withings.subscribe(http, token, url, appli)


async def _revoke(url: str, appli: int, http: httpx.AsyncClient, token: str) -> None:
    await withings.revoke(http, token, url, appli)
