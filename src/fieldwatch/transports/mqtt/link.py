"""Fieldwatch's own privileged MQTT connection to a broker, for asyncio code.

``MqttLink`` drives paho-mqtt 2.x from the running event loop: the socket is watched
with ``add_reader``/``add_writer`` and paho parses packets on the loop thread, so there
is no network thread and no lock. Only the blocking TCP (and TLS) connect runs in a
worker thread. bench/bench_mqtt_clients.py measured this way of using paho as the
fastest of the candidates.

- MQTT 3.1.1 by default: what both Mosquitto 2 and amqtt 0.12 speak (amqtt refuses
  MQTT 5). With ``receive_maximum`` the link speaks MQTT 5 and tells the broker how many
  QoS 1 messages it may have in flight to it at once. Acknowledging after commit makes
  that window the ceiling of the link's throughput (window / commit time): over MQTT
  3.1.1 Mosquitto allows ``max_inflight_messages`` (default 20) per client.
- Incoming messages go into a deque; one drain task hands them to the handler in
  batches of up to ``batch_size``.
- Back-pressure: when ``max_pending`` messages wait for the handler the link stops
  reading the socket (TCP then pushes back on the broker, which queues QoS 1 messages
  and may drop QoS 0 ones) and reads again once half of them are handled. While a
  ``publish()`` waits for its PUBACK the limit doubles, since the PUBACK can only be
  read after the messages in front of it. A pause longer than the keepalive costs the
  connection: unacknowledged QoS 1 messages then come again.
- Acknowledge after commit: QoS 1 messages are acknowledged only by ``ack()``. A
  message from an earlier connection is never acknowledged (its packet id may name
  another message now); with a persistent session the broker sends it again.
- Reconnects with exponential backoff and jitter, re-subscribes every remembered
  filter, then runs the ``on_connect`` hooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import ssl
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger(__name__)

READ_BURST = 256  # packets read per readable event before yielding to the loop
MISC_INTERVAL = 1.0  # seconds between keepalive checks


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """One received PUBLISH. ``connection`` tells which connection brought it."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int
    dup: bool = False
    connection: int = field(default=0, repr=False, compare=False)


class _BufferedClient(paho.Client):
    """paho 2.2 reads each packet with several ``recv`` calls (its first byte, each byte
    of its length, then its body): three or four system calls per message. This client
    reads the socket in large pieces and serves paho's reads from that buffer (what
    ``_sock_recv`` returns is unchanged, including ``BlockingIOError`` when there is
    nothing to read). ``buffered()`` tells whether bytes wait here, where the event
    loop's reader cannot see them."""

    RECV_SIZE = 256 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fw_buffer = b""
        self._fw_pos = 0
        self._fw_sock: Any = None

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._fw_sock is not self._sock:  # a new connection: nothing buffered for it
            self._fw_buffer, self._fw_pos, self._fw_sock = b"", 0, self._sock
        if self._fw_pos >= len(self._fw_buffer):
            data = super()._sock_recv(self.RECV_SIZE)
            if not data:
                return data  # the connection closed
            self._fw_buffer, self._fw_pos = data, 0
        start = self._fw_pos
        self._fw_pos = min(start + bufsize, len(self._fw_buffer))
        return self._fw_buffer[start : self._fw_pos]

    def buffered(self) -> bool:
        return self._fw_sock is self._sock and self._fw_pos < len(self._fw_buffer)


MessageHandler = Callable[[list[IncomingMessage]], Awaitable[None]]
ConnectHook = Callable[[bool], Awaitable[None]]


class MqttLinkError(Exception):
    """The MQTT link could not do what was asked."""


