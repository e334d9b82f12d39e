"""API shapes of per-device firmware updates."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fieldwatch.commands.schemas import MAX_TTL_S, CommandTransitionRead

UpdateState = Literal[
    "pending", "sent", "acknowledged", "downloading", "downloaded", "verified", "installing",
    "rebooting", "completed", "failed", "cancelled", "expired",
]  # fmt: skip


class UpdateCreate(BaseModel):
    """The artifact to install, by id or by version (one of them)."""

    model_config = ConfigDict(extra="forbid")

    artifact_id: uuid.UUID | None = None
    version: str | None = Field(default=None, min_length=1, max_length=50)
    ttl_s: int | None = Field(
        default=None, ge=60, le=MAX_TTL_S, description="How long it waits for the device"
    )
    max_tries: int | None = Field(default=None, ge=1, le=20)

    @model_validator(mode="after")
    def one_artifact(self) -> Self:
        if (self.artifact_id is None) == (self.version is None):
            raise ValueError("give either artifact_id or version")
        return self


class UpdateRead(BaseModel):
    model_config = ConfigDict(from_attributes=True, validate_by_name=True)

    update_id: uuid.UUID = Field(validation_alias="command_id")
    device_id: uuid.UUID
    artifact_id: uuid.UUID
    rollout_id: uuid.UUID | None
    wave: int | None
    from_version: str | None
    target_version: str
    state: UpdateState
    reason: str | None
    detail: str | None
    state_deadline: datetime | None
    tries: int
    max_tries: int
    downloaded_bytes: int
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class UpdateDetail(UpdateRead):
    transitions: list[CommandTransitionRead]


class StateAnswer(BaseModel):
    """What a device's state report answers (after commit)."""

    update_id: uuid.UUID
    state: UpdateState
    tries: int


class PollAnswer(BaseModel):
    action: Literal["update", "none"]
    update: dict[str, Any] | None = None
    poll_after_s: int
