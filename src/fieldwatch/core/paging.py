"""Paging: the query parameters of every list, and the pages lists answer with.

One bound for each parameter, so no value reaches the database that it cannot hold (an
offset past 2**63 is a 422 here, not an overflow there). Three kinds of page: by
limit/offset with the total (``Page``), by an opaque cursor (``CursorPage``) and by the
id of the last entry seen (``BeforeIdPage``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field

#: The furthest a list can be paged with limit/offset.
MAX_OFFSET = 10_000_000
#: Row ids used as cursors are 64-bit integers.
MAX_ID = 2**63 - 1

Limit = Annotated[int, Query(ge=1, le=500, description="Rows per page")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Rows to skip")]
BeforeId = Annotated[
    int | None, Query(ge=1, le=MAX_ID, description="Only entries older than this id (paging)")
]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class Page(BaseModel, Generic[T]):
    """A page of a list paged with ``limit`` and ``offset``; ``total`` counts all matches."""

    items: list[T]
    total: int
    limit: int
    offset: int


def page_of(item: type[M], rows: Iterable[Any], total: int, *, limit: int, offset: int) -> Page[M]:
    """A ``Page`` of ``rows`` (ORM objects or mappings) read as ``item``."""
    items = [item.model_validate(row) for row in rows]
    return Page[M](items=items, total=total, limit=limit, offset=offset)


class CursorPage(BaseModel, Generic[T]):
    """A page of a list paged with an opaque cursor."""

    items: list[T]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page")


class BeforeIdPage(BaseModel, Generic[T]):
    """A page of a log, newest first, paged with the id of the oldest entry seen."""

    items: list[T]
    next_before_id: int | None = Field(
        description="Pass as ?before_id= to get the next (older) page; null at the end"
    )
