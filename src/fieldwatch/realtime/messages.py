"""What a dashboard receives: a bus event as a flat, JSON-safe Socket.IO message."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import orjson

from fieldwatch.core.events import Event

TELEMETRY = "telemetry"
PRESENCE = "presence"
DEVICE_STATUS = "device_status"
ALERT = "alert"
COMMAND = "command"
CONFIG = "config"
FIRMWARE = "firmware"
SYNC = "sync"

#: The Socket.IO event names a client can receive (and narrow its subscription to).
NAMES = (TELEMETRY, PRESENCE, DEVICE_STATUS, ALERT, COMMAND, CONFIG, FIRMWARE, SYNC)

#: Bus pattern → Socket.IO event name.
ROUTES: tuple[tuple[str, str], ...] = (
    ("telemetry.received", TELEMETRY),
    ("device.presence_changed", PRESENCE),
    ("device.status_changed", DEVICE_STATUS),
    ("alert.*", ALERT),
    ("command.*", COMMAND),
    ("config.*", CONFIG),
    ("firmware.*", FIRMWARE),
    ("integration.sync_changed", SYNC),
)


def workspace_room(workspace_id: uuid.UUID | str) -> str:
    return f"ws:{workspace_id}"


def device_room(device_id: uuid.UUID | str) -> str:
    return f"device:{device_id}"


def event_room(room: str, name: str) -> str:
    """The room of one event name within a workspace's or a device's room."""
    return f"{room}:{name}"


def device_of(event: Event) -> uuid.UUID | None:
    raw = event.payload.get("device_id")
    if raw is not None:
        try:
            return uuid.UUID(str(raw))
        except ValueError:
            return None
    return event.subject_id


def to_message(event: Event, device_id: uuid.UUID | None) -> dict[str, Any]:
    """The event's payload plus ``device_id``, ``workspace_id``, ``type`` (the event type)
    and ``occurred_at``. A payload's own ``type`` (a device's type, in device events) is
    kept as ``device_type``."""
    payload = dict(event.payload)
    if "type" in payload:
        payload.setdefault("device_type", payload.pop("type"))
    message = {
        **payload,
        "device_id": str(device_id) if device_id else None,
        "workspace_id": str(event.workspace_id),
        "type": event.type,
        "occurred_at": event.occurred_at.isoformat(),
    }
    # Payloads are built for JSON already; this makes sure (UUIDs, datetimes) at the
    # cost of one fast round trip, since Socket.IO encodes with the standard json module.
    loaded: dict[str, Any] = orjson.loads(
        orjson.dumps(message, default=str, option=orjson.OPT_NON_STR_KEYS)
    )
    return loaded


def _is_newer(point: Any, previous: Any) -> bool:
    """Whether a metric point replaces the pending one: the later timestamp wins, and the
    later message when the timestamps can not be compared."""
    try:
        new = datetime.fromisoformat(point["timestamp"])
        old = datetime.fromisoformat(previous["timestamp"])
        return new >= old
    except (TypeError, KeyError, ValueError):
        return True


def merge_telemetry(pending: dict[str, Any], newer: dict[str, Any]) -> dict[str, Any]:
    """Fold a newer telemetry message into a pending one for the same device."""
    metrics = dict(pending.get("metrics") or {})
    for name, point in (newer.get("metrics") or {}).items():
        if name not in metrics or _is_newer(point, metrics[name]):
            metrics[name] = point
    return {**pending, **newer, "metrics": metrics}
