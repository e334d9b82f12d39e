"""What the link's parts need from the socket side of a client (``socket_driver`` for
paho, ``mqtt5_driver`` for the mqtt5 codec): the inbox pauses and resumes reading, the
supervisor opens connections, the link binds it to its loop and closes it."""

from __future__ import annotations

import asyncio
from typing import Protocol


class LinkDriver(Protocol):
    """The socket of one MQTT client, driven from the event loop.

    ``paused``: reading stopped because the inbox is full; ``closing``: the link stops;
    ``no_connack_hint``: what to add when a broker does not answer CONNECT.
    """

    paused: bool
    closing: bool
    no_connack_hint: str

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Drive the socket from ``loop``, which runs on the calling thread."""

    async def open(self) -> None:
        """Open a connection (TCP, and TLS) and send CONNECT; the CONNACK comes later."""

    def detach(self) -> None:
        """Forget the current connection (before a new one is opened)."""

    def close_socket(self) -> None:
        """Close the current connection at once."""

    def pause_reading(self, pending: int) -> None:
        """Stop reading; ``pending`` messages wait for the handler."""

    def resume_reading(self) -> None:
        """Read again (the inbox has room)."""


class LoopBound:
    """The loop a driver runs on, as ``LinkDriver`` wants it: set by ``bind``."""

    _loop: asyncio.AbstractEventLoop | None = None
    closing: bool = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.closing = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the MQTT link is not started")
        return self._loop
