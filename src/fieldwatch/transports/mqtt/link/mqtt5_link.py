"""``Mqtt5Link``: the ``MqttLink`` on the mqtt5 codec (``client="mqtt5"``), over
Fieldwatch's own asyncio connection (``mqtt5_driver``). MQTT 5 only: QoS 0 and 1.

The link keeps MQTT 5's session state for its side: packet ids in use (a QoS 1 publish
keeps its id until its PUBACK, even past a timeout), and the broker's Receive Maximum
for what it publishes (a publish waits for a free slot). Acknowledgements of received
messages are PUBACKs written together in one write per ``ack()``.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from collections.abc import Iterable

from mqtt5 import (
    ConnAckPacket,
    DisconnectPacket,
    DisconnectReasonCode,
    Packet,
    PingRespPacket,
    PubAckPacket,
    PublishPacket,
    QoS,
    SubAckPacket,
    SubscribePacket,
    TopicFilter,
    UnsubAckPacket,
    UnsubscribePacket,
)

from fieldwatch.transports.mqtt.link.messages import (
    IncomingMessage,
    MessageHandler,
    MqttPublishError,
)
from fieldwatch.transports.mqtt.link.mqtt5_driver import Mqtt5Driver
from fieldwatch.transports.mqtt.link.mqtt_link import MqttLink
from fieldwatch.transports.mqtt.link.options import MqttLinkOptions

PUBACK = struct.Struct(">HH")  # PUBACK, remaining length 2, packet id: success
PUBACK_HEAD = 0x4002
MAX_ID = 65535


class Mqtt5Link(MqttLink):
    """``MqttLink`` with ``client="mqtt5"``."""

    def __init__(self, options: MqttLinkOptions, handler: MessageHandler | None = None) -> None:
        self._m5 = Mqtt5Driver(
            options,
            on_packet=self._on_packet,
            on_error=self._on_error,
            on_lost=self._on_lost,
            generation=lambda: self._generation,
        )
        self._driver = self._m5
        super().__init__(options, handler)
        self._m5.inbox = self._inbox
        self._ids: set[int] = set()  # packet ids in use on this connection
        self._last_id = 0
        self._quota = MAX_ID  # the broker's Receive Maximum
        self._in_flight = 0  # QoS 1 publishes without their PUBACK
        self._slot_waiters: deque[asyncio.Future[None]] = deque()

    # -- the public API the base leaves to the client ---------------------------------

    async def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        *,
        ack_timeout: float | None = None,
    ) -> None:
        if not self._connected:
            raise MqttPublishError(f"not connected to the MQTT broker at {self.where}")
        self._check_qos(qos)
        if not qos:
            if not self._m5.write(PublishPacket(topic, payload, retain=retain).write()):
                raise MqttPublishError(f"not connected to the MQTT broker at {self.where}")
            return
        loop = self._driver.loop
        wait = self.options.publish_timeout if ack_timeout is None else ack_timeout
        deadline = loop.time() + wait
        if self._in_flight < self._quota:
            self._in_flight += 1
        else:
            await self._take_slot(topic, wait)
        mid = self._next_id()
        packet = PublishPacket(topic, payload, qos=QoS.AT_LEAST_ONCE, retain=retain, packet_id=mid)
        self._m5.write(packet.write())
        future: asyncio.Future[None] = loop.create_future()
        await self._wait_puback(mid, future, topic, max(0.0, deadline - loop.time()))

    def ack(self, messages: Iterable[IncomingMessage]) -> int:
        if not self._connected:
            return 0
        generation, pack = self._generation, PUBACK.pack
        acks = [pack(PUBACK_HEAD, m.mid) for m in messages if m.qos and m.connection == generation]
        if acks:
            self._m5.write(b"".join(acks))
        return len(acks)

    def _check_qos(self, qos: int) -> None:
        if qos not in (0, 1):
            raise ValueError(f"the mqtt5 client handles QoS 0 and 1, not {qos}")

    def _send_subscribe(self, filters: list[tuple[str, int]]) -> int | None:
        mid = self._next_id()
        packet = SubscribePacket(
            mid,
            [TopicFilter(f, max_qos=QoS(qos), retain_as_published=False) for f, qos in filters],
        )
        if not self._m5.write(packet.write()):
            self._ids.discard(mid)
            return None
        return mid

    def _send_unsubscribe(self, topic_filter: str) -> None:
        mid = self._next_id()
        if not self._m5.write(UnsubscribePacket(mid, [topic_filter]).write()):
            self._ids.discard(mid)

    def _send_disconnect(self) -> None:
        self._m5.end(DisconnectPacket().write())

    # -- packet ids and the broker's receive maximum -----------------------------------

    def _next_id(self) -> int:
        ids = self._ids
        if len(ids) >= MAX_ID:
            raise MqttPublishError(f"every packet id is in use on the link to {self.where}")
        mid = self._last_id
        while True:
            mid = mid % MAX_ID + 1
            if mid not in ids:
                break
        self._last_id = mid
        ids.add(mid)
        return mid

    async def _take_slot(self, topic: str, wait: float) -> None:
        future: asyncio.Future[None] = self._driver.loop.create_future()
        self._slot_waiters.append(future)
        try:
            await asyncio.wait_for(future, wait)
        except TimeoutError as exc:
            if future.done() and not future.cancelled() and future.exception() is None:
                self._free_slot()  # it got the slot as the time ran out: pass it on
            raise MqttPublishError(
                f"the broker at {self.where} did not acknowledge {topic!r} within {wait:g}s "
                f"({self._quota} messages were in flight, its receive maximum)"
            ) from exc

    def _free_slot(self) -> None:
        waiters = self._slot_waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to it
                return
        self._in_flight = max(0, self._in_flight - 1)

    def _fail_waiters(self, reason: str) -> None:
        super()._fail_waiters(reason)
        waiters, self._slot_waiters = self._slot_waiters, deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(MqttPublishError(reason))
        self._ids.clear()
        self._in_flight = 0

    # -- packets from the broker -------------------------------------------------------

    def _on_packet(self, packet: Packet) -> None:
        kind = type(packet)
        if kind is PubAckPacket:
            assert isinstance(packet, PubAckPacket)
            mid, code = packet.packet_id, packet.reason_code
            if mid in self._ids:
                self._ids.discard(mid)
                self._free_slot()
            self._puback(mid, code.name if int(code) >= 0x80 else None)
        elif kind is PingRespPacket:
            self._m5.pong()
        elif kind is SubAckPacket:
            assert isinstance(packet, SubAckPacket)
            self._ids.discard(packet.packet_id)
            self._suback(packet.packet_id, [int(code) for code in packet.reason_codes])
        elif kind is UnsubAckPacket:
            assert isinstance(packet, UnsubAckPacket)
            self._ids.discard(packet.packet_id)
        elif kind is ConnAckPacket:
            assert isinstance(packet, ConnAckPacket)
            self._on_connack(packet)
        elif kind is DisconnectPacket:
            assert isinstance(packet, DisconnectPacket)
            self._on_disconnect(packet)
        else:  # QoS 2 (never subscribed to) or AUTH (never asked for)
            reason = f"an unexpected {kind.__name__} from the broker"
            self._on_error(reason)
            self._m5.close_socket(reason)

    def _on_connack(self, packet: ConnAckPacket) -> None:
        if int(packet.reason_code) != 0:
            self._connection_refused(
                f"the broker refused the connection: {packet.reason_code.name}"
                + (f" ({packet.reason_str})" if packet.reason_str else "")
            )
            return
        self._ids.clear()
        self._quota, self._in_flight = packet.receive_max, 0
        keepalive = packet.server_keep_alive
        self._m5.start_keepalive(self.options.keepalive if keepalive is None else keepalive)
        self._connection_up(packet.session_present)

    def _on_disconnect(self, packet: DisconnectPacket) -> None:
        code = packet.reason_code
        reason = f"the broker disconnected: {code.name}"
        if packet.reason_str:
            reason += f" ({packet.reason_str})"
        if code == DisconnectReasonCode.SESSION_TAKEN_OVER:
            reason += "; another client connected with this client id"
        self._m5.close_socket(reason)

    def _on_error(self, reason: str) -> None:
        if not self._connected:  # no CONNACK yet: the broker does not answer in MQTT 5
            self._connection_refused(
                f"the broker does not answer in MQTT 5 ({reason}); the mqtt5 client speaks "
                "MQTT 5 only: use the paho client for an MQTT 3.1.1 broker"
            )

    def _on_lost(self, reason: str) -> None:
        self._connection_down(reason)
