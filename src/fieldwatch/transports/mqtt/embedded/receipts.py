"""Acknowledge after commit, for the embedded broker (amqtt 0.12.1).

amqtt answers a client's QoS 1 PUBLISH with PUBACK as soon as it has queued the message
in memory, before any subscriber has it. In ``fieldwatch serve`` the subscriber is
Fieldwatch's own gateway client (the ``service`` principal), which acknowledges its copy
only after the data is committed; so a device's PUBACK could precede the commit, and a
crash of the server in between lost readings the device had been told were delivered.

``ReceiptBroker`` holds the PUBACK of a QoS 1 PUBLISH from any client other than a
service until every service session it was forwarded to has acknowledged its copy:

* all of them acknowledged → PUBACK to the publisher;
* a copy failed (no PUBACK within amqtt's 5 s, or that connection dropped), or no
  service session received the message at all (Fieldwatch's client not connected or not
  subscribed yet) → no PUBACK: the publisher's connection is closed, and the client
  sends the message again after reconnecting (MQTT 3.1.1 §4.4);
* the broker refused the message (topic rules) → PUBACK, and the message is dropped, as
  before (MQTT 3.1.1 has no way to refuse a PUBLISH).

QoS 2 is unchanged (amqtt sends PUBREC on receipt); QoS 0 has no acknowledgement.

Once the gateway is connected, the messages only it may receive (data, heartbeats,
status...) skip amqtt's broadcast: the ``handover`` gives them to the gateway in-process,
with the same rule for the PUBACK. What is here serves the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from amqtt.broker import Broker
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.mqtt.puback import PubackPacket
from amqtt.session import INCOMING, Session

from fieldwatch.transports.mqtt.embedded.clients import principal_of

if TYPE_CHECKING:
    from fieldwatch.transports.mqtt.embedded.handover import Handover

#: How long a PUBACK may wait for the service's acknowledgement before the publisher is
#: disconnected (amqtt itself gives up on a forwarded copy after 5 s).
RECEIPT_TIMEOUT = 30.0


class Receipt(bytes):
    """The payload of a tracked PUBLISH: amqtt carries it unchanged to every recipient
    (a ``bytes``), and it counts the service copies still waiting for their PUBACK."""

    def __new__(cls, data: bytes | bytearray) -> Receipt:
        return super().__new__(cls, data)

    def __init__(self, data: bytes | bytearray) -> None:
        self.settled: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.copies = 0  # service copies in flight
        self.claimed = False  # a service session was sent a copy
        self.queued = False  # handed to the broadcast (the topic rules let it through)
        self.routed = False  # the broadcast has chosen its recipients

    def settle(self, ok: bool) -> None:
        if not self.settled.done():
            self.settled.set_result(ok)

    def routed_all(self) -> None:
        self.routed = True
        if not self.copies:
            self.settle(self.claimed)

    async def follow(self, publish: Awaitable[Any]) -> Any:
        """Await a copy's delivery to a service session (its PUBACK for QoS 1)."""
        try:
            result = await publish
        except BaseException:
            self.settle(False)
            raise
        self.copies -= 1
        if self.routed and not self.copies:
            self.settle(True)
        return result


