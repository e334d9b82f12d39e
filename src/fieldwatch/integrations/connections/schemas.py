"""API shapes of integrations (the connectors) and connections."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from fieldwatch.core.schemas import StrictModel
from fieldwatch.integrations.schemas import HealthMetricRead


class QuotaRead(BaseModel):
    requests: int
    per_s: int
    scope: Literal["app", "user"]


class IntegrationRead(BaseModel):
    """A connector: what it brings, how, and whether it can be connected now."""

    type: str
    title: str
    vendor: str
    auth: str
    mode: str
    data_types: list[str]
    #: Each data type as a health metric: its LOINC code and UCUM unit.
    metrics: list[HealthMetricRead] = Field(
        default_factory=list,
        description="The data types with their LOINC codes and UCUM units, in that order",
    )
    history_days: int | None
    quotas: list[QuotaRead]
    lifecycle: Literal["active", "deprecated", "sunset"]
    sunset: date | None = Field(
        description="The first day the vendor's API may no longer answer (see sunset_text)"
    )
    sunset_text: str | None = Field(
        default=None,
        description="The switch-off as the vendor announced it, when it gave "
        "no exact day (e.g. 'early November 2026')",
    )
    support_ended: date | None = Field(
        default=None, description="The day the vendor stopped supporting the API"
    )
    successor: str | None
    notes: str
    #: Fieldwatch has a client id and secret for this vendor (OAuth connectors).
    configured: bool
    #: A new connection can be authorised now.
    connectable: bool
    #: Why not, when it cannot.
    unavailable_reason: str | None = None
    connections: dict[str, int] = Field(
        default_factory=dict, description="This workspace's connections by status"
    )


class AuthStart(StrictModel):
    return_to: str | None = Field(
        default=None,
        max_length=500,
        description="A path on this site to send the browser to after the vendor's consent "
        "page (default: the answer is JSON)",
        pattern=r"^/[^/\\].*|^/$",
    )
    connection_id: uuid.UUID | None = Field(
        default=None, description="Re-authorise this connection (after auth_required)"
    )


class AuthStarted(BaseModel):
    authorization_url: str
    expires_at: datetime
    redirect_uri: str


class ConnectionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    connector: str
    label: str
    status: str
    status_reason: str | None
    external_user_id: str | None
    token_expires_at: datetime | None
    scopes: list[str]
    consent: list[str]
    created_by: str
    created_at: datetime
    updated_at: datetime
