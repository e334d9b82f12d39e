"""The unit of work: one session, one transaction, events published and callbacks run
after commit."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fieldwatch.core.events import Event, EventBus
from fieldwatch.db.faults import unavailable_reason

log = logging.getLogger(__name__)

#: How long a cancelled unit of work waits for its connection's reset to finish.
CLEANUP_WAIT_S = 5.0


class UnitOfWork:
    """Owns a session. Services add changes and queue events; the caller commits.

    ``commit()`` commits the transaction and only then publishes the queued events and
    runs the ``after_commit`` callbacks, in the order they were registered, so no consumer
    ever sees an event for data that was rolled back and nothing is sent for it. A
    rollback, a release or a close drops them.
    """

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], bus: EventBus) -> None:
        self.session: AsyncSession = sessionmaker()
        self.bus = bus
        self._events: list[Event] = []
        self._callbacks: list[Callable[[], Awaitable[None] | None]] = []

    def emit(self, event: Event) -> None:
        self._events.append(event)

    def after_commit(self, callback: Callable[[], Awaitable[None] | None]) -> None:
        """Run ``callback`` once the next commit succeeded (after its events are
        published); what it returns is awaited if it can be (a coroutine). An error in it
        is logged, not raised: the change is committed."""
        self._callbacks.append(callback)

    async def commit(self) -> None:
        await self.session.commit()
        events, self._events = self._events, []
        callbacks, self._callbacks = self._callbacks, []
        for event in events:
            try:
                await self.bus.publish(event)
            except Exception:
                # The change is committed; a lost notification must not turn it into an
                # error for the caller.
                log.exception("publishing %s failed after commit", event.type)
        for callback in callbacks:
            try:
                result = callback()
                if result is not None:
                    await result
            except Exception:
                log.exception("a callback failed after commit")

    async def autocommit(self) -> None:
        """Each statement from here on commits on its own, with no BEGIN and COMMIT
        around it (one round trip for a change that is one statement). Only before the
        unit of work ran anything; ``commit()`` then only publishes and calls back."""
        await self.session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})

    def _forget(self) -> None:
        self._events.clear()
        self._callbacks.clear()

    async def release(self) -> None:
        """End the session's (read) transaction and give its connection back to the pool.

        For requests that go on to work in other transactions (the ingest path writes
        through the group-commit writer and opens short transactions of its own): holding
        one pooled connection while waiting for another can exhaust the pool under load.
        Anything not committed is discarded."""
        self._forget()
        try:
            await self.session.close()
        except Exception as exc:
            if unavailable_reason(exc) is None:
                raise
            log.debug("releasing a broken connection failed: %r", exc)

    async def rollback(self) -> None:
        self._forget()
        await self.session.rollback()

    async def close(self) -> None:
        self._forget()
        await self.session.close()

    async def __aenter__(self) -> UnitOfWork:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # The cleanup runs shielded: a cancellation (a job stopped at shutdown, a request
        # whose client went away) that lands while the connection is being reset would
        # leave the pool to log the interrupted rollback and discard the connection. The
        # cancelled caller waits for the cleanup, then goes on being cancelled.
        cleanup = asyncio.ensure_future(self._end(rollback=exc_type is not None))
        try:
            await asyncio.shield(cleanup)
        except asyncio.CancelledError:
            cleanup.add_done_callback(_log_failure)
            await asyncio.wait([cleanup], timeout=CLEANUP_WAIT_S)
            raise

    async def _end(self, rollback: bool) -> None:
        try:
            if rollback:
                await self.rollback()
            await self.close()
        except Exception as cleanup:
            # A connection that broke cannot roll back: it has been discarded (see
            # db/faults.py) and what was not committed is gone with it, which is what a
            # rollback wanted. Neither the request's own error nor its answer changes.
            if unavailable_reason(cleanup) is None:
                raise
            log.debug("cleanup after a broken connection failed: %r", cleanup)


def _log_failure(cleanup: asyncio.Future[None]) -> None:
    """What a cleanup nobody awaits any more raised: logged, not left unretrieved."""
    if not cleanup.cancelled() and (exc := cleanup.exception()) is not None:
        log.warning("closing a cancelled unit of work failed: %r", exc)
