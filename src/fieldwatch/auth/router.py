from __future__ import annotations

import uuid
from collections.abc import Callable

from fastapi import APIRouter, Request, Response, status

from fieldwatch.auth.accounts import AccountService
from fieldwatch.auth.dependencies import (
    Admin,
    AnyCaller,
    AuthServiceDep,
    ForgetCredentialsDep,
    Viewer,
)
from fieldwatch.auth.errors import RefreshTokenReused
from fieldwatch.auth.principal import Caller, Principal
from fieldwatch.auth.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyRead,
    LoginRequest,
    MemberCreate,
    MemberCreated,
    MemberRead,
    MemberUpdate,
    MeRead,
    PasswordChange,
    RefreshRequest,
    TokenPair,
    WorkspaceCreate,
    WorkspaceRead,
    WorkspaceRef,
)
from fieldwatch.core.events import credentials_changed
from fieldwatch.core.paging import Limit, Offset, Page, page_of
from fieldwatch.db.dependencies import UowDep, WriteUow
from fieldwatch.db.uow import UnitOfWork

router = APIRouter(prefix="/api/v1")


@router.post("/auth/login", response_model=TokenPair, tags=["auth"])
async def login(body: LoginRequest, request: Request, service: AuthServiceDep, uow: WriteUow):
    return await service.login(body.email, body.password, request.headers.get("user-agent"))


def _credentials_changed(
    uow: UnitOfWork, forget: Callable[[], None], principal: Caller, reason: str
) -> None:
    """A change of who may do what: once it is committed every process is told (the
    event) and this one forgets its cached credential checks at once. (A user without a
    workspace has no cached checks anywhere: nothing to tell.)"""
    if isinstance(principal, Principal):
        uow.emit(credentials_changed(principal.workspace_id, reason))
    uow.after_commit(forget)


@router.post("/auth/refresh", response_model=TokenPair, tags=["auth"])
async def refresh(
    body: RefreshRequest, service: AuthServiceDep, uow: WriteUow, forget: ForgetCredentialsDep
):
    try:
        return await service.refresh(body.refresh_token)
    except RefreshTokenReused:
        # The request fails, but the revocation of the whole login must be kept: the
        # one commit a route makes itself.
        await uow.commit()
        forget()
        raise


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT, tags=["auth"])
async def logout(
    principal: AnyCaller, service: AuthServiceDep, uow: WriteUow, forget: ForgetCredentialsDep
) -> Response:
    await service.logout(principal)
    _credentials_changed(uow, forget, principal, "logout")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/auth/me", response_model=MeRead, tags=["auth"])
async def me(principal: AnyCaller, service: AuthServiceDep):
    """Who is calling, in which workspace, and their workspaces. A user who belongs to no
    workspace gets ``workspace: null`` and no workspaces (workspace routes answer 403)."""
    return await service.me(principal)


@router.post("/auth/password", status_code=status.HTTP_204_NO_CONTENT, tags=["auth"])
async def change_password(
    body: PasswordChange,
    principal: AnyCaller,
    service: AuthServiceDep,
    uow: WriteUow,
    forget: ForgetCredentialsDep,
) -> Response:
    await service.change_password(principal, body.current_password, body.new_password)
    _credentials_changed(uow, forget, principal, "password_changed")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/workspaces", response_model=Page[WorkspaceRef], tags=["workspaces"])
async def my_workspaces(
    principal: AnyCaller, service: AuthServiceDep, limit: Limit = 50, offset: Offset = 0
):
    """The workspaces the caller belongs to (an API key: its own)."""
    workspaces = (await service.me(principal)).workspaces
    return Page[WorkspaceRef](
        items=workspaces[offset : offset + limit], total=len(workspaces),
        limit=limit, offset=offset,
    )  # fmt: skip


@router.post(
    "/workspaces",
    response_model=WorkspaceRead,
    status_code=status.HTTP_201_CREATED,
    tags=["workspaces"],
)
async def create_workspace(body: WorkspaceCreate, principal: AnyCaller, uow: WriteUow):
    return await AccountService(uow.session).create_workspace(principal, body.name)


@router.get("/members", response_model=Page[MemberRead], tags=["workspaces"])
async def list_members(principal: Viewer, uow: UowDep, limit: Limit = 50, offset: Offset = 0):
    """The workspace's members, by e-mail."""
    items, total = await AccountService(uow.session).list_members(
        principal, limit=limit, offset=offset
    )
    return Page[MemberRead](items=items, total=total, limit=limit, offset=offset)


@router.post(
    "/members",
    response_model=MemberCreated,
    status_code=status.HTTP_201_CREATED,
    tags=["workspaces"],
)
async def add_member(body: MemberCreate, principal: Admin, uow: WriteUow):
    return await AccountService(uow.session).add_member(
        principal, body.email, body.role, body.password, body.full_name
    )


@router.patch("/members/{user_id}", response_model=MemberRead, tags=["workspaces"])
async def change_member_role(
    user_id: uuid.UUID,
    body: MemberUpdate,
    principal: Admin,
    uow: WriteUow,
    forget: ForgetCredentialsDep,
):
    member = await AccountService(uow.session).change_role(principal, user_id, body.role)
    _credentials_changed(uow, forget, principal, "role_changed")
    return member


@router.delete("/members/{user_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["workspaces"])
async def remove_member(
    user_id: uuid.UUID, principal: Admin, uow: WriteUow, forget: ForgetCredentialsDep
) -> Response:
    await AccountService(uow.session).remove_member(principal, user_id)
    _credentials_changed(uow, forget, principal, "member_removed")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/api-keys", response_model=Page[ApiKeyRead], tags=["api keys"])
async def list_api_keys(principal: Admin, uow: UowDep, limit: Limit = 50, offset: Offset = 0):
    """The workspace's API keys (revoked ones too), oldest first."""
    items, total = await AccountService(uow.session).list_api_keys(
        principal, limit=limit, offset=offset
    )
    return page_of(ApiKeyRead, items, total, limit=limit, offset=offset)


@router.post(
    "/api-keys",
    response_model=ApiKeyCreated,
    status_code=status.HTTP_201_CREATED,
    tags=["api keys"],
)
async def create_api_key(body: ApiKeyCreate, principal: Admin, uow: WriteUow):
    return await AccountService(uow.session).create_api_key(principal, body)


@router.delete("/api-keys/{key_id}", response_model=ApiKeyRead, tags=["api keys"])
async def revoke_api_key(
    key_id: uuid.UUID, principal: Admin, uow: WriteUow, forget: ForgetCredentialsDep
):
    key = await AccountService(uow.session).revoke_api_key(principal, key_id)
    _credentials_changed(uow, forget, principal, "api_key_revoked")
    return key
