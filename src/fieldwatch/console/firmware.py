"""The console's firmware page: the workspace's artifacts, an upload form for operators
(streamed to the blob store like the API's upload), deleting an artifact nothing needs,
and for admins the signing policy and the signing keys.

Plain forms over ``ArtifactService`` and ``SigningService``, the API's rules: a change
answers with a redirect and a notice; a refused form comes back with each message next
to its field; a refused delete (the artifact is in use) with the reason.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from fieldwatch.console import session as cookies
from fieldwatch.console.access import (
    ConsoleUser,
    CsrfChecked,
    CsrfRefused,
    check_streamed_csrf,
    csrf_checked_as_streamed,
)
from fieldwatch.console.pages import Admin, Operator, Viewer, page_context, problem_message, render
from fieldwatch.core.errors import AppError, Conflict, ValidationFailed, validation_errors
from fieldwatch.db.dependencies import WriteUow
from fieldwatch.firmware.artifacts.blobs import TooLarge
from fieldwatch.firmware.artifacts.dependencies import (
    ArtifactServiceDep,
    FilesDep,
    SigningServiceDep,
)
from fieldwatch.firmware.artifacts.errors import ArtifactInUse, VersionExists
from fieldwatch.firmware.artifacts.schemas import PolicyUpdate, SigningKeyCreate
from fieldwatch.firmware.artifacts.service import ArtifactService
from fieldwatch.firmware.artifacts.upload import read_upload

router = APIRouter(include_in_schema=False)

LIST = "/console/firmware"
PAGE_SIZE = 50
MAX_KEYS = 500
UPLOAD_FIELDS = ("version", "device_types", "hardware_versions", "min_from_version",
                 "security_version", "notes", "signature", "signing_key")  # fmt: skip
NOTICES = {
    "uploaded": "The firmware is uploaded.",
    "deleted": "The firmware artifact is deleted.",
    "policy": "The signing policy is saved.",
    "key-added": "The signing key is added.",
    "key-revoked": "The signing key is revoked: no new upload verifies with it.",
}


def _offset(request: Request) -> int:
    raw = request.query_params.get("offset") or "0"
    return min(int(raw), 10_000_000) if raw.isdigit() and len(raw) < 10 else 0


def _fields_of(exc: AppError) -> dict[str, str]:
    """The problem's messages by form field (``body.version`` is the field ``version``)."""
    out: dict[str, str] = {}
    for e in exc.extra.get("errors") or []:
        name = str(e.get("field") or "").removeprefix("body.").split(".")[0]
        out.setdefault(name, str(e.get("message")))
    return out


async def _page(
    request: Request,
    user: ConsoleUser,
    artifacts: ArtifactService,
    extra: dict[str, Any],
    status: int = 200,
) -> Response:
    offset = _offset(request)
    items, total = await artifacts.page(
        user.principal, device_type=None, limit=PAGE_SIZE, offset=offset
    )
    keys, _ = await artifacts.signing.page_keys(user.principal, limit=MAX_KEYS, offset=0)
    context = await page_context(user, "firmware")
    context.update(
        artifacts=await artifacts.read(items), total=total, offset=offset, page_size=PAGE_SIZE,
        keys=keys, key_names={k.id: k.name for k in keys},
        policy=await artifacts.signing.policy(user.principal),
        notice=NOTICES.get(request.query_params.get("done") or ""),
        values={}, errors={}, key_values={}, key_errors={},
    )  # fmt: skip
    context.update(extra)
    return render(request, "firmware.html", context, status_code=status)


@router.get(LIST)
async def firmware_page(request: Request, user: Viewer, service: ArtifactServiceDep) -> Response:
    return await _page(request, user, service, {})


@router.post(LIST)
@csrf_checked_as_streamed
async def upload(
    request: Request, user: Operator, uow: WriteUow, files: FilesDep, service: ArtifactServiceDep
) -> Response:
    """The upload form (multipart): the file streams into the blob store as the API's
    upload does; a refused upload comes back with each message next to its field."""
    values: dict[str, Any] = {}
    try:
        form = await read_upload(request, files.store, files.settings.firmware_max_upload_bytes)
        try:
            check_streamed_csrf(request, user.session, form.fields.pop(cookies.CSRF_FIELD, []))
        except CsrfRefused:
            assert form.blob is not None
            await form.blob.abort()
            raise
        values = {k: ", ".join(v) for k, v in form.fields.items() if k in UPLOAD_FIELDS}
        await service.upload(user.principal, form)
    except (ValidationFailed, VersionExists, TooLarge) as exc:
        await uow.rollback()
        errors = _fields_of(exc)
        if isinstance(exc, VersionExists):
            errors = {"version": problem_message(exc)}
        elif isinstance(exc, TooLarge):
            errors = {"file": problem_message(exc)}
        shown = any(name in (*UPLOAD_FIELDS, "file") for name in errors)
        problem = "Check the highlighted fields." if shown else problem_message(exc)
        extra = {"values": values, "errors": errors, "problem": problem}
        return await _page(request, user, service, extra, status=exc.status)
    return RedirectResponse(f"{LIST}?done=uploaded", status_code=303)


@router.post(LIST + "/{artifact_id}/delete", dependencies=[CsrfChecked])
async def delete(
    artifact_id: uuid.UUID,
    request: Request,
    user: Operator,
    uow: WriteUow,
    service: ArtifactServiceDep,
) -> Response:
    try:
        await service.delete(user.principal, artifact_id)
    except ArtifactInUse as exc:
        await uow.rollback()
        artifact = await service.get(user.principal, artifact_id)
        refusal = f"Version {artifact.version} is not deleted: {problem_message(exc)}"
        return await _page(request, user, service, {"refusal": refusal}, status=409)
    return RedirectResponse(f"{LIST}?done=deleted", status_code=303)


@router.post(LIST + "/policy", dependencies=[CsrfChecked])
async def set_policy(
    request: Request, user: Admin, uow: WriteUow, signing: SigningServiceDep
) -> Response:
    form = await request.form()
    await signing.set_policy(
        user.principal, PolicyUpdate(require_signed=bool(form.get("require_signed")))
    )
    return RedirectResponse(f"{LIST}?done=policy", status_code=303)


@router.post(LIST + "/keys", dependencies=[CsrfChecked])
async def add_key(
    request: Request, user: Admin, uow: WriteUow, service: ArtifactServiceDep
) -> Response:
    form = await request.form()
    values = {
        k: v.strip() if isinstance(v := form.get(k), str) else "" for k in ("name", "public_key")
    }
    try:
        try:
            body = SigningKeyCreate.model_validate(values)
        except ValidationError as exc:
            problems = validation_errors([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()])
            raise ValidationFailed("Check the highlighted fields.", errors=problems) from None
        await service.signing.add_key(user.principal, body)
    except (ValidationFailed, Conflict) as exc:
        await uow.rollback()
        errors = _fields_of(exc) or {"public_key": problem_message(exc)}
        extra = {"key_values": values, "key_errors": errors, "key_problem": problem_message(exc)}
        return await _page(request, user, service, extra, status=exc.status)
    return RedirectResponse(f"{LIST}?done=key-added", status_code=303)


@router.post(LIST + "/keys/{key_id}/revoke", dependencies=[CsrfChecked])
async def revoke_key(
    key_id: uuid.UUID, user: Admin, uow: WriteUow, signing: SigningServiceDep
) -> Response:
    await signing.revoke_key(user.principal, key_id)
    return RedirectResponse(f"{LIST}?done=key-revoked", status_code=303)
