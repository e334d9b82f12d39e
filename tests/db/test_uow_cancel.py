"""A unit of work cancelled while it gives its connection back (a job stopped at
shutdown, a request whose client went away) lets the reset finish: the pool logs no
interrupted rollback, keeps the connection, and the caller still sees the cancellation."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from sqlalchemy import event, text

from fieldwatch.runtime import Runtime


async def test_a_cancellation_during_the_cleanup_interrupts_no_reset(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    pool = runtime.engine.sync_engine.pool
    target: list[asyncio.Task[Any]] = []
    resets: list[bool] = []

    def cancel_the_caller(dbapi_connection: Any, record: Any, state: Any) -> None:
        # Fires as the connection goes back to the pool, just before its rollback.
        resets.append(True)
        if target:
            target.pop().cancel()

    async def work() -> int:
        async with runtime.uow() as uow:
            value = int(await uow.session.scalar(text("SELECT 41 + 1")) or 0)
            target.append(asyncio.current_task())  # type: ignore[arg-type]
        await asyncio.sleep(0)  # where a cancellation is seen once the cleanup is done
        return value

    event.listen(pool, "reset", cancel_the_caller)
    try:
        with caplog.at_level(logging.ERROR, logger="sqlalchemy.pool"):
            job = asyncio.create_task(work())
            with pytest.raises(asyncio.CancelledError):
                await job
    finally:
        event.remove(pool, "reset", cancel_the_caller)
    assert resets and not target  # the cancellation landed during the reset
    assert job.cancelled()
    assert "Exception during reset" not in caplog.text, caplog.text
    assert pool.checkedout() == 0  # the connection went back, not lost
    async with runtime.uow() as uow:  # and the pool still serves
        assert await uow.session.scalar(text("SELECT 1")) == 1
