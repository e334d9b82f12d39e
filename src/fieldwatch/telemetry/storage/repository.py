"""All SQL of the telemetry domain except the write path (``ingest/store.py``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, or_, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import ARRAY, INTEGER
from sqlalchemy.ext.asyncio import AsyncSession

from fieldwatch.db.upsert import insert_for
from fieldwatch.devices.models import Device
from fieldwatch.telemetry.models import (
    Reading,
    Rollup1h,
    Rollup1m,
    Series,
    WorkspaceTelemetrySettings,
)
from fieldwatch.telemetry.storage.rollup import deltas

RollupModel = type[Rollup1m] | type[Rollup1h]
#: The first key of the advisory locks on creating a device's series (``lock_series_of``).
SERIES_LOCK_SPACE = 0x5E71E5


class TelemetryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- series ---------------------------------------------------------------------

    async def ensure_series(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            stmt = insert_for(self.session, Series).on_conflict_do_nothing(
                index_elements=["device_id", "metric"]
            )
            await self.session.execute(stmt, rows)

    async def series_for(self, keys: Sequence[tuple[uuid.UUID, str]]) -> Sequence[Series]:
        if not keys:
            return []
        result = await self.session.scalars(
            select(Series).where(tuple_(Series.device_id, Series.metric).in_(keys))
        )
        return result.all()

    async def count_series(self, device_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
        """How many series (distinct metrics) each of these devices has."""
        rows = await self.session.execute(
            select(Series.device_id, func.count())
            .where(Series.device_id.in_(device_ids))
            .group_by(Series.device_id)
        )
        found = {d: int(n) for d, n in rows.tuples()}
        return {d: found.get(d, 0) for d in device_ids}

    async def lock_series_of(self, device_ids: Sequence[uuid.UUID]) -> None:
        """PostgreSQL: hold, until the transaction ends, a lock per device on creating
        its series (so that counting and creating them is one step across processes);
        taken in one order, so two transactions cannot wait on each other."""
        if self.session.bind.dialect.name != "postgresql" or not device_ids:
            return
        keys = sorted({int.from_bytes(d.bytes[:4], "big", signed=True) for d in device_ids})
        stmt = text(
            "SELECT count(pg_advisory_xact_lock(:space, k)) "
            "FROM (SELECT unnest(:keys) AS k ORDER BY 1) AS ordered"
        ).bindparams(bindparam("keys", type_=ARRAY(INTEGER)))
        await self.session.execute(stmt, {"space": SERIES_LOCK_SPACE, "keys": keys})

    async def set_unit(self, series_id: int, unit: str) -> None:
        await self.session.execute(
            update(Series).where(Series.id == series_id, Series.unit.is_(None)).values(unit=unit)
        )

    async def device_series(
        self, device_id: uuid.UUID, metric: str | None = None
    ) -> Sequence[Series]:
        stmt = select(Series).where(Series.device_id == device_id).order_by(Series.metric)
        if metric is not None:
            stmt = stmt.where(Series.metric == metric)
        return (await self.session.scalars(stmt)).all()

    async def workspace_series(
        self,
        workspace_id: uuid.UUID,
        *,
        device_id: uuid.UUID | None = None,
        device_type: str | None = None,
        metric: str | None = None,
    ) -> Sequence[Series]:
        stmt = select(Series).where(Series.workspace_id == workspace_id)
        if device_id is not None:
            stmt = stmt.where(Series.device_id == device_id)
        if metric is not None:
            stmt = stmt.where(Series.metric == metric)
        if device_type is not None:
            stmt = stmt.join(Device, Device.id == Series.device_id).where(
                Device.type == device_type
            )
        return (await self.session.scalars(stmt.order_by(Series.id))).all()

    async def device_ids_of_type(self, workspace_id: uuid.UUID, type_: str) -> list[uuid.UUID]:
        rows = await self.session.scalars(
            select(Device.id).where(Device.workspace_id == workspace_id, Device.type == type_)
        )
        return list(rows)

    # --- devices ---------------------------------------------------------------------

    async def devices(
        self, workspace_id: uuid.UUID, ids: Iterable[uuid.UUID]
    ) -> dict[uuid.UUID, tuple[str, str]]:
        """id → (status, type) of those devices that exist in the workspace."""
        ids = list(ids)
        if not ids:
            return {}
        rows = await self.session.execute(
            select(Device.id, Device.status, Device.type).where(
                Device.workspace_id == workspace_id, Device.id.in_(ids)
            )
        )
        return {i: (s, t) for i, s, t in rows.tuples()}

    async def set_retention_days(self, workspace_id: uuid.UUID, days: int) -> None:
        row = await self.session.get(WorkspaceTelemetrySettings, workspace_id)
        if row is None:
            self.session.add(
                WorkspaceTelemetrySettings(workspace_id=workspace_id, retention_days=days)
            )
        else:
            row.retention_days = days
        await self.session.flush()

    async def retention_days(self, workspace_id: uuid.UUID) -> int | None:
        return await self.session.scalar(
            select(WorkspaceTelemetrySettings.retention_days).where(
                WorkspaceTelemetrySettings.workspace_id == workspace_id
            )
        )

    # --- raw readings ---------------------------------------------------------------

    async def readings(
        self,
        series: Sequence[Series],
        *,
        start: datetime | None,
        end: datetime | None,
        limit: int,
        descending: bool,
        after: tuple[datetime, int] | None,
    ) -> Sequence[Any]:
        """Readings of the series in time order, keyset-paged on (ts, series_id)."""
        ids = [s.id for s in series]
        stmt = select(Reading).where(Reading.series_id.in_(ids))
        if start is not None:
            stmt = stmt.where(Reading.ts >= start)
        if end is not None:
            stmt = stmt.where(Reading.ts < end)
        if after is not None:
            ts, sid = after
            if descending:
                stmt = stmt.where(
                    or_(Reading.ts < ts, and_(Reading.ts == ts, Reading.series_id < sid))
                )
            else:
                stmt = stmt.where(
                    or_(Reading.ts > ts, and_(Reading.ts == ts, Reading.series_id > sid))
                )
        order = (Reading.ts.desc(), Reading.series_id.desc()) if descending else (
            Reading.ts.asc(), Reading.series_id.asc())  # fmt: skip
        return (await self.session.scalars(stmt.order_by(*order).limit(limit))).all()

    async def delete_readings(
        self, series_ids: Sequence[int], start: datetime | None, end: datetime | None
    ) -> int:
        stmt = delete(Reading).where(Reading.series_id.in_(series_ids))
        if start is not None:
            stmt = stmt.where(Reading.ts >= start)
        if end is not None:
            stmt = stmt.where(Reading.ts < end)
        result = await self.session.execute(stmt.execution_options(synchronize_session=False))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    # --- rollups and aggregates -----------------------------------------------------

    async def rollup_rows(
        self, model: RollupModel, series_id: int, start: datetime, end: datetime
    ) -> Sequence[tuple[datetime, int, float, float, float]]:
        rows = await self.session.execute(
            select(model.bucket, model.count, model.sum, model.min, model.max)
            .where(model.series_id == series_id, model.bucket >= start, model.bucket < end)
            .order_by(model.bucket)
        )
        return list(rows.tuples())

    async def raw_values(
        self, series_id: int, start: datetime, end: datetime, limit: int | None = None
    ) -> Sequence[tuple[datetime, float | None]]:
        """The numeric readings of ``[start, end)`` in time order (the first ``limit``)."""
        stmt = (
            select(Reading.ts, Reading.value)
            .where(
                Reading.series_id == series_id,
                Reading.ts >= start,
                Reading.ts < end,
                Reading.value.is_not(None),
            )
            .order_by(Reading.ts)
        )
        rows = await self.session.execute(stmt if limit is None else stmt.limit(limit))
        return list(rows.tuples())

    async def rebuild_rollups(
        self, series_ids: Sequence[int], start: datetime | None, end: datetime | None
    ) -> None:
        """Recompute rollups over a range from the raw readings (after a delete)."""
        for model, seconds in ((Rollup1m, 60), (Rollup1h, 3600)):
            stmt = delete(model).where(model.series_id.in_(series_ids))
            if start is not None:
                stmt = stmt.where(model.bucket >= _floor(start, seconds))
            if end is not None:
                stmt = stmt.where(model.bucket < end)
            await self.session.execute(stmt)
            rows = await self.session.execute(
                select(Reading.series_id, Reading.ts, Reading.value).where(
                    Reading.series_id.in_(series_ids),
                    Reading.value.is_not(None),
                    *([Reading.ts >= _floor(start, seconds)] if start else []),
                    *([Reading.ts < _ceil(end, seconds)] if end else []),
                )
            )
            d = deltas(((sid, ts, v, None, None) for sid, ts, v in rows.tuples()), seconds)
            keep = [x for x in d if (start is None or x[1] >= _floor(start, seconds))
                    and (end is None or x[1] < end)]  # fmt: skip
            if keep:
                keys = ["series_id", "bucket", "count", "sum", "min", "max"]
                stmt2 = insert_for(self.session, model).on_conflict_do_nothing()
                await self.session.execute(stmt2, [dict(zip(keys, x, strict=True)) for x in keep])
        for sid in series_ids:
            newest = (
                await self.session.execute(
                    select(Reading.ts, Reading.value, Reading.text_value, Reading.quality)
                    .where(Reading.series_id == sid)
                    .order_by(Reading.ts.desc())
                    .limit(1)
                )
            ).first()
            ts, value, text, quality = newest if newest else (None, None, None, None)
            await self.session.execute(
                update(Series)
                .where(Series.id == sid)
                .values(last_ts=ts, last_value=value, last_text=text, last_quality=quality)
            )


def _floor(ts: datetime, seconds: int) -> datetime:
    epoch = int(ts.timestamp()) // seconds * seconds
    return datetime.fromtimestamp(epoch, ts.tzinfo)


def _ceil(ts: datetime, seconds: int) -> datetime:
    floor = _floor(ts, seconds)
    return floor if floor == ts else datetime.fromtimestamp(floor.timestamp() + seconds, ts.tzinfo)
