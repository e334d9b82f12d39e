"""Schema migrations, applied programmatically (``fieldwatch db upgrade``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

#: Indexes that migrations create only where the database supports them (pg_trgm);
#: they are not in the models, so schema comparison leaves them alone.
OPTIONAL_INDEX_SUFFIX = "_trgm"
#: Partitions of the readings table, created at run time (telemetry.storage.partitions).
PARTITION_PREFIX = "readings_p"
#: SQLite's full-text search table of the devices and its shadow tables (migration 0014).
SEARCH_TABLE_PREFIX = "device_search"


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    name = name or ""
    if type_ == "index" and reflected and name.endswith(OPTIONAL_INDEX_SUFFIX):
        return False
    return not (
        type_ == "table" and reflected and name.startswith((PARTITION_PREFIX, SEARCH_TABLE_PREFIX))
    )


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    def _run(conn: Connection) -> None:
        command.upgrade(alembic_config(conn), revision)

    async with engine.begin() as conn:
        await conn.run_sync(_run)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    def _run(conn: Connection) -> None:
        command.downgrade(alembic_config(conn), revision)

    async with engine.begin() as conn:
        await conn.run_sync(_run)


async def current_revision(engine: AsyncEngine) -> str | None:
    def _current(conn: Connection) -> Any:
        return MigrationContext.configure(conn).get_current_revision()

    async with engine.connect() as conn:
        result: str | None = await conn.run_sync(_current)
        return result


async def is_up_to_date(engine: AsyncEngine) -> bool:
    return await current_revision(engine) == head_revision()
