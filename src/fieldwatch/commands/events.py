"""Command and configuration events, published after commit."""

from __future__ import annotations

from typing import Any

from fieldwatch.commands.models import Command, DeviceConfig
from fieldwatch.core.events import Event

COMMAND_CREATED = "command.created"
COMMAND_UPDATED = "command.updated"
CONFIG_UPDATED = "config.updated"
CONFIG_APPLIED = "config.applied"


def command_event(kind: str, command: Command, from_status: str | None = None) -> Event:
    return Event(
        type=kind,
        workspace_id=command.workspace_id,
        subject_id=command.device_id,
        payload={
            "command_id": str(command.id),
            "device_id": str(command.device_id),
            "command": command.command,
            "status": command.status,
            "from_status": from_status,
            "attempts": command.attempts,
            "transport": command.transport,
            "reason": command.reason,
            "result": command.result,
            "at": command.updated_at.isoformat(),
        },
    )


def config_event(kind: str, config: DeviceConfig, **extra: Any) -> Event:
    return Event(
        type=kind,
        workspace_id=config.workspace_id,
        subject_id=config.device_id,
        payload={
            "device_id": str(config.device_id),
            "desired_version": config.desired_version,
            "reported_version": config.reported_version,
            **extra,
        },
    )
