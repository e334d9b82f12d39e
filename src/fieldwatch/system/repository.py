"""The fleet-wide counts behind the metrics (one GROUP BY each, over every workspace),
and the periodic jobs' claims."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from fieldwatch.alerts.models import Alert
from fieldwatch.commands.models import Command
from fieldwatch.db.upsert import insert_for
from fieldwatch.monitoring.models import DevicePresence
from fieldwatch.system.models import PeriodicJob
from fieldwatch.webhooks.models import PENDING, WebhookDelivery


@dataclass(slots=True)
class FleetCounts:
    devices: dict[str, int] = field(default_factory=dict)  # connectivity → devices
    commands: dict[str, int] = field(default_factory=dict)  # status → commands
    alerts_open: dict[str, int] = field(default_factory=dict)  # severity → active alerts
    webhook_backlog: int = 0  # deliveries waiting to be sent (or sent again)


class SystemRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _grouped(
        self, column: InstrumentedAttribute[str], *where: ColumnElement[bool]
    ) -> dict[str, int]:
        stmt = select(column, func.count()).where(*where).group_by(column)
        return {str(key): int(n) for key, n in (await self.session.execute(stmt)).all()}

    async def counts(self) -> FleetCounts:
        backlog = (
            select(func.count())
            .select_from(WebhookDelivery)
            .where(WebhookDelivery.status == PENDING)
        )
        return FleetCounts(
            devices=await self._grouped(DevicePresence.connectivity),
            commands=await self._grouped(Command.status),
            alerts_open=await self._grouped(Alert.severity, Alert.status == "active"),
            webhook_backlog=int(await self.session.scalar(backlog) or 0),
        )


class JobRepository:
    """The periodic jobs' claims (``system.jobs``)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim(self, name: str, tick_ms: int, owner: str, now: datetime) -> bool:
        """Move job ``name`` to ``tick_ms`` if no process claimed that tick or a later
        one (one statement: an upsert whose update only happens for a newer tick; a
        concurrent claim of the same tick waits for the first one's row and then finds
        it taken). Whether this call claimed it."""
        stmt = insert_for(self.session, PeriodicJob).values(
            name=name, tick_ms=tick_ms, runs=1, owner=owner, claimed_at=now
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["name"],
            set_={
                "tick_ms": stmt.excluded.tick_ms,
                "runs": PeriodicJob.runs + 1,
                "owner": stmt.excluded.owner,
                "claimed_at": stmt.excluded.claimed_at,
            },
            where=PeriodicJob.tick_ms < stmt.excluded.tick_ms,
        ).returning(PeriodicJob.name)
        return (await self.session.execute(stmt)).first() is not None

    async def get(self, name: str) -> PeriodicJob | None:
        return await self.session.get(PeriodicJob, name, populate_existing=True)
