"""Runs over data a vendor pushed (``webhook`` runs): the samples are at hand, so the
run is opened already claimed by this process, each metric's samples go through the
same normalisation and ingestion as a fetched page (a ``Segment`` each, the cursor
moved) and the run ends through ``finish`` like any other, so it shows in the sync
history. A push may arrive while another run of the device is open: a webhook run
does not wait for it (readings are idempotent on device, metric and time).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from fieldwatch.core.settings import Settings
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.integrations.connectors.base import Sample
from fieldwatch.integrations.metrics import METRICS
from fieldwatch.integrations.models import DeviceSync, SyncRun
from fieldwatch.integrations.sync.events import sync_event
from fieldwatch.integrations.sync.finish import Outcome, finish
from fieldwatch.integrations.sync.pages import store_page
from fieldwatch.integrations.sync.repository import SyncRepository
from fieldwatch.telemetry.ingest.service import TelemetryService

log = logging.getLogger(__name__)


class PushedRuns:
    def __init__(
        self,
        uow: Callable[[], UnitOfWork],
        settings: Settings,
        ingest: TelemetryService,
        *,
        owner: str,
        clock: Callable[[], datetime],
    ) -> None:
        self.uow = uow
        self.settings = settings
        self.ingest = ingest
        self.owner = owner
        self.clock = clock

    async def open(self, sync: DeviceSync, requested_by: str) -> uuid.UUID:
        """A ``webhook`` run of ``sync``'s device, running, held by this process."""
        now = self.clock()
        async with self.uow() as uow:
            run = SyncRun(
                id=uuid.uuid4(), workspace_id=sync.workspace_id, device_id=sync.device_id,
                connection_id=sync.connection_id, sync_type="webhook", status="running",
                attempt=1, requested_by=requested_by, data_types=[], claimed_by=self.owner,
                claimed_until=now + timedelta(seconds=self.settings.sync_lease_s),
                start_time=now, records_processed=0, records_synced=0, records_failed=0,
            )  # fmt: skip
            SyncRepository(uow.session).add(run)
            await uow.session.flush()
            uow.emit(sync_event(run, None))
            await uow.commit()
        return run.id

    async def store(
        self, run_id: uuid.UUID, sync: DeviceSync, metric: str, samples: list[Sample]
    ) -> int:
        """One metric's samples stored for the run; the readings stored new."""
        stored = await store_page(self.uow, self.ingest, run_id, self.owner, sync, metric,
                                  samples)  # fmt: skip
        if not stored.held:
            log.warning("webhook sync %s: claim lost, the page's readings are stored but "
                        "not recorded on the run", run_id)  # fmt: skip
        return stored.synced

    async def run(
        self,
        sync: DeviceSync,
        pages: Sequence[tuple[str, list[Sample]]],
        requested_by: str,
        consent: Sequence[str],
    ) -> str | None:
        """A webhook run storing ``pages`` (metric, samples) the connection's consent
        covers; its final status."""
        run_id = await self.open(sync, requested_by)
        return await self.complete(run_id, sync, pages, consent)

    async def complete(
        self,
        run_id: uuid.UUID,
        sync: DeviceSync,
        pages: Sequence[tuple[str, list[Sample]]],
        consent: Sequence[str],
    ) -> str | None:
        stored = 0
        try:
            for metric, samples in pages:
                if samples and metric in consent and metric in METRICS:
                    await self.store(run_id, sync, metric, samples)
                    stored += 1
        except Exception as exc:
            log.exception("pushed data of device %s not stored", sync.device_id)
            status = "partial" if stored else "failed"
            return await self.fail(run_id, f"the pushed data could not be stored "
                                   f"({type(exc).__name__})", status)  # fmt: skip
        return await finish(self.uow, self.settings, run_id, self.owner,
                            Outcome("completed"), self.clock())  # fmt: skip

    async def fail(self, run_id: uuid.UUID, message: str, status: str = "failed") -> str | None:
        """End a webhook run that could not get or store its data (no retry: the vendor
        sends again)."""
        outcome = Outcome(status, message, {"error": message}, retry=False)
        return await finish(self.uow, self.settings, run_id, self.owner, outcome, self.clock())
