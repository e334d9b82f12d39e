"""Writing batches of readings: the fastest path each database has.

PostgreSQL: binary ``COPY`` straight into the (partitioned) readings table. The primary
key does the deduplication: when a batch holds a reading that is already stored, the
COPY fails as a whole and the batch goes through a staging table with
``INSERT … ON CONFLICT DO NOTHING RETURNING``, which tells exactly which readings were
new. Rollups and each series' latest value are updated in the same transaction, from
the new readings only.

SQLite: multi-row ``INSERT … ON CONFLICT DO NOTHING RETURNING`` through SQLAlchemy.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from fieldwatch.telemetry import partitions
from fieldwatch.telemetry.models import Reading, Rollup1h, Rollup1m, Series
from fieldwatch.telemetry.rollup import Row, deltas, latest

log = logging.getLogger(__name__)

Key = tuple[int, datetime]
COLUMNS = ["series_id", "ts", "value", "text_value", "quality"]


class ReadingStore(Protocol):
    async def write(self, rows: Sequence[Row]) -> set[Key] | None:
        """Store the rows in one transaction. Returns None when every row was new, else
        the keys of the rows that were new (the others were duplicates)."""
        ...

    async def close(self) -> None: ...


class PostgresReadingStore:
    def __init__(self, dsn: str, *, connections: int = 2) -> None:
        self.dsn = dsn
        self.connections = connections
        self._pool: Any = None
        self.partitions = partitions.PartitionManager()

    async def start(self) -> None:
        import asyncpg

        self._pool = await asyncpg.create_pool(
            self.dsn, min_size=1, max_size=self.connections, command_timeout=60
        )
        async with self._pool.acquire() as conn:
            await self.partitions.load(conn)
            now = datetime.now().astimezone()
            ahead = [partitions.week_start(now + timedelta(weeks=w)) for w in range(0, 3)]
            await self.partitions.ensure(conn, ahead)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def write(self, rows: Sequence[Row]) -> set[Key] | None:
        import asyncpg

        if self._pool is None:
            await self.start()
        async with self._pool.acquire() as conn:
            lo = min(r[1] for r in rows)
            hi = max(r[1] for r in rows)
            weeks = {partitions.week_start(lo)}
            week = partitions.week_start(lo)
            while week < partitions.week_start(hi):
                week += partitions.WEEK
                weeks.add(week)
            if self.partitions.missing(weeks):
                try:
                    await self.partitions.ensure(conn, weeks)
                except asyncpg.DuplicateTableError:
                    await self.partitions.load(conn)  # another process made it
            async with conn.transaction():
                new: set[Key] | None = None
                try:
                    async with conn.transaction():  # a savepoint
                        await conn.copy_records_to_table("readings", records=rows, columns=COLUMNS)
                except asyncpg.UniqueViolationError:
                    new = await self._insert_new(conn, rows)
                fresh = rows if new is None else [r for r in rows if (r[0], r[1]) in new]
                await self._rollups(conn, fresh)
            return new

    async def _insert_new(self, conn: Any, rows: Sequence[Row]) -> set[Key]:
        await conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS readings_stage "
            "(LIKE readings INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        await conn.copy_records_to_table("readings_stage", records=rows, columns=COLUMNS)
        inserted = await conn.fetch(
            "INSERT INTO readings SELECT * FROM readings_stage "
            "ON CONFLICT (series_id, ts) DO NOTHING RETURNING series_id, ts"
        )
        return {(r["series_id"], r["ts"]) for r in inserted}

    async def _rollups(self, conn: Any, rows: Sequence[Row]) -> None:
        if not rows:
            return
        for table, seconds in (("rollup_1m", 60), ("rollup_1h", 3600)):
            d = deltas(rows, seconds)
            if not d:
                continue
            await conn.execute(  # table names are the two constants above
                f"""
                INSERT INTO {table} (series_id, bucket, count, sum, min, max)
                SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::int[],
                                     $4::float8[], $5::float8[], $6::float8[])
                ON CONFLICT (series_id, bucket) DO UPDATE SET
                    count = {table}.count + EXCLUDED.count,
                    sum = {table}.sum + EXCLUDED.sum,
                    min = LEAST({table}.min, EXCLUDED.min),
                    max = GREATEST({table}.max, EXCLUDED.max)
                """,  # noqa: S608
                *map(list, zip(*d, strict=True)),
            )
        last = latest(rows)
        await conn.execute(
            """
            UPDATE series AS s SET last_ts = u.ts, last_value = u.value,
                last_text = u.text_value, last_quality = u.quality
            FROM unnest($1::bigint[], $2::timestamptz[], $3::float8[], $4::text[], $5::int2[])
                AS u(id, ts, value, text_value, quality)
            WHERE s.id = u.id AND (s.last_ts IS NULL OR s.last_ts < u.ts)
            """,
            *map(list, zip(*last, strict=True)),
        )


class SqliteReadingStore:
    CHUNK = 6000  # 5 columns a row, under SQLite's 32,766 bound parameters

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def close(self) -> None:
        return None

    async def write(self, rows: Sequence[Row]) -> set[Key] | None:
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
            fresh = [r for r in rows if (r[0], r[1]) in new]
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
        return None if len(new) == len(rows) else new
