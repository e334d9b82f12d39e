"""Query parameters of every list: one bound for each, so no value reaches the database
that it cannot hold (an offset past 2**63 is a 422 here, not an overflow there)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

#: The furthest a list can be paged with limit/offset.
MAX_OFFSET = 10_000_000
#: Row ids used as cursors are 64-bit integers.
MAX_ID = 2**63 - 1

Limit = Annotated[int, Query(ge=1, le=500, description="Rows per page")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Rows to skip")]
BeforeId = Annotated[
    int | None, Query(ge=1, le=MAX_ID, description="Only entries older than this id (paging)")
]
