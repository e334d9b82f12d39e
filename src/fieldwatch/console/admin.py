"""The console's administration page (admins only): the workspace's members and their
roles, API keys and provisioning keys.

Routes are thin, like the API's (``auth/router.py``, ``devices/provisioning_router.py``):
they call the same services (``AccountService``, ``ProvisioningService``), emit the same
events and commit with ``WriteUow``. Each of the page's three sections is a fragment of
its own: an htmx request gets the section back (with a new secret shown once), a plain
form post the whole page.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, time
from functools import partial
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData

from fieldwatch.auth.accounts import AccountService
from fieldwatch.auth.dependencies import ForgetCredentialsDep
from fieldwatch.auth.roles import Role
from fieldwatch.auth.schemas import ApiKeyCreate, ApiKeyRead, MemberCreate, MemberUpdate
from fieldwatch.console.access import ConsoleUser, CsrfChecked
from fieldwatch.console.pages import HOME, Admin, page_context, render
from fieldwatch.core.errors import NotFound, ValidationFailed, validation_errors
from fieldwatch.core.events import credentials_changed
from fieldwatch.core.paging import Offset
from fieldwatch.db.dependencies import UowDep, WriteUow
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.dependencies import CredentialIssuedDep
from fieldwatch.devices.models import ProvisioningKey
from fieldwatch.devices.provisioning import ProvisioningService
from fieldwatch.devices.schemas import (
    ProvisioningKeyCreate,
    ProvisioningKeyCreated,
    ProvisioningKeyRead,
)

router = APIRouter(include_in_schema=False)

PAGE = "/console/admin"
#: Rows per page of each section.
PER_PAGE = 50
ROLES = [r.value for r in Role]
PROVISION_STATUSES = ["in_stock", "reserved", "deployed"]
M = TypeVar("M", bound=BaseModel)
Loader = Callable[[ConsoleUser, UnitOfWork, int], Awaitable[dict[str, Any]]]


# --- reading the sections -------------------------------------------------------------


def _paged(name: str, items: Any, total: int, offset: int) -> dict[str, Any]:
    return {name: items, f"{name}_total": total, f"{name}_offset": offset, "per_page": PER_PAGE}


async def _members(user: ConsoleUser, uow: UnitOfWork, offset: int) -> dict[str, Any]:
    items, total = await AccountService(uow.session).list_members(
        user.principal, limit=PER_PAGE, offset=offset
    )
    return _paged("members", items, total, offset)


async def _api_keys(user: ConsoleUser, uow: UnitOfWork, offset: int) -> dict[str, Any]:
    rows, total = await AccountService(uow.session).list_api_keys(
        user.principal, limit=PER_PAGE, offset=offset
    )
    items = [ApiKeyRead.model_validate(k) for k in rows]
    return _paged("api_keys", items, total, offset)


async def _provisioning(user: ConsoleUser, uow: UnitOfWork, offset: int) -> dict[str, Any]:
    rows, total = await ProvisioningService(uow).list_keys(
        user.principal, limit=PER_PAGE, offset=offset
    )
    items = [ProvisioningKeyRead.model_validate(k) for k in rows]
    return _paged("provisioning_keys", items, total, offset)


#: Section name → (its fragment, what it shows).
SECTIONS: dict[str, tuple[str, Loader]] = {
    "members": ("_admin_members.html", _members),
    "api-keys": ("_admin_api_keys.html", _api_keys),
    "provisioning-keys": ("_admin_provisioning.html", _provisioning),
}


async def _answer(
    request: Request,
    user: ConsoleUser,
    uow: UnitOfWork,
    section: str,
    offset: int = 0,
    **shown: Any,
) -> Response:
    """The section (an htmx request) or the whole page, with ``shown`` (a secret shown
    once, a notice) in the section."""
    context = await page_context(user, "admin")
    context.update(roles=ROLES, provision_statuses=PROVISION_STATUSES, **shown)
    if request.headers.get("hx-request") == "true":
        template, load = SECTIONS[section]
        context.update(await load(user, uow, offset))
        return render(request, template, context)
    for name, (_template, load) in SECTIONS.items():
        context.update(await load(user, uow, offset if name == section else 0))
    return render(request, "admin.html", context)


def _away(request: Request) -> Response:
    """The user is no longer an admin here (they changed their own role or left)."""
    if request.headers.get("hx-request") == "true":
        return Response(status_code=200, headers={"HX-Redirect": HOME})
    return RedirectResponse(HOME, status_code=303)


# --- forms ----------------------------------------------------------------------------


def _text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip()


def _valid(model: type[M], data: dict[str, Any]) -> M:
    """The form's values checked by the API's own schema; its problems as the API's."""
    try:
        return model.model_validate({k: v for k, v in data.items() if v is not None})
    except ValidationError as exc:
        raise ValidationFailed(
            "Check the form: some values are not valid.", errors=validation_errors(exc.errors())
        ) from exc


def _end_of_day(value: str | None) -> datetime | str | None:
    """A date field (``YYYY-MM-DD``) as the end of that day in UTC; else as it came."""
    if value is None:
        return None
    try:
        day = datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        return value  # the schema says what is wrong with it
    return datetime.combine(day, time(23, 59, 59), UTC)


def _changed(uow: UnitOfWork, forget: Callable[[], None], user: ConsoleUser, reason: str) -> None:
    """As the API does: every process is told once committed; this one forgets at once."""
    uow.emit(credentials_changed(user.principal.workspace_id, reason))
    uow.after_commit(forget)


# --- the page -------------------------------------------------------------------------


