"""The load: publisher processes using paho without a network thread, publishing a fixed
total of JSON readings of about 80 bytes over 1,000 device topics as fast as they can."""

from __future__ import annotations

import json
import uuid
from multiprocessing.synchronize import Event as MpEvent
from typing import Any

from harness.broker import paho_publish

DEVICES = 1000


def messages_for(index: int, count: int) -> list[tuple[str, bytes]]:
    """Pre-built (topic, payload) pairs so publishing costs only the client."""
    devices = [str(uuid.UUID(int=(index + 1) << 64 | d)) for d in range(DEVICES)]
    out = []
    for i in range(count):
        body = {
            "value": round(20.0 + (i % 150) / 10, 1),
            "unit": "celsius",
            "quality": "good",
            "timestamp": 1_694_678_400 + i,
        }
        out.append(
            (f"iot/devices/data/{devices[i % DEVICES]}/temperature", json.dumps(body).encode())
        )
    return out


def publisher(port: int, index: int, count: int, qos: int, start: MpEvent, out: Any) -> None:
    """Publish ``count`` messages from one process."""
    client_id = f"bench-pub-{index}-{uuid.uuid4().hex[:6]}"
    out.put(paho_publish(port, messages_for(index, count), qos, client_id, start))
