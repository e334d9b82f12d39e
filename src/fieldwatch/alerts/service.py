"""Alert rules (CRUD) and the alert lifecycle: open, repeat, acknowledge, clear."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from fieldwatch.alerts import events
from fieldwatch.alerts.models import Alert, AlertRule
from fieldwatch.alerts.repository import AlertRepository
from fieldwatch.alerts.rules import RuleView
from fieldwatch.alerts.schemas import AlertRuleCreate, AlertRuleUpdate
from fieldwatch.auth.principal import Principal
from fieldwatch.core.clock import utcnow
from fieldwatch.core.errors import Conflict, ValidationFailed, found_in_workspace
from fieldwatch.core.events import Event
from fieldwatch.db.uow import UnitOfWork

OFFLINE_RULE_NAME = "Device offline"


def view(rule: AlertRule) -> RuleView:
    return RuleView(
        id=rule.id, name=rule.name, kind=rule.kind, metric=rule.metric, operator=rule.operator,
        threshold=rule.threshold, duration_s=rule.duration_s, severity=rule.severity,
        scope=rule.scope, scope_value=rule.scope_value,
    )  # fmt: skip


def rules_changed(workspace_id: uuid.UUID) -> Event:
    return Event(type=events.RULES_CHANGED, workspace_id=workspace_id, payload={})


class AlertService:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self.repo = AlertRepository(uow.session)

    # --- rules ------------------------------------------------------------------------

    async def ensure_offline_rule(self, workspace_id: uuid.UUID) -> AlertRule:
        rule = await self.repo.offline_rule(workspace_id)
        if rule is None:  # made once, however many processes find none at once
            await self.repo.lock_offline_rule(workspace_id)
            rule = await self.repo.offline_rule(workspace_id)
        if rule is None:
            rule = AlertRule(
                workspace_id=workspace_id, name=OFFLINE_RULE_NAME, kind="offline",
                severity="major", scope="all", duration_s=0,
            )  # fmt: skip
            self.repo.add(rule)
            await self.uow.session.flush()
        return rule

    async def list_rules(
        self, principal: Principal, *, limit: int, offset: int
    ) -> tuple[Sequence[AlertRule], int]:
        await self.ensure_offline_rule(principal.workspace_id)
        return await self.repo.rules_page(principal.workspace_id, limit=limit, offset=offset)

    async def get_rule(self, principal: Principal, rule_id: uuid.UUID) -> AlertRule:
        rule = await self.repo.rule(principal.workspace_id, rule_id)
        return found_in_workspace(rule, "alert rule", rule_id)

    async def create_rule(self, principal: Principal, data: AlertRuleCreate) -> AlertRule:
        rule = AlertRule(
            workspace_id=principal.workspace_id, kind="threshold", created_by=principal.user_id,
            **data.model_dump(),
        )  # fmt: skip
        self.repo.add(rule)
        await self.uow.session.flush()
        self.uow.emit(rules_changed(principal.workspace_id))
        return rule

    async def update_rule(
        self, principal: Principal, rule_id: uuid.UUID, data: AlertRuleUpdate
    ) -> AlertRule:
        rule = await self.get_rule(principal, rule_id)
        changes = data.model_dump(exclude_unset=True)
        if rule.kind == "offline":
            allowed = {"name", "severity", "enabled", "scope", "scope_value"}
            refused = sorted(set(changes) - allowed)
            if refused:
                raise ValidationFailed(
                    "The built-in offline rule has no metric or threshold.",
                    errors=[
                        {"field": f, "message": "not settable on the offline rule"} for f in refused
                    ],
                )
        for key, value in changes.items():
            if value is None and key != "scope_value":
                errors = [{"field": key, "message": "cannot be null"}]
                raise ValidationFailed(f"{key} cannot be null.", errors=errors)
            setattr(rule, key, value)
        if rule.scope != "all" and not rule.scope_value:
            errors = [{"field": "scope_value", "message": "required for this scope"}]
            raise ValidationFailed("This scope needs a scope_value.", errors=errors)
        rule.updated_at = utcnow()
        await self.uow.session.flush()
        condition = {"metric", "operator", "threshold", "scope", "scope_value"}
        if rule.enabled is False or condition & set(changes):
            await self._clear_all(rule, "rule changed")
        self.uow.emit(rules_changed(principal.workspace_id))
        return rule

    async def delete_rule(self, principal: Principal, rule_id: uuid.UUID) -> None:
        rule = await self.get_rule(principal, rule_id)
        if rule.kind == "offline":
            raise Conflict("The built-in offline rule cannot be deleted; disable it instead.")
        await self._clear_all(rule, "rule deleted")
        await self.repo.delete_rule(rule)
        await self.uow.session.flush()
        self.uow.emit(rules_changed(principal.workspace_id))

    async def _clear_all(self, rule: AlertRule, reason: str) -> None:
        for alert in await self.repo.active_for_rule(rule.id):
            self._clear(alert, "system", reason, utcnow())

    # --- alerts -----------------------------------------------------------------------

    async def page(
        self, principal: Principal, filters: dict[str, Any], limit: int, offset: int
    ) -> tuple[Sequence[Alert], int]:
        return await self.repo.page(principal.workspace_id, filters, limit, offset)

    async def get(self, principal: Principal, alert_id: uuid.UUID) -> Alert:
        alert = await self.repo.alert(principal.workspace_id, alert_id)
        return found_in_workspace(alert, "alert", alert_id)

    async def acknowledge(
        self, principal: Principal, alert_id: uuid.UUID, note: str | None
    ) -> Alert:
        alert = await self.get(principal, alert_id)
        if not alert.acknowledged:
            alert.acknowledged = True
            alert.acknowledged_at = utcnow()
            alert.acknowledged_by = principal.actor
            if note:
                alert.details = {**alert.details, "ack_note": note}
            await self.uow.session.flush()
            self.uow.emit(events.alert_event(events.ALERT_ACKNOWLEDGED, alert))
        return alert

    async def clear_by_hand(
        self, principal: Principal, alert_id: uuid.UUID, note: str | None
    ) -> Alert:
        alert = await self.get(principal, alert_id)
        if alert.status == "cleared":
            raise Conflict("This alert is cleared already.")
        self._clear(alert, principal.actor, note or "cleared by hand", utcnow())
        await self.uow.session.flush()
        return alert

    def _clear(self, alert: Alert, by: str, reason: str, at: datetime) -> None:
        alert.status = "cleared"
        alert.cleared_at = at
        alert.cleared_by = by
        alert.clear_reason = reason
        self.uow.emit(events.alert_event(events.ALERT_CLEARED, alert))

    # --- what the engine does ------------------------------------------------------------

    async def trigger(
        self,
        workspace_id: uuid.UUID,
        rule: RuleView,
        device_id: uuid.UUID,
        *,
        value: float | None,
        at: datetime,
        times: int = 1,
        details: dict[str, Any] | None = None,
    ) -> Alert:
        """Open an alert, or count a repeat on the one that is open."""
        alert = await self.repo.active(rule.id, device_id)
        if alert is None:
            alert = Alert(
                workspace_id=workspace_id, rule_id=rule.id, rule_name=rule.name,
                device_id=device_id, device=await self.repo.device(device_id),
                severity=rule.severity, status="active",
                metric=rule.metric, message=rule.describe(value), count=times,
                first_value=value, last_value=value, started_at=at, last_triggered_at=at,
                details=details or {},
            )  # fmt: skip
            self.repo.add(alert)
            await self.uow.session.flush()
            self.uow.emit(events.alert_event(events.ALERT_RAISED, alert))
        else:
            alert.count += times
            alert.last_value = value
            alert.last_triggered_at = max(alert.last_triggered_at, at)
            alert.message = rule.describe(value)
            await self.uow.session.flush()
            self.uow.emit(events.alert_event(events.ALERT_UPDATED, alert))
        return alert

    async def resolve(
        self, device_id: uuid.UUID, rule_id: uuid.UUID | None, reason: str, at: datetime
    ) -> list[Alert]:
        """Clear the device's active alerts (of one rule, or all): the condition ended."""
        cleared = list(await self.repo.active_for_device(device_id, rule_id))
        for alert in cleared:
            self._clear(alert, "system", reason, at)
        if cleared:
            await self.uow.session.flush()
        return cleared
