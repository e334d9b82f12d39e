"""The device list's filter: the WHERE clauses of a page, of its count and of an export.

The free-text search (``q``) is a case-insensitive substring match on the name or the
serial number, a ``LIKE '%q%'`` everywhere. An index finds its rows where there is one:
on PostgreSQL the trigram GIN indexes on ``lower(name)`` and ``lower(serial_number)``
(migration 0002); on SQLite the FTS5 table ``device_search`` with the ``trigram``
tokenizer (migration 0014), which narrows the search to the devices whose name or
serial number holds the text's trigrams. The ``LIKE`` stays in the query and decides:
the index only finds candidates (a superset: FTS5 folds case beyond ASCII, SQLite's
``LIKE`` does not), so the rows, their order and the total are those of the scan.
"""

from __future__ import annotations

import sqlite3
import weakref
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, String, column, exists, literal_column, or_, select, table
from sqlalchemy import text as sql_text
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal

from fieldwatch.devices.models import Device
from fieldwatch.devices.tags import has_tags
from fieldwatch.monitoring.models import DevicePresence

#: The FTS5 table of migration 0014 (SQLite only): its rowid is the device row's rowid.
SEARCH_TABLE = "device_search"
#: The presence index a connectivity filter probes (migration 0011).
PRESENCE_INDEX = "ix_device_presence_workspace_id_connectivity_device_id"
#: The ``trigram`` tokenizer came with SQLite 3.34.
TRIGRAM_SQLITE = (3, 34, 0)
#: A trigram index finds texts of 3 characters or more; a shorter ``q`` scans.
MIN_INDEXED_Q = 3

_search_table = table(SEARCH_TABLE, column("rowid"), column(SEARCH_TABLE))
_has_search_table: weakref.WeakKeyDictionary[Engine, bool] = weakref.WeakKeyDictionary()


class folded(FunctionElement[str]):
    """A column folded for a case-insensitive ``LIKE``: ``lower(column)``, as the trigram
    indexes on PostgreSQL are built. On SQLite the column as it is: SQLite's ``LIKE``
    ignores ASCII case by itself (and its ``lower()`` folds ASCII only), so a search
    that scans saves a call per row (100,000 devices: ~80 → ~40 ms a scan)."""

    type = String()
    name = "folded"
    inherit_cache = True


@compiles(folded)
def _folded(element: folded, compiler: SQLCompiler, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(folded, "sqlite")
def _folded_sqlite(element: folded, compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@dataclass
class DeviceFilter:
    status: list[str] = field(default_factory=list)
    type: str | None = None
    location: str | None = None
    q: str | None = None
    #: ``online`` or ``offline`` (never seen counts as offline), as the database records it
    connectivity: str | None = None
    #: Devices carrying every one of these tags
    tags: list[str] = field(default_factory=list)
    #: Only the devices of a group: ``GroupService.scope`` resolves a group's id (in the
    #: caller's workspace) to this clause.
    group: ColumnElement[bool] | None = None

    def clauses(self) -> list[ColumnElement[bool]]:
        out: list[ColumnElement[bool]] = []
        if self.group is not None:
            out.append(self.group)
        if self.tags:
            out.append(has_tags(self.tags))
        if self.status:
            out.append(Device.status.in_(self.status))
        if self.type:
            out.append(Device.type == self.type)
        if self.location:
            out.append(Device.location == self.location)
        if self.q:
            pattern = "%" + escape_like(self.q.lower()) + "%"
            out.append(
                or_(
                    folded(Device.name).like(pattern, escape="\\"),
                    folded(Device.serial_number).like(pattern, escape="\\"),
                )
            )
        if self.connectivity:
            out.append(_presence(online=self.connectivity == "online"))
        return out


async def filter_clauses(session: AsyncSession, flt: DeviceFilter) -> list[ColumnElement[bool]]:
    """``flt``'s clauses, and on SQLite with the search table, for a ``q`` it can find,
    the candidates of the search index."""
    out = flt.clauses()
    text = flt.q.lower() if flt.q else ""  # the text the LIKE looks for
    if text and await _search_indexed(session, text):
        out.append(_search_candidates(text))
    return out


def _search_candidates(text: str) -> ColumnElement[bool]:
    """The device rows whose name or serial number has ``text``'s trigrams in a row (in
    one column, case folded): FTS5's phrase query, ``text`` quoted as one string. Built
    from the lowered ``q`` as the ``LIKE`` pattern is (``"İ".lower()`` is two characters),
    so every row the ``LIKE`` finds is a candidate."""
    phrase = '"' + text.replace('"', '""') + '"'
    found = select(_search_table.c.rowid).where(_search_table.c[SEARCH_TABLE].match(phrase))
    return literal_column("devices.rowid").in_(found)


async def _search_indexed(session: AsyncSession, text: str) -> bool:
    if len(text) < MIN_INDEXED_Q or "\x00" in text:  # FTS5 would cut the text at a NUL
        return False
    bind = session.get_bind()
    if bind.dialect.name != "sqlite" or sqlite3.sqlite_version_info < TRIGRAM_SQLITE:
        return False
    engine = bind if isinstance(bind, Engine) else bind.engine
    known = _has_search_table.get(engine)
    if known is None:
        found = await session.scalar(
            sql_text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :name"),
            {"name": SEARCH_TABLE},
        )
        known = _has_search_table[engine] = found is not None
    return known


def forget_search_table() -> None:
    """Look for the search table again (after a migration changed it under an engine)."""
    _has_search_table.clear()


class _presence(ColumnElement[bool]):
    """The device's presence row says online (``EXISTS``, a semi-join), or not (``NOT
    EXISTS``, an anti-join), on ``device_presence`` through its (workspace,
    connectivity, device) index."""

    inherit_cache = True
    _traverse_internals = [("online", InternalTraversal.dp_boolean)]

    def __init__(self, online: bool) -> None:
        self.online = online


def _presence_sql(element: _presence, compiler: SQLCompiler, **kw: Any) -> str:
    probe = exists().where(
        DevicePresence.workspace_id == Device.workspace_id,
        DevicePresence.connectivity == "online",
        DevicePresence.device_id == Device.id,
    )
    sql = str(compiler.process(probe, **kw))
    return sql if element.online else f"NOT {sql}"


@compiles(_presence)
def _presence_default(element: _presence, compiler: SQLCompiler, **kw: Any) -> str:
    return _presence_sql(element, compiler, **kw)


@compiles(_presence, "sqlite")
def _presence_sqlite(element: _presence, compiler: SQLCompiler, **kw: Any) -> str:
    """SQLite's planner probes the primary key (device_id), then reads the presence row
    for its workspace and connectivity; the (workspace, connectivity, device) index
    answers alone. A type's ~6,000 deployed devices of 100,000: ~22 → ~13 ms a count."""
    table = f"FROM {DevicePresence.__tablename__}"
    sql = _presence_sql(element, compiler, **kw)
    return sql.replace(table, f"{table} INDEXED BY {PRESENCE_INDEX}", 1)


def escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
