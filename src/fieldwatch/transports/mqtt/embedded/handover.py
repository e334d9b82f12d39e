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
subscribe to those (``acl``), so nobody else misses them. The rest (command results,
configuration and firmware reports, which a device may also subscribe to, and QoS 2)
take amqtt's way as before.

What stays as before: the topic rules (a refused PUBLISH is acknowledged and dropped,
and counted in ``refusals``), and the receipt rule. A message not committed within
``RECEIPT_TIMEOUT`` (the gateway failed it, or stopped) closes the device's connection
without a PUBACK, and the device sends it again once reconnected.
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
        self._ids = itertools.count(1)
        #: QoS 1 messages handed over and not yet committed: id → (receipt, deadline);
        #: in the order they were handed over, so deadlines only grow
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
        self, principal: Principal, topic: str, payload: bytes, qos: int, dup: bool = False
    ) -> bool:
        """Hand a message over (``dup``: sent again by its client). True: PUBACK it
        (committed, or refused by the topic rules and dropped); False: close the
        connection without one."""
        if self.closed or not self.link.taking:
            return False
        if not await self.gate.may_publish(principal, topic):
            return True
        link = self.link
        await link.wait_room()
        if self.closed:
            return False
        now = time.monotonic()
        if not qos:
            link.take(IncomingMessage(topic, payload, 0, False, 0, False, HANDED, now))
            return True
        mid = next(self._ids)
        receipt = asyncio.get_running_loop().create_future()
        self._waiting[mid] = (receipt, now + self.timeout)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(self.timeout, self._sweep)
        link.take(IncomingMessage(topic, payload, 1, False, mid, dup, HANDED, now))
        return await receipt

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
