"""A client's stream as amqtt reads it, and the keep-alive watch amqtt 0.12.1 lacks: a
client that sends nothing for 1.5 x its keep-alive is dropped (and its will published).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from amqtt.adapters import ReaderAdapter

KEEPALIVE_GRACE = 1.5  # MQTT 3.1.1 §3.1.2.10
WATCH_INTERVAL = 0.5


class ClientReader(ReaderAdapter):
    """The client's stream for amqtt: replays the CONNECT packet already read, then reads
    the socket. ``expire`` (keep-alive) and oversized reads end it: amqtt then reads
    nothing more, which it takes as the connection closing."""

    def __init__(
        self, first: bytes, reader: asyncio.StreamReader, idle: float | None, max_read: int
    ) -> None:
        self._first = first
        self._reader = reader
        self.idle = idle
        self._max_read = max_read
        self.last = time.monotonic()
        self._closed = False

    async def read(self, n: int = -1) -> bytes:
        if self._first:
            cut = len(self._first) if n < 0 else n
            head, self._first = self._first[:cut], self._first[cut:]
            return head
        if self._closed or n > self._max_read:
            self.expire()
            return b""
        data = await (self._reader.readexactly(n) if n >= 0 else self._reader.read(n))
        if self._closed:
            return b""
        self.last = time.monotonic()
        return data

    def expire(self) -> None:
        self._closed = True
        self._reader.feed_eof()

    def feed_eof(self) -> None:
        self._reader.feed_eof()


def idle_limit(keep_alive: int) -> float | None:
    """How long a client with this keep-alive may stay silent (``None``: forever)."""
    return keep_alive * KEEPALIVE_GRACE if keep_alive else None


async def watch_keepalive(readers: Callable[[], Iterable[ClientReader]]) -> None:
    """Drop clients silent for longer than 1.5 x their keep-alive; ``readers`` gives
    the current clients' ``ClientReader``."""
    while True:
        await asyncio.sleep(WATCH_INTERVAL)
        now = time.monotonic()
        for reader in readers():
            idle = reader.idle
            if idle is not None and now - reader.last > idle:
                reader.expire()
