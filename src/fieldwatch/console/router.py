"""The console's pages: login and logout, the workspace switcher and the fleet overview.

Routes are thin, like the API's: they call the same services (``AuthService``,
``MonitoringService``, ``AlertService``) and render templates.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from fieldwatch.auth.dependencies import AuthDep, ForgetCredentialsDep, make_auth_service
from fieldwatch.auth.errors import InvalidCredentials, LoginThrottled
from fieldwatch.console import session as cookies
from fieldwatch.console.access import (
    LOGIN_PATH,
    MESSAGES,
    CsrfChecked,
    SessionDep,
    SignerDep,
    UserDep,
)
from fieldwatch.console.overview import SEVERITIES, figures
from fieldwatch.console.pages import HOME, NO_STORE, Viewer, page_context, render
from fieldwatch.core.events import credentials_changed
from fieldwatch.db.dependencies import UowDep
from fieldwatch.devices.lifecycle import DeviceStatus
from fieldwatch.monitoring.dependencies import PresenceDep

router = APIRouter(include_in_schema=False)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse(HOME, status_code=303)


@router.get(LOGIN_PATH)
async def login_page(
    request: Request, session: SessionDep, signer: SignerDep, m: str | None = None
) -> Response:
    if session is not None and session.signed_in and not session.expired and m is None:
        return RedirectResponse(HOME, status_code=303)
    visitor = session if session is not None and not session.expired else cookies.visitor()
    if visitor.signed_in:  # a login that has ended: start afresh
        visitor = cookies.visitor()
    response = render(
        request, "login.html", {"csrf": visitor.csrf, "notice": MESSAGES.get(m or "")}
    )
    cookies.set_cookie(response, request, signer, visitor)
    return response


@router.post(LOGIN_PATH, dependencies=[CsrfChecked])
async def login(
    request: Request, auth: AuthDep, uow: UowDep, signer: SignerDep, session: SessionDep
) -> Response:
    form = await request.form()
    email, password = str(form.get("email") or ""), str(form.get("password") or "")
    service = make_auth_service(auth, uow)
    try:
        pair = await service.login(email, password, request.headers.get("user-agent"))
    except (InvalidCredentials, LoginThrottled) as exc:
        assert session is not None  # the CSRF check needs one
        context = {"csrf": session.csrf, "error": exc.detail, "email": email}
        return render(request, "login.html", context, status_code=exc.status)
    await uow.commit()
    claims = auth.codec.decode(pair.access_token)
    response = RedirectResponse(HOME, status_code=303)
    cookies.set_cookie(
        response, request, signer, cookies.signed_in(claims.user_id, claims.session_id)
    )
    return response


@router.post("/console/logout", dependencies=[CsrfChecked])
async def logout(
    request: Request, user: UserDep, uow: UowDep, forget: ForgetCredentialsDep
) -> Response:
    await user.auth.logout(user.principal)
    uow.emit(credentials_changed(user.principal.workspace_id, "logout"))
    uow.after_commit(forget)
    await uow.commit()
    response = RedirectResponse(f"{LOGIN_PATH}?m=signed-out", status_code=303)
    cookies.clear_cookie(response, request)
    return response


@router.post("/console/workspace", dependencies=[CsrfChecked])
async def switch_workspace(request: Request, user: UserDep, signer: SignerDep) -> Response:
    """Work in another of the user's workspaces (the switcher in the header)."""
    wanted = str((await request.form()).get("workspace") or "")
    me = await user.auth.me(user.principal)
    response = RedirectResponse(HOME, status_code=303)
    if any(str(w.id) == wanted for w in me.workspaces):
        cookies.set_cookie(response, request, signer, cookies.in_workspace(user.session, wanted))
    return response


@router.get(HOME)
async def overview(request: Request, user: Viewer, uow: UowDep, presence: PresenceDep) -> Response:
    context = await page_context(user, "overview")
    context.update(figures=await figures(uow, presence, user.principal), **_labels())
    return render(request, "overview.html", context)


@router.get("/console/overview/figures")
async def overview_figures(
    request: Request, user: Viewer, uow: UowDep, presence: PresenceDep
) -> Response:
    """The overview's figures alone: what the page swaps in when an event arrives."""
    context = {"figures": await figures(uow, presence, user.principal), **_labels()}
    return render(request, "_figures.html", context)


@router.get("/console/realtime-token", dependencies=[CsrfChecked])
async def realtime_token(user: Viewer, auth: AuthDep) -> JSONResponse:
    """A short-lived access token for the page's Socket.IO connection (fetched again on
    every reconnect), in the workspace the page shows."""
    assert user.session.user_id is not None and user.session.login_id is not None
    token, ttl = auth.codec.issue(user.session.user_id, user.session.login_id)
    body = {"token": token, "workspace": str(user.principal.workspace_id), "expires_in": ttl}
    return JSONResponse(body, headers=NO_STORE)


def _labels() -> dict[str, Any]:
    return {
        "statuses": [s.value for s in DeviceStatus],
        "severities": SEVERITIES,
    }
