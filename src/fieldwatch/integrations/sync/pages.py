"""Storing one page of a run's samples (a vendor's page, an export's chunk, a push):
normalised into one columnar upload, handed to ingestion (``TelemetryService.ingest``,
the one way in), and once ingestion answered (its readings committed) recorded: the
run's counts, the page's ``Segment`` and the cursor, only while the run is still this
process's (``SyncRepository.record_page``), with the vendor's record ids where the
samples name them. On PostgreSQL a page without record ids is recorded in one
statement that commits on its own (no BEGIN, no COMMIT); otherwise in one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from fieldwatch.core.clock import utcnow
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.integrations.connectors.base import Sample
from fieldwatch.integrations.metrics import METRICS
from fieldwatch.integrations.models import DeviceSync
from fieldwatch.integrations.sync.normalise import normalise
from fieldwatch.integrations.sync.repository import SyncRepository
from fieldwatch.telemetry.ingest.service import Incoming, TelemetryService


@dataclass(frozen=True, slots=True)
class Stored:
    #: Readings stored new.
    synced: int
    #: False: the run was no longer this process's, nothing of the page was recorded
    #: (its readings are stored: they are idempotent).
    held: bool


async def store_page(
    uow_factory: Callable[[], UnitOfWork],
    ingest: TelemetryService,
    run_id: uuid.UUID,
    owner: str,
    sync: DeviceSync,
    metric: str,
    samples: list[Sample],
    *,
    source: str | None = None,
    connection_id: uuid.UUID | None = None,
) -> Stored:
    """``samples`` (not empty) of ``metric`` stored for the run ``run_id``; the vendor's
    record ids of the samples are kept for ``connection_id`` (None: not kept)."""
    normal = normalise(sync.device_id, METRICS[metric], samples)
    failed, synced = len(normal.rejected), 0
    if normal.upload is not None:
        result = await ingest.ingest(Incoming(sync.workspace_id, normal.upload, "sync",
                                              device_id=sync.device_id))  # fmt: skip
        synced, failed = result.accepted, failed + len(result.rejected)
    named = []
    if connection_id is not None:
        named = [(s.vendor_id, s.ts) for s in samples if s.vendor_id]
    segment = {
        "workspace_id": sync.workspace_id, "device_id": sync.device_id, "run_id": run_id,
        "connector": sync.connector, "metric": metric, "ts_from": normal.ts_from,
        "ts_to": normal.ts_to, "tz_offset_min": normal.tz_offset_min, "count": len(samples),
        "quality": normal.quality, "quality_parts": normal.parts,
        "anomalies": normal.anomalies, "source": source,
    }  # fmt: skip
    async with uow_factory() as uow:
        repo = SyncRepository(uow.session)
        if not named and repo.one_statement():
            await uow.autocommit()
        held = await repo.record_page(run_id, owner, (len(samples), synced, failed), segment,
                                      utcnow())  # fmt: skip
        if held and named and connection_id is not None:
            await repo.keep_vendor_records(connection_id, sync.device_id, metric, named)
        await uow.commit()
    return Stored(synced, held)
