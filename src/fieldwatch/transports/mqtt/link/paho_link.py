"""``PahoLink``: the ``MqttLink`` on paho-mqtt 2.x, driven from the event loop
(``socket_driver``), MQTT 3.1.1 or, with ``receive_maximum``, MQTT 5; and paho's
protocol callbacks."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from fieldwatch.transports.mqtt.link.messages import (
    IncomingMessage,
    MessageHandler,
    MqttPublishError,
)
from fieldwatch.transports.mqtt.link.mqtt_link import MqttLink, log
from fieldwatch.transports.mqtt.link.options import MqttLinkOptions
from fieldwatch.transports.mqtt.link.socket_driver import SocketDriver, new_client

READ_BURST = 256  # packets read per readable event before yielding to the loop


class PahoLink(MqttLink):
    """``MqttLink`` with ``client="paho"`` (the default)."""

    def __init__(self, options: MqttLinkOptions, handler: MessageHandler | None = None) -> None:
        client = new_client(options)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        self._client = client
        self._paho = SocketDriver(
            client, options, on_readable=self._on_readable, connected=self._is_connected
        )
        self._driver = self._paho
        super().__init__(options, handler)

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
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise MqttPublishError(f"publish to {topic!r} failed: {paho.error_string(info.rc)}")
        future = self._driver.loop.create_future()
        wait = self.options.publish_timeout if ack_timeout is None else ack_timeout
        await self._wait_puback(info.mid, future, topic, wait)

    def ack(self, messages: Iterable[IncomingMessage]) -> int:
        if not self._connected:
            return 0
        generation = self._generation
        acked = 0
        for message in messages:
            if message.qos and message.connection == generation:
                self._client.ack(message.mid, message.qos)
                acked += 1
        return acked

    def _send_subscribe(self, filters: list[tuple[str, int]]) -> int | None:
        rc, mid = self._client.subscribe(filters)
        return mid if rc == paho.MQTT_ERR_SUCCESS else None

    def _send_unsubscribe(self, topic_filter: str) -> None:
        self._client.unsubscribe(topic_filter)

    def _send_disconnect(self) -> None:
        self._client.disconnect()

    # -- reading -----------------------------------------------------------------------

    def _on_readable(self) -> None:
        """The socket is readable: read packets until it is empty, a burst is done or
        the inbox is full (then reading pauses)."""
        inbox, driver, client = self._inbox, self._paho, self._client
        limit = inbox.limit()
        for _ in range(READ_BURST):
            if len(inbox) >= limit:
                driver.pause_reading(len(inbox))
                return
            before = inbox.received
            if client.loop_read() != paho.MQTT_ERR_SUCCESS or inbox.received == before:
                break  # not a PUBLISH, or nothing left: the reader fires again if needed
        sock = client.socket()
        if driver.reading and (
            client.buffered() or (isinstance(sock, ssl.SSLSocket) and sock.pending())
        ):
            driver.loop.call_soon(self._on_readable)  # read bytes wait

    def _is_connected(self) -> bool:
        return self._connected

    # -- paho callbacks (on the loop thread, from loop_read/loop_write/loop_misc) -------

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            self._connection_refused(f"the broker refused the connection: {reason}")
            return
        self._paho.start_misc()
        self._connection_up(bool(flags.session_present))

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._paho.stop_misc()
        self._connection_down(str(reason))

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self._inbox.received += 1
        try:
            topic = message.topic
        except UnicodeDecodeError:
            log.warning("MQTT link: dropped a message whose topic is not UTF-8")
            if message.qos:
                client.ack(message.mid, message.qos)
            return
        payload = message.payload
        if not isinstance(payload, bytes):
            payload = bytes(payload)
        self._inbox.put(
            IncomingMessage(
                topic,
                payload,
                message.qos,
                bool(message.retain),
                message.mid,
                bool(message.dup),
                self._generation,
                time.monotonic(),
            )
        )

    def _on_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._puback(mid, str(reason) if reason.is_failure else None)

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        self._suback(mid, [int(r.value) for r in reasons])
