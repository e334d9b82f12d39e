"""The sync engine runs device syncs. Its periodic jobs (a worker's; ``tick`` does them
all once):

1. ``schedule``, every ``sync_tick_s``, each tick claimed by one process: each device
   sync with ``auto_sync`` whose ``next_sync_at`` has come (on an active connection)
   gets a run — ``backfill`` for a device never synced, else ``automatic`` — and its
   next time moves ``sync_interval_minutes`` on; the move is a conditional UPDATE, so
   with several processes one of them creates the run;
2. ``claim``, every ``sync_tick_s`` in each process: claims runnable runs — queued,
   waiting ones whose backoff is over, and running ones whose lease ran out (their
   process died: the run resumes from its cursors) — up to ``sync_concurrency`` at once
   in this process, each by a conditional UPDATE that one process wins;
3. executes them (``SyncRunner``), renewing each claim every third of ``sync_lease_s``;
   a claim that could not be renewed (another process took the run) stops the work; a
   run that ends frees its slot for the next runnable run at once (in a process whose
   claim job runs: ``refill_freed_slots``), not at the next tick;
4. ``subscriptions.run_if_on``, every ``vendor_webhook_check_s``, each tick claimed by
   one process: keeps the vendors' notification subscriptions
   (``integrations.webhooks.keeper``);
5. ``exports.run_safely``, every ten minutes, each tick claimed by one process: deletes
   kept health exports past ``health_export_keep_hours`` (``integrations.exports.cleanup``).

Stopping the engine gives its runs' claims back (their lease ends now), so another
process resumes them at once. Readings are idempotent anyway (deduplicated on device,
metric and time), so a page stored twice after a crash stores nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from fieldwatch.core import tasks
from fieldwatch.core.clock import utcnow
from fieldwatch.core.settings import Settings
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.integrations.connections.tokens import TokenSource
from fieldwatch.integrations.connectors.registry import data_connector
from fieldwatch.integrations.crypto import KeyRing
from fieldwatch.integrations.exports.cleanup import ExportCleanup
from fieldwatch.integrations.sync.events import sync_event
from fieldwatch.integrations.sync.repository import SyncRepository
from fieldwatch.integrations.sync.runner import SyncRunner
from fieldwatch.integrations.sync.runs import SyncInProgress, open_run
from fieldwatch.integrations.webhooks.keeper import SubscriptionKeeper
from fieldwatch.telemetry.ingest.service import TelemetryService

log = logging.getLogger(__name__)

SCHEDULE_BATCH = 200


def process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class SyncEngine:
    def __init__(
        self,
        uow: Callable[[], UnitOfWork],
        settings: Settings,
        ingest: TelemetryService,
        ring: KeyRing,
        *,
        owner: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.uow = uow
        self.settings = settings
        self.owner = owner or process_name()
        self.clock = clock
        self.tokens = TokenSource(uow, settings, ring, owner=self.owner, clock=clock)
        self.runner = SyncRunner(uow, settings, self.tokens, ingest, owner=self.owner,
                                 clock=clock)  # fmt: skip
        #: Keeps the vendors' notification subscriptions (``integrations.webhooks``).
        self.subscriptions = SubscriptionKeeper(uow, settings, self.tokens, owner=self.owner,
                                                clock=clock)  # fmt: skip
        #: Deletes uploaded exports kept past their time (``integrations.exports``).
        self.exports = ExportCleanup(uow, settings, clock)
        self._running: dict[uuid.UUID, asyncio.Task[None]] = {}
        #: One claim at a time in this process (a tick's, or a freed slot's).
        self._claiming = asyncio.Lock()
        self._refill: asyncio.Task[None] | None = None
        #: A run that ends claims the next at once (set where the claim job runs).
        self.refill_freed_slots = False
        #: Runs this process executed (claimed and ran), for tests and figures.
        self.executed: list[uuid.UUID] = []

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.sync_lease_s)

    async def stop(self) -> None:
        """Stop this process's runs and give their claims back."""
        self.refill_freed_slots = False
        await tasks.cancel(self._refill)
        running = dict(self._running)
        for task in running.values():
            task.cancel()
        await asyncio.gather(*running.values(), return_exceptions=True)
        if running:
            async with self.uow() as uow:
                repo = SyncRepository(uow.session)
                for run_id in running:  # another process may resume them at once
                    await repo.update_claimed(run_id, self.owner, claimed_until=self.clock())
                await uow.commit()

    async def tick(self) -> None:
        await self.schedule()
        await self.claim()
        await self.subscriptions.maybe_run()
        await self.exports.maybe_run()

    async def run_once(self) -> None:
        """Schedule, claim and wait for what was claimed to finish (tests, the CLI)."""
        await self.tick()
        await self.drain()

    async def drain(self) -> None:
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def schedule(self) -> int:
        """Runs for the device syncs that are due (see the module's description)."""
        now = self.clock()
        created = 0
        async with self.uow() as uow:
            repo = SyncRepository(uow.session)
            for sync in await repo.due(now, SCHEDULE_BATCH):
                step = timedelta(minutes=sync.interval_minutes)
                # A connector that fetches nothing is fed by its vendor's pushes: only
                # its first run (the backfill request) is scheduled.
                connector = data_connector(sync.connector)
                pushed = connector is not None and not connector.fetchable
                next_at = None if pushed else now + step
                if not await repo.advance_next(sync.device_id, sync.next_sync_at, next_at):
                    continue  # another process scheduled it
                kind = "backfill" if sync.last_sync_at is None else "automatic"
                try:
                    async with uow.session.begin_nested():
                        await open_run(uow, sync, kind, "scheduler")
                    created += 1
                except SyncInProgress:
                    pass  # the open one will do
            await uow.commit()
        return created

    async def claim(self) -> list[uuid.UUID]:
        """Claim runnable runs up to the free slots and start executing them."""
        async with self._claiming:
            return await self._claim()

    async def _claim(self) -> list[uuid.UUID]:
        free = self.settings.sync_concurrency - len(self._running)
        if free <= 0:
            return []
        now = self.clock()
        claimed: list[uuid.UUID] = []
        async with self.uow() as uow:
            repo = SyncRepository(uow.session)
            for run_id in await repo.claimable(now, free * 2):
                if len(claimed) >= free:
                    break
                before = await repo.run(None, run_id)
                was = before.status if before is not None else None
                if await repo.claim(run_id, self.owner, now, now + self.lease):
                    claimed.append(run_id)
                    run = await repo.run(None, run_id)
                    if run is not None and was != "running":  # a resumed run says nothing
                        uow.emit(sync_event(run, was))
            await uow.commit()
        for run_id in claimed:
            self.executed.append(run_id)
            self._running[run_id] = asyncio.create_task(self._execute(run_id),
                                                        name=f"sync-{run_id}")  # fmt: skip
        return claimed

    async def _execute(self, run_id: uuid.UUID) -> None:
        work = asyncio.current_task()
        renew = asyncio.create_task(self._renew(run_id, work))
        try:
            await self.runner.execute(run_id)
        except asyncio.CancelledError:
            log.info("sync %s stopped in this process", run_id)
        except Exception:
            log.exception("sync %s failed in the engine", run_id)
        finally:
            renew.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renew
            self._running.pop(run_id, None)
            if self.refill_freed_slots and (self._refill is None or self._refill.done()):
                self._refill = asyncio.create_task(self._claim_freed(), name="sync-refill")

    async def _claim_freed(self) -> None:
        """A slot was freed while the engine runs: the next runnable run takes it now."""
        try:
            await self.claim()
        except Exception:
            log.exception("claiming sync runs failed")

    async def _renew(self, run_id: uuid.UUID, work: asyncio.Task[object] | None) -> None:
        while True:
            await asyncio.sleep(self.settings.sync_lease_s / 3)
            async with self.uow() as uow:
                held = await SyncRepository(uow.session).update_claimed(
                    run_id, self.owner, claimed_until=self.clock() + self.lease
                )
                await uow.commit()
            if not held and work is not None:
                log.warning("sync %s: claim lost, stopping", run_id)
                work.cancel()
                return
