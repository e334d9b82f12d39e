from __future__ import annotations

from fieldwatch.alerts.models import Alert
from fieldwatch.core.events import Event
from fieldwatch.devices.schemas import DeviceSummary

ALERT_RAISED = "alert.raised"
ALERT_UPDATED = "alert.updated"
ALERT_ACKNOWLEDGED = "alert.acknowledged"
ALERT_CLEARED = "alert.cleared"
RULES_CHANGED = "alert_rules.changed"


def alert_event(kind: str, alert: Alert) -> Event:
    return Event(
        type=kind,
        workspace_id=alert.workspace_id,
        subject_id=alert.device_id,
        payload={
            "alert_id": str(alert.id),
            "rule_id": str(alert.rule_id) if alert.rule_id else None,
            "rule_name": alert.rule_name,
            "device_id": str(alert.device_id),
            "device": DeviceSummary.model_validate(alert.device).model_dump(mode="json"),
            "severity": alert.severity,
            "status": alert.status,
            "acknowledged": alert.acknowledged,
            "metric": alert.metric,
            "message": alert.message,
            "count": alert.count,
            "last_value": alert.last_value,
            "started_at": alert.started_at.isoformat(),
            "last_triggered_at": alert.last_triggered_at.isoformat(),
            "cleared_at": alert.cleared_at.isoformat() if alert.cleared_at else None,
            "clear_reason": alert.clear_reason,
        },
    )
