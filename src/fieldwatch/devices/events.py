"""Device domain events. Published after commit through the event bus."""

from __future__ import annotations

from typing import Any

from fieldwatch.core.events import Event
from fieldwatch.devices.models import Device

DEVICE_CREATED = "device.created"
DEVICE_UPDATED = "device.updated"
DEVICE_STATUS_CHANGED = "device.status_changed"
DEVICE_DELETED = "device.deleted"


def device_event(kind: str, device: Device, **payload: Any) -> Event:
    body = {
        "device_id": str(device.id),
        "name": device.name,
        "type": device.type,
        "status": device.status,
        "location": device.location,
        **payload,
    }
    return Event(type=kind, workspace_id=device.workspace_id, subject_id=device.id, payload=body)
