""" "Create if missing, else change": one statement on both databases.

A read-then-insert lets two requests that arrive together both see nothing and both
insert; the second then fails on the key. ``upsert`` leaves the choice to the database
(``INSERT … ON CONFLICT (key) DO UPDATE``), so every caller wins and the last write
stands.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession


def insert_for(session: AsyncSession, table: Any) -> Any:
    """An INSERT with ``on_conflict_*`` for the session's database."""
    assert session.bind is not None
    dialect = session.bind.dialect.name
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(table)


async def upsert(
    session: AsyncSession,
    model: Any,
    values: dict[str, Any],
    key: Sequence[str],
    *,
    update: Sequence[str] | None = None,
) -> None:
    """Insert ``values`` or, when a row with the same ``key`` exists, set the ``update``
    columns (default: every non-key column given). Objects of ``model`` already loaded in
    the session are refreshed on their next load (``populate_existing``)."""
    stmt = insert_for(session, model).values(**values)
    changed = update if update is not None else [c for c in values if c not in key]
    stmt = stmt.on_conflict_do_update(
        index_elements=list(key), set_={c: stmt.excluded[c] for c in changed}
    )
    await session.execute(stmt)
