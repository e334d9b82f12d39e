from __future__ import annotations

from fieldwatch.core.errors import Conflict, NotFound
from fieldwatch.devices.lifecycle import DeviceStatus, allowed_targets


class DeviceNotFound(NotFound):
    slug, title = "device-not-found", "Device not found"


class DuplicateSerial(Conflict):
    slug, title = "duplicate-serial-number", "Serial number already in use"


class DeviceRetired(Conflict):
    slug, title = "device-retired", "Device is retired"


class TransitionRefused(Conflict):
    slug, title = "invalid-transition", "Status change not allowed"

    def __init__(
        self,
        current: DeviceStatus,
        target: DeviceStatus,
        *,
        allowed: list[DeviceStatus] | None = None,
        reason: str | None = None,
    ) -> None:
        allowed = allowed_targets(current) if allowed is None else allowed
        allowed_text = ", ".join(a.value for a in allowed) or "none (retired is final)"
        detail = reason or (
            f"A device that is {current.value} cannot become {target.value}. "
            f"From {current.value} it can go to: {allowed_text}."
        )
        super().__init__(
            detail,
            current_status=current.value,
            requested_status=target.value,
            allowed_statuses=[a.value for a in allowed],
        )


class GroupNotFound(NotFound):
    slug, title = "device-group-not-found", "Device group not found"


class DuplicateGroupName(Conflict):
    slug, title = "duplicate-group-name", "Group name already in use"


class NotAStaticGroup(Conflict):
    slug, title = "not-a-static-group", "A dynamic group has no listed members"
