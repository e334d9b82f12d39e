"""``fieldwatch devices …``: list, export and import the registry."""

from __future__ import annotations

import asyncio
import csv
import enum
import io
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer

from fieldwatch.cli.database import cli_uow, workspace_principal
from fieldwatch.cli.errors import CliError
from fieldwatch.cli.output import Progress, print_json, table
from fieldwatch.devices.lifecycle import DeviceStatus

if TYPE_CHECKING:
    from fieldwatch.devices.repository import DeviceFilter


class Connectivity(enum.StrEnum):
    online = "online"
    offline = "offline"


devices_app = typer.Typer(help="The device registry.", no_args_is_help=True)

WorkspaceOption = Annotated[str, typer.Option(help="Workspace name")]
StatusOption = Annotated[
    list[DeviceStatus] | None, typer.Option("--status", help="Lifecycle status (repeatable)")
]
TypeOption = Annotated[str | None, typer.Option("--type", help="Device type")]
LocationOption = Annotated[str | None, typer.Option(help="Location (exact)")]
SearchOption = Annotated[str | None, typer.Option(help="Part of the name or serial number")]
ConnectivityOption = Annotated[
    Connectivity | None,
    typer.Option(help="online or offline, as the database last recorded it (never seen: offline)"),
]

LIST_COLUMNS = ["ID", "NAME", "TYPE", "SERIAL", "STATUS", "LOCATION", "LAST SEEN"]


def _filter(
    status: list[DeviceStatus] | None,
    type_: str | None,
    location: str | None,
    search: str | None,
    connectivity: Connectivity | None = None,
) -> DeviceFilter:
    from fieldwatch.devices.repository import DeviceFilter

    return DeviceFilter(
        status=[s.value for s in status or []], type=type_, location=location, q=search or None,
        connectivity=connectivity.value if connectivity else None,
    )  # fmt: skip


async def _page(
    workspace: str, flt: DeviceFilter, limit: int
) -> tuple[list[dict[str, object]], int]:
    from fieldwatch.devices.schemas import DeviceRead
    from fieldwatch.devices.service import DeviceService

    async with cli_uow() as uow:
        principal = await workspace_principal(uow, workspace)
        items, total = await DeviceService(uow).page(
            principal, flt, limit=limit, offset=0, sort="name"
        )
        return [DeviceRead.model_validate(d).model_dump(mode="json") for d in items], total


@devices_app.command("list")
def devices_list(
    workspace: WorkspaceOption = "default",
    status: StatusOption = None,
    type_: TypeOption = None,
    location: LocationOption = None,
    search: SearchOption = None,
    connectivity: ConnectivityOption = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """The devices of a workspace, by name; filters combine."""
    flt = _filter(status, type_, location, search, connectivity)
    items, total = asyncio.run(_page(workspace, flt, limit))
    if as_json:
        print_json({"items": items, "total": total})
        return
    keys = ["id", "name", "type", "serial_number", "status", "location", "last_seen"]
    typer.echo(table(LIST_COLUMNS, [[d[k] for k in keys] for d in items]))
    typer.echo(f"{len(items)} of {total} device(s) in {workspace!r}.", err=True)


def _count_rows(chunk: str) -> int:
    return sum(1 for _ in csv.reader(io.StringIO(chunk)))


async def _export(workspace: str, flt: DeviceFilter, out: TextIO) -> int:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from fieldwatch.db.engine import create_sessionmaker
    from fieldwatch.devices.csvio import export_csv
    from fieldwatch.devices.service import DeviceService

    async with cli_uow() as uow:
        principal = await workspace_principal(uow, workspace)
        _, total = await DeviceService(uow).page(principal, flt, limit=1, offset=0, sort="name")
        engine = uow.session.bind
        assert isinstance(engine, AsyncEngine)
        progress, done = Progress("devices", total), 0
        chunks = export_csv(create_sessionmaker(engine), principal, flt)
        out.write(await anext(chunks))  # the header
        async for chunk in chunks:
            out.write(chunk)
            done += _count_rows(chunk)
            progress(done)
        progress.close()
    return done


@devices_app.command("export")
def devices_export(
    workspace: WorkspaceOption = "default",
    status: StatusOption = None,
    type_: TypeOption = None,
    location: LocationOption = None,
    search: SearchOption = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", dir_okay=False, help="File (default: stdout)")
    ] = None,
) -> None:
    """Matching devices as CSV, the columns `devices import` reads (the API's export)."""
    flt = _filter(status, type_, location, search)
    if output is None:
        count = asyncio.run(_export(workspace, flt, sys.stdout))
        sys.stdout.flush()
        return
    with output.open("w", encoding="utf-8", newline="") as out:
        count = asyncio.run(_export(workspace, flt, out))
    typer.echo(f"Exported {count} device(s) to {output}.", err=True)


async def _import(path: Path, text: str, workspace: str, dry_run: bool) -> int:
    from fieldwatch.core.errors import AppError
    from fieldwatch.inventory.importer import DeviceImporter, parse_csv, parse_json

    try:
        rows = parse_json(json.loads(text)) if path.suffix.lower() == ".json" else parse_csv(text)
    except (AppError, json.JSONDecodeError) as exc:
        raise CliError(f"{path}: {getattr(exc, 'detail', exc)}") from exc
    # The import publishes device events: the bus is started first.
    async with cli_uow(start_bus=True) as uow:
        principal = await workspace_principal(uow, workspace)

        def progress(done: int, total: int) -> None:
            typer.echo(f"  {done}/{total} rows", err=True)

        typer.echo(f"Importing {len(rows)} rows from {path} into {workspace!r}…", err=True)
        result = await DeviceImporter(uow).run(principal, rows, dry_run=dry_run, progress=progress)
        if dry_run:
            await uow.rollback()
        else:
            await uow.commit()
    for row in result.rows:
        if row.status == "error":
            problems = "; ".join(f"{e['field']}: {e['message']}" for e in row.errors)
            where = f"line {row.line}" if row.line else f"row {row.row}"
            typer.echo(f"  {where}: {problems}", err=True)
    saved = "dry run, nothing saved" if dry_run else "good rows saved"
    typer.echo(
        f"{result.created} created, {result.updated} updated, {result.unchanged} unchanged, "
        f"{result.failed} failed ({result.total} rows; {saved})."
    )
    return 1 if result.failed else 0


@devices_app.command("import")
def devices_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A .csv or .json file")],
    workspace: Annotated[str, typer.Option(help="Target workspace")] = "default",
    dry_run: Annotated[bool, typer.Option(help="Check every row, save nothing")] = False,
) -> None:
    """Import devices from CSV (or a JSON array). Exit code 1 if any row failed;
    progress on stderr."""
    text = file.read_text(encoding="utf-8-sig")
    code = asyncio.run(_import(file, text, workspace, dry_run))
    raise typer.Exit(code)
