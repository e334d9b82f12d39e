"""``fieldwatch users …``: accounts and their roles in workspaces."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from fieldwatch.auth.roles import Role
from fieldwatch.cli.database import cli_uow, workspace_principal
from fieldwatch.cli.errors import CliError
from fieldwatch.cli.output import print_json, table

users_app = typer.Typer(help="Users and workspaces.", no_args_is_help=True)

WorkspaceOption = Annotated[str, typer.Option(help="Workspace name")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]


async def _create_user(email: str, role: Role, workspace: str, password: str | None) -> None:
    from fieldwatch.auth.accounts import AccountService
    from fieldwatch.auth.schemas import normalize_email

    async with cli_uow() as uow:
        created = await AccountService(uow.session).create_user(
            normalize_email(email), role=role, workspace_name=workspace, password=password
        )
        await uow.commit()
    if created.created_workspace:
        typer.echo(f"Created workspace {created.workspace.name!r}.")
    if created.created_user:
        typer.echo(
            f"Created user {created.user.email} as {role.value} in {created.workspace.name!r}."
        )
    else:
        typer.echo(
            f"User {created.user.email} exists; now {role.value} in {created.workspace.name!r}"
            + ("; password changed." if password else "; password unchanged.")
        )
    if created.generated_password:
        typer.echo(f"Password (shown only now): {created.generated_password}")


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Argument(help="Login email")],
    role: Annotated[Role, typer.Option(help="Role in the workspace")] = Role.viewer,
    workspace: Annotated[str, typer.Option(help="Workspace name (created if missing)")] = "default",
    password: Annotated[
        str | None,
        typer.Option(
            help="Password; without it one is generated and printed once. For an existing "
            "user it replaces the password (a reset)"
        ),
    ] = None,
) -> None:
    """Create a user (or change an existing user's role, and password) in a workspace."""
    from fieldwatch.auth.passwords import MIN_PASSWORD_LENGTH

    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        raise CliError(f"A password needs at least {MIN_PASSWORD_LENGTH} characters.")
    try:
        asyncio.run(_create_user(email, role, workspace, password))
    except ValueError as exc:
        raise CliError(str(exc)) from exc


async def _members(workspace: str) -> list[dict[str, object]]:
    from fieldwatch.auth.accounts import AccountService
    from fieldwatch.auth.schemas import MemberRead

    async with cli_uow() as uow:
        principal = await workspace_principal(uow, workspace)
        service = AccountService(uow.session)
        members: list[MemberRead] = []
        total = 1
        while len(members) < total:  # every page
            page, total = await service.list_members(principal, limit=500, offset=len(members))
            if not page:
                break
            members += page
    return [m.model_dump(mode="json") for m in members]


@users_app.command("list")
def users_list(workspace: WorkspaceOption = "default", as_json: JsonOption = False) -> None:
    """The members of a workspace and their roles."""
    members = asyncio.run(_members(workspace))
    if as_json:
        print_json(members)
        return
    rows = [(m["email"], m["role"], m["full_name"], m["joined_at"]) for m in members]
    typer.echo(table(["EMAIL", "ROLE", "NAME", "JOINED"], rows))
    typer.echo(f"{len(members)} member(s) in {workspace!r}.", err=True)
