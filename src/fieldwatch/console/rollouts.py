"""The console's firmware rollout pages: the list (filtered by status, with each one's
progress), and a rollout's page: its settings, its figures overall and per wave, its
devices (filtered by wave and state, paged), and for operators start, pause, resume
and abort.

The rollout's page is kept live by rollout.js: a ``firmware`` event of this rollout (an
update of one of its devices, or a change of its status or of a wave) fetches the live
part (status, actions, figures, waves) and the devices table again. The actions are
forms (htmx answers them with the live part; without JavaScript they redirect back).
Pages call ``RolloutService`` and ``RolloutViews``, like the API's routes.
"""

from __future__ import annotations

import uuid
from typing import Any, get_args

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from fieldwatch.auth.roles import Role
from fieldwatch.console.access import ConsoleUser, CsrfChecked
from fieldwatch.console.group_forms import summary
from fieldwatch.console.pages import Operator, Viewer, page_context, render
from fieldwatch.core.errors import NotFound
from fieldwatch.db.dependencies import UowDep, WriteUow
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.groups import GroupService
from fieldwatch.firmware.artifacts.dependencies import ArtifactServiceDep
from fieldwatch.firmware.artifacts.service import ArtifactService
from fieldwatch.firmware.models import Rollout
from fieldwatch.firmware.rollouts.dependencies import RolloutServiceDep
from fieldwatch.firmware.rollouts.schemas import DeviceState, Figures, RolloutStatus
from fieldwatch.firmware.rollouts.service import RolloutService
from fieldwatch.firmware.rollouts.views import RolloutViews

router = APIRouter(include_in_schema=False)

LIST = "/console/firmware/rollouts"
PAGE_SIZE = 25
DEVICES_PAGE = 50
STATUSES: tuple[str, ...] = get_args(RolloutStatus)
DEVICE_STATES: tuple[str, ...] = get_args(DeviceState)
ACTIONS = ("start", "pause", "resume", "abort")
NOTICES = {
    "created": "The rollout is created as a draft: check it, then start it.",
    "start": "The rollout is started.",
    "pause": "The rollout is paused: nothing new is released.",
    "resume": "The rollout runs again.",
    "abort": "The rollout is aborted.",
}


def _int(request: Request, name: str, top: int = 10_000_000) -> int | None:
    raw = request.query_params.get(name) or ""
    return min(int(raw), top) if raw.isdigit() and len(raw) < 10 else None


def _status_filter(request: Request) -> list[str]:
    return [s for s in request.query_params.getlist("status") if s in STATUSES]


