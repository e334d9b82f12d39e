"""The ``fieldwatch`` command line.

Every command goes through one error boundary (``main``): a failure is one or two lines
on stderr and a non-zero exit; ``fieldwatch --debug …`` adds the traceback. Commands
import the platform's modules when they run, so ``--version``, ``--help`` and
``status`` start at once."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from fieldwatch import __version__
from fieldwatch.agent.cli import simulate_command
from fieldwatch.cli.database import db_app
from fieldwatch.cli.devices import devices_app
from fieldwatch.cli.errors import OPTIONS, report
from fieldwatch.cli.serve import serve
from fieldwatch.cli.status import status
from fieldwatch.cli.tokens import tokens_app
from fieldwatch.cli.users import users_app

app = typer.Typer(help="Fieldwatch: IoT fleet inventory and monitoring.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(devices_app, name="devices")
app.add_typer(tokens_app, name="tokens")
app.command()(serve)
app.command()(status)
app.command("simulate")(simulate_command)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"fieldwatch {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an error")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version, help="Print the version"),
    ] = False,
) -> None:
    OPTIONS.debug = debug


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        sys.exit(report(exc))
