"""The embedded broker's in-process path: a client's PUBLISH on a topic only the gateway
receives goes straight into the gateway's inbox, and its PUBACK waits for the commit.

amqtt routes every message through its broadcast: a queue, a match against every
subscription the broker holds (each device holds its own), a task per recipient, the
PUBLISH encoded again and written to the gateway's own connection, read and decoded
there, and the gateway's PUBACK read back (``receipts``). With a thousand devices that
costs about 550 µs of CPU a message. Here the broker hands the message to the gateway's
link (``MqttLink.take``) as if the gateway had read it, and the gateway tells the
handover when it is committed (``ack``), which answers the device with its PUBACK.

Taken this way (``takes``): QoS 0 and 1 messages from any client but the gateway whose
topic is data, heartbeat, status, registration or a control topic. No other client may
subscribe to those (``acl``), so nobody else misses them. What amqtt publishes for a
client on those topics (its last will; a QoS 2 message, once amqtt has its PUBREL)
comes this way too, without a receipt, so the gateway gets a client's messages in the
order they were sent: a connection's messages are handed over one after the other
(``order``), and its will after them. The rest (command acks and results, configuration
and firmware reports, which a device may also subscribe to) take amqtt's way as before.

What stays as before: the topic rules (a refused PUBLISH is acknowledged and dropped,
and counted in ``refusals``), and the receipt rule. A message not committed within
``RECEIPT_TIMEOUT`` of its arrival (the gateway's inbox stayed full, the gateway failed
it) or waiting when the gateway stops closes the device's connection without a PUBACK,
and the device sends it again once reconnected.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time

from fieldwatch.transports.mqtt import topics
from fieldwatch.transports.mqtt.acl import Principal
from fieldwatch.transports.mqtt.embedded.admission import Gate
from fieldwatch.transports.mqtt.embedded.receipts import RECEIPT_TIMEOUT
from fieldwatch.transports.mqtt.link import HANDED, IncomingMessage, MqttLink
from fieldwatch.transports.mqtt.topics import Kind

log = logging.getLogger(__name__)

#: Ids of the messages handed over, unique in the process: a message of an earlier
#: handover still in the inbox never answers for one of a later handover
_IDS = itertools.count(1)

#: Topics only the gateway may receive: they need no broadcast.
HANDED_KINDS = frozenset(
    {Kind.DATA, Kind.HEARTBEAT, Kind.STATUS, Kind.REGISTER, Kind.UNREGISTER, *topics.CONTROL}
)


class Handover:
    """Hands the messages it ``takes`` to ``link`` (the gateway's), after ``gate``'s
    topic rules; ``ack`` releases the PUBACKs of committed ones."""

    def __init__(self, link: MqttLink, gate: Gate, timeout: float = RECEIPT_TIMEOUT) -> None:
        self.link = link
        self.gate = gate
        self.timeout = timeout
        self.closed = False
        #: QoS 1 messages handed over and not yet committed: id → (receipt, deadline);
        #: in the order they were handed over (deadlines grow, but for one that waited
        #: for room: the sweep looks at the first ones, the rest at their turn)
        self._waiting: dict[int, tuple[asyncio.Future[bool], float]] = {}
        self._sweeper: asyncio.TimerHandle | None = None

    @staticmethod
    def takes(topic: str, qos: int) -> bool:
        """Whether a message on ``topic`` at ``qos`` goes this way."""
        if qos > 1:
            return False
        parsed = topics.parse(topic)
        return parsed is not None and parsed.kind in HANDED_KINDS

    @property
    def waiting(self) -> int:
        """QoS 1 messages handed over whose commit is awaited."""
        return len(self._waiting)

    async def publish(
        self,
        principal: Principal,
        topic: str,
        payload: bytes,
        qos: int,
        dup: bool = False,
        order: asyncio.Lock | None = None,
    ) -> bool:
        """Hand a message over (``dup``: sent again by its client; ``order``: its
        connection's lock, which keeps its messages in the order they came). True:
        PUBACK it (committed, or refused by the topic rules and dropped); False: close
        the connection without one (not committed within ``timeout``, counted from now,
        or the gateway stopped)."""
        deadline = time.monotonic() + self.timeout
        if order is None:
            receipt = await self._hand(principal, topic, payload, qos, dup, deadline)
        else:
            async with order:
                receipt = await self._hand(principal, topic, payload, qos, dup, deadline)
        if isinstance(receipt, bool):
            return receipt
        mid, future = receipt
        try:
            return await future
        finally:
            self._waiting.pop(mid, None)  # acknowledged, swept, or the device went away

    async def _hand(
        self,
        principal: Principal,
        topic: str,
        payload: bytes,
        qos: int,
        dup: bool,
        deadline: float,
    ) -> bool | tuple[int, asyncio.Future[bool]]:
        """Check and take a message: its answer now (a bool), or its receipt to await."""
        link = self.link
        if self.closed or not link.taking:
            return False
        if not await self.gate.may_publish(principal, topic):
            return True
        if not link.has_room():
            try:
                await asyncio.wait_for(link.wait_room(), max(deadline - time.monotonic(), 0))
            except TimeoutError:
                return False
        if self.closed or not link.taking:
            return False
        now = time.monotonic()
        if not qos:
            link.take(IncomingMessage(topic, payload, 0, False, 0, dup, HANDED, now))
            return True
        mid = next(_IDS)
        loop = asyncio.get_running_loop()
        receipt = loop.create_future()
        self._waiting[mid] = (receipt, deadline)
        if self._sweeper is None:
            self._sweeper = loop.call_later(max(deadline - now, 0), self._sweep)
        link.take(IncomingMessage(topic, payload, 1, False, mid, dup, HANDED, now))
        return mid, receipt

    def ack(self, messages: list[IncomingMessage]) -> None:
        """The gateway committed these: the devices get their PUBACKs (messages that came
        over the gateway's connection are skipped)."""
        waiting = self._waiting
        for message in messages:
            if message.connection == HANDED and message.qos:
                entry = waiting.pop(message.mid, None)
                if entry is not None and not entry[0].done():
                    entry[0].set_result(True)

    def close(self) -> None:
        """Take nothing more; what waits for its commit gets no PUBACK."""
        self.closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        waiting, self._waiting = self._waiting, {}
        for receipt, _ in waiting.values():
            if not receipt.done():
                receipt.set_result(False)

    def _sweep(self) -> None:
        """Give up on the messages past their deadline (their devices are disconnected
        and send them again)."""
        self._sweeper = None
        now, waiting = time.monotonic(), self._waiting
        late = list(itertools.takewhile(lambda item: item[1][1] <= now, waiting.items()))
        for mid, (receipt, _) in late:
            del waiting[mid]
            if not receipt.done():
                receipt.set_result(False)
        if late:
            log.warning(
                "MQTT: %d message(s) not committed within %g s; their devices are "
                "disconnected and send them again",
                len(late),
                self.timeout,
            )
        if waiting:
            first = next(iter(waiting.values()))[1]
            delay = max(first - now, 0.05)
            self._sweeper = asyncio.get_running_loop().call_later(delay, self._sweep)
