"""Device group rules: static groups (listed members) and dynamic groups (a filter over
the registry, evaluated whenever the group is used), scoped to the caller's workspace.

For whoever targets groups (a firmware rollout): ``GroupService.device_ids_select(group)``
and ``GroupService.resolve_filter(principal, filter)`` give the devices as SQL."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select
from sqlalchemy.exc import IntegrityError

from fieldwatch.auth.principal import Principal
from fieldwatch.core.clock import utcnow
from fieldwatch.core.errors import ValidationFailed, found_in_workspace
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices import group_filter
from fieldwatch.devices.errors import DuplicateGroupName, GroupNotFound, NotAStaticGroup
from fieldwatch.devices.group_repository import DeviceGroupRepository
from fieldwatch.devices.group_schemas import (
    DeviceGroupCreate,
    DeviceGroupRead,
    DeviceGroupUpdate,
    MemberResult,
    MembersAdded,
)
from fieldwatch.devices.models import DeviceGroup
from fieldwatch.devices.repository import DeviceRepository


def read(group: DeviceGroup, member_count: int | None) -> DeviceGroupRead:
    return DeviceGroupRead.model_validate(
        {**{k: getattr(group, k) for k in DeviceGroupRead.model_fields if k != "member_count"},
         "member_count": member_count if group.kind == "static" else None}
    )  # fmt: skip


class GroupService:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self.groups = DeviceGroupRepository(uow.session)

    async def get(self, principal: Principal, group_id: uuid.UUID) -> DeviceGroup:
        group = await self.groups.get(principal.workspace_id, group_id)
        return found_in_workspace(group, "device group", group_id, GroupNotFound)

    async def read(self, principal: Principal, group_id: uuid.UUID) -> DeviceGroupRead:
        return await self.read_loaded(await self.get(principal, group_id))

    async def read_loaded(self, group: DeviceGroup) -> DeviceGroupRead:
        counts = await self.groups.member_counts([group.id])
        return read(group, counts[group.id])

    async def page(
        self, principal: Principal, *, limit: int, offset: int
    ) -> tuple[list[DeviceGroupRead], int]:
        groups, total = await self.groups.page(principal.workspace_id, limit=limit, offset=offset)
        counts = await self.groups.member_counts(g.id for g in groups if g.kind == "static")
        return [read(g, counts.get(g.id)) for g in groups], total

    async def all(self, principal: Principal) -> Sequence[DeviceGroup]:
        """Every group of the workspace by name (for a choice of groups)."""
        return await self.groups.all(principal.workspace_id)

    async def _check_name(self, principal: Principal, name: str, exclude: Any = None) -> None:
        other = await self.groups.by_name(principal.workspace_id, name)
        if other is not None and other.id != exclude:
            raise DuplicateGroupName(
                f"A group named {name!r} already exists in this workspace.",
                existing_group_id=str(other.id),
            )

    async def _flush(self, name: str) -> None:
        try:
            await self.uow.session.flush()
        except IntegrityError as exc:  # a concurrent request took the name first
            raise DuplicateGroupName(f"A group named {name!r} already exists.") from exc

    async def create(self, principal: Principal, data: DeviceGroupCreate) -> DeviceGroupRead:
        await self._check_name(principal, data.name)
        now = utcnow()
        group = DeviceGroup(
            workspace_id=principal.workspace_id, name=data.name, description=data.description,
            kind=data.kind, filter=data.filter.stored() if data.filter else None,
            created_by=principal.actor, created_at=now, updated_at=now,
        )  # fmt: skip
        self.groups.add(group)
        await self._flush(data.name)
        return read(group, 0)

    async def update(
        self, principal: Principal, group_id: uuid.UUID, data: DeviceGroupUpdate
    ) -> DeviceGroupRead:
        group = await self.get(principal, group_id)
        wanted = data.model_fields_set
        if "filter" in wanted and (group.kind == "static" or data.filter is None):
            message = "a static group has members, not a filter" if group.kind == "static" \
                else "a dynamic group keeps a filter"  # fmt: skip
            raise ValidationFailed(
                f"The filter cannot be changed: {message}.",
                errors=[{"field": "filter", "message": message}],
            )
        if data.name is not None and data.name != group.name:
            await self._check_name(principal, data.name, exclude=group.id)
            group.name = data.name
        if "description" in wanted:
            group.description = data.description
        if data.filter is not None:
            group.filter = data.filter.stored()
        group.updated_at = utcnow()
        await self._flush(group.name)
        return await self.read_loaded(group)

    async def delete(self, principal: Principal, group_id: uuid.UUID) -> None:
        await self.groups.delete(await self.get(principal, group_id))
        await self.uow.session.flush()

    async def _static(self, principal: Principal, group_id: uuid.UUID) -> DeviceGroup:
        group = await self.get(principal, group_id)
        if group.kind != "static":
            raise NotAStaticGroup(
                "This group is dynamic: its devices are those matching its filter."
            )
        return group

    async def add_members(
        self, principal: Principal, group_id: uuid.UUID, device_ids: Sequence[uuid.UUID]
    ) -> MembersAdded:
        """Add devices to a static group: the outcome for each id. An unknown id and
        another workspace's device are both ``not_found``."""
        group = await self._static(principal, group_id)
        wanted = list(dict.fromkeys(device_ids))
        known = await self.groups.devices_in_workspace(principal.workspace_id, wanted)
        already = await self.groups.members_among(group.id, wanted)
        new = [d for d in wanted if d in known and d not in already]
        await self.groups.add_members(group.id, new)
        group.updated_at = utcnow()
        await self.uow.session.flush()
        results = [
            MemberResult(
                device_id=d,
                outcome="not_found" if d not in known
                else "already_member" if d in already else "added",
            )
            for d in device_ids
        ]  # fmt: skip
        return MembersAdded(added=len(new), results=results)

    async def add_members_by_ref(
        self, principal: Principal, group_id: uuid.UUID, refs: Sequence[str]
    ) -> list[tuple[str, str, uuid.UUID | None]]:
        """``add_members`` for devices named by id or serial number: (what was given, its
        outcome, the device's id) for each."""
        ids: dict[str, uuid.UUID | None] = {}
        for ref in refs:
            try:
                ids[ref] = uuid.UUID(ref)
            except ValueError:
                ids[ref] = None
        serials = [ref for ref, found in ids.items() if found is None]
        by_serial = await DeviceRepository(self.uow.session).by_serials(
            principal.workspace_id, serials
        )
        ids.update({s: by_serial[s].id for s in serials if s in by_serial})
        added = await self.add_members(principal, group_id, [i for i in ids.values() if i])
        outcome = {r.device_id: r.outcome for r in added.results}
        return [(ref, outcome[i] if i else "not_found", i) for ref, i in ids.items()]

    async def remove_member(
        self, principal: Principal, group_id: uuid.UUID, device_id: uuid.UUID
    ) -> None:
        group = await self._static(principal, group_id)
        if not await self.groups.remove_member(group.id, device_id):
            raise GroupNotFound(f"Device {device_id} is not a member of this group.")
        group.updated_at = utcnow()
        await self.uow.session.flush()

    # --- the devices of a group, as SQL ---------------------------------------------

    async def scope(self, principal: Principal, group_id: uuid.UUID) -> ColumnElement[bool]:
        """The devices of the caller's group ``group_id`` (404 if there is no such group
        here), as a ``DeviceFilter.group`` clause."""
        return group_filter.group_clause(await self.get(principal, group_id))

    @staticmethod
    def device_ids_select(group: DeviceGroup) -> Select[tuple[uuid.UUID]]:
        """``SELECT devices.id`` of ``group``'s devices now, in the group's workspace."""
        return group_filter.device_ids_select(group)

    @staticmethod
    def resolve_filter(principal: Principal, data: dict[str, Any]) -> ColumnElement[bool]:
        """An ad-hoc filter (a dynamic group's fields) as a clause on ``Device`` in the
        caller's workspace; 422 for an unknown field or a bad value."""
        return group_filter.resolve_filter(principal.workspace_id, data)
