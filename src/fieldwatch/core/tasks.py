"""Background tasks: periodic jobs and stopping them cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)


def every(interval_s: float, job: Callable[[], Awaitable[Any]], *, name: str) -> asyncio.Task[None]:
    """Run ``job`` every ``interval_s`` seconds (first after one interval) until the task
    is cancelled. A failing run is logged; the next one happens as planned."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await job()
            except Exception:
                log.exception("background job %s failed", name)

    return asyncio.create_task(loop(), name=name)


async def cancel(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has stopped."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
