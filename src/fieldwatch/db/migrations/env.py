"""Alembic environment. Fieldwatch runs it through ``fieldwatch db upgrade``; the
connection is passed in by ``fieldwatch.db.migrate``."""

from __future__ import annotations

from alembic import context

from fieldwatch.db.migrate import include_object
from fieldwatch.db.models import Base

target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations with `fieldwatch db upgrade`")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline SQL generation is not supported; use `fieldwatch db upgrade`")
run_migrations_online()
