"""The schema comes from the migrations; they must match the models exactly."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from fieldwatch.db import migrate
from fieldwatch.db.models import Base


async def test_migrated_schema_matches_the_models(runtime):
    def diff(conn):
        opts = {"compare_type": True, "include_object": migrate.include_object}
        ctx = MigrationContext.configure(conn, opts=opts)
        return compare_metadata(ctx, Base.metadata)

    async with runtime.engine.connect() as conn:
        problems = await conn.run_sync(diff)
    assert problems == []
    assert await migrate.is_up_to_date(runtime.engine)


async def test_device_search_uses_trigram_indexes_on_postgres(runtime, backend):
    if backend.name != "postgres":
        pytest.skip("trigram indexes exist only on PostgreSQL")
    from sqlalchemy import text

    async with runtime.engine.connect() as conn:
        names = set(
            (
                await conn.execute(
                    text("SELECT indexname FROM pg_indexes WHERE tablename = 'devices'")
                )
            )
            .scalars()
            .all()
        )
    assert {"ix_devices_name_trgm", "ix_devices_serial_number_trgm"} <= names


async def test_downgrade_and_upgrade_again(runtime):
    await migrate.downgrade(runtime.engine, "base")
    async with runtime.engine.connect() as conn:
        tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
    assert set(tables) <= {"alembic_version"}
    await migrate.upgrade(runtime.engine)
    assert await migrate.is_up_to_date(runtime.engine)
