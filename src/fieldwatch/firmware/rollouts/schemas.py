"""API shapes of firmware rollouts: the body that creates one (and its dry run), the
rollout with its figures, its waves and its devices."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from fieldwatch.core.schemas import StrictModel
from fieldwatch.devices.group_schemas import GroupFilter

RolloutStatus = Literal["draft", "running", "paused", "completed", "aborted"]
WaveStatus = Literal["pending", "running", "soaking", "completed", "halted"]
#: A target device's place in a rollout: not released yet, released without an update
#: (it was no longer eligible), or its update's state.
DeviceState = Literal[
    "unreleased", "skipped", "pending", "sent", "acknowledged", "downloading", "downloaded",
    "verified", "installing", "rebooting", "completed", "failed", "cancelled", "expired",
]  # fmt: skip

MAX_DEVICE_IDS = 10_000
MAX_SOAK_S = 30 * 86400


def _field_problem(field: str, why: str) -> PydanticCustomError:
    return PydanticCustomError(field, "{why}", {"field": field, "why": why})


class RolloutTarget(StrictModel):
    """Exactly one of: a device group, an ad-hoc filter, a list of devices."""

    group_id: uuid.UUID | None = None
    filter: GroupFilter | None = Field(
        default=None, description="An ad-hoc filter: the fields of a dynamic device group"
    )
    device_ids: list[uuid.UUID] | None = Field(
        default=None, min_length=1, max_length=MAX_DEVICE_IDS
    )

    @model_validator(mode="after")
    def _one_kind(self) -> RolloutTarget:
        given = [k for k in ("group_id", "filter", "device_ids") if getattr(self, k) is not None]
        if len(given) != 1:
            raise PydanticCustomError(
                "target", "give exactly one of group_id, filter, device_ids (got {given})",
                {"given": ", ".join(given) or "none"},
            )  # fmt: skip
        if self.device_ids is not None:
            self.device_ids = list(dict.fromkeys(self.device_ids))
        return self

    def stored(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class RolloutCreate(StrictModel):
    name: str = Field(min_length=1, max_length=200)
    artifact_id: uuid.UUID
    target: RolloutTarget
    canary: int = Field(default=1, ge=0, le=100_000, description="Devices in the first wave")
    percentages: list[int] = Field(
        default_factory=lambda: [100],
        min_length=1,
        max_length=20,
        description="Cumulative % of the devices after the canary, one per later wave; "
        "increasing, the last 100",
    )
    soak_s: int = Field(default=0, ge=0, le=MAX_SOAK_S, description="Wait after each wave")
    failure_threshold: float = Field(default=0.1, ge=0, le=1, allow_inf_nan=False)
    min_finished: int = Field(default=1, ge=1, le=100_000)
    on_failure: Literal["pause", "abort"] = "pause"
    rate_per_minute: int = Field(default=60, ge=1, le=100_000)
    jitter_s: int = Field(default=0, ge=0, le=3600)
    max_tries: int | None = Field(default=None, ge=1, le=20)
    window_start: AwareDatetime | None = None
    window_end: AwareDatetime | None = None

    @model_validator(mode="after")
    def _consistent(self) -> RolloutCreate:
        pcts = self.percentages
        if any(p < 1 or p > 100 for p in pcts):
            raise _field_problem("percentages", "each percentage is between 1 and 100")
        if any(b <= a for a, b in itertools.pairwise(pcts)):
            raise _field_problem("percentages", "percentages are cumulative: each above the last")
        if pcts[-1] != 100:
            raise _field_problem("percentages", "the last percentage must be 100")
        if (
            self.window_start is not None
            and self.window_end is not None
            and self.window_end <= self.window_start
        ):
            raise _field_problem("window_end", "the window must end after it starts")
        return self


class Figures(BaseModel):
    """Counts of target devices: by release, by update state, by failure reason."""

    targets: int = 0
    #: Not released yet.
    pending: int = 0
    #: Released but no longer eligible (no update was created).
    skipped: int = 0
    #: Released, update not finished: by its state.
    in_progress: dict[str, int] = Field(default_factory=dict)
    in_progress_total: int = 0
    completed: int = 0
    failed: int = 0
    failed_by_reason: dict[str, int] = Field(default_factory=dict)
    cancelled: int = 0
    expired: int = 0


class WaveRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    number: int
    size: int
    status: WaveStatus
    started_at: datetime | None = Field(description="When it started")
    judged_from: datetime | None = Field(
        default=None,
        description="When it was resumed after a stop for failures: its failure share "
        "counts the devices released since (null: since it started)",
    )
    soak_until: datetime | None
    completed_at: datetime | None
    figures: Figures = Field(default_factory=Figures)


class RolloutRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    artifact_id: uuid.UUID
    target: dict[str, Any]
    status: RolloutStatus
    status_reason: str | None
    canary: int
    percentages: list[int]
    soak_s: int
    failure_threshold: float
    min_finished: int
    on_failure: Literal["pause", "abort"]
    rate_per_minute: int
    jitter_s: int
    max_tries: int
    window_start: datetime | None
    window_end: datetime | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class RolloutDetail(RolloutRead):
    #: The wave being released or soaked (None before the start and after the end).
    current_wave: int | None = None
    figures: Figures = Field(default_factory=Figures)
    waves: list[WaveRead] = Field(default_factory=list)


class RolloutWaves(BaseModel):
    """The overall figures and each wave's."""

    figures: Figures
    waves: list[WaveRead]


class RolloutDeviceRead(BaseModel):
    device_id: uuid.UUID
    name: str
    wave: int
    released_at: datetime | None
    update_id: uuid.UUID | None
    state: DeviceState
    #: A failed update's reason; for a ``skipped`` device, why it got no update (a
    #: compatibility reason like ``not_deployed`` or ``incompatible_type``, ``unsigned``,
    #: ``open_update``, ``refused``).
    reason: str | None
    #: The same in words (the update's last detail; why the device was skipped).
    detail: str | None = None
    tries: int | None


class PlannedWave(BaseModel):
    number: int
    size: int


class DryRunDevice(BaseModel):
    device_id: uuid.UUID
    name: str
    type: str
    firmware_version: str | None
    #: Its wave when it would be updated …
    wave: int | None = None
    #: … or why it is left out (compat reasons, or ``open_update``).
    reason: str | None = None
    detail: str | None = None


class DryRun(BaseModel):
    targets: int
    included: int
    excluded: int
    waves: list[PlannedWave]
    excluded_by_reason: dict[str, int]
    #: A page of the devices: those updated (by wave), then those left out.
    items: list[DryRunDevice]
    total: int
    limit: int
    offset: int
