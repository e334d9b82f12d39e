"""Group commit for readings: many requests, one transaction.

Requests hand their rows to ``ReadingWriter.write`` and wait. Writer tasks take
everything queued (up to ``max_batch`` rows), store it in one transaction, then tell
each request how many of its rows were new and how many were duplicates. Nothing is
acknowledged before its transaction commits. The queue is bounded: when it is full,
``write`` raises ``Overloaded`` at once (the API answers 503 with Retry-After) instead
of letting memory grow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from fieldwatch.core.observability import LATENCY_BUCKETS, Distribution
from fieldwatch.db.faults import outages
from fieldwatch.telemetry.ingest.store import Chunk, ReadingStore

log = logging.getLogger(__name__)

#: Readings per group commit.
BATCH_BUCKETS = (1, 10, 100, 500, 1000, 2500, 5000, 10_000, 20_000, 50_000)


class Overloaded(Exception):
    def __init__(self, retry_after: int = 1) -> None:
        super().__init__("the write path is saturated")
        self.retry_after = retry_after


@dataclass(slots=True)
class WriteResult:
    accepted: int
    duplicates: int


@dataclass(slots=True)
class _Job:
    chunk: Chunk
    future: asyncio.Future[WriteResult]


def _consume(future: asyncio.Future[WriteResult]) -> None:
    if not future.cancelled():
        future.exception()


class ReadingWriter:
    def __init__(
        self,
        store: ReadingStore,
        *,
        max_pending: int = 200_000,
        max_batch: int = 20_000,
        workers: int = 2,
    ) -> None:
        self.store = store
        self.max_pending = max_pending
        self.max_batch = max_batch
        self.workers = workers
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._pending = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._drained = asyncio.Event()
        #: Readings per transaction, and how long each took (committed or failed).
        self.batches = Distribution(BATCH_BUCKETS)
        self.commits = Distribution(LATENCY_BUCKETS)

    @property
    def pending(self) -> int:
        return self._pending

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._run(), name=f"reading-writer-{i}")
                for i in range(self.workers)
            ]

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        if self._pending and self._tasks:
            self._drained.clear()
            await self._drained.wait()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.store.close()

    async def write(self, chunk: Chunk) -> WriteResult:
        size = len(chunk.rows)
        if not size:
            return WriteResult(0, 0)
        if self._pending + size > self.max_pending:
            raise Overloaded()
        self.start()
        future: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()
        self._pending += size
        # A sender that went away leaves the outcome unread: read it here, so a failed
        # write is not reported again as "exception never retrieved".
        future.add_done_callback(_consume)
        self._queue.put_nowait(_Job(chunk, future))
        # Shielded: a client that goes away does not cancel a write in flight (its retry
        # is deduplicated).
        return await asyncio.shield(future)

    async def _run(self) -> None:
        while True:
            jobs = [await self._queue.get()]
            size = len(jobs[0].chunk.rows)
            while size < self.max_batch and not self._queue.empty():
                job = self._queue.get_nowait()
                jobs.append(job)
                size += len(job.chunk.rows)
            await self._write(jobs, size)

    async def _write(self, jobs: list[_Job], size: int) -> None:
        started = time.perf_counter()
        try:
            counts = await self.store.write([job.chunk for job in jobs])
        except Exception as exc:
            # In an outage nothing is acknowledged: the senders retry.
            if not outages.record(exc, f"writing {size} readings"):
                log.exception("writing %d readings failed", size)
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
        else:
            for job, accepted in zip(jobs, counts, strict=True):
                if not job.future.done():
                    job.future.set_result(WriteResult(accepted, len(job.chunk.rows) - accepted))
        finally:
            self.batches.observe(size)
            self.commits.observe(time.perf_counter() - started)
            self._pending -= size
            if not self._pending:
                self._drained.set()
