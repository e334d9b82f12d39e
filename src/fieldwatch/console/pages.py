"""What every console page shares: the templates, rendering, the layout's context, the
roles pages declare, and turning an API error into a message shown next to its cause."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates

from fieldwatch.auth.roles import Role
from fieldwatch.console.access import ConsoleUser, layout, require
from fieldwatch.core.errors import AppError

HOME = "/console/"
NO_STORE = {"Cache-Control": "no-store"}
templates = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")

Viewer = Annotated[ConsoleUser, require(Role.viewer)]
Operator = Annotated[ConsoleUser, require(Role.operator)]
Admin = Annotated[ConsoleUser, require(Role.admin)]


def render(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> Response:
    return templates.TemplateResponse(
        request, name, context, status_code=status_code, headers=NO_STORE
    )


async def page_context(user: ConsoleUser, section: str = "") -> dict[str, Any]:
    """The base layout's context (see ``access.layout``)."""
    return await layout(user, section)


def problem_message(exc: AppError) -> str:
    """The readable sentence of an API problem: its detail, else its title."""
    return exc.detail or exc.title
