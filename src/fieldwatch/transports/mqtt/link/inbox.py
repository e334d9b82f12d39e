"""Received messages waiting for the handler, and the back-pressure on the socket.

Incoming messages go into a deque; one drain task hands them to the handler in batches
of up to ``batch_size``. When ``max_pending`` messages wait, the link stops reading the
socket (TCP then pushes back on the broker, which queues QoS 1 messages and may drop
QoS 0 ones) and reads again once half of them are handled. While a ``publish()`` waits
for its PUBACK the limit doubles, since the PUBACK can only be read after the messages
in front of it.

Messages can also be put in without a socket (the embedded broker's in-process path,
``MqttLink.take``): their sender waits in ``wait_room`` while the inbox is full.

With ``depth`` above 1 the handler gets the next batch while it still works on earlier
ones (up to ``depth`` at once, handed over in order): a handler that does so keeps its
own acknowledgements in order (the gateway: ``transports/mqtt/turns.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable

from fieldwatch.transports.mqtt.link.driver import LinkDriver
from fieldwatch.transports.mqtt.link.messages import IncomingMessage, MessageHandler

log = logging.getLogger(__name__)


class Inbox:
    """The queue between the socket and the handler. ``publishing`` tells whether a
    ``publish()`` waits for its PUBACK."""

    def __init__(
        self,
        driver: LinkDriver,
        *,
        batch_size: int,
        max_pending: int,
        publishing: Callable[[], bool],
        depth: int = 1,
    ) -> None:
        self.driver = driver
        self.batch_size = batch_size
        self.max_pending = max_pending
        self.handler: MessageHandler | None = None
        self.received = 0  # PUBLISH packets read, including dropped ones
        self._publishing = publishing
        self._pending: deque[IncomingMessage] = deque()
        self._ready = asyncio.Event()
        self._room = asyncio.Event()  # set while there is room (senders of ``wait_room``)
        self._room.set()
        self.idle = asyncio.Event()
        self.idle.set()
        self._drainer: asyncio.Task[None] | None = None
        self._warned_no_handler = False
        self.depth = depth
        #: the batches in the handler, each with when its first message arrived
        self._handling: dict[asyncio.Task[None], float] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def put(self, message: IncomingMessage) -> None:
        pending = self._pending
        pending.append(message)
        if len(pending) == 1:
            self._ready.set()

    def has_room(self) -> bool:
        """Whether a sender may put a message in now (``wait_room`` would not wait)."""
        return self._room.is_set() and len(self._pending) < self.limit()

    async def wait_room(self) -> None:
        """Return once there is room: once full, the inbox takes nothing more until half
        of what waits is handled, so senders that waited are not overtaken by new ones."""
        while not self.has_room():
            self._room.clear()
            await self._room.wait()

    def lag(self) -> float:
        """Seconds the oldest message not yet handled has waited: the batch in the
        handler (retried while the database is away), else the first one queued."""
        oldest = next(iter(self._handling.values()), None)
        if oldest is None and self._pending:
            oldest = self._pending[0].received
        return 0.0 if oldest is None else max(0.0, time.monotonic() - oldest)

    def clear(self) -> None:
        self._pending.clear()
        self._room.set()

    def start(self, name: str) -> None:
        self._drainer = asyncio.create_task(self._drain(), name=name)

    async def stop(self) -> None:
        if self._drainer is not None:
            self._drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drainer
            self._drainer = None
        for task in list(self._handling):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def limit(self) -> int:
        """How many messages may wait before reading pauses."""
        return self.max_pending * 2 if self._publishing() else self.max_pending

    async def _drain(self) -> None:
        pending = self._pending
        driver = self.driver
        resume_at = self.max_pending // 2
        while True:
            await self._ready.wait()
            self._ready.clear()
            running = self._handling
            while pending and not driver.closing:
                while len(running) >= self.depth:  # the batch waits here, not in hand
                    await asyncio.wait(list(running), return_when=asyncio.FIRST_COMPLETED)
                if not pending or driver.closing:
                    break
                count = min(self.batch_size, len(pending))
                batch = [pending.popleft() for _ in range(count)]
                if len(pending) <= resume_at:
                    if driver.paused:
                        driver.resume_reading()
                    if not self._room.is_set():
                        self._room.set()
                handler = self.handler
                if handler is None:
                    if not self._warned_no_handler:
                        self._warned_no_handler = True
                        log.warning("MQTT link: messages arrive but no handler is set")
                    continue
                self.idle.clear()
                task = asyncio.create_task(self._handle(handler, batch))
                running[task] = batch[0].received
                if self.depth == 1:
                    await asyncio.wait([task])

    async def _handle(self, handler: MessageHandler, batch: list[IncomingMessage]) -> None:
        try:
            await handler(batch)
        except Exception:
            log.exception(
                "MQTT message handler failed on %d messages; they stay unacknowledged",
                len(batch),
            )
        finally:
            running = self._handling
            running.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
            if not running:
                self.idle.set()
