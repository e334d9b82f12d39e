"""The command ledger's way to one device over MQTT: commands, configuration and
firmware update messages published to the device's topics (QoS 1)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from fieldwatch.firmware.updates.messages import FRAME as FIRMWARE_FRAME
from fieldwatch.transports.mqtt import firmware, topics
from fieldwatch.transports.mqtt.link import MqttLink, MqttLinkError

log = logging.getLogger(__name__)

#: The topic of each command kind's message (``commands.kinds.CommandKind.frame``):
#: (device id, message) → topic.
FRAME_TOPICS: dict[str, Callable[[str, dict[str, Any]], str]] = {
    FIRMWARE_FRAME: firmware.update_topic
}


class MqttChannel:
    """The command ledger's way to one device over MQTT (QoS 1 publishes)."""

    transport = "mqtt"

    def __init__(self, link: MqttLink, device_id: str) -> None:
        self.link = link
        self.device_id = device_id

    async def _publish(self, topic: str, payload: dict[str, Any]) -> bool:
        try:
            await self.link.publish(topic, orjson.dumps(payload), qos=1)
        except MqttLinkError as exc:
            log.info("MQTT: could not publish to device %s: %s", self.device_id, exc)
            return False
        return True

    async def send_command(self, message: dict[str, Any], frame: str = "command") -> bool:
        topic_of = FRAME_TOPICS.get(frame)
        if topic_of is not None:  # a command kind of its own (commands.kinds)
            payload = {**message, "timestamp": time.time()}
            return await self._publish(topic_of(self.device_id, message), payload)
        if frame != "command":
            log.warning("MQTT: no topic for %s messages (device %s)", frame, self.device_id)
            return False
        # Seed 003 names the arguments "parameters"; the WebSocket protocol "params".
        payload = {**message, "parameters": message["params"], "timestamp": time.time()}
        return await self._publish(topics.command(self.device_id, message["command_id"]), payload)

    async def send_config(self, message: dict[str, Any]) -> bool:
        payload = {**message, "updates": message["config"], "timestamp": time.time()}
        return await self._publish(topics.config(self.device_id, message["config_id"]), payload)
