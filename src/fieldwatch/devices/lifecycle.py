"""The device lifecycle: statuses, the transitions between them, the logged actions."""

from __future__ import annotations

from enum import StrEnum


class DeviceStatus(StrEnum):
    in_stock = "in_stock"
    reserved = "reserved"
    deployed = "deployed"
    maintenance = "maintenance"
    retired = "retired"


S = DeviceStatus

TRANSITIONS: dict[DeviceStatus, frozenset[DeviceStatus]] = {
    S.in_stock: frozenset({S.reserved, S.deployed, S.maintenance, S.retired}),
    S.reserved: frozenset({S.deployed, S.in_stock, S.retired}),
    S.deployed: frozenset({S.in_stock, S.maintenance, S.retired}),
    S.maintenance: frozenset({S.in_stock, S.deployed, S.retired}),
    S.retired: frozenset(),
}


def allowed_targets(current: DeviceStatus) -> list[DeviceStatus]:
    """Allowed next statuses, in lifecycle order (stable for error messages)."""
    return [s for s in DeviceStatus if s in TRANSITIONS[current]]


def can_transition(current: DeviceStatus, target: DeviceStatus) -> bool:
    return target in TRANSITIONS[current]


class Action(StrEnum):
    """What a device log row records. Lifecycle actions name their target status."""

    created = "created"
    imported = "imported"
    updated = "updated"
    deployed = "deployed"
    recalled = "recalled"
    maintenance = "maintenance"
    reserved = "reserved"
    retired = "retired"
    status_changed = "status_changed"
    token_issued = "token_issued"
    token_revoked = "token_revoked"
    purged = "purged"


#: The action each named endpoint performs, its target status and which sources it accepts.
NAMED_ACTIONS: dict[Action, tuple[DeviceStatus, frozenset[DeviceStatus] | None]] = {
    Action.deployed: (S.deployed, None),
    Action.recalled: (S.in_stock, frozenset({S.deployed, S.maintenance})),
    Action.maintenance: (S.maintenance, None),
    Action.reserved: (S.reserved, None),
    Action.retired: (S.retired, None),
}
