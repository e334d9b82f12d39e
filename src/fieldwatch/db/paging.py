"""One page of a query: its rows for ``limit``/``offset`` and the count of all of them.

The statement must be ordered on a unique key (ties broken by an id) so that pages do
not overlap. The count drops the ordering and counts the statement as a subquery, so it
works for joins and filters alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")


async def count(session: AsyncSession, stmt: Select[Any]) -> int:
    """How many rows ``stmt`` selects."""
    counted = select(func.count()).select_from(stmt.order_by(None).subquery())
    return int(await session.scalar(counted) or 0)


async def scalars_page(
    session: AsyncSession, stmt: Select[tuple[T]], *, limit: int, offset: int
) -> tuple[Sequence[T], int]:
    """The entities of one page of ``stmt`` and the total."""
    rows = (await session.scalars(stmt.limit(limit).offset(offset))).all()
    return rows, await _total(session, stmt, len(rows), limit, offset)


async def rows_page(
    session: AsyncSession, stmt: Select[Any], *, limit: int, offset: int
) -> tuple[Sequence[Any], int]:
    """The rows (tuples) of one page of ``stmt`` and the total."""
    rows = (await session.execute(stmt.limit(limit).offset(offset))).tuples().all()
    return rows, await _total(session, stmt, len(rows), limit, offset)


async def _total(
    session: AsyncSession, stmt: Select[Any], found: int, limit: int, offset: int
) -> int:
    """A short page that starts at the beginning holds everything: no count needed."""
    if offset == 0 and found < limit:
        return found
    return await count(session, stmt)
