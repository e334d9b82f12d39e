"""Two parts of the MQTT gateway's batches in hand at once, acknowledged in order.

The link hands the gateway its next batch while the one before is still being stored
(``MqttLinkOptions.handler_depth``), and a large batch is stored in parts, the next one
prepared while one is stored: decoding overlaps the commits, and two writes can be in
flight. Each part prepares (topics, senders, rate limits, decoding) in arrival order,
under a lock, and takes its turn; once stored, it is acknowledged only after the part
before it (``Turn.ready``), so the broker gets its acknowledgements in order. A part
holding anything but data and heartbeats (a last will, a command's result, a
registration...) prepares only after the part before it is done, since those act on the
spot and must come after what the device sent earlier.

A part whose store fails gives its turn up and is retried; the parts after it may then
be acknowledged first. Nothing is acknowledged before its commit either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fieldwatch.transports.mqtt import topics
from fieldwatch.transports.mqtt.link import IncomingMessage


@dataclass(slots=True)
class Part:
    """Messages of a batch, from the first not yet handled, with their topics; a part
    is stored in a turn. ``whole``: a retry, which takes all of them (as many as the
    first try took)."""

    messages: list[IncomingMessage]
    parsed: list[topics.Topic | None]
    whole: bool = False

    def first(self, n: int) -> Part:
        return Part(self.messages[:n], self.parsed[:n], whole=True)


class Turn:
    """One batch's place: ``ready()`` once the batch before it is done, ``done()`` when
    its own is (or failed)."""

    __slots__ = ("_mine", "_previous")

    def __init__(self, previous: asyncio.Future[None] | None, mine: asyncio.Future[None]) -> None:
        self._previous = previous
        self._mine = mine

    async def ready(self) -> None:
        previous = self._previous
        if previous is not None and not previous.done():
            await asyncio.shield(previous)
        self._previous = None

    def done(self) -> None:
        if not self._mine.done():
            self._mine.set_result(None)


class Turns:
    """``batches``: held by a batch while it is split into parts, so that all its parts
    take their turns before any part of the batch after it."""

    def __init__(self) -> None:
        self.batches = asyncio.Lock()
        self._preparing = asyncio.Lock()
        self._last: asyncio.Future[None] | None = None

    @asynccontextmanager
    async def prepare(self, after_previous: bool) -> AsyncIterator[Turn]:
        """Prepare a batch in arrival order (``after_previous``: once the batch before
        is stored) and take its turn; the caller ends it with ``Turn.done()``."""
        async with self._preparing:
            previous = self._last
            if after_previous and previous is not None and not previous.done():
                await asyncio.shield(previous)
            mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._last = mine
            turn = Turn(previous, mine)
            try:
                yield turn
            except BaseException:
                turn.done()
                raise
