"""Sync runs through the API: asking for one (a device, several, a retry), the devices'
sync status and the sync history. One open run per device: asking again while one is
queued, waiting or running is a 409 naming it (``sync_id``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from fieldwatch.auth.principal import Principal
from fieldwatch.core.clock import utcnow
from fieldwatch.core.errors import AppError, BadRequest, Conflict, NotFound
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.service import DeviceService
from fieldwatch.integrations.connections.repository import ConnectionRepository
from fieldwatch.integrations.connectors.catalogue import takes_uploads
from fieldwatch.integrations.connectors.registry import data_connector
from fieldwatch.integrations.models import DeviceSync, SyncRun
from fieldwatch.integrations.sync.events import sync_event
from fieldwatch.integrations.sync.repository import SyncRepository
from fieldwatch.integrations.sync.runs import SyncInProgress, open_run
from fieldwatch.integrations.sync.schemas import (
    OPEN,
    RETRYABLE,
    BulkSkipped,
    BulkSyncRead,
    DeviceSyncStatus,
    SyncRunRead,
    SyncSettingsUpdate,
)
from fieldwatch.integrations.sync.settings import change_settings


class NotSynced(Conflict):
    slug, title = "not-synced", "Not fed by a vendor cloud"


class SyncService:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self.repo = SyncRepository(uow.session)
        self.connections = ConnectionRepository(uow.session)

    async def _sync_of(self, principal: Principal, device_id: uuid.UUID) -> DeviceSync:
        sync = await self.repo.device_sync(principal.workspace_id, device_id, lock=True)
        if sync is None:
            await DeviceService(self.uow).get(principal, device_id)  # 404 if not here
            raise NotSynced(
                f"Device {device_id} is not fed by a vendor cloud: import it from a "
                "connection (POST /api/v1/integrations/{type}/import)."
            )
        return sync

    async def _check_connection(self, sync: DeviceSync) -> None:
        if takes_uploads(sync.connector):
            return  # fed by uploads: no connection to check
        connection = (
            await self.connections.get(sync.workspace_id, sync.connection_id)
            if sync.connection_id is not None
            else None
        )
        if connection is None:
            raise Conflict("The device's connection was removed: import the device again.")
        if connection.status != "active":
            raise Conflict(
                f"The {connection.connector} connection is {connection.status}: authorise "
                f"it again (POST /api/v1/integrations/{connection.connector}/auth with its "
                "connection_id).",
                connection_id=str(connection.id),
                connection_status=connection.status,
            )

    def _data_types(self, sync: DeviceSync, wanted: Sequence[str] | None) -> list[str]:
        if not wanted:
            return []
        connector = data_connector(sync.connector)
        fetchable = connector.fetchable if connector is not None else ()
        unknown = sorted(set(wanted) - set(fetchable))
        if unknown:
            raise BadRequest(
                f"Not synced from {sync.connector}: {', '.join(unknown)}.",
                fetchable=list(fetchable),
            )
        return sorted(set(wanted))

    async def request(
        self,
        principal: Principal,
        device_id: uuid.UUID,
        *,
        sync_type: str = "manual",
        data_types: Sequence[str] | None = None,
        bulk_id: uuid.UUID | None = None,
    ) -> SyncRun:
        sync = await self._sync_of(principal, device_id)
        if takes_uploads(sync.connector):
            raise NotSynced(f"Device {device_id} is fed by uploads: upload an export "
                            f"(POST /api/v1/integrations/{sync.connector}/upload).")  # fmt: skip
        types = self._data_types(sync, data_types)
        await self._check_connection(sync)
        return await open_run(self.uow, sync, sync_type, principal.actor, data_types=types,
                              bulk_id=bulk_id)  # fmt: skip

    async def bulk(
        self, principal: Principal, device_ids: Sequence[uuid.UUID] | None
    ) -> BulkSyncRead:
        """A run for each device (all the workspace's synced devices when None); those
        that cannot have one now are listed with the reason."""
        bulk_id = uuid.uuid4()
        ids = device_ids or await self.repo.workspace_devices(principal.workspace_id)
        runs: list[SyncRunRead] = []
        skipped: list[BulkSkipped] = []
        for device_id in dict.fromkeys(ids):
            try:
                run = await self.request(principal, device_id, sync_type="bulk", bulk_id=bulk_id)
            except SyncInProgress as exc:
                skipped.append(BulkSkipped(device_id=device_id, reason=exc.detail,
                                           sync_id=exc.extra["sync_id"]))  # fmt: skip
                continue
            except AppError as exc:
                reason = "not found" if isinstance(exc, NotFound) else exc.detail
                skipped.append(BulkSkipped(device_id=device_id, reason=reason))
                continue
            runs.append(SyncRunRead.model_validate(run))
        return BulkSyncRead(bulk_id=bulk_id, runs=runs, skipped=skipped)

    async def retry(self, principal: Principal, sync_id: uuid.UUID) -> SyncRun:
        """A new run following ``sync_id`` (failed, partial, cancelled, or auth_required
        once the connection is authorised again); it resumes from the cursors."""
        run = await self.repo.run(principal.workspace_id, sync_id)
        if run is None:
            raise NotFound(f"No sync {sync_id} in this workspace.")
        if run.status not in RETRYABLE:
            raise Conflict(
                f"A {run.status} sync cannot be retried (only {', '.join(RETRYABLE)}).",
                sync_status=run.status,
            )
        sync = await self._sync_of(principal, run.device_id)
        await self._check_connection(sync)
        return await open_run(self.uow, sync, run.sync_type, principal.actor,
                              data_types=run.data_types, retry_of=run)  # fmt: skip

    async def cancel(self, principal: Principal, sync_id: uuid.UUID) -> SyncRun:
        """End a queued, waiting or running run as ``cancelled``. A running one stops at
        its next page: the process running it finds the run no longer its own; what it
        committed stays, and the cursors say so."""
        run = await self.repo.run(principal.workspace_id, sync_id)
        if run is None:
            raise NotFound(f"No sync {sync_id} in this workspace.")
        if run.status not in OPEN:
            raise Conflict(f"A {run.status} sync has ended already.", sync_status=run.status)
        was, now = run.status, utcnow()
        started = run.start_time or now
        run.status, run.end_time, run.claimed_until = "cancelled", now, None
        run.duration_seconds = round((now - started).total_seconds(), 3)
        run.error_message = f"cancelled by {principal.actor}"
        sync = await self.repo.device_sync(principal.workspace_id, run.device_id)
        if sync is not None and sync.sync_status == "syncing":
            sync.sync_status = "ok" if sync.last_sync_at else "pending"
        await self.uow.session.flush()
        self.uow.emit(sync_event(run, was))
        return run

    async def change_settings(
        self, principal: Principal, device_id: uuid.UUID, body: SyncSettingsUpdate
    ) -> DeviceSyncStatus:
        """Change the device's sync settings (those given); its status after."""
        sync = await self._sync_of(principal, device_id)
        if takes_uploads(sync.connector):
            raise NotSynced(f"Device {device_id} is fed by uploads: it has no sync schedule.")
        await change_settings(self.uow, principal, sync, body.model_dump(exclude_none=True))
        items, _total = await self.status(principal, device_id, limit=1, offset=0)
        return items[0]

    async def history(
        self,
        principal: Principal,
        *,
        device_id: uuid.UUID | None,
        status: str | None,
        limit: int,
        offset: int,
        sync_type: str | None = None,
        connection_id: uuid.UUID | None = None,
    ) -> tuple[Sequence[SyncRun], int]:
        return await self.repo.history(principal.workspace_id, device_id=device_id,
                                       status=status, limit=limit, offset=offset,
                                       sync_type=sync_type,
                                       connection_id=connection_id)  # fmt: skip

    async def status(
        self, principal: Principal, device_id: uuid.UUID | None, *, limit: int, offset: int
    ) -> tuple[list[DeviceSyncStatus], int]:
        rows, total = await self.repo.status_page(principal.workspace_id, device_id,
                                                  limit=limit, offset=offset)  # fmt: skip
        if device_id is not None and not rows:
            await DeviceService(self.uow).get(principal, device_id)  # 404 if not here
        runs = await self.repo.open_runs([s.device_id for s, _name in rows])
        statuses: dict[uuid.UUID, str] = {}
        for connection_id in {s.connection_id for s, _name in rows if s.connection_id}:
            connection = await self.connections.get(principal.workspace_id, connection_id)
            if connection is not None:
                statuses[connection_id] = connection.status
        out = []
        for sync, name in rows:
            out.append(DeviceSyncStatus(
                device_id=sync.device_id, device_name=name, connector=sync.connector,
                connection_id=sync.connection_id, vendor_device_id=sync.vendor_device_id,
                connection_status=statuses.get(sync.connection_id)
                if sync.connection_id else None,
                auto_sync=sync.auto_sync, sync_interval_minutes=sync.interval_minutes,
                sync_historical_days=sync.historical_days, sync_status=sync.sync_status,
                last_sync=sync.last_sync_at, next_sync=sync.next_sync_at,
                failures=sync.failures,
                open_runs=[SyncRunRead.model_validate(r) for r in runs
                           if r.device_id == sync.device_id],
            ))  # fmt: skip
        return out, total