@router.get(PAGE)
async def admin_page(request: Request, user: Admin, uow: UowDep) -> Response:
    context = await page_context(user, "admin")
    context.update(roles=ROLES, provision_statuses=PROVISION_STATUSES)
    for _template, load in SECTIONS.values():
        context.update(await load(user, uow, 0))
    return render(request, "admin.html", context)


@router.get(PAGE + "/{section}")
async def admin_section(
    section: str, request: Request, user: Admin, uow: UowDep, offset: Offset = 0
) -> Response:
    """One section, at a page of its rows (``offset``)."""
    if section not in SECTIONS:
        raise NotFound("No such section of the administration page.")
    return await _answer(request, user, uow, section, offset)


# --- members --------------------------------------------------------------------------


@router.post(PAGE + "/members", dependencies=[CsrfChecked])
async def add_member(request: Request, user: Admin, uow: WriteUow) -> Response:
    form = await request.form()
    data = {"email": _text(form, "email"), "role": _text(form, "role"),
            "full_name": _text(form, "full_name")}  # fmt: skip
    body = _valid(MemberCreate, data)
    added = await AccountService(uow.session).add_member(
        user.principal, body.email, body.role, None, body.full_name
    )
    return await _answer(request, user, uow, "members", added_member=added)


@router.post(PAGE + "/members/{user_id}/role", dependencies=[CsrfChecked])
async def change_role(
    user_id: uuid.UUID, request: Request, user: Admin, uow: WriteUow, forget: ForgetCredentialsDep
) -> Response:
    body = _valid(MemberUpdate, {"role": _text(await request.form(), "role")})
    member = await AccountService(uow.session).change_role(user.principal, user_id, body.role)
    _changed(uow, forget, user, "role_changed")
    if user_id == user.principal.user_id and body.role != Role.admin:
        return _away(request)
    notice = f"{member.email} is now {member.role.value}."
    return await _answer(request, user, uow, "members", members_notice=notice)


@router.post(PAGE + "/members/{user_id}/remove", dependencies=[CsrfChecked])
async def remove_member(
    user_id: uuid.UUID, request: Request, user: Admin, uow: WriteUow, forget: ForgetCredentialsDep
) -> Response:
    await AccountService(uow.session).remove_member(user.principal, user_id)
    _changed(uow, forget, user, "member_removed")
    if user_id == user.principal.user_id:
        return _away(request)
    return await _answer(request, user, uow, "members", members_notice="The member was removed.")


# --- API keys -------------------------------------------------------------------------


@router.post(PAGE + "/api-keys", dependencies=[CsrfChecked])
async def create_api_key(request: Request, user: Admin, uow: WriteUow) -> Response:
    form = await request.form()
    data = {"name": _text(form, "name"), "role": _text(form, "role"),
            "expires_at": _end_of_day(_text(form, "expires_on"))}  # fmt: skip
    body = _valid(ApiKeyCreate, data)
    created = await AccountService(uow.session).create_api_key(user.principal, body)
    return await _answer(request, user, uow, "api-keys", new_api_key=created)


@router.post(PAGE + "/api-keys/{key_id}/revoke", dependencies=[CsrfChecked])
async def revoke_api_key(
    key_id: uuid.UUID, request: Request, user: Admin, uow: WriteUow, forget: ForgetCredentialsDep
) -> Response:
    key = await AccountService(uow.session).revoke_api_key(user.principal, key_id)
    _changed(uow, forget, user, "api_key_revoked")
    notice = f"The API key {key.name!r} is revoked."
    return await _answer(request, user, uow, "api-keys", api_keys_notice=notice)


# --- provisioning keys ----------------------------------------------------------------


def _shown_once(
    uow: UnitOfWork, issued: CredentialIssuedDep, key: ProvisioningKey, secret: str
) -> ProvisioningKeyCreated:
    """The key with its secret; the app learns of the secret once it is stored (as the
    API's route does: an external broker that checks logins itself)."""
    uow.after_commit(partial(issued, "provisioning_key", key.workspace_id, key.id, secret))
    return ProvisioningKeyCreated(
        **ProvisioningKeyRead.model_validate(key).model_dump(), key=secret
    )


@router.post(PAGE + "/provisioning-keys", dependencies=[CsrfChecked])
async def create_provisioning_key(
    request: Request, user: Admin, uow: WriteUow, issued: CredentialIssuedDep
) -> Response:
    form = await request.form()
    data = {"name": _text(form, "name"), "initial_status": _text(form, "initial_status")}
    body = _valid(ProvisioningKeyCreate, data)
    key, secret = await ProvisioningService(uow).create_key(user.principal, body)
    created = _shown_once(uow, issued, key, secret)
    return await _answer(request, user, uow, "provisioning-keys", new_provisioning_key=created)


@router.post(PAGE + "/provisioning-keys/{key_id}/rotate", dependencies=[CsrfChecked])
async def rotate_provisioning_key(
    key_id: uuid.UUID, request: Request, user: Admin, uow: WriteUow, issued: CredentialIssuedDep
) -> Response:
    key, secret = await ProvisioningService(uow).rotate_key(user.principal, key_id)
    created = _shown_once(uow, issued, key, secret)
    return await _answer(request, user, uow, "provisioning-keys", new_provisioning_key=created)


@router.post(PAGE + "/provisioning-keys/{key_id}/revoke", dependencies=[CsrfChecked])
async def revoke_provisioning_key(
    key_id: uuid.UUID, request: Request, user: Admin, uow: WriteUow
) -> Response:
    key = await ProvisioningService(uow).revoke_key(user.principal, key_id)
    notice = f"The provisioning key {key.name!r} is revoked."
    return await _answer(request, user, uow, "provisioning-keys", provisioning_keys_notice=notice)
