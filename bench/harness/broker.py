"""Mosquitto for the MQTT benchmarks (the test suite's broker), and publishing to it with
paho."""

from __future__ import annotations

import time
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from tests.mqtt_helpers import Mosquitto

__all__ = ["BenchBroker", "Mosquitto", "paho_publish"]


class BenchBroker(Mosquitto):
    """Mosquitto with an unlimited per-client queue, so the broker never drops; and,
    when given, its QoS 1 in-flight window per client (Mosquitto's default is 20)."""

    def __init__(self, inflight: int | None = None) -> None:
        super().__init__()
        self.inflight = inflight

    def _config(self) -> Path:
        path = super()._config()
        text = path.read_text().replace("max_queued_messages 100000", "max_queued_messages 0")
        if self.inflight is not None:
            text += f"max_inflight_messages {self.inflight}\n"
        path.write_text(text)
        return path


def paho_publish(
    port: int,
    batch: list[tuple[str, bytes]],
    qos: int,
    client_id: str,
    start: MpEvent | None = None,
) -> float:
    """Publish ``batch`` with paho without a network thread (writes go straight out),
    from when ``start`` is set until the broker has acknowledged everything (QoS 1);
    the seconds that took."""
    done = 0

    def on_publish(*_: Any) -> None:
        nonlocal done
        done += 1

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    client.max_inflight_messages_set(0)  # unlimited: the broker acks as fast as it can
    client.on_publish = on_publish
    client.connect("127.0.0.1", port, keepalive=60)
    while not client.is_connected():
        client.loop(0.1)
    if start is not None:
        start.wait()
    t0 = time.perf_counter()
    for n, (topic, payload) in enumerate(batch, 1):
        client.publish(topic, payload, qos=qos)
        if n % 200 == 0:
            client.loop(0)
    while done < len(batch):
        client.loop(0.05)
    elapsed = time.perf_counter() - t0
    client.disconnect()
    client.loop(0.1)
    return elapsed