async def _versions(
    artifacts: ArtifactService, user: ConsoleUser, ids: set[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """The artifacts' versions by id (an artifact deleted since is left out)."""
    out: dict[uuid.UUID, str] = {}
    for artifact_id in ids:
        try:
            out[artifact_id] = (await artifacts.get(user.principal, artifact_id)).version
        except NotFound:
            continue
    return out


@router.get(LIST)
async def rollouts_page(
    request: Request,
    user: Viewer,
    uow: UowDep,
    service: RolloutServiceDep,
    artifacts: ArtifactServiceDep,
) -> Response:
    statuses = _status_filter(request)
    offset = _int(request, "offset") or 0
    items, total = await service.page(user.principal, statuses, limit=PAGE_SIZE, offset=offset)
    views = RolloutViews(uow)
    figures: dict[uuid.UUID, Figures] = {}
    for rollout in items:  # a draft has no devices yet
        if rollout.status != "draft":
            figures[rollout.id] = (await views.waves(rollout))[0]
    context = await page_context(user, "rollouts")
    context.update(
        rollouts=items, total=total, offset=offset, page_size=PAGE_SIZE, figures=figures,
        versions=await _versions(artifacts, user, {r.artifact_id for r in items}),
        statuses=STATUSES, chosen=statuses,
        query="&".join(f"status={s}" for s in statuses),
    )  # fmt: skip
    return render(request, "rollouts.html", context)


async def _target(uow: UnitOfWork, user: ConsoleUser, target: dict[str, Any]) -> str:
    """The rollout's target in words."""
    if "device_ids" in target:
        n = len(target["device_ids"])
        return f"{n} listed {'device' if n == 1 else 'devices'}"
    if "filter" in target:
        return f"devices matching: {summary(target['filter'])}"
    try:
        group = await GroupService(uow).get(user.principal, uuid.UUID(str(target["group_id"])))
    except NotFound:
        return "a device group deleted since"
    return f"the group {group.name}"


async def live_context(
    uow: UnitOfWork, user: ConsoleUser, service: RolloutService, rollout: Rollout
) -> dict[str, Any]:
    """What the live part shows: the rollout with its figures and waves, what an operator
    may do now, and a draft's dry run of now."""
    detail = await RolloutViews(uow).detail(rollout)
    plan = None
    if rollout.status == "draft":
        plan = await service.dry_run_of(user.principal, rollout.id, limit=1, offset=0)
    return {
        "rollout": detail, "plan": plan, "csrf": user.session.csrf,
        "can_operate": user.principal.role.allows(Role.operator),
    }  # fmt: skip


async def devices_context(request: Request, uow: UnitOfWork, rollout: Rollout) -> dict[str, Any]:
    """A page of the rollout's devices, of the wave and state the query asks for."""
    wave = _int(request, "wave", 1000) or None
    state = request.query_params.get("state") or None
    state = state if state in DEVICE_STATES else None
    offset = _int(request, "offset") or 0
    items, total = await RolloutViews(uow).devices(
        rollout, wave=wave, state=state, limit=DEVICES_PAGE, offset=offset
    )
    given = (("wave", wave), ("state", state))
    query = "&".join(f"{k}={v}" for k, v in given if v)
    again = "&".join(f"{k}={v}" for k, v in (*given, ("offset", offset)) if v)
    return {
        "devices": items, "devices_total": total, "devices_offset": offset,
        "devices_page": DEVICES_PAGE, "wave": wave, "state": state, "device_states": DEVICE_STATES,
        "devices_query": query, "refresh_query": again,
    }  # fmt: skip


@router.get(LIST + "/{rollout_id}")
async def rollout_page(
    rollout_id: uuid.UUID,
    request: Request,
    user: Viewer,
    uow: UowDep,
    service: RolloutServiceDep,
    artifacts: ArtifactServiceDep,
) -> Response:
    rollout = await service.get(user.principal, rollout_id)
    context = await page_context(user, "rollouts")
    context.update(await live_context(uow, user, service, rollout))
    context.update(await devices_context(request, uow, rollout))
    versions = await _versions(artifacts, user, {rollout.artifact_id})
    context.update(
        version=versions.get(rollout.artifact_id), target=await _target(uow, user, rollout.target),
        notice=NOTICES.get(request.query_params.get("done") or ""),
    )  # fmt: skip
    return render(request, "rollout.html", context)


@router.get(LIST + "/{rollout_id}/live")
async def live_part(
    rollout_id: uuid.UUID, request: Request, user: Viewer, uow: UowDep, service: RolloutServiceDep
) -> Response:
    """The live part alone: what the page swaps in when a firmware event comes."""
    rollout = await service.get(user.principal, rollout_id)
    return render(request, "_rollout_live.html", await live_context(uow, user, service, rollout))


@router.get(LIST + "/{rollout_id}/devices")
async def devices_part(
    rollout_id: uuid.UUID, request: Request, user: Viewer, uow: UowDep, service: RolloutServiceDep
) -> Response:
    """The devices table alone (its filters, a page of it)."""
    rollout = await service.get(user.principal, rollout_id)
    context = {"rollout": rollout, **await devices_context(request, uow, rollout)}
    return render(request, "_rollout_devices.html", context)


@router.post(LIST + "/{rollout_id}/{action}", dependencies=[CsrfChecked])
async def act(
    rollout_id: uuid.UUID,
    action: str,
    request: Request,
    user: Operator,
    uow: WriteUow,
    service: RolloutServiceDep,
) -> Response:
    """Start, pause, resume or abort (409 in another state, shown next to the buttons).
    htmx gets the live part as it is after the change; a plain form a redirect."""
    if action not in ACTIONS:
        raise NotFound("There is no such page.")
    rollout = await getattr(service, action)(user.principal, rollout_id)
    if request.headers.get("hx-request") == "true":
        return render(
            request, "_rollout_live.html", await live_context(uow, user, service, rollout)
        )
    return RedirectResponse(f"{LIST}/{rollout_id}?done={action}", status_code=303)
