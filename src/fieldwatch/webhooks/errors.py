from __future__ import annotations

from fieldwatch.core.errors import Conflict, NotFound


class WebhookNotFound(NotFound):
    slug, title = "webhook-not-found", "Webhook not found"


class TooManyWebhooks(Conflict):
    slug, title = "too-many-webhooks", "Too many webhooks"


class WebhookDisabled(Conflict):
    slug, title = "webhook-disabled", "Webhook is disabled"
