from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from fieldwatch.core.schemas import StrictModel
from fieldwatch.webhooks.models import DEFAULT_EVENT_TYPES

DeliveryStatus = Literal["pending", "delivered", "failed"]

_PATTERN_CHARS = re.compile(r"^[A-Za-z0-9_.*?\[\]!-]+$")
MAX_PATTERNS = 20


def _check_patterns(patterns: list[str]) -> list[str]:
    out: list[str] = []
    for pattern in patterns:
        if not _PATTERN_CHARS.match(pattern):
            raise ValueError(f"{pattern!r}: use letters, digits, '.', '_', '-' and * ? [ ]")
        if pattern != "*" and not pattern.startswith("alert."):
            raise ValueError(
                f"{pattern!r}: webhooks receive alert events; use patterns such as "
                "'alert.*' or 'alert.raised'"
            )
        if pattern not in out:
            out.append(pattern)
    return out


EventTypes = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=100)]],
    Field(
        min_length=1,
        max_length=MAX_PATTERNS,
        description="fnmatch patterns of the event types to receive, e.g. alert.* or alert.raised",
    ),
    AfterValidator(_check_patterns),
]
Url = Annotated[str, Field(min_length=1, max_length=2000, examples=["https://example.com/hook"])]


class WebhookCreate(StrictModel):
    url: Url
    description: str | None = Field(default=None, max_length=500)
    event_types: EventTypes = Field(default_factory=lambda: list(DEFAULT_EVENT_TYPES))
    enabled: bool = True


class WebhookUpdate(StrictModel):
    """Only the fields sent are changed; ``description`` may be set to null."""

    url: Url | None = None
    description: str | None = Field(default=None, max_length=500)
    event_types: EventTypes | None = None
    enabled: bool | None = None


class WebhookRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    url: str
    description: str | None
    event_types: list[str]
    enabled: bool
    created_at: datetime
    created_by: uuid.UUID | None
    last_delivery_at: datetime | None
    last_status: int | None
    last_error: str | None
    consecutive_failures: int


class WebhookWithSecret(WebhookRead):
    secret: str = Field(
        description="The signing secret. Shown only in this response; store it now."
    )


class DeliveryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    webhook_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    occurred_at: datetime
    payload: dict[str, Any]
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
