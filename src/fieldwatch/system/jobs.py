"""Periodic jobs, each tick run by one process of the installation.

A job runs on the wall clock's grid of its interval: tick *k* starts at *k* × interval
seconds since the epoch, in every process that runs the job at once. A *shared* job
works on what every process sees (the database, Redis): before running a tick a process
claims it in ``periodic_jobs`` with one conditional upsert (``JobRepository.claim``),
which one process wins, so with N worker processes each tick runs once — and a restarted
process does not run again a tick that already ran. A *local* job works on the process's
own state (its connected devices, its in-memory presence) and runs in every process that
has it, unclaimed.

Claims are made on PostgreSQL, where several processes share the database; on SQLite
(one process) they are left out. ``runs`` counts the ticks this process ran, ``elsewhere``
those another process had claimed (``fieldwatch_job_ticks_total``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fieldwatch.core import tasks
from fieldwatch.core.clock import utcnow
from fieldwatch.db.faults import outages
from fieldwatch.system.repository import JobRepository

log = logging.getLogger(__name__)


def process_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    interval_s: float
    run: Callable[[], Awaitable[Any]]
    #: Claimed per tick (works on shared state), or run by every process (local state).
    shared: bool


class JobRunner:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        claims: bool,
        owner: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.claims = claims
        self.owner = owner or process_owner()
        self.clock = clock
        self.jobs: dict[str, Job] = {}
        #: Ticks this process ran, by job; ticks another process had claimed; failed runs.
        self.runs: Counter[str] = Counter()
        self.elsewhere: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        #: The tick (ms since the epoch) each job last ran here.
        self.last_tick: dict[str, int] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(
        self,
        name: str,
        interval_s: float,
        run: Callable[[], Awaitable[Any]],
        *,
        shared: bool = True,
    ) -> None:
        """Run ``run`` every ``interval_s`` seconds from the next tick on (a job that is
        off, interval 0 or less, is not started)."""
        if name in self._tasks or interval_s <= 0:
            return
        job = Job(name, interval_s, run, shared)
        self.jobs[name] = job
        self._tasks[name] = asyncio.create_task(self._loop(job), name=f"job-{name}")

    async def stop(self) -> None:
        running = list(self._tasks.values())
        self._tasks.clear()
        for task in running:
            await tasks.cancel(task)

    async def claim(self, name: str, tick_ms: int) -> bool:
        """Claim tick ``tick_ms`` of job ``name`` for this process (committed)."""
        async with self.sessionmaker() as session:
            claimed = await JobRepository(session).claim(name, tick_ms, self.owner, utcnow())
            await session.commit()
        return claimed

    async def _loop(self, job: Job) -> None:
        last = -math.inf
        while True:
            now = self.clock()
            tick = max(math.floor(now / job.interval_s) + 1, last + 1)
            await asyncio.sleep(max(0.0, tick * job.interval_s - now))
            last = tick
            await self.tick(job, round(tick * job.interval_s * 1000))

    async def tick(self, job: Job, tick_ms: int) -> bool:
        """Claim (a shared job, with claims on) and run one tick; whether it ran here. A
        failure is logged (a database outage once per outage window)."""
        try:
            if job.shared and self.claims and not await self.claim(job.name, tick_ms):
                self.elsewhere[job.name] += 1
                return False
            self.runs[job.name] += 1
            self.last_tick[job.name] = tick_ms
            log.debug("periodic job %s: tick %d", job.name, tick_ms)
            await job.run()
        except Exception as exc:
            self.failed[job.name] += 1
            if not outages.record(exc, f"periodic job {job.name}"):  # else logged once
                log.exception("periodic job %s failed", job.name)
        return True


class JobsCollector(Collector):
    """The runner's counters for Prometheus (``runner`` returns None before start-up)."""

    def __init__(self, runner: Callable[[], JobRunner | None]) -> None:
        self.runner = runner

    def collect(self) -> Iterator[Any]:
        ticks = CounterMetricFamily(
            "fieldwatch_job_ticks",
            "Ticks of the periodic jobs this process had: ran here (failed ones included), "
            "claimed by another process, failed",
            labels=["job", "outcome"],
        )
        runner = self.runner()
        if runner is not None:
            for outcome, counts in (
                ("ran", runner.runs), ("elsewhere", runner.elsewhere), ("failed", runner.failed)
            ):  # fmt: skip
                for name, n in sorted(counts.items()):
                    ticks.add_metric([name, outcome], n)
        yield ticks
