"""What the MQTT link hands out: received messages, handler types and its errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

#: ``IncomingMessage.connection`` of a message handed over in-process (``MqttLink.take``)
HANDED = -1


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """One received PUBLISH. ``connection`` tells which connection brought it (``HANDED``:
    none, it was handed over in-process); ``received``: when (``time.monotonic``)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int
    dup: bool = False
    connection: int = field(default=0, repr=False, compare=False)
    received: float = field(default=0.0, repr=False, compare=False)


MessageHandler = Callable[[list[IncomingMessage]], Awaitable[None]]
ConnectHook = Callable[[bool], Awaitable[None]]


class MqttLinkError(Exception):
    """The MQTT link could not do what was asked."""


class MqttConnectError(MqttLinkError):
    """No connection to the broker; ``refused`` when the broker said no."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


class MqttPublishError(MqttLinkError):
    """The broker did not accept a message (not connected, connection lost, timeout)."""
