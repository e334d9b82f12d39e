"""A device has tags: the SQL that selects the devices carrying every one of some tags.

The tags are a JSON array. On PostgreSQL (``JSONB``) one containment test,
``devices.tags @> jsonb_build_array(:t1, :t2)``, which a GIN index on the column would
answer; on SQLite one ``EXISTS`` over ``json_each(devices.tags)`` a tag. Each tag is a
bound parameter, so a statement compiles once for a number of tags.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, String, bindparam
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal

from fieldwatch.devices.models import Device


class has_tags(ColumnElement[bool]):
    """The device (``Device.tags``, or another tags column) carries all of ``tags``."""

    inherit_cache = True
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("values", InternalTraversal.dp_clauseelement_list),
    ]

    def __init__(self, tags: Sequence[str], column: ColumnElement[Any] | None = None) -> None:
        if not tags:
            raise ValueError("has_tags needs at least one tag")
        self.column: ColumnElement[Any] = Device.tags.expression if column is None else column
        self.values = [bindparam(None, tag, type_=String()) for tag in tags]


@compiles(has_tags)
def _has_tags(element: has_tags, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    items = ", ".join(compiler.process(v, **kw) for v in element.values)
    return f"({column} @> jsonb_build_array({items}))"


@compiles(has_tags, "sqlite")
def _has_tags_sqlite(element: has_tags, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    each = f"SELECT 1 FROM json_each({column}) WHERE value = "  # noqa: S608 (compiled SQL)
    probes = [f"EXISTS ({each}{compiler.process(v, **kw)})" for v in element.values]
    return "(" + " AND ".join(probes) + ")"
