"""Writing batches of readings: the fastest path each database has.

PostgreSQL: a statement-level trigger (migration 0008) folds whatever a statement
inserted into ``readings`` into the 1-minute and 1-hour rollups and the series' latest
values, so the writer only has to insert. Two ways in:

- fast: binary ``COPY`` straight into the partitioned table, when every reading is newer
  than what this process knows to be stored for its series (a device sending in time
  order, the common case). The primary key ``(series_id, ts)`` still guards: should a
  duplicate slip through (another process wrote meanwhile, a retry in the same batch),
  the ``COPY`` fails whole, nothing of it stays, and the careful path runs instead.
- careful: ``COPY`` into a per-connection temporary staging table, then one statement
  (``DEDUP_SQL``) that inserts the staged readings not stored yet and answers with the
  keys of those that were (usually none), for the per-request split of new and
  duplicate readings.

Behind PgBouncer in transaction mode (``pgbouncer``) nothing may outlive a transaction:
no statement cache, every query in a transaction of its own, and the staging table is
made in the careful write's transaction and dropped at its commit.

SQLite: multi-row ``INSERT … ON CONFLICT DO NOTHING RETURNING`` through SQLAlchemy, and
rollups and latest values computed here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import chain
from typing import Any, Protocol

from sqlalchemy import func, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from fieldwatch.telemetry.models import Reading, Rollup1h, Rollup1m, Series
from fieldwatch.telemetry.storage import partitions
from fieldwatch.telemetry.storage.rollup import Row, deltas, latest

log = logging.getLogger(__name__)

Key = tuple[int, datetime]
COLUMNS = ["series_id", "ts", "value", "text_value", "quality"]


@dataclass(frozen=True, slots=True)
class Chunk:
    """The rows of one request, with their time span. ``fresh``: every row is newer
    than the newest reading this process knows to be stored for its series (a hint that
    picks the fast path; the primary key has the last word)."""

    rows: Sequence[Row]
    oldest: datetime
    newest: datetime
    fresh: bool = False


class ReadingStore(Protocol):
    async def write(self, chunks: Sequence[Chunk]) -> list[int]:
        """Store all chunks in one transaction; return how many rows of each were new
        (a row already stored, or repeated earlier in the same call, is a duplicate)."""
        ...

    async def close(self) -> None: ...


#: The careful path: deduplicate the staged rows among themselves and against the
#: table, insert the new ones (the trigger maintains rollups and latest values from
#: exactly those), and answer with counts and the keys of staged readings that were
#: already stored.
DEDUP_SQL = """
WITH src AS (
    SELECT DISTINCT ON (series_id, ts) series_id, ts, value, text_value, quality
    FROM readings_stage ORDER BY series_id, ts
), ins AS (
    INSERT INTO readings (series_id, ts, value, text_value, quality)
    SELECT series_id, ts, value, text_value, quality FROM src
    ON CONFLICT (series_id, ts) DO NOTHING
    RETURNING series_id, ts
), counts AS (
    SELECT (SELECT count(*) FROM src) AS distinct_rows, (SELECT count(*) FROM ins) AS inserted
)
SELECT c.distinct_rows, c.inserted,
    CASE WHEN c.inserted < c.distinct_rows THEN (
        SELECT array_agg(src.series_id) FROM src
        WHERE NOT EXISTS (SELECT 1 FROM ins WHERE ins.series_id = src.series_id AND ins.ts = src.ts)
    ) END AS dup_series,
    CASE WHEN c.inserted < c.distinct_rows THEN (
        SELECT array_agg(src.ts) FROM src
        WHERE NOT EXISTS (SELECT 1 FROM ins WHERE ins.series_id = src.series_id AND ins.ts = src.ts)
    ) END AS dup_ts
