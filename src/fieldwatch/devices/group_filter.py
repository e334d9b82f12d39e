"""The devices of a group as SQL, for the device list and for whoever targets a group
(a firmware rollout): a static group's members, a dynamic group's filter evaluated now.

Every clause is scoped to the group's (or the given) workspace, so it can be used alone
(``select(Device.id).where(clause)``) or next to a ``DeviceFilter``'s clauses.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import ValidationError
from sqlalchemy import ColumnElement, Select, and_, select

from fieldwatch.core.errors import ValidationFailed, validation_errors
from fieldwatch.devices.group_schemas import GroupFilter
from fieldwatch.devices.models import Device, DeviceGroup, DeviceGroupMember
from fieldwatch.devices.tags import has_tags


def filter_clause(workspace_id: uuid.UUID, flt: GroupFilter) -> ColumnElement[bool]:
    """The devices of ``workspace_id`` matching every field of ``flt``."""
    out: list[ColumnElement[bool]] = [Device.workspace_id == workspace_id]
    if flt.type is not None:
        out.append(Device.type == flt.type)
    if flt.location is not None:
        out.append(Device.location == flt.location)
    if flt.status:
        out.append(Device.status.in_([s.value for s in flt.status]))
    if flt.firmware_version:
        out.append(Device.firmware_version.in_(flt.firmware_version))
    if flt.hardware_version is not None:
        out.append(Device.hardware_version == flt.hardware_version)
    if flt.tags:
        out.append(has_tags(flt.tags))
    return and_(*out)


def parse_filter(data: Any) -> GroupFilter:
    """A filter from its JSON form; a 422 naming each bad field (an unknown one too)."""
    try:
        return GroupFilter.model_validate(data)
    except ValidationError as exc:
        errors = validation_errors(list(exc.errors()))
        fields = ", ".join(e["field"] or "filter" for e in errors)
        raise ValidationFailed(f"Invalid device filter: {fields}", errors=errors) from exc


def resolve_filter(workspace_id: uuid.UUID, data: dict[str, Any]) -> ColumnElement[bool]:
    """An ad-hoc filter (the fields of a dynamic group's filter) as a clause on
    ``Device``, scoped to ``workspace_id``. Raises ``ValidationFailed`` (422)."""
    return filter_clause(workspace_id, parse_filter(data))


def group_clause(group: DeviceGroup) -> ColumnElement[bool]:
    """The devices of ``group`` as a clause on ``Device`` (in the group's workspace)."""
    if group.kind == "dynamic":
        return filter_clause(group.workspace_id, parse_filter(group.filter or {}))
    members = select(DeviceGroupMember.device_id).where(DeviceGroupMember.group_id == group.id)
    return and_(Device.workspace_id == group.workspace_id, Device.id.in_(members))


def device_ids_select(group: DeviceGroup) -> Select[tuple[uuid.UUID]]:
    """``SELECT devices.id`` of the group's devices, now."""
    return select(Device.id).where(group_clause(group))
