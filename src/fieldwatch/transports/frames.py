"""One decoded device message, whatever transport brought it, and how its readings
become a telemetry batch (shared by the WebSocket and MQTT gateways)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from fieldwatch.core.clock import utcnow
from fieldwatch.telemetry.parse import Batch, parse_device_data, parse_heartbeat, parse_monitoring


@dataclass(frozen=True, slots=True)
class DeviceFrame:
    """One decoded device message: its type, its optional id, and the rest."""

    type: str
    id: Any
    body: dict[str, Any]


def to_batch(frame: DeviceFrame, device_id: uuid.UUID) -> Batch:
    now = utcnow()
    body = frame.body
    if frame.type == "heartbeat":
        return parse_heartbeat(body, device_id, now)
    if frame.type == "status":  # any scalar field is kept as a reading
        return parse_heartbeat(
            {k: v for k, v in body.items() if isinstance(v, int | float | str | bool)},
            device_id,
            now,
        )
    if isinstance(body.get("metrics"), dict):  # {metrics: {name: value | {...}}, timestamp?}
        item = {**body, "device_id": str(device_id)}
        return parse_monitoring(item, now, {str(device_id): device_id})
    if "sensor_type" in body and "data_type" not in body:  # seed 003 single reading
        body = {**body, "data_type": body["sensor_type"]}
    return parse_device_data(body, device_id, now)
