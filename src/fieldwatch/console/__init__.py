"""The web console: server-rendered pages (Jinja2 + htmx) over the same services as the
API, with live figures over Socket.IO. ``install(app)`` adds it to the application."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from fieldwatch.console import (
    admin,
    alerts,
    device,
    device_charts,
    device_control,
    device_exports,
    device_firmware,
    device_history,
    device_sync,
    device_tokens,
    firmware,
    groups,
    integrations,
    integrations_admin,
    inventory,
    inventory_bulk,
    inventory_import,
    rollout_new,
    rollouts,
    rules,
    sync_history,
    webhooks,
)
from fieldwatch.console.access import CsrfRefused, LoginRequired, PageForbidden, to_login
from fieldwatch.console.pages import render
from fieldwatch.console.router import router
from fieldwatch.core.errors import render_problems_as_pages

CSRF_REFUSED = (
    "This form is out of date or did not come from the console. Reload the page and try again."
)


async def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    return to_login(request, exc.code)


async def _csrf_refused(request: Request, exc: Exception) -> Response:
    return render(request, "refused.html", {"reason": CSRF_REFUSED}, status_code=403)


async def _forbidden(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageForbidden)
    context = {**exc.context, "reason": exc.detail}
    return render(request, "refused.html", context, status_code=403)


def _problem_page(request: Request, problem: dict[str, Any]) -> Response:
    """An error under /console/ as a page (or, for htmx, the fragment shown next to
    the control that caused it), never a raw problem document."""
    status = int(problem.get("status") or 500)
    errors = problem.get("errors") or []
    if (
        status == 422
        and errors
        and all(str(e.get("field", "")).startswith("path.") for e in errors)
    ):
        # a malformed id in the address: for a person that is a page that does not exist
        status = 404
        problem = {"title": "Not found", "status": 404, "detail": "There is no such page."}
    is_htmx = request.headers.get("hx-request") == "true"
    name = "_problem.html" if is_htmx else "problem.html"
    return render(request, name, {"problem": problem}, status_code=status)


#: Every router of the console: the sign-in pages and overview, then one per page.
ROUTERS = (
    router,
    *(
        page.router
        for page in (
            inventory,
            inventory_bulk,
            inventory_import,
            groups,
            firmware,
            rollout_new,  # before rollouts: /new is not a rollout's id
            rollouts,
            device,
            device_tokens,
            device_history,
            device_charts,
            device_control,
            device_firmware,
            device_exports,
            device_sync,
            alerts,
            rules,
            webhooks,
            integrations,
            integrations_admin,
            sync_history,
            admin,
        )
    ),
)


def install(app: FastAPI) -> None:
    for page_router in ROUTERS:
        app.include_router(page_router)
    render_problems_as_pages(app, "/console/", _problem_page)
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(CsrfRefused, _csrf_refused)
    app.add_exception_handler(PageForbidden, _forbidden)
