"""Sync events, published after commit (and pushed to dashboards over Socket.IO)."""

from __future__ import annotations

from fieldwatch.core.events import Event
from fieldwatch.integrations.models import SyncRun

SYNC_CHANGED = "integration.sync_changed"


def sync_event(run: SyncRun, from_status: str | None) -> Event:
    """A run was created (``from_status`` None) or changed status. No credentials, no
    readings: ids, status and counts."""
    return Event(
        type=SYNC_CHANGED,
        workspace_id=run.workspace_id,
        subject_id=run.device_id,
        payload={
            "sync_id": str(run.id),
            "device_id": str(run.device_id),
            "sync_type": run.sync_type,
            "status": run.status,
            "from_status": from_status,
            "attempt": run.attempt,
            "records_processed": run.records_processed,
            "records_synced": run.records_synced,
            "records_failed": run.records_failed,
            "error_message": run.error_message,
            "not_before": run.not_before.isoformat() if run.not_before else None,
        },
    )
