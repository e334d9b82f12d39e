"""Coalescing concurrent calls into batches.

A ``Batcher`` hands what its callers submit to one ``handle`` function, in batches: a
caller alone is handled at once (a batch of one), and calls made while a batch is being
handled wait and go together into the next one. A burst of callers (a fleet of devices
reconnecting after an outage) then costs a few queries, not one round trip each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """``handle`` gets the items in the order they were submitted and returns one result
    per item, in the same order; if it raises, every caller of that batch gets the
    exception. A caller that goes away (cancelled) does not stop its item from being
    handled: it just does not hear the result."""

    def __init__(
        self,
        handle: Callable[[list[T]], Awaitable[list[R]]],
        *,
        max_batch: int = 500,
        name: str = "batcher",
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.handle = handle
        self.max_batch = max_batch
        self.name = name
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None
        self.batches = 0  # how many batches were handled (for tests and curiosity)

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=self.name)
        return await future

    async def drain(self) -> None:
        """Wait until everything submitted so far is handled."""
        while self._task is not None and not self._task.done():
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while self._queue:
            batch = self._queue[: self.max_batch]
            del self._queue[: self.max_batch]
            self.batches += 1
            try:
                results = await self.handle([item for item, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"{self.name}: {len(results)} results for {len(batch)}")
            except Exception as exc:
                log.debug("%s: a batch of %d failed", self.name, len(batch), exc_info=True)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
