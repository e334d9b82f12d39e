"""All SQL of the alerts domain."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from fieldwatch.alerts.models import Alert, AlertRule
from fieldwatch.db.paging import scalars_page
from fieldwatch.devices.models import Device

#: The advisory-lock space of ``lock_offline_rule`` ("fwof").
OFFLINE_RULE_LOCK = 0x66776F66


class AlertRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, obj: Any) -> None:
        self.session.add(obj)

    async def device(self, device_id: uuid.UUID) -> Device:
        """The device an alert is about (from the session when it is loaded already)."""
        device = await self.session.get(Device, device_id)
        assert device is not None, device_id
        return device

    def _rules(self, workspace_id: uuid.UUID) -> Select[tuple[AlertRule]]:
        return (
            select(AlertRule)
            .where(AlertRule.workspace_id == workspace_id)
            .order_by(AlertRule.created_at, AlertRule.id)
        )

    async def rules(
        self, workspace_id: uuid.UUID, *, enabled_only: bool = False
    ) -> Sequence[AlertRule]:
        stmt = self._rules(workspace_id)
        if enabled_only:
            stmt = stmt.where(AlertRule.enabled.is_(True))
        return (await self.session.scalars(stmt)).all()

    async def rules_page(
        self, workspace_id: uuid.UUID, *, limit: int, offset: int
    ) -> tuple[Sequence[AlertRule], int]:
        return await scalars_page(
            self.session, self._rules(workspace_id), limit=limit, offset=offset
        )

    async def rule(self, workspace_id: uuid.UUID, rule_id: uuid.UUID) -> AlertRule | None:
        return await self.session.scalar(
            select(AlertRule).where(AlertRule.id == rule_id, AlertRule.workspace_id == workspace_id)
        )

    async def offline_rule(self, workspace_id: uuid.UUID) -> AlertRule | None:
        """The workspace's offline rule (the oldest, should a race ever have made two)."""
        return await self.session.scalar(
            select(AlertRule)
            .where(AlertRule.workspace_id == workspace_id, AlertRule.kind == "offline")
            .order_by(AlertRule.created_at, AlertRule.id)
            .limit(1)
        )

    async def lock_offline_rule(self, workspace_id: uuid.UUID) -> None:
        """Hold the workspace's offline-rule lock until the transaction ends, so processes
        that find no rule at once create one, not one each: on PostgreSQL an advisory
        lock, on SQLite the database's one write lock (a write that changes nothing takes
        it, and the re-read after it sees every rule committed before)."""
        assert self.session.bind is not None
        if self.session.bind.dialect.name != "postgresql":
            await self.session.execute(text("UPDATE alert_rules SET id = id WHERE 0"))
            return
        key = int.from_bytes(workspace_id.bytes[:4], "big", signed=True)
        await self.session.execute(
            text("SELECT pg_advisory_xact_lock(:space, :key)"),
            {"space": OFFLINE_RULE_LOCK, "key": key},
        )

    async def delete_rule(self, rule: AlertRule) -> None:
        await self.session.delete(rule)

    async def alert(self, workspace_id: uuid.UUID, alert_id: uuid.UUID) -> Alert | None:
        return await self.session.scalar(
            select(Alert).where(Alert.id == alert_id, Alert.workspace_id == workspace_id)
        )

    async def active(self, rule_id: uuid.UUID, device_id: uuid.UUID) -> Alert | None:
        return await self.session.scalar(
            select(Alert).where(
                Alert.rule_id == rule_id, Alert.device_id == device_id, Alert.status == "active"
            )
        )

    async def triggered_since(self, rule_id: uuid.UUID, device_id: uuid.UUID, at: datetime) -> bool:
        """Whether an alert of the rule for the device (open or not) was triggered at or
        after ``at``."""
        found = await self.session.scalar(
            select(Alert.id)
            .where(
                Alert.device_id == device_id,
                Alert.rule_id == rule_id,
                Alert.last_triggered_at >= at,
            )
            .limit(1)
        )
        return found is not None

    async def active_for_device(
        self, device_id: uuid.UUID, rule_id: uuid.UUID | None = None
    ) -> Sequence[Alert]:
        stmt = select(Alert).where(Alert.device_id == device_id, Alert.status == "active")
        if rule_id is not None:
            stmt = stmt.where(Alert.rule_id == rule_id)
        return (await self.session.scalars(stmt)).all()

    async def active_for_rule(self, rule_id: uuid.UUID) -> Sequence[Alert]:
        return (
            await self.session.scalars(
                select(Alert).where(Alert.rule_id == rule_id, Alert.status == "active")
            )
        ).all()

    async def active_keys(self, workspace_id: uuid.UUID) -> set[tuple[uuid.UUID, uuid.UUID]]:
        rows = await self.session.execute(
            select(Alert.rule_id, Alert.device_id).where(
                Alert.workspace_id == workspace_id, Alert.status == "active"
            )
        )
        return {(r, d) for r, d in rows.tuples() if r is not None}

    async def page(
        self, workspace_id: uuid.UUID, filters: dict[str, Any], limit: int, offset: int
    ) -> tuple[Sequence[Alert], int]:
        clauses = [Alert.workspace_id == workspace_id]
        for key in ("status", "severity", "device_id", "rule_id", "acknowledged"):
            if filters.get(key) is not None:
                clauses.append(getattr(Alert, key) == filters[key])
        rows = await self.session.scalars(
            select(Alert).where(*clauses).order_by(Alert.last_triggered_at.desc(), Alert.id)
            .limit(limit).offset(offset)
        )  # fmt: skip
        total = await self.session.scalar(select(func.count()).select_from(Alert).where(*clauses))
        return rows.all(), int(total or 0)
