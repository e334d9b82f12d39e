"""The console's device groups pages: the list with a form to create a static or dynamic
group, and a group's page: its devices (paged), adding devices to a static group by
serial number or id and removing them, editing and deleting the group.

Plain forms (they work without JavaScript) over ``GroupService``, the API's rules: a
change answers with a redirect and a notice; a refused form comes back with each message
next to its field. Adding devices answers with the outcome for each one given.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from fieldwatch.console.access import ConsoleUser, CsrfChecked
from fieldwatch.console.group_forms import (
    FormProblem,
    body_of,
    checked,
    form_values,
    refs_of,
    stored_values,
    summary,
)
from fieldwatch.console.pages import Operator, Viewer, page_context, problem_message, render
from fieldwatch.core.errors import ValidationFailed
from fieldwatch.db.dependencies import UowDep, WriteUow
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.errors import DuplicateGroupName
from fieldwatch.devices.group_schemas import DeviceGroupCreate, DeviceGroupUpdate
from fieldwatch.devices.groups import GroupService
from fieldwatch.devices.lifecycle import DeviceStatus
from fieldwatch.devices.listing import DeviceFilter
from fieldwatch.devices.service import DeviceService

router = APIRouter(include_in_schema=False)
T = TypeVar("T")

LIST = "/console/groups"
PAGE_SIZE = 50
NOTICES = {
    "created": "The group is created.",
    "updated": "The group is saved.",
    "deleted": "The group is deleted (its devices are not).",
    "removed": "The device is removed from the group.",
}
OUTCOMES = {"added": "Added", "already_member": "Already in the group", "not_found": "Not found"}
NEW = {"kind": "static", "status": []}


def _offset(request: Request) -> int:
    raw = request.query_params.get("offset") or "0"
    return min(int(raw), 10_000_000) if raw.isdigit() and len(raw) < 10 else 0


def _common(request: Request) -> dict[str, Any]:
    return {
        "statuses": list(DeviceStatus), "summary": summary, "outcome_labels": OUTCOMES,
        "notice": NOTICES.get(request.query_params.get("done") or ""), "errors": {},
    }  # fmt: skip


async def _refusing(uow: UnitOfWork, change: Awaitable[T]) -> T:
    """The service's change, or its refusal (a name taken, a bad filter) as the form's
    problem; nothing of a refused change is kept."""
    try:
        return await change
    except (DuplicateGroupName, ValidationFailed) as exc:
        await uow.rollback()
        errors = exc.extra.get("errors") or [{"field": "name", "message": exc.detail}]
        raise FormProblem(problem_message(exc), errors) from None


async def _list_page(
    request: Request, user: ConsoleUser, uow: UnitOfWork, extra: dict[str, Any], status: int = 200
) -> Response:
    offset = _offset(request)
    groups, total = await GroupService(uow).page(user.principal, limit=PAGE_SIZE, offset=offset)
    context = await page_context(user, "groups")
    context.update(_common(request), groups=groups, total=total, offset=offset,
                   page_size=PAGE_SIZE, values=NEW)  # fmt: skip
    context.update(extra)
    return render(request, "groups.html", context, status_code=status)


@router.get(LIST)
async def groups_page(request: Request, user: Viewer, uow: UowDep) -> Response:
    return await _list_page(request, user, uow, {})


@router.post(LIST, dependencies=[CsrfChecked])
async def create_group(request: Request, user: Operator, uow: WriteUow) -> Response:
    values = form_values(await request.form())
    try:
        body = body_of(values, create=True, dynamic=values["kind"] == "dynamic")
        data = checked(DeviceGroupCreate, body)
        group = await _refusing(uow, GroupService(uow).create(user.principal, data))
    except FormProblem as exc:
        extra = {"values": values, "errors": exc.fields, "problem": exc.message}
        return await _list_page(request, user, uow, extra, status=422)
    return RedirectResponse(f"{LIST}/{group.id}?done=created", status_code=303)


async def _group_page(
    request: Request,
    user: ConsoleUser,
    uow: UnitOfWork,
    group_id: uuid.UUID,
    extra: dict[str, Any],
    status: int = 200,
) -> Response:
    service = GroupService(uow)
    group = await service.get(user.principal, group_id)
    offset = _offset(request)
    flt = DeviceFilter(group=await service.scope(user.principal, group_id))
    devices, total = await DeviceService(uow).page(
        user.principal, flt, limit=PAGE_SIZE, offset=offset, sort="name"
    )
    context = await page_context(user, "groups")
    context.update(_common(request), group=await service.read_loaded(group), devices=devices,
                   total=total, offset=offset, page_size=PAGE_SIZE,
                   values=stored_values(group))  # fmt: skip
    context.update(extra)
    return render(request, "group.html", context, status_code=status)


@router.get(LIST + "/{group_id}")
async def group_page(group_id: uuid.UUID, request: Request, user: Viewer, uow: UowDep) -> Response:
    return await _group_page(request, user, uow, group_id, {})


@router.post(LIST + "/{group_id}", dependencies=[CsrfChecked])
async def update_group(
    group_id: uuid.UUID, request: Request, user: Operator, uow: WriteUow
) -> Response:
    service = GroupService(uow)
    group = await service.get(user.principal, group_id)
    values = {**form_values(await request.form()), "kind": group.kind}
    try:
        data = checked(DeviceGroupUpdate, body_of(values, create=False,
                                                  dynamic=group.kind == "dynamic"))  # fmt: skip
        await _refusing(uow, service.update(user.principal, group_id, data))
    except FormProblem as exc:
        extra = {"values": values, "errors": exc.fields, "problem": exc.message}
        return await _group_page(request, user, uow, group_id, extra, status=422)
    return RedirectResponse(f"{LIST}/{group_id}?done=updated", status_code=303)


@router.post(LIST + "/{group_id}/delete", dependencies=[CsrfChecked])
async def delete_group(group_id: uuid.UUID, user: Operator, uow: WriteUow) -> Response:
    await GroupService(uow).delete(user.principal, group_id)
    return RedirectResponse(f"{LIST}?done=deleted", status_code=303)


@router.post(LIST + "/{group_id}/members", dependencies=[CsrfChecked])
async def add_members(
    group_id: uuid.UUID, request: Request, user: Operator, uow: WriteUow
) -> Response:
    """Devices by serial number or id (several per line); the page with each outcome."""
    raw = (await request.form()).get("devices")
    refs = refs_of(raw if isinstance(raw, str) else "")
    if not refs:
        extra = {"errors": {"devices": "Give at least one serial number or device id."}}
        return await _group_page(request, user, uow, group_id, extra, status=422)
    outcomes = await GroupService(uow).add_members_by_ref(user.principal, group_id, refs[:1000])
    await uow.commit()  # the page shown next lists the devices as stored
    return await _group_page(request, user, uow, group_id, {"outcomes": outcomes})


@router.post(LIST + "/{group_id}/members/{device_id}/remove", dependencies=[CsrfChecked])
async def remove_member(
    group_id: uuid.UUID, device_id: uuid.UUID, user: Operator, uow: WriteUow
) -> Response:
    await GroupService(uow).remove_member(user.principal, group_id, device_id)
    return RedirectResponse(f"{LIST}/{group_id}?done=removed", status_code=303)
