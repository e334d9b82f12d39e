"""Two processes starting on a fresh database both create the coming weeks' partitions of
``readings``: the one that loses the race is refused by PostgreSQL (a duplicate table),
and must carry on with the partitions the other made, at start-up (inside its
transaction) as when writing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fieldwatch.db.engine import normalize_url
from fieldwatch.telemetry.ingest.store import PostgresReadingStore
from fieldwatch.telemetry.storage import partitions
from fieldwatch.telemetry.storage.partitions import PartitionManager

FAR = datetime(2099, 3, 4, tzinfo=UTC)  # weeks no other test makes partitions for


class RacedPartitions(PartitionManager):
    """Its first ``ensure`` is refused the way PostgreSQL refuses the loser of two
    concurrent CREATEs (after the winner made the partition it wanted)."""

    def __init__(self, other: Any) -> None:
        super().__init__()
        self.other = other  # the other process: a connection pool of its own
        self.refused = 0

    async def ensure(self, conn: Any, weeks: Any) -> None:
        if not self.refused:
            self.refused += 1
            async with self.other.acquire() as theirs:  # they win, and commit at once
                await PartitionManager().ensure(theirs, weeks)
            await conn.execute("CREATE TABLE readings (x int)")  # DuplicateTableError
        await super().ensure(conn, weeks)


def dsn(backend: Any) -> str:
    return normalize_url(backend.url).set(drivername="postgresql").render_as_string(False)


async def existing(conn: Any) -> set[str]:
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'readings'"
    )
    return {r["relname"] for r in rows}


@pytest.mark.parametrize("in_transaction", [True, False], ids=["start-up", "write"])
async def test_the_loser_of_a_partition_race_goes_on(backend, in_transaction: bool) -> None:
    if backend.name != "postgres":
        pytest.skip("partitions are PostgreSQL's")
    import asyncpg

    pool = await asyncpg.create_pool(dsn(backend), min_size=1, max_size=2)
    store = PostgresReadingStore(dsn(backend))
    raced = store.partitions = RacedPartitions(pool)
    weeks = {partitions.week_start(FAR + timedelta(weeks=n)) for n in range(3)}
    names = {partitions.partition_name(w) for w in weeks}
    try:
        async with pool.acquire() as conn:
            if in_transaction:
                async with conn.transaction():
                    await raced.load(conn)
                    await store._ensure_partitions(conn, FAR, FAR + timedelta(weeks=2))
                    assert await conn.fetchval("SELECT 1") == 1  # the transaction goes on
            else:
                await raced.load(conn)
                await store._ensure_partitions(conn, FAR, FAR + timedelta(weeks=2))
            assert raced.refused == 1
            assert names <= await existing(conn)
            assert not raced.missing(weeks)
    finally:
        async with pool.acquire() as conn:
            for name in names:
                await conn.execute(f"DROP TABLE IF EXISTS {name}")
        await pool.close()
