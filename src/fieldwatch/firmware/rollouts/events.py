"""Rollout events, published after commit (and pushed to dashboards over Socket.IO)."""

from __future__ import annotations

from fieldwatch.core.events import Event
from fieldwatch.firmware.models import Rollout, RolloutWave

ROLLOUT_CHANGED = "firmware.rollout_changed"


def rollout_event(
    rollout: Rollout, from_status: str | None, wave: RolloutWave | None = None
) -> Event:
    """The rollout's status changed (``from_status`` → its status), or one of its waves
    did (``wave``; then ``from_status`` equals the status)."""
    return Event(
        type=ROLLOUT_CHANGED,
        workspace_id=rollout.workspace_id,
        payload={
            "rollout_id": str(rollout.id),
            "name": rollout.name,
            "artifact_id": str(rollout.artifact_id),
            "status": rollout.status,
            "from_status": from_status,
            "status_reason": rollout.status_reason,
            "wave": wave.number if wave is not None else None,
            "wave_status": wave.status if wave is not None else None,
            "at": rollout.updated_at.isoformat(),
        },
    )
