"""The fleet-wide counts behind the metrics: one GROUP BY each, over every workspace."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from fieldwatch.alerts.models import Alert
from fieldwatch.commands.models import Command
from fieldwatch.monitoring.models import DevicePresence
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
