"""One error boundary for the command line: a known failure is one or two lines on
stderr and a non-zero exit, never a traceback (``fieldwatch --debug …`` shows it)."""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass

import typer
from pydantic import ValidationError
from sqlalchemy.exc import ArgumentError

from fieldwatch.core.errors import AppError
from fieldwatch.core.settings import Settings, get_settings
from fieldwatch.db.engine import normalize_url
from fieldwatch.db.faults import unavailable_reason

#: SQLSTATEs of connection attempts refused for a reason the operator fixes in the URL:
#: a wrong password or user (class 28) and a database that does not exist (3D000).
_LOGIN_SQLSTATES = ("28", "3D000")


class CliError(Exception):
    """A failure the operator can act on: its message says what failed and what to do.
    ``exit_code``: 1, or 2 for a configuration the command refuses to run with."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Options:
    """The global options (``fieldwatch --debug …``) and what the error boundary needs
    to explain a failure (the database it talked to)."""

    debug: bool = False
    database: str | None = None


OPTIONS = Options()


def load_settings() -> Settings:
    """The settings from the environment, checked: a bad value is a ``CliError``."""
    try:
        settings = get_settings()
        settings.check_production_safety()
        url = normalize_url(settings.resolved_database_url)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "FIELDWATCH_" + str(first["loc"][0]).upper() if first["loc"] else "a setting"
        raise CliError(f"Invalid {name}: {first['msg']}.") from exc
    except (ValueError, ArgumentError) as exc:
        raise CliError(f"Invalid settings: {exc}.") from exc
    OPTIONS.database = url.set(drivername=url.get_backend_name()).render_as_string(
        hide_password=True
    )
    return settings


def _login_refused(exc: BaseException) -> str | None:
    seen: set[int] = set()
    item: BaseException | None = exc
    while item is not None and id(item) not in seen:
        seen.add(id(item))
        sqlstate = getattr(item, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_LOGIN_SQLSTATES):
            return str(item)
        item = getattr(item, "orig", None) or item.__cause__ or item.__context__
    return None


def explain(exc: BaseException) -> str | None:
    """One or two lines for a known failure; ``None`` for anything else."""
    if isinstance(exc, CliError):
        return str(exc)
    if isinstance(exc, AppError):  # a rule of the platform said no (not found, conflict)
        return exc.detail
    where = OPTIONS.database or "the configured database"
    refused = _login_refused(exc)
    if refused:
        return (
            f"The database at {where} refused the connection: {refused}.\n"
            "Check FIELDWATCH_DATABASE_URL."
        )
    reason = unavailable_reason(exc)
    if reason:
        return (
            f"Cannot reach the database at {where}: {reason}.\n"
            "Check FIELDWATCH_DATABASE_URL and that the database server is running."
        )
    return None


def report(exc: BaseException) -> int:
    """Print ``exc`` as the command line shows failures; the exit code to end with."""
    if OPTIONS.debug:
        traceback.print_exception(exc, file=sys.stderr)
    message = explain(exc)
    if message is None:
        message = f"{type(exc).__name__}: {exc}"
        if not OPTIONS.debug:
            message += "\nRun it again as `fieldwatch --debug …` to see the traceback."
    typer.secho(f"Error: {message}", fg=typer.colors.RED, err=True)
    return exc.exit_code if isinstance(exc, CliError) else 1
