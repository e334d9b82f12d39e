"""Weekly partitions of ``readings`` on PostgreSQL.

Partitions cover Monday 00:00 UTC to the next Monday and are named
``readings_pYYYYMMDD`` after their first day. The writer makes sure the partitions a
batch needs exist before it copies (creating them on demand for late or backfilled
data), and a maintenance task creates the coming weeks ahead and drops weeks past
every workspace's retention.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

log = logging.getLogger(__name__)

WEEK = timedelta(days=7)
PREFIX = "readings_p"


def week_start(ts: datetime) -> date:
    day = ts.astimezone(UTC).date()
    return day - timedelta(days=day.weekday())


def partition_name(start: date) -> str:
    return f"{PREFIX}{start:%Y%m%d}"


def partition_start(name: str) -> date | None:
    if not name.startswith(PREFIX):
        return None
    try:
        return datetime.strptime(name[len(PREFIX) :], "%Y%m%d").date()
    except ValueError:
        return None


class PartitionManager:
    """Keeps track of existing partitions (cached per process) and creates missing ones.

    ``conn`` arguments are asyncpg connections (the writer's raw connection)."""

    def __init__(self) -> None:
        self._known: set[date] = set()

    async def load(self, conn: Any) -> None:
        rows = await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'readings'"
        )
        self._known = {d for r in rows if (d := partition_start(r["relname"])) is not None}

    def missing(self, weeks: Iterable[date]) -> list[date]:
        return sorted(set(weeks) - self._known)

    async def ensure(self, conn: Any, weeks: Iterable[date]) -> None:
        for start in self.missing(weeks):
            end = start + WEEK
            name = partition_name(start)
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF readings "
                f"FOR VALUES FROM ('{start.isoformat()}T00:00:00+00') "
                f"TO ('{end.isoformat()}T00:00:00+00')"
            )
            self._known.add(start)
            log.info("created readings partition", extra={"partition": name})

    async def drop_before(self, conn: Any, cutoff: datetime) -> list[str]:
        """Drop every partition that ends at or before ``cutoff``."""
        await self.load(conn)
        dropped = []
        for start in sorted(self._known):
            if datetime(start.year, start.month, start.day, tzinfo=UTC) + WEEK <= cutoff:
                name = partition_name(start)
                await conn.execute(f"DROP TABLE IF EXISTS {name}")
                self._known.discard(start)
                dropped.append(name)
        return dropped
