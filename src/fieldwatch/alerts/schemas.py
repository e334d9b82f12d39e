from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from fieldwatch.core.schemas import StrictModel
from fieldwatch.devices.schemas import DeviceSummary

Operator = Literal[">", ">=", "<", "<=", "==", "!="]
Severity = Literal["critical", "major", "minor", "warning"]
Scope = Literal["all", "device", "device_type"]


def _is_uuid(value: str | None) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


class AlertRuleCreate(StrictModel):
    name: str = Field(min_length=1, max_length=200)
    metric: str = Field(min_length=1, max_length=100)
    operator: Operator
    threshold: float = Field(allow_inf_nan=False)
    duration_s: int = Field(default=0, ge=0, le=7 * 86400, description="Must hold this long")
    severity: Severity = "major"
    scope: Scope = "all"
    scope_value: str | None = Field(
        default=None, max_length=100, description="A device id (scope device) or a device type"
    )
    enabled: bool = True

    @model_validator(mode="after")
    def _scope(self) -> AlertRuleCreate:
        """Checks of ``scope_value`` that depend on ``scope``, reported on that field."""
        problem = None
        if self.scope != "all" and not self.scope_value:
            problem = f"scope {self.scope!r} needs a scope_value"
        elif self.scope == "all" and self.scope_value:
            problem = "scope 'all' takes no scope_value"
        elif self.scope == "device" and not _is_uuid(self.scope_value):
            problem = "scope 'device' needs a device id (a UUID)"
        if problem:
            raise PydanticCustomError(
                "scope_value", "{why}", {"field": "scope_value", "why": problem}
            )
        return self


class AlertRuleUpdate(StrictModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    metric: str | None = Field(default=None, min_length=1, max_length=100)
    operator: Operator | None = None
    threshold: float | None = Field(default=None, allow_inf_nan=False)
    duration_s: int | None = Field(default=None, ge=0, le=7 * 86400)
    severity: Severity | None = None
    scope: Scope | None = None
    scope_value: str | None = Field(default=None, max_length=100)
    enabled: bool | None = None


class AlertRuleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    name: str
    kind: Literal["threshold", "offline"]
    metric: str | None
    operator: str | None
    threshold: float | None
    duration_s: int
    severity: Severity
    scope: Scope
    scope_value: str | None
    enabled: bool
    created_at: datetime
    updated_at: datetime


class AlertRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    rule_id: uuid.UUID | None
    rule_name: str
    device_id: uuid.UUID
    device: DeviceSummary
    severity: Severity
    status: Literal["active", "cleared"]
    acknowledged: bool
    metric: str | None
    message: str
    count: int
    first_value: float | None
    last_value: float | None
    started_at: datetime
    last_triggered_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    cleared_at: datetime | None
    cleared_by: str | None
    clear_reason: str | None
    details: dict[str, Any]


class AlertAction(StrictModel):
    note: str | None = Field(default=None, max_length=1000)