class MqttConnectError(MqttLinkError):
    """No connection to the broker; ``refused`` when the broker said no."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


class MqttPublishError(MqttLinkError):
    """The broker did not accept a message (not connected, connection lost, timeout)."""


class MqttLink:
    """One MQTT client connection (3.1.1, or 5 with ``receive_maximum``) owned by
    Fieldwatch.

    ``handler`` receives batches of messages on the event loop; ``on_connect`` hooks
    run after every successful connect with the broker's session-present flag.
    Every method must be called from the event loop that ran ``start()``.
    """

    def __init__(
        self,
        host: str,
        port: int = 1883,
        *,
        client_id: str,
        username: str | None = None,
        password: str | None = None,
        keepalive: int = 60,
        tls: bool | ssl.SSLContext = False,
        clean_session: bool = True,
        session_expiry: int = 0xFFFFFFFF,
        receive_maximum: int | None = None,
        handler: MessageHandler | None = None,
        batch_size: int = 500,
        max_pending: int = 10_000,
        connect_timeout: float = 10.0,
        publish_timeout: float = 10.0,
        min_reconnect_delay: float = 0.5,
        max_reconnect_delay: float = 30.0,
    ) -> None:
        if not client_id:
            raise ValueError("client_id is required")
        if batch_size < 1 or max_pending < batch_size:
            raise ValueError("need 1 <= batch_size <= max_pending")
        if receive_maximum is not None and not 1 <= receive_maximum <= 65535:
            raise ValueError("receive_maximum is 1 to 65535 (MQTT 5)")
        self.host = host
        self.port = port
        self.client_id = client_id
        self.keepalive = keepalive
        self.clean_session = clean_session
        self.session_expiry = session_expiry  # MQTT 5, when the session is kept
        self.receive_maximum = receive_maximum
        self.handler = handler
        self.on_connect: list[ConnectHook] = []
        self.batch_size = batch_size
        self.max_pending = max_pending
        self.connect_timeout = connect_timeout
        self.publish_timeout = publish_timeout
        self.min_reconnect_delay = min_reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay

        v5 = receive_maximum is not None
        client = _BufferedClient(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            # MQTT 5 has clean_start on connect instead (see _connect).
            clean_session=None if v5 else clean_session,
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
            reconnect_on_failure=False,  # the link reconnects, never paho inside a read
            manual_ack=True,
        )
        if username is not None:
            client.username_pw_set(username, password)
        if tls is not False:
            client.tls_set_context(tls if isinstance(tls, ssl.SSLContext) else None)
        client.connect_timeout = min(5.0, connect_timeout)
        client.max_inflight_messages_set(100)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write
        self._client = client

        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._connecting = False  # paho is being connected in a worker thread
        self._deferred: list[tuple[str, int]] = []  # socket events seen by that thread
        self._fd: int | None = None
        self._reading = False
        self._writing = False
        self._paused = False
        self._last_pause_log = 0.0
        self._connected = False
        self._generation = 0
        self._closing = False
        self._received = 0
        self._pending: deque[IncomingMessage] = deque()
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._lost = asyncio.Event()
        self._connack: asyncio.Future[bool] | None = None
        self._subscriptions: dict[str, int] = {}
        self._subacks: dict[int, asyncio.Future[list[int]]] = {}
        self._resubscribes: dict[int, list[str]] = {}
        self._publishes: dict[int, asyncio.Future[None]] = {}
        self._misc_handle: asyncio.TimerHandle | None = None
        self._runner: asyncio.Task[None] | None = None
        self._drainer: asyncio.Task[None] | None = None
        self._warned_no_handler = False

    # -- public API --------------------------------------------------------------------

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

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
        return len(self._pending)

    @property
    def reading_paused(self) -> bool:
        return self._paused

    @property
    def subscriptions(self) -> dict[str, int]:
        return dict(self._subscriptions)

    async def start(self) -> None:
        """Connect; raise ``MqttConnectError`` naming host:port if no connection is made
        within ``connect_timeout`` or the broker refuses it."""
        if self._runner is not None:
            raise RuntimeError("the MQTT link is already started")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._closing = False
        self._drainer = asyncio.create_task(self._drain(), name=f"mqtt-drain-{self.client_id}")
        first: asyncio.Future[None] = loop.create_future()
        self._runner = asyncio.create_task(self._run(first), name=f"mqtt-link-{self.client_id}")

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
        self._closing = True
        self._pause_reading()
        if not self._idle.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), grace)
        runner, self._runner = self._runner, None
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await runner
        if self._connected:
            self._client.disconnect()  # written after any queued acks
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), grace)
        self._close_socket()
        if self._drainer is not None:
            self._drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drainer
            self._drainer = None
        self._pending.clear()
        self._connected = False
        self._fail_waiters(f"the MQTT link to {self.where} was stopped")
        log.info("MQTT link to %s stopped", self.where)

    async def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        """Remember a subscription (sent again after every reconnect). When connected,
        wait for the broker's SUBACK and raise if it refuses the filter."""
        self._subscriptions[topic_filter] = qos
        if not self._connected:
            return
        rc, mid = self._client.subscribe(topic_filter, qos)
        if rc != paho.MQTT_ERR_SUCCESS or mid is None:
            return  # not connected after all: the next connect subscribes
        future: asyncio.Future[list[int]] = self._running_loop().create_future()
        self._subacks[mid] = future
        try:
            codes = await asyncio.wait_for(future, self.publish_timeout)
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
            self._client.unsubscribe(topic_filter)

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
        if not self._connected:
            raise MqttPublishError(f"not connected to the MQTT broker at {self.where}")
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise MqttPublishError(f"publish to {topic!r} failed: {paho.error_string(info.rc)}")
        future: asyncio.Future[None] = self._running_loop().create_future()
        self._publishes[info.mid] = future
        wait = self.publish_timeout if ack_timeout is None else ack_timeout
        try:
            await asyncio.wait_for(future, wait)
        except TimeoutError as exc:
            raise MqttPublishError(
                f"the broker at {self.where} did not acknowledge {topic!r} within {wait:g}s"
            ) from exc
        finally:
            if self._publishes.get(info.mid) is future:
                del self._publishes[info.mid]

    def ack(self, messages: Iterable[IncomingMessage]) -> int:
        """Acknowledge QoS 1/2 messages of the current connection, typically after their
        data is committed. Returns how many were acknowledged."""
        if not self._connected:
            return 0
        generation = self._generation
        acked = 0
        for message in messages:
            if message.qos and message.connection == generation:
                self._client.ack(message.mid, message.qos)
                acked += 1
        return acked

    # -- connection management ---------------------------------------------------------

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the MQTT link is not started")
        return self._loop

    async def _run(self, first: asyncio.Future[None]) -> None:
        """Connect, wait for the connection to drop, reconnect with backoff."""
        loop = self._running_loop()
        delay = self.min_reconnect_delay
        began = loop.time()
        while not self._closing:
            try:
                session_present = await self._connect()
            except (OSError, TimeoutError, MqttConnectError) as exc:
                reason = _describe(exc)
                if not first.done():
                    refused = isinstance(exc, MqttConnectError) and exc.refused
                    if refused or loop.time() - began + delay > self.connect_timeout:
                        first.set_exception(
                            MqttConnectError(
                                f"cannot connect to the MQTT broker at {self.where}: {reason}",
                                refused=refused,
                            )
                        )
                        return
                log.warning(
                    "MQTT link: connecting to %s failed (%s); retrying in %.1fs",
                    self.where,
                    reason,
                    delay,
                )
                self._detach()
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))  # noqa: S311 (jitter)
                delay = min(delay * 2, self.max_reconnect_delay)
                continue
            delay = self.min_reconnect_delay
            log.info(
                "MQTT link connected to %s as %r (session present: %s)",
                self.where,
                self.client_id,
                session_present,
            )
            await self._run_hooks(session_present)
            if not first.done():
                first.set_result(None)
            await self._lost.wait()

    async def _connect(self) -> bool:
        """One attempt; returns the session-present flag."""
        loop = self._running_loop()
        self._lost.clear()
        self._detach()
        connack: asyncio.Future[bool] = loop.create_future()
        self._connack = connack
        self._connecting = True
        connect = functools.partial(self._client.connect, self.host, self.port, self.keepalive)
        if self.receive_maximum is not None:
            properties = Properties(PacketTypes.CONNECT)
            properties.ReceiveMaximum = self.receive_maximum
            if not self.clean_session:  # keep the session (and its queue) across drops
                properties.SessionExpiryInterval = self.session_expiry
            connect = functools.partial(
                connect, clean_start=self.clean_session, properties=properties
            )
        work = loop.run_in_executor(None, connect)
        try:
            try:
                await asyncio.shield(work)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await work  # nobody may touch the client while the thread does
                raise
        finally:
            self._connecting = False
            deferred, self._deferred = self._deferred, []
            for kind, fd in deferred:
                self._apply_socket_event(kind, fd)
        try:
            return await asyncio.wait_for(connack, self.connect_timeout)
        except TimeoutError as exc:
            raise MqttConnectError(f"no CONNACK within {self.connect_timeout:g}s") from exc
        finally:
            self._connack = None

    async def _run_hooks(self, session_present: bool) -> None:
        for hook in list(self.on_connect):
            try:
                await hook(session_present)
            except Exception:
                log.exception("MQTT link on_connect hook %r failed", hook)

    def _fail_waiters(self, reason: str) -> None:
        for publish in self._publishes.values():
            if not publish.done():
                publish.set_exception(MqttPublishError(reason))
        for suback in self._subacks.values():
            if not suback.done():
                suback.set_exception(MqttLinkError(reason))
        self._subacks.clear()
        self._resubscribes.clear()

    def _close_socket(self) -> None:
        sock = self._client.socket()
        self._detach()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    # -- socket plumbing ---------------------------------------------------------------

    def _socket_event(self, kind: str, sock: Any) -> None:
        fd = sock.fileno()
        if threading.get_ident() == self._loop_thread:
            self._apply_socket_event(kind, fd)
        elif self._connecting:
            self._deferred.append((kind, fd))
        elif self._loop is not None:
            self._loop.call_soon_threadsafe(self._apply_socket_event, kind, fd)

    def _apply_socket_event(self, kind: str, fd: int) -> None:
        loop = self._running_loop()
        if kind == "open":
            self._detach()
            self._fd = fd
            self._paused = False
            loop.add_reader(fd, self._on_readable)
            self._reading = True
        elif fd != self._fd:
            return
        elif kind == "close":
            self._detach()
        elif kind == "write" and not self._writing:
            loop.add_writer(fd, self._on_writable)
            self._writing = True
        elif kind == "unwrite" and self._writing:
            loop.remove_writer(fd)
            self._writing = False

    def _detach(self) -> None:
        if self._fd is not None and self._loop is not None:
            if self._reading:
                self._loop.remove_reader(self._fd)
            if self._writing:
                self._loop.remove_writer(self._fd)
        self._fd = None
        self._reading = self._writing = False
        if self._misc_handle is not None:
            self._misc_handle.cancel()
            self._misc_handle = None

    def _pause_reading(self) -> None:
        if self._reading and self._fd is not None and self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._reading = False
        self._paused = True
        now = time.monotonic()
        if not self._closing and now - self._last_pause_log > 60:
            self._last_pause_log = now
            log.warning(
                "MQTT link to %s: %d messages wait for the handler; reading paused",
                self.where,
                len(self._pending),
            )

    def _resume_reading(self) -> None:
        self._paused = False
        if not self._reading and not self._closing and self._fd is not None:
            self._running_loop().add_reader(self._fd, self._on_readable)
            self._reading = True
            if self._client.buffered():  # read before the pause: the reader won't fire
                self._running_loop().call_soon(self._on_readable)

    def _on_readable(self) -> None:
        client = self._client
        limit = self.max_pending * 2 if self._publishes else self.max_pending
        for _ in range(READ_BURST):
            if len(self._pending) >= limit:
                self._pause_reading()
                return
            before = self._received
            if client.loop_read() != paho.MQTT_ERR_SUCCESS or self._received == before:
                break  # not a PUBLISH, or nothing left: the reader fires again if needed
        sock = client.socket()
        if self._reading and (
            client.buffered() or (isinstance(sock, ssl.SSLSocket) and sock.pending())
        ):
            self._running_loop().call_soon(self._on_readable)  # read bytes wait

    def _on_writable(self) -> None:
        self._client.loop_write()

    def _misc(self) -> None:
        self._misc_handle = None
        if self._fd is None:
            return
        self._client.loop_misc()
        if self._fd is not None and self._connected:
            self._misc_handle = self._running_loop().call_later(MISC_INTERVAL, self._misc)

    # -- paho callbacks (on the loop thread, from loop_read/loop_write/loop_misc) -------

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._socket_event("open", sock)

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._socket_event("close", sock)

    def _on_socket_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._socket_event("write", sock)

    def _on_socket_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._socket_event("unwrite", sock)

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        connack = self._connack
        if reason.is_failure:
            if connack is not None and not connack.done():
                connack.set_exception(
                    MqttConnectError(f"the broker refused the connection: {reason}", refused=True)
                )
            return
        self._connected = True
        if self._subscriptions:
            filters = list(self._subscriptions.items())
            rc, mid = client.subscribe(filters)
            if rc == paho.MQTT_ERR_SUCCESS and mid is not None:
                self._resubscribes[mid] = [f for f, _ in filters]
        if self._misc_handle is None:
            self._misc_handle = self._running_loop().call_later(MISC_INTERVAL, self._misc)
        if connack is not None and not connack.done():
            connack.set_result(bool(flags.session_present))

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        was_connected = self._connected
        self._connected = False
        self._generation += 1
        if self._misc_handle is not None:
            self._misc_handle.cancel()
            self._misc_handle = None
        connack = self._connack
        if connack is not None and not connack.done():
            connack.set_exception(MqttConnectError(f"connection closed: {reason}"))
        self._fail_waiters(f"the connection to {self.where} was lost: {reason}")
        if was_connected and not self._closing:
            log.warning("MQTT link to %s disconnected: %s", self.where, reason)
        self._lost.set()

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self._received += 1
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
        pending = self._pending
        pending.append(
            IncomingMessage(
                topic,
                payload,
                message.qos,
                bool(message.retain),
                message.mid,
                bool(message.dup),
                self._generation,
            )
        )
        if len(pending) == 1:
            self._ready.set()

    def _on_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        future = self._publishes.get(mid)
        if future is None or future.done():
            return
        if reason.is_failure:
            future.set_exception(MqttPublishError(f"the broker refused the message: {reason}"))
        else:
            future.set_result(None)

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        codes = [int(r.value) for r in reasons]
        future = self._subacks.pop(mid, None)
        if future is not None:
            if not future.done():
                future.set_result(codes)
            return
        filters = self._resubscribes.pop(mid, [])
        refused = [f for f, code in zip(filters, codes, strict=False) if code >= 0x80]
        if refused:
            log.error("MQTT link: the broker at %s refused %s", self.where, refused)

    # -- delivery ----------------------------------------------------------------------

    async def _drain(self) -> None:
        pending = self._pending
        resume_at = self.max_pending // 2
        while True:
            await self._ready.wait()
            self._ready.clear()
            while pending and not self._closing:
                count = min(self.batch_size, len(pending))
                batch = [pending.popleft() for _ in range(count)]
                if self._paused and len(pending) <= resume_at:
                    self._resume_reading()
                handler = self.handler
                if handler is None:
                    if not self._warned_no_handler:
                        self._warned_no_handler = True
                        log.warning("MQTT link: messages arrive but no handler is set")
                    continue
                self._idle.clear()
                try:
                    await handler(batch)
                except Exception:
                    log.exception(
                        "MQTT message handler failed on %d messages; they stay unacknowledged",
                        count,
                    )
                finally:
                    self._idle.set()


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, TimeoutError) and not text:
        return "timed out"
    return text or type(exc).__name__
