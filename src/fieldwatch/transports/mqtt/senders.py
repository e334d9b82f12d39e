"""The devices that publish in a batch of MQTT messages: each looked up once (its id,
workspace and rate limit), and kept for the next batches until a rate limit or a device
changes (``DeviceLimiter.generation``), and for ``OVERRIDES_CACHE_S`` at most."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from fieldwatch.monitoring.limits import OVERRIDES_CACHE_S, Rate
from fieldwatch.transports.mqtt import topics
from fieldwatch.transports.mqtt.authority import DeviceWorkspaces
from fieldwatch.transports.mqtt.guard import DeviceGuard
from fieldwatch.transports.mqtt.topics import Kind

DEVICE_KINDS = frozenset(
    {Kind.HEARTBEAT, Kind.DATA, Kind.STATUS, Kind.COMMAND_ACK, Kind.COMMAND_RESULT,
     Kind.CONFIG_APPLIED, Kind.UNREGISTER, Kind.FIRMWARE_STATE}
)  # fmt: skip


@dataclass(slots=True)
class Sender:
    """A device that publishes in a batch: its id, workspace and rate limit."""

    device_id: uuid.UUID
    workspace_id: uuid.UUID
    rate: Rate


class KnownSenders(dict[str, Sender]):
    """The devices heard from lately, by their id as the topic spells it."""

    generation = -1
    since = 0.0

    async def of(
        self, parsed: list[topics.Topic | None], workspaces: DeviceWorkspaces, guard: DeviceGuard
    ) -> dict[str, Sender | None]:
        """The devices publishing on device topics in a batch (None: not a device of
        ours; its messages are dropped further on)."""
        limits, now = guard.limits, time.monotonic()
        if self.generation != limits.generation or now - self.since > OVERRIDES_CACHE_S:
            self.clear()
            self.generation, self.since = limits.generation, now
        senders: dict[str, Sender | None] = {}
        for topic in parsed:
            if topic is None or topic.kind not in DEVICE_KINDS:
                continue
            name = topic.device_id
            if name in senders:
                continue
            sender = self.get(name)
            if sender is None:
                sender = await _look_up(name, workspaces, guard)
                if sender is not None:
                    self[name] = sender
            senders[name] = sender
        return senders


async def _look_up(name: str, workspaces: DeviceWorkspaces, guard: DeviceGuard) -> Sender | None:
    try:
        device_id = uuid.UUID(name)
    except ValueError:
        return None
    workspace_id = await workspaces.get(name)
    if workspace_id is None:
        return None
    return Sender(device_id, workspace_id, await guard.rate(workspace_id, device_id))