class ReceiptHandler(BrokerProtocolHandler):
    """amqtt's per-connection handler, whose incoming QoS 0 and 1 messages go to the
    handover if it takes them, whose incoming QoS 1 flow otherwise waits for the receipt,
    and whose deliveries to a service session are followed. ``is_service`` and
    ``handover`` are set by ``ReceiptBroker``."""

    is_service: Callable[[Session | None], bool]
    handover: Callable[[], Handover | None]
    _handing: asyncio.Lock | None = None  # keeps the connection's handed messages in order

    async def _handle_qos0_message_flow(self, app_message: Any) -> None:
        packet = app_message.publish_packet
        if (packet is not None and packet.dup_flag) or not await self._handed(app_message):
            await super()._handle_qos0_message_flow(app_message)

    async def _handle_qos1_message_flow(self, app_message: Any) -> None:
        session = self.session
        if app_message.direction != INCOMING or session is None or self.is_service(session):
            await super()._handle_qos1_message_flow(app_message)
            return
        if await self._handed(app_message):
            return
        receipt = Receipt(app_message.data)
        app_message.data = receipt
        await session.delivered_message_queue.put(app_message)
        try:
            ok = await asyncio.wait_for(asyncio.shield(receipt.settled), RECEIPT_TIMEOUT)
        except TimeoutError:
            ok = False
        if not ok:
            self._close_connection()
            return
        puback = PubackPacket.build(app_message.packet_id)
        await self._send_packet(puback)
        app_message.puback_packet = puback

    async def _handed(self, app_message: Any) -> bool:
        """Give an incoming message from a client (not a service) to the handover, if it
        takes it; a QoS 1 one is then answered (PUBACK or closed connection). False: the
        message takes amqtt's way."""
        handover = self.handover()
        session = self.session
        if (
            handover is None
            or app_message.direction != INCOMING
            or not handover.takes(app_message.topic, app_message.qos)
        ):
            return False
        principal = principal_of(session)
        if principal is None or principal.kind == "service":
            return False
        data, packet = app_message.data, app_message.publish_packet
        order = self._handing
        if order is None:  # amqtt reads each PUBLISH into a task of its own
            order = self._handing = asyncio.Lock()
        ok = await handover.publish(
            principal, app_message.topic, data if type(data) is bytes else bytes(data),
            app_message.qos, packet is not None and packet.dup_flag, order,
        )  # fmt: skip
        if not app_message.qos:
            return True
        if not ok:
            self._close_connection()
            return True
        puback = PubackPacket.build(app_message.packet_id)
        await self._send_packet(puback)
        app_message.puback_packet = puback
        return True

    def _close_connection(self) -> None:
        """End the connection without acknowledging (the client will send again)."""
        reader = self.reader
        expire = getattr(reader, "expire", None)
        if callable(expire):
            expire()
        elif reader is not None:
            reader.feed_eof()

    def mqtt_publish(
        self,
        topic: str,
        data: bytes | bytearray,
        qos: int | None,
        retain: bool,
        ack_timeout: int | None = None,
    ) -> Awaitable[Any]:
        """Deliver a message; a copy of a tracked message to a service session counts
        for its receipt (counted here, synchronously, while the broadcast runs)."""
        publish = super().mqtt_publish(topic, data, qos, retain, ack_timeout)
        if isinstance(data, Receipt) and self.is_service(self.session):
            data.claimed = True
            data.copies += 1
            return data.follow(publish)
        return publish


class _Broadcasts(asyncio.Queue[dict[str, Any]]):
    """amqtt's broadcast queue, remembering the message taken last (``_run_broadcast``
    takes one and routes it)."""

    current: dict[str, Any] | None = None

    def _get(self) -> dict[str, Any]:
        item = super()._get()
        self.current = item
        return item


class ReceiptBroker(Broker):
    """amqtt's broker with receipts. Subclasses say which sessions are services."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._broadcast_queue = _Broadcasts()
        #: the gateway's in-process path, once it is connected (``handover``)
        self.handover: Handover | None = None

    def current_handover(self) -> Handover | None:
        return self.handover

    def is_service(self, session: Session | None) -> bool:
        return False

    async def _initialize_client_session(self, *args: Any, **kwargs: Any) -> Any:
        handler, session = await super()._initialize_client_session(*args, **kwargs)
        handler.__class__ = ReceiptHandler  # same state, the methods above
        handler.is_service = self.is_service
        handler.handover = self.current_handover
        return handler, session

    async def _handle_message_delivery(
        self, client_session: Session, handler: Any, wait_deliver: asyncio.Future[Any]
    ) -> bool:
        result = await super()._handle_message_delivery(client_session, handler, wait_deliver)
        data = getattr(wait_deliver.result(), "data", None)
        if isinstance(data, Receipt) and not data.queued:
            data.settle(True)  # refused by the topic rules: acknowledged and dropped
        return bool(result)

    async def _broadcast_message(
        self,
        session: Session | None,
        topic: str | None,
        data: bytes | bytearray | None,
        force_qos: int | None = None,
    ) -> None:
        if isinstance(data, Receipt):
            data.queued = True
        elif await self._hand_over(session, topic, data):
            return
        await super()._broadcast_message(session, topic, data, force_qos)

    async def _hand_over(
        self, session: Session | None, topic: str | None, data: bytes | bytearray | None
    ) -> bool:
        """A client's message amqtt itself publishes (its last will, a QoS 2 message) on
        a topic the handover takes goes the same way as the client's others, so the
        gateway sees them in order (a will never overtakes what the client sent before,
        or what it sends once back)."""
        handover, principal = self.handover, principal_of(session)
        if handover is None or principal is None or principal.kind == "service":
            return False
        if topic is None or data is None or not handover.takes(topic, 0):
            return False
        await handover.publish(principal, topic, bytes(data), 0)
        return True

    async def _run_broadcast(self, running_tasks: Any) -> None:
        queue = self._broadcast_queue
        assert isinstance(queue, _Broadcasts)
        try:
            await super()._run_broadcast(running_tasks)
        finally:
            data = (queue.current or {}).get("data")
            queue.current = None
            if isinstance(data, Receipt):
                data.routed_all()
