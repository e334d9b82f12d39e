"""Webhook rules: who may do what, URL safety, secrets shown once, test deliveries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from fieldwatch.auth.principal import Principal
from fieldwatch.core.clock import utcnow
from fieldwatch.core.errors import ValidationFailed, found_in_workspace
from fieldwatch.core.ids import new_id
from fieldwatch.core.settings import Settings
from fieldwatch.webhooks import signing
from fieldwatch.webhooks.errors import TooManyWebhooks, WebhookDisabled, WebhookNotFound
from fieldwatch.webhooks.models import PENDING, Webhook, WebhookDelivery
from fieldwatch.webhooks.repository import DeliveryRepository, WebhookRepository
from fieldwatch.webhooks.schemas import WebhookCreate, WebhookUpdate, WebhookWithSecret
from fieldwatch.webhooks.urlsafety import UnsafeUrl, check_url

MAX_WEBHOOKS_PER_WORKSPACE = 20
WEBHOOK_TEST = "webhook.test"


def _test_payload(webhook: Webhook) -> dict[str, object]:
    return {
        "webhook_id": str(webhook.id),
        "message": "This is a test delivery from Fieldwatch.",
    }


class WebhookService:
    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.session = session
        self.settings = settings
        self.webhooks = WebhookRepository(session)
        self.deliveries = DeliveryRepository(session)

    async def page(
        self, principal: Principal, *, limit: int, offset: int
    ) -> tuple[Sequence[Webhook], int]:
        return await self.webhooks.page(principal.workspace_id, limit=limit, offset=offset)

    async def get(self, principal: Principal, webhook_id: uuid.UUID) -> Webhook:
        webhook = await self.webhooks.get(principal.workspace_id, webhook_id)
        return found_in_workspace(webhook, "webhook", webhook_id, WebhookNotFound)

    async def create(self, principal: Principal, body: WebhookCreate) -> WebhookWithSecret:
        if await self.webhooks.count(principal.workspace_id) >= MAX_WEBHOOKS_PER_WORKSPACE:
            raise TooManyWebhooks(
                f"A workspace can have at most {MAX_WEBHOOKS_PER_WORKSPACE} webhooks."
            )
        await self._check_url(body.url)
        webhook = Webhook(
            workspace_id=principal.workspace_id,
            url=body.url,
            description=body.description,
            event_types=list(body.event_types),
            secret=signing.new_secret(),
            enabled=body.enabled,
            created_by=principal.user_id,
            consecutive_failures=0,
        )
        self.webhooks.add(webhook)
        await self.session.flush()
        return self._with_secret(webhook)

    async def update(
        self, principal: Principal, webhook_id: uuid.UUID, body: WebhookUpdate
    ) -> Webhook:
        webhook = await self.get(principal, webhook_id)
        sent = body.model_fields_set
        for name in ("url", "event_types", "enabled"):
            if name in sent and getattr(body, name) is None:
                raise ValidationFailed(
                    f"{name} cannot be null.", errors=[{"field": name, "message": "null"}]
                )
        if "url" in sent and body.url is not None and body.url != webhook.url:
            await self._check_url(body.url)
            webhook.url = body.url
        if "description" in sent:
            webhook.description = body.description
        if body.event_types is not None:
            webhook.event_types = list(body.event_types)
        if body.enabled is not None:
            if body.enabled and not webhook.enabled:
                webhook.consecutive_failures = 0
            webhook.enabled = body.enabled
        await self.session.flush()
        return webhook

    async def delete(self, principal: Principal, webhook_id: uuid.UUID) -> None:
        await self.webhooks.delete(await self.get(principal, webhook_id))

    async def rotate_secret(self, principal: Principal, webhook_id: uuid.UUID) -> WebhookWithSecret:
        """A new secret at once; deliveries sent from now on are signed with it."""
        webhook = await self.get(principal, webhook_id)
        webhook.secret = signing.new_secret()
        await self.session.flush()
        return self._with_secret(webhook)

    async def queue_test(self, principal: Principal, webhook_id: uuid.UUID) -> WebhookDelivery:
        """Queue a ``webhook.test`` delivery for this webhook, whatever its event types."""
        webhook = await self.get(principal, webhook_id)
        if not webhook.enabled:
            raise WebhookDisabled("Enable the webhook first: disabled webhooks send nothing.")
        now = utcnow()
        delivery = WebhookDelivery(
            webhook_id=webhook.id,
            event_id=new_id(),
            event_type=WEBHOOK_TEST,
            payload=_test_payload(webhook),
            occurred_at=now,
            status=PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        self.deliveries.add(delivery)
        await self.session.flush()
        return delivery

    async def recent_deliveries(
        self,
        principal: Principal,
        webhook_id: uuid.UUID,
        *,
        status: str | None,
        limit: int,
        offset: int,
    ) -> tuple[Sequence[WebhookDelivery], int]:
        webhook = await self.get(principal, webhook_id)
        return await self.deliveries.recent(webhook.id, status=status, limit=limit, offset=offset)

    async def _check_url(self, url: str) -> None:
        try:
            await check_url(url, allow_private=self.settings.webhook_allow_private)
        except UnsafeUrl as exc:
            raise ValidationFailed(
                f"This URL can not be used for a webhook: {exc.reason}.",
                errors=[{"field": "url", "message": exc.reason, "type": "unsafe_url"}],
            ) from None

    @staticmethod
    def _with_secret(webhook: Webhook) -> WebhookWithSecret:
        return WebhookWithSecret.model_validate(webhook)
