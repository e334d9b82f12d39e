"""Per-device limits at the MQTT gateway, and telling devices what was refused.

Every message a device publishes on its own topics takes one of its rate-limit tokens
(``monitoring.limits``: 1,000 messages per 60 s by default, per device type and per
device through the API). Over the limit a message is dropped before it is decoded (it is
still acknowledged to the broker: redelivering it would only repeat the flood), counted,
and the device is told on ``iot/devices/{id}/errors`` at most once a second::

    {"code": "rate_limited", "message": "…", "retry_after": 0.06, "timestamp": 1763812800.0}

A device that keeps flooding (more than ``FIELDWATCH_DEVICE_MAX_REFUSED`` refused
messages within a minute) is told so (``"code": "flooding"``) and a second later
disconnected: with the embedded broker its session is closed, with Mosquitto it is
kicked through dynamic security. It may reconnect; its allowance is still being
refilled. The kick runs beside the batch, so the other devices' messages are not held
up by it.

Readings refused one by one (e.g. beyond the device's limit on distinct metrics) are
reported on the same topic, one message per device and batch (at most 100 of them;
``index``: the reading's position in its message, when that was an array)::

    {"code": "rejected", "rejected": [{"sensor_type": "m1001", "reason": "…"}], "timestamp": …}

A data message refused whole (``transports.mqtt.data``: not JSON, neither an object nor
an array, more readings than a message may carry) is told with its topic::

    {"code": "too_many_readings", "message": "…", "topic": "iot/devices/data/…", "limit": 1000,
     "timestamp": …}
    {"code": "bad_json", "message": "…", "topic": "iot/devices/data/…", "timestamp": …}
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from fieldwatch.monitoring.limits import DeviceLimiter, Rate, Refusal
from fieldwatch.transports.mqtt import topics
from fieldwatch.transports.mqtt.link import MqttLink, MqttLinkError

log = logging.getLogger(__name__)

Kick = Callable[[str], Awaitable[Any]]
KICK_DELAY_S = 1.0
#: Refused readings listed in one report (the others are counted in the metrics only).
MAX_REPORTED = 100


class DeviceGuard:
    def __init__(
        self, limits: DeviceLimiter, link: Callable[[], MqttLink | None], kick: Kick
    ) -> None:
        self.limits = limits
        self.link = link
        self.kick = kick
        self._kicks: set[asyncio.Task[None]] = set()

    async def rate(self, workspace_id: uuid.UUID, device_id: uuid.UUID) -> Rate:
        """The device's limit (looked up once per batch; ``take`` per message)."""
        return await self.limits.rate("mqtt", workspace_id, device_id)

    def take(self, device_id: uuid.UUID, rate: Rate) -> Refusal | None:
        """A token of the device's allowance; the refusal (counted) when there is none,
        for ``refused`` to tell."""
        return self.limits.take("mqtt", device_id, rate)

    async def refused(self, device_id: uuid.UUID, refusal: Refusal) -> None:
        """Tell a device over its limit, and drop it when it keeps flooding."""
        if refusal.notify:
            await self.tell(
                device_id,
                {"code": "rate_limited", "message": refusal.message,
                 "retry_after": round(refusal.retry_after, 3)},
            )  # fmt: skip
        if refusal.flooding:
            log.info("MQTT: device %s keeps flooding; disconnecting it", device_id)
            self.limits.disconnected("mqtt")
            await self.tell(
                device_id,
                {"code": "flooding", "message": f"{refusal.message} Disconnecting.",
                 "retry_after": round(refusal.retry_after, 3)},
            )  # fmt: skip
            task = asyncio.create_task(self._kick(str(device_id)))
            self._kicks.add(task)
            task.add_done_callback(self._kicks.discard)

    async def _kick(self, device_id: str) -> None:
        # A moment for the device to read why: closing a connection whose peer is still
        # sending resets it, and what the device had not read yet is lost.
        await asyncio.sleep(KICK_DELAY_S)
        try:
            await self.kick(device_id)
        except Exception:
            log.exception("MQTT: disconnecting device %s failed", device_id)

    async def report(self, device_id: uuid.UUID, rejected: list[dict[str, Any]]) -> None:
        """Tell the device which of its readings were refused, and why (``position``:
        where a reading was in its message's array)."""
        items = []
        for r in rejected[:MAX_REPORTED]:
            item = {"sensor_type": r.get("metric"), "reason": r["reason"]}
            if "position" in r:
                item["index"] = r["position"]
            items.append(item)
        await self.tell(device_id, {"code": "rejected", "rejected": items})

    async def refuse(
        self, device_id: uuid.UUID, topic: str, code: str, exc: Exception, limit: int | None = None
    ) -> None:
        """Tell the device that a message was refused whole (nothing of it stored)."""
        log.info("MQTT: %s refused: %s", topic, exc)
        body: dict[str, Any] = {"code": code, "message": str(exc), "topic": topic}
        if limit is not None:
            body["limit"] = limit
        await self.tell(device_id, body)

    async def tell(self, device_id: uuid.UUID, body: dict[str, Any]) -> None:
        """Publish on the device's errors topic (QoS 0: advice, not data)."""
        link = self.link()
        if link is None:
            return
        payload = orjson.dumps({**body, "timestamp": time.time()})
        try:
            await link.publish(topics.errors(str(device_id)), payload, qos=0)
        except MqttLinkError as exc:
            log.debug("MQTT: could not tell device %s: %s", device_id, exc)

    async def stop(self) -> None:
        tasks = list(self._kicks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
