"""Who is using the console: the session cookie resolved to a principal by ``AuthService``,
the CSRF check of every state-changing request, and the way back to the login page."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import RedirectResponse, Response

from fieldwatch.auth.dependencies import AuthDep, make_auth_service
from fieldwatch.auth.errors import NoWorkspace
from fieldwatch.auth.principal import Principal
from fieldwatch.auth.roles import Role
from fieldwatch.auth.service import AuthService
from fieldwatch.auth.tokens import load_or_create_secret
from fieldwatch.console import session as cookies
from fieldwatch.console.session import ConsoleSession, CookieSigner
from fieldwatch.core.errors import Forbidden, NotFound, Unauthorized
from fieldwatch.db.dependencies import UowDep

LOGIN_PATH = "/console/login"
#: What the login page can say about how the user got there (``?m=<code>``): codes only,
#: so that no link can make the page show a text of its own.
MESSAGES = {
    "expired": "Your session has expired; sign in again.",
    "ended": "Your login has ended; sign in again.",
    "no-workspace": "Your account is not a member of any workspace: ask an admin to add you.",
    "signed-out": "You have signed out.",
}


class LoginRequired(Exception):
    """Answered with a redirect to the login page (the message of ``code`` shown there)."""

    def __init__(self, code: str | None = None) -> None:
        super().__init__(code or "")
        self.code = code


class PageForbidden(Exception):
    """The user's role does not allow the page: answered 403 with the reason."""

    def __init__(self, detail: str, context: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.context = context or {}  # the layout of who was refused: menu, sign-out


class CsrfRefused(Exception):
    """A state-changing request without the session's CSRF token: answered 403."""


def signer(request: Request, auth: AuthDep) -> CookieSigner:
    """The app's cookie signer, made on first use from the installation's secret."""
    found: CookieSigner | None = getattr(request.app.state, "console_signer", None)
    if found is None:
        found = request.app.state.console_signer = CookieSigner(
            load_or_create_secret(auth.settings)
        )
    return found


SignerDep = Annotated[CookieSigner, Depends(signer)]


def read_session(request: Request, signer: SignerDep) -> ConsoleSession | None:
    return signer.loads(request.cookies.get(cookies.COOKIE))


SessionDep = Annotated[ConsoleSession | None, Depends(read_session)]


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    principal: Principal
    session: ConsoleSession
    auth: AuthService


async def console_user(session: SessionDep, auth: AuthDep, uow: UowDep) -> ConsoleUser:
    """The signed-in user, checked by ``AuthService`` like an API caller: a short-lived
    access token is minted for the cookie's login and authenticated in its workspace."""
    if session is None or not session.signed_in:
        raise LoginRequired()
    if session.expired:
        raise LoginRequired("expired")
    assert session.user_id is not None and session.login_id is not None
    token, _ = auth.codec.issue(session.user_id, session.login_id)
    service = make_auth_service(auth, uow)
    try:
        try:
            principal = await service.authenticate(token, session.workspace)
        except NotFound:  # no longer a member of the chosen workspace: the first one
            principal = await service.authenticate(token, None)
    except NoWorkspace as exc:
        raise LoginRequired("no-workspace") from exc
    except Unauthorized as exc:
        raise LoginRequired("ended") from exc
    return ConsoleUser(principal, session, service)


UserDep = Annotated[ConsoleUser, Depends(console_user)]


async def layout(user: ConsoleUser, section: str = "") -> dict[str, Any]:
    """What the base layout shows: who is signed in, where, their workspaces, what they
    may change (``can_operate``, ``is_admin``) and which section of the menu is open."""
    me = await user.auth.me(user.principal)
    role = user.principal.role
    return {
        "principal": user.principal,
        "workspaces": me.workspaces,
        "csrf": user.session.csrf,
        "can_operate": role.allows(Role.operator),
        "is_admin": role.allows(Role.admin),
        "section": section,
    }


def require(role: Role) -> object:
    """A page's role, declared like the API's ``require_role``."""

    async def dependency(user: UserDep) -> ConsoleUser:
        try:
            user.principal.require(role)
        except Forbidden as exc:
            raise PageForbidden(exc.detail, await layout(user)) from exc
        return user

    return Depends(dependency)


async def check_csrf(request: Request, session: SessionDep) -> None:
    """Every state-changing request carries the session's CSRF token: in the form field
    ``csrf_token`` or the ``X-CSRF-Token`` header (htmx sends it on every request)."""
    presented = request.headers.get(cookies.CSRF_HEADER)
    if presented is None and request.method == "POST":
        form = await request.form()
        value = form.get(cookies.CSRF_FIELD)
        presented = value if isinstance(value, str) else None
    if not cookies.csrf_ok(session, presented):
        raise CsrfRefused()


CsrfChecked = Depends(check_csrf)
E = TypeVar("E", bound=Callable[..., Any])


def csrf_checked_as_streamed(endpoint: E) -> E:
    """Marks a route that checks the CSRF token itself with ``check_streamed_csrf``: it
    streams a multipart body (an upload), which ``check_csrf`` would read whole first."""
    endpoint.csrf_checked_as_streamed = True  # type: ignore[attr-defined]
    return endpoint


def check_streamed_csrf(request: Request, session: ConsoleSession, sent: list[str]) -> None:
    """The token in the ``X-CSRF-Token`` header, or the form's ``csrf_token`` field as
    read while the body streamed (``sent``)."""
    presented = request.headers.get(cookies.CSRF_HEADER) or (sent[-1] if sent else None)
    if not cookies.csrf_ok(session, presented):
        raise CsrfRefused()


def to_login(request: Request, code: str | None) -> Response:
    """Back to the login page: a redirect, or for htmx the ``HX-Redirect`` header (an
    htmx request would otherwise swap the login page into a fragment)."""
    url = LOGIN_PATH + (f"?m={quote(code)}" if code else "")
    if request.headers.get("hx-request") == "true":
        return Response(status_code=200, headers={"HX-Redirect": url})
    if request.url.path.endswith("/realtime-token"):
        return Response(status_code=401)
    response = RedirectResponse(url, status_code=303)
    if code:  # the login has ended: the cookie no longer names it
        cookies.clear_cookie(response, request)
    return response
