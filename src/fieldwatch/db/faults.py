"""Telling a database that is unreachable from a request that is wrong.

A request that fails because PostgreSQL (or Redis) is restarting, refusing connections,
saturated or lost the connection mid-statement is not a bug in the request: it answers
``503`` with ``Retry-After`` (see ``core/errors.py``), and the connection it used is
thrown away instead of going back to the pool (``discard_broken_connections``).

One place classifies: ``unavailable_reason(exc)`` walks the exception and its causes
(SQLAlchemy wraps the driver's error, which may wrap an ``OSError``) and answers a short
reason, or ``None`` for an error that is not about reaching the database.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("fieldwatch.db")

#: Seconds a client is told to wait (``Retry-After``) while the database is away.
RETRY_AFTER_S = 5

#: SQLSTATE classes and codes that mean "not now" rather than "wrong": connection
#: exceptions (08), insufficient resources (53), operator intervention (57P: admin
#: shutdown, crash shutdown, cannot connect now), serialization failures and deadlocks.
_UNAVAILABLE_SQLSTATES = ("08", "53", "57P", "40001", "40P01")
#: Messages of driver and client errors about the connection itself (asyncpg raises
#: these without a SQLSTATE; SQLite's busy or missing file).
_UNAVAILABLE_MESSAGES = (
    "not currently accepting connections",
    "another operation",
    "connection is closed",
    "connection was closed",
    "cannot call transaction",
    "pool is closing",
    "database is locked",
    "unable to open database file",
    "disk i/o error",
)


def _causes(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    stack: list[BaseException | None] = [exc]
    while stack and len(seen) < 12:
        item = stack.pop()
        if item is None or any(item is s for s in seen):
            continue
        seen.append(item)
        stack.extend([getattr(item, "orig", None), item.__cause__, item.__context__])
    return seen


def _reason_of(item: BaseException) -> str | None:
    name = type(item).__name__
    message = str(item).lower()
    if isinstance(item, sa_exc.TimeoutError):
        return "no database connection free (pool exhausted)"
    if isinstance(item, sa_exc.DBAPIError) and item.connection_invalidated:
        return "the database connection was lost"
    if isinstance(item, ConnectionError | TimeoutError) or (
        isinstance(item, OSError) and item.errno is not None
    ):
        return f"the database is unreachable ({name})"
    sqlstate = getattr(item, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_SQLSTATES):
        return f"the database refused the request ({name})"
    driver = type(item).__module__.split(".")[0]
    if driver in {"asyncpg", "sqlite3"} and any(m in message for m in _UNAVAILABLE_MESSAGES):
        return f"the database connection is unusable ({name})"
    if driver == "redis" and name in {"ConnectionError", "TimeoutError"}:
        return f"Redis is unreachable ({name})"
    return None


def _broken(item: BaseException) -> bool:
    """Whether the connection that raised ``item`` must not be used again."""
    if isinstance(item, sqlite3.Error):
        return False
    sqlstate = getattr(item, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate.startswith(("08", "57P"))
    return _reason_of(item) is not None


def unavailable_reason(exc: BaseException) -> str | None:
    """A short reason if ``exc`` (or what caused it) means the database cannot be reached
    or used right now; ``None`` otherwise."""
    for item in _causes(exc):
        reason = _reason_of(item)
        if reason:
            return reason
    return None


class OutageLog:
    """One WARNING per outage window instead of a traceback per request: the first
    failure is logged with its reason; the next ones in ``window_s`` are counted and
    summed up in the following warning."""

    def __init__(self, window_s: float = 30.0) -> None:
        self.window_s = window_s
        self._last = -float("inf")
        self._suppressed = 0
        #: When the last failure was seen (monotonic), logged or not.
        self.failed_at = -float("inf")

    def reset(self) -> None:
        """Start a new window (the next failure is logged)."""
        self._last, self._suppressed = -float("inf"), 0

    def failed(self, reason: str, where: str) -> None:
        now = time.monotonic()
        self.failed_at = now
        if now - self._last < self.window_s:
            self._suppressed += 1
            return
        more = (
            f" ({self._suppressed} more failures since the last warning)"
            if self._suppressed
            else ""
        )
        log.warning(
            "database unavailable: %s (%s); answering 503 until it recovers%s",
            reason,
            where,
            more,
            extra={"outage_reason": reason, "suppressed": self._suppressed},
        )
        self._last, self._suppressed = now, 0

    def record(self, exc: BaseException, where: str) -> bool:
        """Whether ``exc`` means the database is unavailable (``unavailable_reason``);
        if so, it is logged here (once per window) and the caller answers "not now"."""
        reason = unavailable_reason(exc)
        if reason is None:
            return False
        self.failed(reason, where)
        return True


#: The process's outage log (requests, the telemetry writer, device gateways).
outages = OutageLog()


def _mark_disconnect(context: Any) -> None:
    """SQLAlchemy's ``handle_error`` hook: a driver error that leaves the connection
    unusable (killed backend, protocol stuck "in another operation", closed socket)
    invalidates it, so the pool never hands it out again."""
    original = context.original_exception
    if context.is_disconnect or original is None:
        return
    if any(_broken(item) for item in _causes(original)):
        context.is_disconnect = True


def discard_broken_connections(engine: AsyncEngine) -> None:
    event.listen(engine.sync_engine, "handle_error", _mark_disconnect)


def quiet_event_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Route the event loop's reports of broken database connections (the driver's
    "future exception never retrieved" and "resetting connection with an active
    transaction" for a connection killed under it) to the outage log; anything else
    goes to the default handler as before."""
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        message = str(context.get("message", ""))
        reason = unavailable_reason(exc) if isinstance(exc, BaseException) else None
        if reason is None and message.startswith("Resetting connection with an active"):
            reason = "a connection was returned mid-transaction"
        if reason is not None:
            outages.failed(reason, "database driver")
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


class FoldOutages(logging.Filter):
    """On a log handler: a record whose exception means the database is unavailable (a
    background job's ``log.exception`` in an outage) is folded into the outage log's one
    warning per window instead of printing a traceback each time."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or record.name == log.name:
            return True
        return not outages.record(exc, record.getMessage()[:200])
