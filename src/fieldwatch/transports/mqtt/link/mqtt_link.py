"""``MqttLink``: Fieldwatch's own privileged MQTT connection, as the rest of the code
sees it (start, stop, subscribe, publish, ack).

Two clients implement it, chosen by ``MqttLinkOptions.client``: ``paho``
(``paho_link.PahoLink``) and ``mqtt5`` (``mqtt5_link.Mqtt5Link``, MQTT 5 only).
``MqttLink(options, handler)`` makes the one the options name. This module holds what
both share: the subscriptions, the waits for SUBACK and PUBACK, and what happens when a
connection comes up or goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from fieldwatch.transports.mqtt.link.driver import LinkDriver
from fieldwatch.transports.mqtt.link.inbox import Inbox
from fieldwatch.transports.mqtt.link.messages import (
    ConnectHook,
    IncomingMessage,
    MessageHandler,
    MqttConnectError,
    MqttLinkError,
    MqttPublishError,
)
from fieldwatch.transports.mqtt.link.options import MqttLinkOptions
from fieldwatch.transports.mqtt.link.supervisor import Supervisor

log = logging.getLogger(__name__)


class MqttLink:
    """One MQTT client connection owned by Fieldwatch.

    ``handler`` receives batches of messages on the event loop; ``on_connect`` hooks
    run after every successful connect with the broker's session-present flag.
    Every method must be called from the event loop that ran ``start()``.
    """

    _driver: LinkDriver

    def __new__(cls, options: MqttLinkOptions, handler: MessageHandler | None = None) -> Any:
        if cls is MqttLink:  # the client the options name
            if options.client == "mqtt5":
                from fieldwatch.transports.mqtt.link.mqtt5_link import Mqtt5Link

                cls = Mqtt5Link
            else:
                from fieldwatch.transports.mqtt.link.paho_link import PahoLink

                cls = PahoLink
        return super().__new__(cls)

    def __init__(self, options: MqttLinkOptions, handler: MessageHandler | None = None) -> None:
        """A client's ``__init__`` sets ``_driver`` first, then calls this."""
        self.options = options
        self.on_connect: list[ConnectHook] = []
        self._inbox = Inbox(
            self._driver,
            batch_size=options.batch_size,
            max_pending=options.max_pending,
            publishing=self._is_publishing,
            depth=options.handler_depth,
        )
        self._inbox.handler = handler
        self._supervisor = Supervisor(options, self._driver, self.on_connect)
        self._connected = False
        self._generation = 0
        self._subscriptions: dict[str, int] = {}
        self._subacks: dict[int, asyncio.Future[list[int]]] = {}
        self._resubscribes: dict[int, list[str]] = {}
        self._publishes: dict[int, asyncio.Future[None]] = {}
        self._runner: asyncio.Task[None] | None = None

    # -- public API --------------------------------------------------------------------

    @property
    def client_id(self) -> str:
        return self.options.client_id

    @property
    def where(self) -> str:
        return self.options.where

    @property
    def handler(self) -> MessageHandler | None:
        return self._inbox.handler

    @handler.setter
    def handler(self, handler: MessageHandler | None) -> None:
        self._inbox.handler = handler

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def connections_lost(self) -> int:
        """How many times the connection was lost (or taken over) since the start."""
        return self._generation

    @property
    def pending(self) -> int:
        """Messages received and not yet handed to the handler."""
        return len(self._inbox)

    @property
    def taking(self) -> bool:
        """Whether messages handed over (``take``) are still handled: started, and not
        stopping."""
        return self._runner is not None and not self._driver.closing

    def take(self, message: IncomingMessage) -> None:
        """A message that came another way than this connection (the embedded broker's
        in-process path; its ``connection`` is ``HANDED``): handled like those read from
        the socket, in turn with them. ``ack()`` skips it: whoever handed it over is
        told (the gateway's ``_acknowledge``)."""
        inbox = self._inbox
        inbox.received += 1
        inbox.put(message)

    def has_room(self) -> bool:
        """Whether ``take`` may be called now without waiting for room first."""
        return self._inbox.has_room()

    async def wait_room(self) -> None:
        """Wait while the inbox is full, before ``take``."""
        await self._inbox.wait_room()

    def lag(self) -> float:
        """Seconds the oldest received message not yet handled has waited."""
        return self._inbox.lag()

    @property
    def reading_paused(self) -> bool:
        return self._driver.paused

    @property
    def subscriptions(self) -> dict[str, int]:
        return dict(self._subscriptions)

    async def start(self) -> None:
        """Connect; raise ``MqttConnectError`` naming host:port if no connection is made
        within ``connect_timeout`` or the broker refuses it."""
        if self._runner is not None:
            raise RuntimeError("the MQTT link is already started")
        loop = asyncio.get_running_loop()
        self._driver.bind(loop)
        self._inbox.start(name=f"mqtt-drain-{self.client_id}")
        first: asyncio.Future[None] = loop.create_future()
        self._runner = asyncio.create_task(
            self._supervisor.run(first), name=f"mqtt-link-{self.client_id}"
        )

        def runner_done(task: asyncio.Task[None]) -> None:
            if not first.done():
                exc = None if task.cancelled() else task.exception()
                first.set_exception(exc or MqttConnectError(f"MQTT link to {self.where} stopped"))

        self._runner.add_done_callback(runner_done)
        try:
            await first
        except BaseException:
            await self.stop()
            raise

    async def stop(self, grace: float = 5.0) -> None:
        """Let the batch being handled finish (so its acks go out), then disconnect.
        Messages still waiting are dropped unacknowledged."""
        if self._runner is None:
            return
        driver, inbox = self._driver, self._inbox
        driver.closing = True
        driver.pause_reading(len(inbox))
        if not inbox.idle.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(inbox.idle.wait(), grace)
        runner, self._runner = self._runner, None
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await runner
        if self._connected:
            self._send_disconnect()  # written after any queued acks
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._supervisor.lost.wait(), grace)
        driver.close_socket()
        await inbox.stop()
        inbox.clear()
        self._connected = False
        self._fail_waiters(f"the MQTT link to {self.where} was stopped")
        log.info("MQTT link to %s stopped", self.where)

    async def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        """Remember a subscription (sent again after every reconnect). When connected,
        wait for the broker's SUBACK and raise if it refuses the filter."""
        self._check_qos(qos)
        self._subscriptions[topic_filter] = qos
        if not self._connected:
            return
        mid = self._send_subscribe([(topic_filter, qos)])
        if mid is None:
            return  # not connected after all: the next connect subscribes
        future: asyncio.Future[list[int]] = self._driver.loop.create_future()
        self._subacks[mid] = future
        try:
            codes = await asyncio.wait_for(future, self.options.publish_timeout)
        except TimeoutError as exc:
            raise MqttLinkError(f"no SUBACK from {self.where} for {topic_filter!r}") from exc
        finally:
            if self._subacks.get(mid) is future:
                del self._subacks[mid]
        if not codes or codes[0] >= 0x80:
            self._subscriptions.pop(topic_filter, None)
            raise MqttLinkError(f"the broker at {self.where} refused {topic_filter!r}")

    def unsubscribe(self, topic_filter: str) -> None:
        """Forget a subscription and, when connected, tell the broker."""
        self._subscriptions.pop(topic_filter, None)
        if self._connected:
            self._send_unsubscribe(topic_filter)

    async def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        *,
        ack_timeout: float | None = None,
    ) -> None:
        """Return once the broker has the message: PUBACK for QoS 1, written to the
        socket for QoS 0. Raise ``MqttPublishError`` when not connected, when the
        connection drops first (the message may still arrive) or on timeout."""
        raise NotImplementedError

    def ack(self, messages: Iterable[IncomingMessage]) -> int:
        """Acknowledge QoS 1 messages of the current connection, typically after their
        data is committed. Returns how many were acknowledged. A message from an earlier
        connection is skipped: its packet id may name another message now."""
        raise NotImplementedError

    # -- what each client does on the wire ----------------------------------------------

    def _check_qos(self, qos: int) -> None:
        if qos not in (0, 1, 2):
            raise ValueError(f"QoS is 0, 1 or 2, not {qos}")

    def _send_subscribe(self, filters: list[tuple[str, int]]) -> int | None:
        """Send SUBSCRIBE; its packet id, or None when it could not be sent."""
        raise NotImplementedError

    def _send_unsubscribe(self, topic_filter: str) -> None:
        raise NotImplementedError

    def _send_disconnect(self) -> None:
        raise NotImplementedError

    # -- the connection's events, as the clients report them ---------------------------

    def _is_publishing(self) -> bool:
        return bool(self._publishes)

    async def _wait_puback(
        self, mid: int, future: asyncio.Future[None], topic: str, wait: float
    ) -> None:
        self._publishes[mid] = future
        try:
            await asyncio.wait_for(future, wait)
        except TimeoutError as exc:
            raise MqttPublishError(
                f"the broker at {self.where} did not acknowledge {topic!r} within {wait:g}s"
            ) from exc
        finally:
            if self._publishes.get(mid) is future:
                del self._publishes[mid]

    def _connection_refused(self, reason: str) -> None:
        connack = self._supervisor.connack
        if connack is not None and not connack.done():
            connack.set_exception(MqttConnectError(reason, refused=True))

    def _connection_up(self, session_present: bool) -> None:
        """CONNACK with success: subscribe again, then let the supervisor go on."""
        self._connected = True
        if self._subscriptions:
            filters = list(self._subscriptions.items())
            mid = self._send_subscribe(filters)
            if mid is not None:
                self._resubscribes[mid] = [f for f, _ in filters]
        connack = self._supervisor.connack
        if connack is not None and not connack.done():
            connack.set_result(session_present)

    def _connection_down(self, reason: str) -> None:
        """The connection closed (or never got its CONNACK)."""
        was_connected = self._connected
        self._connected = False
        self._generation += 1
        connack = self._supervisor.connack
        if connack is not None and not connack.done():
            connack.set_exception(MqttConnectError(f"connection closed: {reason}"))
        self._fail_waiters(f"the connection to {self.where} was lost: {reason}")
        if was_connected and not self._driver.closing:
            log.warning("MQTT link to %s disconnected: %s", self.where, reason)
        self._supervisor.lost.set()

    def _puback(self, mid: int, refused: str | None) -> None:
        future = self._publishes.get(mid)
        if future is None or future.done():
            return
        if refused is not None:
            future.set_exception(MqttPublishError(f"the broker refused the message: {refused}"))
        else:
            future.set_result(None)

    def _suback(self, mid: int, codes: list[int]) -> None:
        future = self._subacks.pop(mid, None)
        if future is not None:
            if not future.done():
                future.set_result(codes)
            return
        filters = self._resubscribes.pop(mid, [])
        refused = [f for f, code in zip(filters, codes, strict=False) if code >= 0x80]
        if refused:
            log.error("MQTT link: the broker at %s refused %s", self.where, refused)

    def _fail_waiters(self, reason: str) -> None:
        for publish in self._publishes.values():
            if not publish.done():
                publish.set_exception(MqttPublishError(reason))
        for suback in self._subacks.values():
            if not suback.done():
                suback.set_exception(MqttLinkError(reason))
        self._subacks.clear()
        self._resubscribes.clear()
