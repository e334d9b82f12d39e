"""The console's new-rollout page: a form (name, artifact, target, waves, failure rules,
rate, window) whose "Preview" runs the API's dry run and shows the waves, the devices
of each and those left out with the reason (paged), and whose "Create draft" creates
the rollout as a draft, to be started from its page.

A plain form over ``RolloutService`` (like ``POST /api/v1/firmware/rollouts/dry-run``
and ``POST /api/v1/firmware/rollouts``): a refusal comes back with each message next to
its field; nothing is stored by a preview.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from fieldwatch.console import rollout_forms as forms
from fieldwatch.console.access import ConsoleUser, CsrfChecked
from fieldwatch.console.group_forms import FormProblem
from fieldwatch.console.pages import Operator, page_context, problem_message, render
from fieldwatch.core.errors import ValidationFailed
from fieldwatch.db.dependencies import UowDep, WriteUow
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.errors import DeviceNotFound
from fieldwatch.devices.groups import GroupService
from fieldwatch.devices.lifecycle import DeviceStatus
from fieldwatch.devices.service import DeviceService
from fieldwatch.firmware.artifacts.dependencies import ArtifactServiceDep
from fieldwatch.firmware.artifacts.service import ArtifactService
from fieldwatch.firmware.rollouts.dependencies import RolloutServiceDep
from fieldwatch.firmware.rollouts.schemas import DryRun, RolloutCreate
from fieldwatch.firmware.rollouts.service import RolloutService

router = APIRouter(include_in_schema=False)

LIST = "/console/firmware/rollouts"
NEW = LIST + "/new"
PREVIEW_PAGE = 50
ARTIFACTS_OFFERED = 500


async def _form_page(
    request: Request,
    user: ConsoleUser,
    uow: UnitOfWork,
    artifacts: ArtifactService,
    service: RolloutService,
    extra: dict[str, Any],
    status: int = 200,
) -> Response:
    offered, _ = await artifacts.page(
        user.principal, device_type=None, limit=ARTIFACTS_OFFERED, offset=0
    )
    context = await page_context(user, "rollouts")
    context.update(
        artifacts=offered, groups=await GroupService(uow).all(user.principal),
        statuses=list(DeviceStatus), values=dict(forms.DEFAULTS), errors={}, problem=None,
        preview=None, order=forms.ORDER, page_size=PREVIEW_PAGE,
        max_tries=service.settings.firmware_max_tries,
    )  # fmt: skip
    context.update(extra)
    return render(request, "rollout_new.html", context, status_code=status)


@router.get(NEW)
async def new_page(
    request: Request,
    user: Operator,
    uow: UowDep,
    artifacts: ArtifactServiceDep,
    service: RolloutServiceDep,
) -> Response:
    extra: dict[str, Any] = {}
    chosen = request.query_params.get("artifact")
    if chosen:
        extra["values"] = {**forms.DEFAULTS, "artifact_id": chosen}
    return await _form_page(request, user, uow, artifacts, service, extra)


async def _body(uow: UnitOfWork, user: ConsoleUser, values: dict[str, Any]) -> RolloutCreate:
    """The API's body of the form: listed devices found by id or serial number."""
    devices = DeviceService(uow)
    ids, unknown = [], []
    for ref in forms.refs(values):
        try:
            ids.append((await devices.find(user.principal, ref)).id)
        except DeviceNotFound:
            unknown.append(ref)
    if unknown:
        raise forms.unknown_refs(unknown)
    return forms.body_of(values, ids)


def _offset(form: Any) -> int:
    raw = form.get("preview_offset")
    return min(int(raw), 10_000_000) if isinstance(raw, str) and raw.isdigit() else 0


@router.post(NEW, dependencies=[CsrfChecked])
async def preview_or_create(
    request: Request,
    user: Operator,
    uow: WriteUow,
    artifacts: ArtifactServiceDep,
    service: RolloutServiceDep,
) -> Response:
    """The preview (or a page of it) runs the dry run; "Create draft" creates."""
    form = await request.form()
    values = forms.form_values(form)
    create = form.get("action") == "create"
    try:
        body = await _body(uow, user, values)
        if create:
            rollout = await _refusing(uow, service.create(user.principal, body))
        else:
            offset = _offset(form)
            preview = await _refusing(uow, _dry_run(service, user, body, offset))
    except FormProblem as exc:
        refused: dict[str, Any] = {"values": values, "errors": exc.fields, "problem": exc.message}
        return await _form_page(request, user, uow, artifacts, service, refused, status=422)
    if create:
        return RedirectResponse(f"{LIST}/{rollout.id}?done=created", status_code=303)
    shown: dict[str, Any] = {"values": values, "preview": preview}
    return await _form_page(request, user, uow, artifacts, service, shown)


async def _dry_run(
    service: RolloutService, user: ConsoleUser, body: RolloutCreate, offset: int
) -> DryRun:
    return await service.dry_run(user.principal, body, limit=PREVIEW_PAGE, offset=offset)


async def _refusing(uow: UnitOfWork, change: Any) -> Any:
    """The service's answer, or its refusal (an unknown artifact, group or device, a
    past window) as the form's problem."""
    try:
        return await change
    except ValidationFailed as exc:
        await uow.rollback()
        errors = exc.extra.get("errors") or [{"field": "", "message": exc.detail}]
        raise forms.problem(problem_message(exc), errors) from None
