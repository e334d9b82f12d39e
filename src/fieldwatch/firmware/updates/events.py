"""Firmware update events, published after commit (and pushed over Socket.IO)."""

from __future__ import annotations

from fieldwatch.core.events import Event
from fieldwatch.firmware.models import FirmwareUpdate

UPDATE_CHANGED = "firmware.update_changed"


def update_event(update: FirmwareUpdate, previous: str | None) -> Event:
    return Event(
        type=UPDATE_CHANGED,
        workspace_id=update.workspace_id,
        subject_id=update.device_id,
        payload={
            "update_id": str(update.command_id),
            "device_id": str(update.device_id),
            "rollout_id": str(update.rollout_id) if update.rollout_id else None,
            "wave": update.wave,
            "state": update.state,
            "from_state": previous,
            "reason": update.reason,
            "tries": update.tries,
            "version": update.target_version,
            "downloaded_bytes": update.downloaded_bytes,
            "at": update.updated_at.isoformat(),
        },
    )
