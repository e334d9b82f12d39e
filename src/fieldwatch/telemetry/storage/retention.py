"""Retention: readings older than their workspace's window go away.

Each workspace keeps readings for ``retention_days`` (default 365, seed 002's
``DATA_RETENTION_DAYS``). On PostgreSQL whole weekly partitions are dropped once they are
older than the longest retention of all workspaces (cheap, no dead rows); workspaces with
a shorter window have their older rows deleted in batches. Rollups follow the same
windows. Maintenance also creates the coming weeks' partitions ahead of time. It is a
worker's periodic job (every ``retention_interval_s``, each tick claimed by one process)
and, on PostgreSQL, runs in one process at a time (an advisory lock) even when a run
outlasts its interval.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from fieldwatch.auth.models import Workspace
from fieldwatch.core.clock import utcnow
from fieldwatch.telemetry.models import (
    Reading,
    Rollup1h,
    Rollup1m,
    Series,
    WorkspaceTelemetrySettings,
)
from fieldwatch.telemetry.storage import partitions

log = logging.getLogger(__name__)
LOCK_ID = 0x66776174  # "fwat": one maintenance run at a time across processes
BATCH = 50_000


@dataclass
class RetentionReport:
    dropped_partitions: list[str] = field(default_factory=list)
    deleted_readings: int = 0
    deleted_rollups: int = 0
    created_partitions: int = 0


class RetentionManager:
    def __init__(
        self,
        engine: AsyncEngine,
        sessionmaker: async_sessionmaker[AsyncSession],
        default_days: int,
    ) -> None:
        self.engine = engine
        self.sessionmaker = sessionmaker
        self.default_days = default_days

    async def run_and_log(self) -> None:
        """The periodic job's tick (not at start-up: the writer creates the partitions it
        needs on its own, and a restart should not pay for a full maintenance run)."""
        report = await self.run()
        if report.dropped_partitions or report.deleted_readings:
            log.info(
                "retention: dropped %d partitions, deleted %d readings",
                len(report.dropped_partitions), report.deleted_readings,
            )  # fmt: skip

    async def windows(self, session: AsyncSession) -> dict[object, int]:
        """workspace id → retention days, for every workspace."""
        rows = await session.execute(
            select(Workspace.id, WorkspaceTelemetrySettings.retention_days).join(
                WorkspaceTelemetrySettings,
                WorkspaceTelemetrySettings.workspace_id == Workspace.id,
                isouter=True,
            )
        )
        return {ws: days or self.default_days for ws, days in rows.tuples()}

    async def run(self, now: datetime | None = None) -> RetentionReport:
        now = now or utcnow()
        report = RetentionReport()
        postgres = self.engine.dialect.name == "postgresql"
        async with self.sessionmaker() as session:
            if postgres and not await session.scalar(
                text("SELECT pg_try_advisory_xact_lock(:id)"), {"id": LOCK_ID}
            ):
                return report  # another process is at it
            windows = await self.windows(session)
            longest = max([*windows.values(), self.default_days])
            if postgres:
                conn = await session.connection()
                raw = (await conn.get_raw_connection()).driver_connection
                manager = partitions.PartitionManager()
                report.dropped_partitions = await manager.drop_before(
                    raw, now - timedelta(days=longest)
                )
                ahead = [partitions.week_start(now + timedelta(weeks=w)) for w in range(4)]
                missing = manager.missing(ahead)
                await manager.ensure(raw, ahead)
                report.created_partitions = len(missing)
            for workspace_id, days in windows.items():
                cutoff = now - timedelta(days=days)
                ids = select(Series.id).where(Series.workspace_id == workspace_id)
                if days < longest or not postgres:
                    report.deleted_readings += await self._delete(
                        session, Reading, Reading.ts, ids, cutoff
                    )
                for model in (Rollup1m, Rollup1h):
                    report.deleted_rollups += await self._delete(
                        session, model, model.bucket, ids, cutoff
                    )
            await session.commit()
        return report

    async def _delete(
        self, session: AsyncSession, model: Any, column: Any, ids: Any, cutoff: datetime
    ) -> int:
        result = await session.execute(
            delete(model)
            .where(model.series_id.in_(ids), column < cutoff)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