FROM counts AS c
"""


def split_counts(chunks: Sequence[Chunk], total: int, distinct: int, stored: set[Key]) -> list[int]:
    """New rows per chunk. ``stored``: keys that were in the database already. A key
    repeated within the call counts as new once, at its first occurrence."""
    if distinct == total and not stored:
        return [len(c.rows) for c in chunks]
    seen = set(stored)
    counts = []
    for chunk in chunks:
        n = 0
        for row in chunk.rows:
            key = (row[0], row[1])
            if key not in seen:
                seen.add(key)
                n += 1
        counts.append(n)
    return counts


STAGE_COLUMNS = (
    "(series_id bigint NOT NULL, ts timestamptz NOT NULL, value float8, text_value text, "
    "quality int2)"
)


class PostgresReadingStore:
    def __init__(self, dsn: str, *, connections: int = 2, pgbouncer: bool = False) -> None:
        self.dsn = dsn
        self.connections = connections
        self.pgbouncer = pgbouncer
        self._pool: Any = None
        self.partitions = partitions.PartitionManager()
        #: How many writes took each path (for tests and the benchmark's curiosity).
        self.fast_writes = 0
        self.careful_writes = 0
        self._starting = asyncio.Lock()

    async def start(self) -> None:
        async with self._starting:  # the writer's workers may all start it at once
            if self._pool is None:
                await self._start()

    async def _start(self) -> None:
        import asyncpg

        async def setup(conn: Any) -> None:
            await conn.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS readings_stage {STAGE_COLUMNS} "
                "ON COMMIT DELETE ROWS"
            )

        options: dict[str, Any] = {"init": setup}
        if self.pgbouncer:
            options = {"statement_cache_size": 0}
        self._pool = await asyncpg.create_pool(
            self.dsn,
            min_size=0,  # no background reconnect loop (and its tracebacks) in an outage
            max_size=self.connections,
            command_timeout=60,
            server_settings={"timezone": "UTC", "application_name": "fieldwatch-writer"},
            **options,
        )
        async with self._pool.acquire() as conn, conn.transaction():
            await self.partitions.load(conn)
            now = datetime.now().astimezone()
            await self._ensure_partitions(conn, now, now + timedelta(weeks=2))

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _ensure_partitions(self, conn: Any, oldest: datetime, newest: datetime) -> None:
        import asyncpg

        week, last = partitions.week_start(oldest), partitions.week_start(newest)
        weeks = {week}
        while week < last:
            week += partitions.WEEK
            weeks.add(week)
        for attempt in range(3):
            if not self.partitions.missing(weeks):
                return
            try:
                # A transaction of its own, or a savepoint in the caller's (start-up's):
                # a refusal rolls back only this, and the caller's transaction goes on.
                async with conn.transaction():
                    await self.partitions.ensure(conn, weeks)
                return
            except (asyncpg.DuplicateTableError, asyncpg.UniqueViolationError):
                if attempt == 2:
                    raise
                async with conn.transaction():  # another process made one meanwhile
                    await self.partitions.load(conn)

    async def write(self, chunks: Sequence[Chunk]) -> list[int]:
        import asyncpg

        if self._pool is None:
            await self.start()
        if len(chunks) == 1:
            records = chunks[0].rows
        else:
            records = list(chain.from_iterable(c.rows for c in chunks))
        async with self._pool.acquire() as conn:
            await self._ensure_partitions(
                conn, min(c.oldest for c in chunks), max(c.newest for c in chunks)
            )
            if all(c.fresh for c in chunks):
                try:
                    async with conn.transaction():
                        await conn.copy_records_to_table(
                            "readings", records=records, columns=COLUMNS
                        )
                except asyncpg.UniqueViolationError:
                    log.debug("a fresh batch held stored readings; deduplicating it")
                else:
                    self.fast_writes += 1
                    return [len(c.rows) for c in chunks]
            async with conn.transaction():
                if self.pgbouncer:
                    await conn.execute(
                        f"CREATE TEMP TABLE readings_stage {STAGE_COLUMNS} ON COMMIT DROP"
                    )
                await conn.copy_records_to_table("readings_stage", records=records, columns=COLUMNS)
                distinct, _inserted, dup_series, dup_ts = await conn.fetchrow(DEDUP_SQL)
        self.careful_writes += 1
        stored = set(zip(dup_series, dup_ts, strict=True)) if dup_series else set()
        return split_counts(chunks, len(records), distinct, stored)


class SqliteReadingStore:
    CHUNK = 6000  # 5 columns a row, under SQLite's 32,766 bound parameters

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def close(self) -> None:
        return None

    async def write(self, chunks: Sequence[Chunk]) -> list[int]:
        rows = [row for chunk in chunks for row in chunk.rows]
        new: set[Key] = set()
        async with self.engine.begin() as conn:
            for start in range(0, len(rows), self.CHUNK):
                chunk = [
                    dict(zip(COLUMNS, r, strict=True)) for r in rows[start : start + self.CHUNK]
                ]
                stmt = (
                    sqlite_insert(Reading)
                    .values(chunk)
                    .on_conflict_do_nothing()
                    .returning(Reading.series_id, Reading.ts)
                )
                new.update((sid, ts) for sid, ts in (await conn.execute(stmt)).all())
            # The rows inserted: the first of each new key (a key repeated within the
            # call is inserted once, by its first occurrence).
            pending = set(new)
            fresh = []
            for r in rows:
                if (r[0], r[1]) in pending:
                    pending.discard((r[0], r[1]))
                    fresh.append(r)
            for model, seconds in ((Rollup1m, 60), (Rollup1h, 3600)):
                d = deltas(fresh, seconds)
                if not d:
                    continue
                ins = sqlite_insert(model)
                upsert = ins.on_conflict_do_update(
                    index_elements=["series_id", "bucket"],
                    set_={
                        "count": model.count + ins.excluded.count,
                        "sum": model.sum + ins.excluded.sum,
                        "min": func.min(model.min, ins.excluded.min),
                        "max": func.max(model.max, ins.excluded.max),
                    },
                )
                keys = ["series_id", "bucket", "count", "sum", "min", "max"]
                await conn.execute(upsert, [dict(zip(keys, x, strict=True)) for x in d])
            for sid, ts, value, text, quality in latest(fresh):
                await conn.execute(
                    update(Series)
                    .where(Series.id == sid)
                    .where(Series.last_ts.is_(None) | (Series.last_ts < ts))
                    .values(last_ts=ts, last_value=value, last_text=text, last_quality=quality)
                )
        distinct = len({(r[0], r[1]) for r in rows})
        stored = {(r[0], r[1]) for r in rows} - new
        return split_counts(chunks, len(rows), distinct, stored)
