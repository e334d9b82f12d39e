"""PostgreSQL's pool checks a connection before handing it out only when it sat idle:
one killed while the server was quiet is replaced without failing anybody, and one
returned moments ago goes back to work without the three round trips of a ping."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from conftest import Backend
from fieldwatch.db import faults
from fieldwatch.db.engine import create_engine

IDLE_S = 0.3


@pytest.fixture
async def engine(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[AsyncEngine]:
    if backend.name != "postgres":
        pytest.skip("the pool's ping is PostgreSQL's (SQLite has no server to lose)")
    # No failure seen lately in this process (another test's outage would ping everything).
    monkeypatch.setattr(faults.outages, "failed_at", float("-inf"))
    engine = create_engine(backend.url, pool_size=1, idle_ping_s=IDLE_S)
    try:
        yield engine
    finally:
        await engine.dispose()


def count_pings(engine: AsyncEngine) -> list[int]:
    dialect = engine.sync_engine.dialect
    pings = [0]
    ping = dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings[0] += 1
        return ping(dbapi_connection)

    dialect.do_ping = counted  # type: ignore[method-assign]
    return pings


async def backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text("SELECT pg_backend_pid()")))


async def kill(backend: Backend, pid: int) -> None:
    url = make_url(backend.url).set(drivername="postgresql", database="postgres")
    admin = await asyncpg.connect(url.render_as_string(False))
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()


async def test_a_connection_killed_while_idle_is_replaced_unseen(
    engine: AsyncEngine, backend: Backend
) -> None:
    pings = count_pings(engine)
    first = await backend_pid(engine)
    await kill(backend, first)
    await asyncio.sleep(IDLE_S * 1.5)
    second = await backend_pid(engine)  # no error: the ping found it dead
    assert second != first
    assert pings[0] == 1


async def test_a_connection_back_moments_ago_is_not_pinged(engine: AsyncEngine) -> None:
    pings = count_pings(engine)
    pids = {await backend_pid(engine) for _ in range(5)}
    assert len(pids) == 1  # the one pooled connection, reused
    assert pings[0] == 0
    await asyncio.sleep(IDLE_S * 1.5)
    assert await backend_pid(engine) in pids
    assert pings[0] == 1


async def test_after_a_failure_every_connection_is_pinged(engine: AsyncEngine) -> None:
    """Once the database failed anything in the process (here: the telemetry writer's own
    connection, outside the pool), a connection back moments ago is checked too."""
    pings = count_pings(engine)
    await backend_pid(engine)
    faults.outages.failed("the database connection was lost", "a test")
    await backend_pid(engine)
    assert pings[0] == 1
