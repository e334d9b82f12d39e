"""Device log rows: who changed what, with before/after values."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from fieldwatch.auth.principal import Principal
from fieldwatch.core.clock import utcnow
from fieldwatch.core.context import current_request_id


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {
        key: {"before": jsonable(before.get(key)), "after": jsonable(after[key])}
        for key in after
        if before.get(key) != after[key]
    }


def log_row(
    *,
    workspace_id: uuid.UUID,
    device_id: uuid.UUID,
    action: str,
    actor: Principal | None,
    old_status: str | None = None,
    new_status: str | None = None,
    notes: str | None = None,
    changes: dict[str, Any] | None = None,
    actor_label: str | None = None,
) -> dict[str, Any]:
    """The column values of one device log row (for the ORM or a bulk insert)."""
    return {
        "workspace_id": workspace_id,
        "device_id": device_id,
        "action": action,
        "old_status": old_status,
        "new_status": new_status,
        "performed_by": actor.user_id if actor else None,
        "actor": actor.actor if actor else actor_label,
        "notes": notes,
        "request_id": current_request_id(),
        "changes": changes or {},
        "created_at": utcnow(),
    }
