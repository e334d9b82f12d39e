"""The webhooks domain's request dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from fieldwatch.core.components import Slot
from fieldwatch.webhooks.dispatcher import WebhookDispatcher

WEBHOOKS: Slot[WebhookDispatcher] = Slot("webhook_dispatcher")
WebhookDispatcherDep = Annotated[WebhookDispatcher, Depends(WEBHOOKS)]
