"""Engine and session factory for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.ext.asyncio import AsyncSession as AsyncSession

from fieldwatch.db.faults import discard_broken_connections, outages


def normalize_url(url: str) -> URL:
    """Accept the usual URL forms (``postgresql://``, ``postgres://``, ``sqlite:///``)
    and pick the async driver Fieldwatch uses for each."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        query = dict(parsed.query)
        sslmode = query.pop("sslmode", None)
        if sslmode is not None:
            query["ssl"] = sslmode
        return parsed.set(drivername="postgresql+asyncpg", query=query)
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    raise ValueError(f"unsupported database {backend!r}: use a postgresql:// or sqlite:// URL")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


#: A pooled connection unused for longer than this is pinged before it is handed out.
IDLE_PING_S = 5.0
#: After the database failed anything, every connection is pinged for this long.
AFTER_FAILURE_S = 30.0


def unique_statement_name() -> str:
    """A prepared statement's name no other statement ever had: behind PgBouncer in
    transaction mode a server connection outlives the client connection that prepared a
    statement on it, and asyncpg's own names (a per-connection counter) would collide."""
    return f"__asyncpg_{uuid.uuid4().hex}__"


def pgbouncer_connect_args() -> dict[str, Any]:
    """asyncpg's arguments for PgBouncer in transaction mode: no statement cache (a
    transaction may run on another server connection than the one that prepared it)."""
    return {"statement_cache_size": 0, "prepared_statement_name_func": unique_statement_name}


def create_engine(
    url: str | URL,
    *,
    pool_size: int = 10,
    echo: bool = False,
    idle_ping_s: float = IDLE_PING_S,
    pgbouncer: bool = False,
) -> AsyncEngine:
    """``pgbouncer``: the URL points at PgBouncer in transaction mode (or another pooler
    that hands each transaction any server connection): no cached prepared statements,
    in asyncpg nor in SQLAlchemy's dialect."""
    parsed = normalize_url(url) if isinstance(url, str) else url
    # Statement parameters hold stored secrets (webhook signing secrets, password hashes):
    # kept out of the echo and out of database errors' messages, which get logged.
    kwargs: dict[str, Any] = {"echo": echo, "hide_parameters": True}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(parsed, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # A connection attempt gives up after 5 s and a wait for a pooled connection after
    # 10 s: the request then answers 503 (db/faults.py) instead of hanging. The most
    # recently returned connection is handed out first, so under load the same few stay
    # busy and the rest sit idle (and are checked before use, see ping_when_idle).
    kwargs.update(
        pool_size=pool_size,
        max_overflow=0,
        pool_use_lifo=True,
        pool_timeout=10,
        connect_args={"timeout": 5},
    )
    if pgbouncer:  # asyncpg's cache and SQLAlchemy dialect's own
        kwargs["connect_args"].update(pgbouncer_connect_args(), prepared_statement_cache_size=0)
    engine = create_async_engine(parsed, **kwargs)
    discard_broken_connections(engine)
    ping_when_idle(engine, idle_ping_s)
    return engine


def ping_when_idle(engine: AsyncEngine, idle_s: float = IDLE_PING_S) -> None:
    """Check a connection that sat in the pool for more than ``idle_s`` before handing it
    out; one that fails is replaced by a new one (a database restarted while the server
    was quiet costs no request). A connection returned moments ago is handed out as is:
    the asyncpg ping is three round trips (begin, a query, rollback), which on the ingest
    path's short transactions was as many as the work itself. Once the process saw the
    database fail (``faults.outages``: any request, the telemetry writer, a gateway),
    every connection is checked for the next ``AFTER_FAILURE_S`` seconds: the others may
    have been cut by the same outage."""
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "checkin")
    def returned(dbapi_connection: Any, record: Any) -> None:
        record.info["fieldwatch_returned"] = time.monotonic()

    @event.listens_for(sync_engine, "checkout")
    def handed_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        returned_at = record.info.get("fieldwatch_returned")
        now = time.monotonic()
        if returned_at is None:
            return  # just connected
        if now - returned_at < idle_s and now - outages.failed_at > AFTER_FAILURE_S:
            return
        try:
            sync_engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError("the pooled connection did not answer a ping") from exc


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
