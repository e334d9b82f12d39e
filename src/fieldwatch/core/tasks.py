"""Background tasks: periodic jobs and stopping them cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)


def every(
    interval_s: float,
    job: Callable[[], Awaitable[Any]],
    *,
    name: str,
    run_first: bool = False,
) -> asyncio.Task[None]:
    """Run ``job`` every ``interval_s`` seconds (at once too, with ``run_first``) until the
    task is cancelled. A failing run is logged; the next one happens as planned."""

    async def loop() -> None:
        if not run_first:
            await asyncio.sleep(interval_s)
        while True:
            try:
                await job()
            except Exception:
                log.exception("background job %s failed", name)
            await asyncio.sleep(interval_s)

    return asyncio.create_task(loop(), name=name)


async def cancel(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has stopped."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
