"""Executing one claimed run: for each data type, the vendor's pages from the cursor
(minus an overlap) or from ``historical_days`` back, to now; each page normalised,
handed to ingestion (``TelemetryService.ingest``, the one way in) and, once ingestion
answered (its readings committed), counted and its cursor moved, in one statement or
transaction that also checks the run is still this process's (``pages``). A failure
keeps what was committed: the run ends ``partial`` if any page was, else ``failed``,
and a retry starts from the cursors. How a run ends:

- ``ConnectionUnusable`` (the grant is gone): ``auth_required``, and the device's sync
  too; no retry until someone authorises the connection again;
- vendor 5xx, 429 (its ``Retry-After`` honoured), a failed refresh, network trouble, a
  saturated write path, a run over ``sync_timeout_s``: failed or partial, and a retry
  run waits (``retry_wait``) with exponential backoff, up to ``max_sync_retries``;
- another 4xx, a retired device: failed, no retry.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from fieldwatch.core.settings import Settings
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.integrations.connections.tokens import (
    ConnectionUnusable,
    RefreshFailed,
    TokenSource,
)
from fieldwatch.integrations.connectors.base import (
    DataConnector,
    DataPage,
    Sample,
    VendorError,
)
from fieldwatch.integrations.connectors.catalogue import takes_uploads
from fieldwatch.integrations.connectors.registry import data_connector
from fieldwatch.integrations.exports.base import Chunk, InvalidExport, kept_export
from fieldwatch.integrations.exports.process import read_export
from fieldwatch.integrations.models import Connection, DeviceSync, SyncRun
from fieldwatch.integrations.sync.budget import BudgetExhausted
from fieldwatch.integrations.sync.finish import Outcome, finish
from fieldwatch.integrations.sync.pages import store_page
from fieldwatch.integrations.sync.repository import SyncRepository
from fieldwatch.integrations.sync.vendor import VendorSession
from fieldwatch.telemetry.errors import ReadingsRefused, UnknownDevice
from fieldwatch.telemetry.ingest.service import TelemetryService
from fieldwatch.telemetry.ingest.writer import Overloaded

log = logging.getLogger(__name__)

#: Incremental syncs start this long before the cursor: late data the vendor added
#: meanwhile is caught; what was stored already is a duplicate (dropped).
OVERLAP = timedelta(hours=1)


class LostClaim(Exception):
    """Another process holds the run now (this one's lease ran out)."""


@dataclass
class _Context:
    run: SyncRun
    sync: DeviceSync
    connection: Connection | None
    connector: DataConnector | None
    metrics: list[str]
    starts: dict[str, datetime]
    now: datetime
    committed_pages: int = 0
    where: dict[str, Any] = field(default_factory=dict)
    #: An uploaded export's kept file (runs of upload connectors read it, not a vendor).
    export: Path | None = None


class SyncRunner:
    def __init__(
        self,
        uow: Callable[[], UnitOfWork],
        settings: Settings,
        tokens: TokenSource,
        ingest: TelemetryService,
        *,
        owner: str,
        clock: Callable[[], datetime],
    ) -> None:
        self.uow = uow
        self.settings = settings
        self.tokens = tokens
        self.ingest = ingest
        self.owner = owner
        self.clock = clock

    async def execute(self, run_id: uuid.UUID) -> str | None:
        """Run a run this process has claimed; its final status (None: not ours)."""
        ctx = await self._load(run_id)
        if isinstance(ctx, Outcome):
            return await finish(self.uow, self.settings, run_id, self.owner, ctx, self.clock())
        if ctx is None:
            return None
        try:
            limit = self.settings.sync_timeout_s
            if ctx.connector is None:  # an uploaded export: read whole, a larger limit
                limit = self.settings.health_export_timeout_s
            async with asyncio.timeout(limit):
                await self._sync_all(ctx)
            outcome = Outcome("completed")
        except LostClaim:
            log.info("sync %s: claim lost to another process", run_id)
            return None
        except Exception as exc:
            judged = _outcome(exc, ctx.where)
            if judged is None:  # a defect: ended, not retried over and over
                log.exception("sync %s failed unexpectedly", run_id)
                judged = Outcome(
                    "failed",
                    f"internal error ({type(exc).__name__})",
                    {**ctx.where, "error": type(exc).__name__},
                    retry=False,
                )
            outcome = judged
        if outcome.status == "failed" and ctx.committed_pages:
            outcome.status = "partial"
        status = await finish(self.uow, self.settings, run_id, self.owner, outcome, self.clock())
        if ctx.export is not None and (status == "completed" or not outcome.retry):
            ctx.export.unlink(missing_ok=True)  # read whole, or never readable: not kept
        return status

    async def _load(self, run_id: uuid.UUID) -> _Context | Outcome | None:
        async with self.uow() as uow:
            repo = SyncRepository(uow.session)
            run = await repo.run(None, run_id)
            if run is None or run.claimed_by != self.owner or run.status != "running":
                return None
            sync = await repo.device_sync(None, run.device_id)
            connection = await uow.session.get(Connection, run.connection_id) \
                if run.connection_id else None  # fmt: skip
            connector = data_connector(sync.connector) if sync is not None else None
            upload = sync is not None and takes_uploads(sync.connector)
            if sync is None or (not upload and (connection is None or connector is None)):
                return Outcome("failed", "the device's connection or connector is gone")
            cursors = await repo.cursors(run.device_id)
            await repo.set_device_sync(run.device_id, sync_status="syncing", last_run_id=run.id)
            await uow.commit()
        now = self.clock()
        if upload or connection is None or connector is None:
            export = kept_export(self.settings, run.bulk_id) if run.bulk_id else None
            return _Context(run, sync, connection, None, [], {}, now, export=export)
        wanted = run.data_types or connection.consent
        metrics = [m for m in connector.fetchable if m in wanted and m in connection.consent]
        first = now - timedelta(days=sync.historical_days)
        starts = {}
        for metric in metrics:
            cursor = cursors.get(metric)
            until = cursor.synced_until if cursor is not None else None
            starts[metric] = max(first, until - OVERLAP) if until is not None else first
            if run.since is not None:  # a vendor's notification named an older window
                starts[metric] = max(first, min(starts[metric], run.since))
        return _Context(run, sync, connection, connector, metrics, starts, now)

    async def _sync_all(self, ctx: _Context) -> None:
        if ctx.connector is None or ctx.connection is None:
            await self._read_export(ctx)
            return
        async with VendorSession(self.tokens, self.settings, ctx.connector,
                                 ctx.connection.id) as vendor:  # fmt: skip
            connector = ctx.connector
            backfill = getattr(connector, "backfill", None)
            if backfill is not None and ctx.run.sync_type == "backfill":
                # A vendor that pushes its data is asked to send the history again.
                ctx.where = {"backfill_days": ctx.sync.historical_days}
                start = ctx.now - timedelta(days=ctx.sync.historical_days)
                await vendor.call(
                    functools.partial(backfill, start, ctx.now, list(ctx.connection.consent))
                )
            for metric in ctx.metrics:
                token: str | None = None
                page = 0
                while True:
                    ctx.where = {"data_type": metric, "page": page}
                    fetch: Callable[[httpx.AsyncClient, str], Awaitable[DataPage]] = (
                        functools.partial(_fetch, connector, metric, ctx.starts[metric],
                                          ctx.now, token)
                    )  # fmt: skip
                    got = await vendor.call(fetch)
                    if got.samples:
                        await self._store(ctx, metric, got.samples)
                    if not got.next_token:
                        break
                    token, page = got.next_token, page + 1

    async def _read_export(self, ctx: _Context) -> None:
        """An uploaded export, read chunk by chunk (each stored like a vendor's page). A
        run resumed after its process died skips the chunks it committed: a file is read
        in the same order every time, and each chunk's samples were counted in
        ``records_processed`` with its commit, so that many samples are passed over (not
        stored nor counted twice)."""
        skip = ctx.run.records_processed

        async def store(chunk: Chunk) -> None:
            nonlocal skip
            if skip >= len(chunk.samples):
                skip -= len(chunk.samples)
                return
            samples, skip = chunk.samples[skip:], 0
            ctx.where = {"data_type": chunk.metric, "chunk": ctx.committed_pages}
            await self._store(ctx, chunk.metric, samples, chunk.source)

        await read_export(ctx.export, ctx.sync.connector,
                          self.settings.health_export_max_unpacked_bytes, store)  # fmt: skip

    async def _store(
        self, ctx: _Context, metric: str, samples: list[Sample], source: str | None = None
    ) -> None:
        connection = ctx.connection.id if ctx.connection is not None else None
        stored = await store_page(self.uow, self.ingest, ctx.run.id, self.owner, ctx.sync,
                                  metric, samples, source=source,
                                  connection_id=connection)  # fmt: skip
        if not stored.held:
            raise LostClaim()
        ctx.committed_pages += 1


async def _fetch(
    connector: DataConnector, metric: str, start: datetime, end: datetime,
    page_token: str | None, http: httpx.AsyncClient, token: str,
) -> DataPage:  # fmt: skip
    return await connector.fetch(http, token, metric, start, end, page_token)


def _outcome(exc: Exception, where: dict[str, Any]) -> Outcome | None:
    """How a run that raised ``exc`` ends (None: a defect)."""
    details: dict[str, Any] = {**where, "error": type(exc).__name__}
    if isinstance(exc, ConnectionUnusable):
        return Outcome("auth_required", f"the connection needs authorising again: "
                       f"{exc.reason}", details, retry=False)  # fmt: skip
    if isinstance(exc, BudgetExhausted):
        details |= {"retry_after": exc.retry_after}
        return Outcome("failed", f"the rate budget for the vendor is spent: {exc}", details,
                       retry_after=exc.retry_after)  # fmt: skip
    if isinstance(exc, VendorError):
        details |= {"http_status": exc.status, "retry_after": exc.retry_after}
        retry = exc.status in (408, 429) or exc.status >= 500
        return Outcome("failed", f"the vendor answered HTTP {exc.status}", details,
                       retry=retry, retry_after=exc.retry_after)  # fmt: skip
    if isinstance(exc, RefreshFailed):
        return Outcome("failed", f"the token could not be refreshed: {exc}", details)
    if isinstance(exc, TimeoutError):
        return Outcome("failed", "timeout: the run took longer than sync_timeout_s", details)
    if isinstance(exc, httpx.TransportError):
        return Outcome("failed", f"the vendor could not be reached ({type(exc).__name__})",
                       details)  # fmt: skip
    if isinstance(exc, Overloaded):
        return Outcome("failed", "the telemetry write path is saturated", details,
                       retry_after=float(exc.retry_after))  # fmt: skip
    if isinstance(exc, InvalidExport):
        return Outcome("failed", f"the export cannot be read: {exc.detail}", details, retry=False)
    if isinstance(exc, ReadingsRefused | UnknownDevice):
        return Outcome("failed", str(exc), details, retry=False)  # "Readings refused: …"
    return None
