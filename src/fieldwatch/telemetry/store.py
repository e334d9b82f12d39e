"""Writing batches of readings: the fastest path each database has.

PostgreSQL: binary ``COPY`` into a per-connection temporary staging table, then one
statement (``WRITE_SQL``) that inserts the new readings into the partitioned table,
updates rollups and latest values from exactly those, and counts them per request.
The primary key ``(series_id, ts)`` does the deduplication.

SQLite: multi-row ``INSERT … ON CONFLICT DO NOTHING RETURNING`` through SQLAlchemy.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from itertools import chain
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
    async def write(self, batches: Sequence[Sequence[Row]]) -> list[int]:
        """Store all batches in one transaction; return how many rows of each batch were
        new (a row already stored, or repeated earlier in the same call, is a duplicate)."""
        ...

    async def close(self) -> None: ...


#: One statement does the whole write on PostgreSQL, in C: deduplicate the staged rows,
#: insert the new ones, fold exactly those into the 1-minute and 1-hour rollups and the
#: series' latest values. Rollup and series rows are touched in key order, so
#: concurrent writers do not deadlock. It answers with counts, and with the keys of
#: staged readings that were already stored (usually none), so the per-request split of
#: new and duplicate readings needs no per-row work in Python in the common case.
WRITE_SQL = """
WITH src AS (
    SELECT DISTINCT ON (series_id, ts) series_id, ts, value, text_value, quality
    FROM readings_stage ORDER BY series_id, ts
), ins AS (
    INSERT INTO readings (series_id, ts, value, text_value, quality)
    SELECT series_id, ts, value, text_value, quality FROM src
    ON CONFLICT (series_id, ts) DO NOTHING
    RETURNING series_id, ts, value, text_value, quality
), m AS (
    INSERT INTO rollup_1m AS r (series_id, bucket, count, sum, min, max)
    SELECT series_id, date_trunc('minute', ts), count(*), sum(value), min(value), max(value)
    FROM ins WHERE value IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (series_id, bucket) DO UPDATE SET
        count = r.count + EXCLUDED.count, sum = r.sum + EXCLUDED.sum,
        min = LEAST(r.min, EXCLUDED.min), max = GREATEST(r.max, EXCLUDED.max)
    RETURNING 1
), h AS (
    INSERT INTO rollup_1h AS r (series_id, bucket, count, sum, min, max)
    SELECT series_id, date_trunc('hour', ts), count(*), sum(value), min(value), max(value)
    FROM ins WHERE value IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (series_id, bucket) DO UPDATE SET
        count = r.count + EXCLUDED.count, sum = r.sum + EXCLUDED.sum,
        min = LEAST(r.min, EXCLUDED.min), max = GREATEST(r.max, EXCLUDED.max)
    RETURNING 1
), l AS (
    UPDATE series AS s SET last_ts = u.ts, last_value = u.value,
        last_text = u.text_value, last_quality = u.quality
    FROM (
        SELECT DISTINCT ON (series_id) series_id, ts, value, text_value, quality
        FROM ins ORDER BY series_id, ts DESC
    ) AS u
    WHERE s.id = u.series_id AND (s.last_ts IS NULL OR s.last_ts < u.ts)
    RETURNING 1
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


def split_counts(
    batches: Sequence[Sequence[Row]], total: int, distinct: int, stored: set[Key]
) -> list[int]:
    """New rows per batch. ``stored``: keys that were in the database already. A key
    repeated within the call counts as new once, at its first occurrence."""
    if distinct == total and not stored:
        return [len(b) for b in batches]
    seen = set(stored)
    counts = []
    for batch in batches:
        n = 0
        for row in batch:
            key = (row[0], row[1])
            if key not in seen:
                seen.add(key)
                n += 1
        counts.append(n)
    return counts


class PostgresReadingStore:
    def __init__(self, dsn: str, *, connections: int = 2) -> None:
        self.dsn = dsn
        self.connections = connections
        self._pool: Any = None
        self.partitions = partitions.PartitionManager()

    async def start(self) -> None:
        import asyncpg

        if self._pool is not None:
            return

        async def setup(conn: Any) -> None:
            await conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS readings_stage (series_id bigint NOT NULL, "
                "ts timestamptz NOT NULL, value float8, text_value text, quality int2) "
                "ON COMMIT DELETE ROWS"
            )

        self._pool = await asyncpg.create_pool(
            self.dsn,
            min_size=1,
            max_size=self.connections,
            command_timeout=60,
            init=setup,
            # date_trunc on timestamptz follows the session time zone: buckets are UTC.
            server_settings={"timezone": "UTC", "application_name": "fieldwatch-writer"},
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

    async def _ensure_partitions(self, conn: Any, batches: Sequence[Sequence[Row]]) -> None:
        import asyncpg

        lo = min(r[1] for rows in batches for r in rows)
        hi = max(r[1] for rows in batches for r in rows)
        week, last = partitions.week_start(lo), partitions.week_start(hi)
        weeks = {week}
        while week < last:
            week += partitions.WEEK
            weeks.add(week)
        if self.partitions.missing(weeks):
            try:
                await self.partitions.ensure(conn, weeks)
            except asyncpg.DuplicateTableError:
                await self.partitions.load(conn)  # another process made it meanwhile

    async def write(self, batches: Sequence[Sequence[Row]]) -> list[int]:
        if self._pool is None:
            await self.start()
        total = sum(len(b) for b in batches)
        records = batches[0] if len(batches) == 1 else list(chain.from_iterable(batches))
        async with self._pool.acquire() as conn:
            await self._ensure_partitions(conn, batches)
            async with conn.transaction():
                await conn.copy_records_to_table("readings_stage", records=records, columns=COLUMNS)
                distinct, _inserted, dup_series, dup_ts = await conn.fetchrow(WRITE_SQL)
        stored = set(zip(dup_series, dup_ts, strict=True)) if dup_series else set()
        return split_counts(batches, total, distinct, stored)


class SqliteReadingStore:
    CHUNK = 6000  # 5 columns a row, under SQLite's 32,766 bound parameters

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def close(self) -> None:
        return None

    async def write(self, batches: Sequence[Sequence[Row]]) -> list[int]:
        rows = [row for batch in batches for row in batch]
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
        distinct = len({(r[0], r[1]) for r in rows})
        stored = {(r[0], r[1]) for r in rows} - new
        return split_counts(batches, len(rows), distinct, stored)
