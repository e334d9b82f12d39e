"""All SQL of device syncs, sync runs and cursors.

Claims are conditional UPDATEs: a run is taken by the process whose UPDATE still finds
it claimable (queued or waiting and due, or running with its lease run out), which on
PostgreSQL re-checks the condition on the locked row, so two processes never both get
it; the candidates are read with ``FOR UPDATE SKIP LOCKED`` there, so a process passes
over the runs another one is claiming at that moment instead of waiting for it. SQLite
serves one process.

A stored page is recorded (``record_page``: the run's counts, the page's segment and
the cursor, only while the run is still the process's) in one statement on PostgreSQL
(writing CTEs), in three in one transaction on SQLite.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Table,
    and_,
    bindparam,
    case,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from fieldwatch.core.ids import new_id
from fieldwatch.db.upsert import insert_for
from fieldwatch.devices.models import Device
from fieldwatch.integrations.models import (
    Connection,
    DeviceSync,
    Segment,
    SyncCursor,
    SyncRun,
    VendorRecord,
)
from fieldwatch.integrations.sync.schemas import OPEN


def _claimable(now: datetime) -> Any:
    return or_(
        and_(
            SyncRun.status.in_(("queued", "retry_wait")),
            or_(SyncRun.not_before.is_(None), SyncRun.not_before <= now),
        ),
        and_(SyncRun.status == "running", SyncRun.claimed_until < now),
    )


class SyncRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, obj: DeviceSync | SyncRun | SyncCursor) -> None:
        self.session.add(obj)

    # --- device syncs -----------------------------------------------------------------

    async def device_sync(
        self, workspace_id: uuid.UUID | None, device_id: uuid.UUID, *, lock: bool = False
    ) -> DeviceSync | None:
        """A device's sync settings (``workspace_id`` None: any workspace's, for the
        engine); ``lock``: the row locked until the transaction ends (PostgreSQL), so
        two requests cannot both open a run for it."""
        query = select(DeviceSync).where(DeviceSync.device_id == device_id)
        if workspace_id is not None:
            query = query.where(DeviceSync.workspace_id == workspace_id)
        if lock:
            query = query.with_for_update()
        return await self.session.scalar(query.execution_options(populate_existing=True))

    async def status_counts(self, workspace_id: uuid.UUID) -> dict[str, int]:
        rows = await self.session.execute(
            select(DeviceSync.sync_status, func.count())
            .where(DeviceSync.workspace_id == workspace_id)
            .group_by(DeviceSync.sync_status)
        )
        return dict(sorted((str(s), int(n)) for s, n in rows.all()))

    async def auth_required(self, workspace_id: uuid.UUID) -> list[uuid.UUID]:
        found = await self.session.scalars(
            select(DeviceSync.device_id).where(
                DeviceSync.workspace_id == workspace_id, DeviceSync.sync_status == "auth_required"
            )
        )
        return list(found)

    async def imported(self, connection_id: uuid.UUID) -> dict[str, uuid.UUID]:
        """Vendor device id → Fieldwatch device of a connection's imported devices."""
        rows = await self.session.execute(
            select(DeviceSync.vendor_device_id, DeviceSync.device_id).where(
                DeviceSync.connection_id == connection_id
            )
        )
        return {v: d for v, d in rows.all() if v is not None}

    async def workspace_devices(self, workspace_id: uuid.UUID) -> list[uuid.UUID]:
        rows = await self.session.scalars(
            select(DeviceSync.device_id).where(DeviceSync.workspace_id == workspace_id)
        )
        return list(rows.all())

    async def status_page(
        self, workspace_id: uuid.UUID, device_id: uuid.UUID | None, *, limit: int, offset: int
    ) -> tuple[Sequence[tuple[DeviceSync, str]], int]:
        where = [DeviceSync.workspace_id == workspace_id]
        if device_id is not None:
            where.append(DeviceSync.device_id == device_id)
        total = await self.session.scalar(select(func.count()).where(*where)
                                          .select_from(DeviceSync))  # fmt: skip
        rows = await self.session.execute(
            select(DeviceSync, Device.name).join(Device, Device.id == DeviceSync.device_id)
            .where(*where).order_by(Device.name, DeviceSync.device_id).limit(limit).offset(offset)
        )  # fmt: skip
        return [(s, n) for s, n in rows.all()], int(total or 0)

    async def due(self, now: datetime, limit: int) -> Sequence[DeviceSync]:
        """Device syncs whose automatic sync is due, on an active connection, of
        devices that are not retired (ingestion would refuse their readings)."""
        rows = await self.session.scalars(
            select(DeviceSync)
            .join(Connection, Connection.id == DeviceSync.connection_id)
            .join(Device, Device.id == DeviceSync.device_id)
            .where(DeviceSync.auto_sync.is_(True), DeviceSync.next_sync_at <= now,
                   Connection.status == "active", Device.status != "retired")
            .order_by(DeviceSync.next_sync_at).limit(limit)
        )  # fmt: skip
        return rows.all()

    async def advance_next(
        self, device_id: uuid.UUID, seen: datetime | None, next_at: datetime | None
    ) -> bool:
        """Move a due sync's next time on, if nobody else did since it was read."""
        result = await self.session.execute(
            update(DeviceSync)
            .where(DeviceSync.device_id == device_id, DeviceSync.next_sync_at == seen)
            .values(next_sync_at=next_at)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def set_device_sync(self, device_id: uuid.UUID, **values: Any) -> None:
        await self.session.execute(
            update(DeviceSync).where(DeviceSync.device_id == device_id).values(**values)
        )

    # --- runs ---------------------------------------------------------------------------

    async def run(self, workspace_id: uuid.UUID | None, run_id: uuid.UUID) -> SyncRun | None:
        query = select(SyncRun).where(SyncRun.id == run_id)
        if workspace_id is not None:
            query = query.where(SyncRun.workspace_id == workspace_id)
        return await self.session.scalar(query.execution_options(populate_existing=True))

    async def open_runs(self, device_ids: Sequence[uuid.UUID]) -> Sequence[SyncRun]:
        if not device_ids:
            return []
        rows = await self.session.scalars(
            select(SyncRun).where(SyncRun.device_id.in_(device_ids), SyncRun.status.in_(OPEN))
            .order_by(SyncRun.created_at)
        )  # fmt: skip
        return rows.all()

    async def history(
        self,
        workspace_id: uuid.UUID,
        *,
        device_id: uuid.UUID | None,
        status: str | None,
        limit: int,
        offset: int,
        sync_type: str | None = None,
        connection_id: uuid.UUID | None = None,
    ) -> tuple[Sequence[SyncRun], int]:
        where = [SyncRun.workspace_id == workspace_id]
        for column, value in ((SyncRun.device_id, device_id), (SyncRun.status, status),
                              (SyncRun.sync_type, sync_type),
                              (SyncRun.connection_id, connection_id)):  # fmt: skip
            if value is not None:
                where.append(column == value)
        total = await self.session.scalar(select(func.count()).where(*where)
                                          .select_from(SyncRun))  # fmt: skip
        rows = await self.session.scalars(
            select(SyncRun).where(*where)
            .order_by(SyncRun.created_at.desc(), SyncRun.id).limit(limit).offset(offset)
        )  # fmt: skip
        return rows.all(), int(total or 0)

    async def claimable(self, now: datetime, limit: int) -> list[uuid.UUID]:
        """Runnable runs, oldest first; on PostgreSQL locked until the transaction ends,
        skipping those another process has locked (it is claiming them)."""
        rows = await self.session.scalars(
            select(SyncRun.id).where(_claimable(now))
            .order_by(SyncRun.created_at).limit(limit)
            .with_for_update(skip_locked=True)
        )  # fmt: skip
        return list(rows.all())

    async def claim(self, run_id: uuid.UUID, owner: str, now: datetime, until: datetime) -> bool:
        result = await self.session.execute(
            update(SyncRun).where(SyncRun.id == run_id, _claimable(now))
            .values(status="running", claimed_by=owner, claimed_until=until,
                    start_time=func.coalesce(SyncRun.start_time,
                                              literal(now, SyncRun.start_time.type)))
        )  # fmt: skip
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def update_claimed(self, run_id: uuid.UUID, owner: str, **values: Any) -> bool:
        """Change a run this process still holds (False: its claim was lost)."""
        result = await self.session.execute(
            update(SyncRun)
            .where(SyncRun.id == run_id, SyncRun.claimed_by == owner,
                   SyncRun.status == "running")
            .values(**values)
        )  # fmt: skip
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def count(
        self, run_id: uuid.UUID, owner: str, processed: int, synced: int, failed: int
    ) -> bool:
        return await self.update_claimed(
            run_id, owner,
            records_processed=SyncRun.records_processed + processed,
            records_synced=SyncRun.records_synced + synced,
            records_failed=SyncRun.records_failed + failed,
        )  # fmt: skip

    def one_statement(self) -> bool:
        """Whether ``record_page`` is one statement here (PostgreSQL's writing CTEs)."""
        return self.session.get_bind().dialect.name == "postgresql"

    async def record_page(
        self, run_id: uuid.UUID, owner: str, counts: tuple[int, int, int],
        segment: dict[str, Any], now: datetime,
    ) -> bool:  # fmt: skip
        """A stored page, if the run is still ``owner``'s (False: its claim was lost,
        nothing recorded): ``counts`` (processed, synced, failed) added to the run's,
        ``segment`` (the ``Segment``'s columns but its id and creation time) inserted,
        and the cursor of its device and metric moved forward to its ``ts_to`` (never
        back: a resumed run may commit an older page)."""
        processed, synced, failed = counts
        row = {**segment, "id": new_id(), "created_at": now}
        if self.one_statement():
            params = {**row, "processed": processed, "synced": synced, "failed": failed,
                      "owner": owner}  # fmt: skip
            return bool(await self.session.scalar(_record_page_sql(), params))
        runs = cast(Table, SyncRun.__table__)
        claimed = (
            update(runs)
            .where(runs.c.id == run_id, runs.c.claimed_by == owner, runs.c.status == "running")
            .values(records_processed=runs.c.records_processed + processed,
                    records_synced=runs.c.records_synced + synced,
                    records_failed=runs.c.records_failed + failed)
        )  # fmt: skip
        if not (await self.session.execute(claimed)).rowcount:  # type: ignore[attr-defined]
            return False
        cursor = {"device_id": segment["device_id"], "data_type": segment["metric"],
                  "synced_until": segment["ts_to"], "updated_at": now}  # fmt: skip
        segments, cursors = cast(Table, Segment.__table__), cast(Table, SyncCursor.__table__)
        await self.session.execute(insert(segments).values(row))
        await self.session.execute(_move_cursor(sqlite_insert(cursors).values(cursor)))
        return True

    # --- cursors ------------------------------------------------------------------------

    async def cursors(self, device_id: uuid.UUID) -> dict[str, SyncCursor]:
        rows = await self.session.scalars(
            select(SyncCursor).where(SyncCursor.device_id == device_id)
        )
        return {c.data_type: c for c in rows.all()}

    async def move_cursor(self, device_id: uuid.UUID, data_type: str, until: datetime) -> None:
        """The cursor moves forward only (a resumed run may commit an older page)."""
        cursor = await self.session.get(SyncCursor, (device_id, data_type))
        if cursor is None:
            self.session.add(SyncCursor(device_id=device_id, data_type=data_type,
                                        synced_until=until))  # fmt: skip
        elif cursor.synced_until is None or cursor.synced_until < until:
            cursor.synced_until = until

    async def keep_vendor_records(
        self,
        connection_id: uuid.UUID,
        device_id: uuid.UUID,
        metric: str,
        records: Sequence[tuple[str, datetime]],
    ) -> None:
        """The vendor's record ids of stored readings (provenance): a record kept before
        stays as it was (a page read again stores nothing twice)."""
        rows = [{"connection_id": connection_id, "data_type": metric,
                 "vendor_id": vendor_id[:200], "device_id": device_id, "metric": metric,
                 "ts": ts} for vendor_id, ts in dict(records).items() if vendor_id]  # fmt: skip
        for start in range(0, len(rows), 1000):  # within the databases' parameter limits
            await self.session.execute(
                insert_for(self.session, VendorRecord)
                .values(rows[start : start + 1000])
                .on_conflict_do_nothing()
            )

    async def devices_authorised_again(self, connection_id: uuid.UUID, now: datetime) -> int:
        """The devices a re-authorised connection feeds that waited for it: ``pending``
        again, and those with automatic sync due at once (they missed their syncs)."""
        result = await self.session.execute(
            update(DeviceSync)
            .where(
                DeviceSync.connection_id == connection_id,
                DeviceSync.sync_status == "auth_required",
            )
            .values(
                sync_status="pending",
                next_sync_at=case((DeviceSync.auto_sync, now), else_=DeviceSync.next_sync_at),
            )
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0)


#: ``record_page`` on PostgreSQL: the claimed run's counts, its segment and its cursor
#: in one statement. Written out, not built: the dialect's INSERT … ON CONFLICT is not
#: cached by SQLAlchemy, so a built statement would be compiled again for every page.
RECORD_PAGE_SQL = """
WITH claimed AS (
    UPDATE integration_sync_runs
    SET records_processed = records_processed + :processed,
        records_synced = records_synced + :synced,
        records_failed = records_failed + :failed
    WHERE id = :run_id AND claimed_by = :owner AND status = 'running'
    RETURNING id
), added AS (
    INSERT INTO integration_segments (id, workspace_id, device_id, run_id, connector, metric,
        ts_from, ts_to, tz_offset_min, count, quality, quality_parts, anomalies, source,
        created_at)
    SELECT :id, :workspace_id, :device_id, :run_id, :connector, :metric, :ts_from, :ts_to,
        :tz_offset_min, :count, :quality, :quality_parts, :anomalies, :source, :created_at
    FROM claimed
), moved AS (
    INSERT INTO integration_sync_cursors AS c (device_id, data_type, synced_until, updated_at)
    SELECT :device_id, :metric, :ts_to, :created_at FROM claimed
    ON CONFLICT (device_id, data_type) DO UPDATE
    SET synced_until = excluded.synced_until, updated_at = excluded.updated_at
    WHERE c.synced_until IS NULL OR c.synced_until < excluded.synced_until
)
SELECT count(*) FROM claimed
"""


@functools.cache
def _record_page_sql() -> Any:
    segments, runs = cast(Table, Segment.__table__), cast(Table, SyncRun.__table__)
    typed = [bindparam(c.name, type_=c.type) for c in segments.c]
    typed += [bindparam(n, type_=runs.c.records_processed.type)
              for n in ("processed", "synced", "failed")]  # fmt: skip
    typed.append(bindparam("owner", type_=runs.c.claimed_by.type))
    return text(RECORD_PAGE_SQL).bindparams(*typed)


def _move_cursor(stmt: Any) -> Any:
    """An INSERT of a cursor that, for one already there, moves it only forward."""
    table = stmt.table
    return stmt.on_conflict_do_update(
        index_elements=[table.c.device_id, table.c.data_type],
        set_={"synced_until": stmt.excluded.synced_until, "updated_at": stmt.excluded.updated_at},
        where=or_(table.c.synced_until.is_(None),
                  table.c.synced_until < stmt.excluded.synced_until),
    )  # fmt: skip
