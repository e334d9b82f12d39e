"""The MQTT broker embedded in ``fieldwatch serve`` (amqtt 0.12.1), for installs without
an external Mosquitto.

Every client authenticates through an ``authority`` (anonymous clients are refused) and
each PUBLISH and SUBSCRIBE is checked against ``authority.authorize`` or, by default,
the rules of ``acl.py``.

amqtt is used through its external-listener API: this module owns the TCP socket, reads
the CONNECT packet and authenticates it *before* amqtt sees the connection, then hands
the stream over. That closes holes amqtt 0.12.1 has when it authenticates by itself:

* it drops the existing session of a client id (subscriptions included) and takes over
  a live one before checking credentials, so anyone who knew a device's client id could
  silently cut it off; here a client id held by one principal cannot be used by another,
  a device may use only its own device id as client id, and a device id held by someone
  else while the device was away goes back to the device when it connects;
* it sends every retained message matching *any* client's subscription to each newly
  connected client, whatever that client subscribed to; so retained messages are not
  kept at all (the retain flag is ignored, messages are delivered live);
* it never enforces the keep-alive, so a silent client never times out and its last will
  never fires; here a client that sends nothing for 1.5 x its keep-alive is dropped (and
  its will published);
* it does not check the topic of a last will; here it must be a topic the client may
  publish to, or the connection is refused;
* it has no size limit on packets; here a packet above ``max_packet_size`` closes the
  connection.

Only MQTT 3.1.1 is spoken (MQTT 5 and 3.1 clients get "unacceptable protocol version"),
there are no shared subscriptions (``$share/...`` is refused) and no ``$SYS`` topics.
QoS 1 and 2 and persistent sessions (``clean_session=False``, kept ``session_expiry``
seconds) work. A QoS 1 PUBLISH is acknowledged only once every ``service`` client that
received it has acknowledged its copy (``receipts``): in ``fieldwatch serve``, once the
gateway has committed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from amqtt.adapters import BufferReader, ReaderAdapter, StreamWriterAdapter
from amqtt.contexts import Action as AmqttAction
from amqtt.contexts import BrokerConfig, ListenerConfig, ListenerType
from amqtt.mqtt.connack import NOT_AUTHORIZED, UNACCEPTABLE_PROTOCOL_VERSION, ConnackPacket
from amqtt.mqtt.connect import ConnectPacket
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin

from fieldwatch.transports.mqtt.acl import Action, Principal, is_allowed
from fieldwatch.transports.mqtt.receipts import ReceiptBroker

log = logging.getLogger(__name__)

_LISTENER = "default"
_PRINCIPAL = "fieldwatch.principal"  # key in amqtt's Session.attributes
_FOREIGN = Principal("service", "\x00unknown")  # owner of a session we did not admit
_MAX_CONNECT = 64 * 1024
_KEEPALIVE_GRACE = 1.5  # MQTT 3.1.1 §3.1.2.10
_WATCH_INTERVAL = 0.5


class Authority(Protocol):
    """Decides who a client is. It may also define ``async authorize(principal, action,
    topic) -> bool``; without it the rules of ``acl.py`` apply."""

    async def authenticate(
        self, client_id: str | None, username: str | None, password: str | None
    ) -> Principal | None: ...


Authorize = Callable[[Principal, Action, str], Awaitable[bool]]


class EmbeddedBroker:
    """An MQTT 3.1.1 broker on ``host:port`` (port 0 picks a free port; read ``port``
    after ``start``)."""

    def __init__(
        self,
        host: str,
        port: int,
        authority: Authority,
        *,
        ssl_context: ssl.SSLContext | None = None,
        session_expiry: int | None = 24 * 3600,
        max_packet_size: int = 1024 * 1024,
        max_connections: int = 0,
        connect_timeout: float = 10.0,
    ) -> None:
        self.host = host
        self._port = port
        self.authority = authority
        self.ssl_context = ssl_context
        self.session_expiry = session_expiry
        self.max_packet_size = max_packet_size
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self._authorize_hook: Authorize | None = getattr(authority, "authorize", None)
        self._broker: _Broker | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()  # every open socket
        self._clients: set[_Client] = set()  # admitted ones
        self._by_id: dict[str, list[_Client]] = {}
        self._by_peer: dict[tuple[str, int], _Client] = {}  # those without a client id
        self._watchdog: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The listening port (the actual one once started)."""
        return self._port

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        """Start amqtt and listen."""
        if self._server is not None:
            return
        _quiet_amqtt()
        plugin_cfg = {"broker": self}
        config = BrokerConfig(
            listeners={
                _LISTENER: ListenerConfig(
                    type=ListenerType.EXTERNAL, bind=f"{self.host}:{self._port}"
                )
            },
            plugins={
                f"{__name__}.FieldwatchAuthPlugin": plugin_cfg,
                f"{__name__}.FieldwatchTopicPlugin": plugin_cfg,
            },
            session_expiry_interval=self.session_expiry,
            timeout_disconnect_delay=0,
        )
        broker = _Broker(config, self)
        await broker.start()
        try:
            self._server = await asyncio.start_server(
                self._serve, self.host, self._port, ssl=self.ssl_context, reuse_address=True
            )
        except BaseException:
            await broker.shutdown()
            raise
        self._broker = broker
        self._port = int(self._server.sockets[0].getsockname()[1])
        self._watchdog = asyncio.create_task(self._watch_keepalive())
        log.info("embedded MQTT broker listening on %s:%d", self.host, self._port)

    async def stop(self) -> None:
        """Close every connection and stop listening."""
        server, broker = self._server, self._broker
        self._server = self._broker = None
        if server is not None:
            server.close()
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
            self._watchdog = None
        if broker is not None:
            await broker.shutdown()
        tasks = list(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=5)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if server is not None:
            await server.wait_closed()
        self._clients.clear()
        self._by_id.clear()
        self._by_peer.clear()

    async def disconnect(self, username_or_client_id: str) -> int:
        """Drop the live connections whose username or client id is the given one (e.g.
        when a device's token is revoked); their last will is published. Returns how many
        were dropped."""
        name = username_or_client_id
        clients = [c for c in list(self._clients) if name in (c.client_id, c.username)]
        await self._drop(clients)
        if clients:
            log.info("MQTT: disconnected %d connection(s) of %s", len(clients), name)
        return len(clients)

    async def _drop(self, clients: list[_Client]) -> None:
        for client in clients:
            client.reader.expire()
        tasks = [c.task for c in clients if c.task is not asyncio.current_task()]
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    async def _watch_keepalive(self) -> None:
        """Drop clients silent for longer than 1.5 x their keep-alive."""
        while True:
            await asyncio.sleep(_WATCH_INTERVAL)
            now = time.monotonic()
            for client in list(self._clients):
                idle = client.reader.idle
                if idle is not None and now - client.reader.last > idle:
                    client.reader.expire()

    # -- connection gate -------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        out = StreamWriterAdapter(writer)
        peer = out.get_peer_info()
        client: _Client | None = None
        try:
            if peer is None or (self.max_connections and len(self._tasks) > self.max_connections):
                return
            try:
                raw = await asyncio.wait_for(_read_connect(reader), self.connect_timeout)
            except (TimeoutError, ValueError, ConnectionError, asyncio.IncompleteReadError):
                return
            admitted = await self._admit(raw, out)
            if admitted is None or self._broker is None:
                return
            principal, connect = admitted
            client_id = None if connect.client_id_is_random else connect.client_id
            # MQTT-3.1.4-2: a new connection with a client id ends the existing one
            if client_id is not None:
                await self._drop(list(self._by_id.get(client_id, ())))
            idle = connect.keep_alive * _KEEPALIVE_GRACE if connect.keep_alive else None
            stream = _ClientReader(raw, reader, idle, self.max_packet_size)
            client = _Client(principal, client_id, connect.username, peer, stream, task)
            self._add(client)
            await self._broker.external_connected(stream, out, _LISTENER)
        except Exception:
            log.exception("MQTT connection from %s failed", peer)
        finally:
            if client is not None:
                self._remove(client)
            with contextlib.suppress(Exception):
                await out.close()
            self._tasks.discard(task)

    async def _admit(
        self, raw: bytes, out: StreamWriterAdapter
    ) -> tuple[Principal, ConnectPacket] | None:
        """Authenticate a CONNECT packet; answer and return ``None`` when refused."""
        if _protocol(raw) != (b"MQTT", 4):
            await _refuse(out, UNACCEPTABLE_PROTOCOL_VERSION)
            return None
        try:
            connect = await ConnectPacket.from_stream(BufferReader(raw))
        except Exception:
            return None
        client_id, username = connect.client_id, connect.username
        principal, reason = None, "bad credentials"
        if username:
            try:
                principal = await self.authority.authenticate(
                    None if connect.client_id_is_random else client_id, username, connect.password
                )
            except Exception:
                log.exception("MQTT authority failed for username %r", username)
                reason = "authority error"
        else:
            reason = "anonymous"
        if principal is not None:
            reason = await self._vet(principal, connect)
        if reason:
            log.info(
                "MQTT connection refused (%s): client id %r, username %r",
                reason,
                client_id,
                username,
            )
            await _refuse(out, NOT_AUTHORIZED)
            return None
        assert principal is not None
        return principal, connect

    async def _vet(self, principal: Principal, connect: ConnectPacket) -> str:
        """Why an authenticated client may not connect, or ``""``."""
        client_id = None if connect.client_id_is_random else connect.client_id
        if principal.kind == "provision" and client_id != principal.name:
            return "provisioning client id is not its serial number"
        own_id = principal.kind == "device" and client_id == principal.name
        if principal.kind == "device" and client_id is not None and not own_id:
            return "a device's client id must be its device id"
        if client_id is not None:
            owner = self._owner(client_id)
            # a device id belongs to that device: it takes it back from anyone else
            if owner is not None and owner != principal and not own_id:
                return "client id in use by another principal"
        if connect.will_flag and not await self._authorize(
            principal, "publish", connect.will_topic or ""
        ):
            return "last will topic not allowed"
        return ""

    def _add(self, client: _Client) -> None:
        self._clients.add(client)
        if client.client_id is None:
            self._by_peer[client.peer] = client
        else:
            self._by_id.setdefault(client.client_id, []).append(client)

    def _remove(self, client: _Client) -> None:
        self._clients.discard(client)
        if client.client_id is None:
            self._by_peer.pop(client.peer, None)
            return
        same = self._by_id.get(client.client_id, [])
        if client in same:
            same.remove(client)
        if not same:
            self._by_id.pop(client.client_id, None)

    def _owner(self, client_id: str) -> Principal | None:
        for client in self._by_id.get(client_id, ()):
            return client.principal
        entry = self._broker.sessions.get(client_id) if self._broker else None
        if entry is None:
            return None
        owner = entry[0].attributes.get(_PRINCIPAL)
        return owner if isinstance(owner, Principal) else _FOREIGN

    # -- hooks called by the amqtt plugins -------------------------------------------

    def _claim(self, session: Any) -> bool:
        """amqtt's auth hook: attach the principal admitted for this connection (found
        by client id, or by peer address when amqtt made the client id up)."""
        same = self._by_id.get(session.client_id)
        client = (
            same[-1] if same else self._by_peer.get((session.remote_address, session.remote_port))
        )
        if client is None:
            return False
        session.attributes[_PRINCIPAL] = client.principal
        return True

    async def _filter(self, session: Any, topic: str | None, action: Any) -> bool:
        principal = session.attributes.get(_PRINCIPAL) if session is not None else None
        if not isinstance(principal, Principal) or topic is None:
            return False
        if action == AmqttAction.RECEIVE:
            return True  # the subscription was checked
        if action == AmqttAction.PUBLISH:
            return await self._authorize(principal, "publish", topic)
        if action == AmqttAction.SUBSCRIBE:
            return await self._authorize(principal, "subscribe", topic)
        return False

    async def _authorize(self, principal: Principal, action: Action, topic: str) -> bool:
        if self._authorize_hook is None:
            return is_allowed(principal, action, topic)
        try:
            return bool(await self._authorize_hook(principal, action, topic))
        except Exception:
            log.exception("MQTT authority failed to authorize %s on %r", action, topic)
            return False


@dataclass(eq=False)
class _Client:
    """One admitted connection."""

    principal: Principal
    client_id: str | None  # None when the client sent none (amqtt makes one up)
    username: str | None
    peer: tuple[str, int]
    reader: _ClientReader
    task: asyncio.Task[Any]


class FieldwatchAuthPlugin(BaseAuthPlugin):
    """amqtt auth plugin: accepts only connections admitted by ``EmbeddedBroker``."""

    @dataclass
    class Config:
        broker: Any = None

    async def authenticate(self, *, session: Any) -> bool:
        broker: EmbeddedBroker = self.config.broker
        return broker._claim(session)


class FieldwatchTopicPlugin(BaseTopicPlugin):
    """amqtt topic plugin: publish and subscribe rules of ``EmbeddedBroker``."""

    @dataclass
    class Config:
        broker: Any = None

    async def topic_filtering(
        self, *, session: Any = None, topic: str | None = None, action: Any = None
    ) -> bool:
        broker: EmbeddedBroker = self.config.broker
        return await broker._filter(session, topic, action)


class _Broker(ReceiptBroker):
    """amqtt's broker without retained messages, calling ``EmbeddedBroker``'s topic rules
    directly (the topic plugin makes the same decision, through a task per check). A
    client's QoS 1 PUBLISH is acknowledged once Fieldwatch's gateway (the ``service``
    principal) has acknowledged its copy, i.e. committed it (see ``receipts``)."""

    def __init__(self, config: BrokerConfig, owner: EmbeddedBroker) -> None:
        super().__init__(config)
        self._fieldwatch = owner

    async def _topic_filtering(self, session: Any, topic: str, action: Any) -> bool:
        return await self._fieldwatch._filter(session, topic, action)

    def is_service(self, session: Any) -> bool:
        principal = session.attributes.get(_PRINCIPAL) if session is not None else None
        return isinstance(principal, Principal) and principal.kind == "service"

    async def retain_message(
        self, source_session: Any, topic_name: str | None, data: Any, qos: int | None = None
    ) -> None:
        """Retained messages are never stored (amqtt 0.12.1 would leak them to every new
        client)."""


class _ClientReader(ReaderAdapter):
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


async def _read_connect(reader: asyncio.StreamReader) -> bytes:
    """The first packet, which must be a CONNECT of at most 64 KiB."""
    head = await reader.readexactly(1)
    if head[0] >> 4 != 1:
        raise ValueError("first packet is not CONNECT")
    header, length, shift = bytearray(head), 0, 0
    for _ in range(4):
        byte = (await reader.readexactly(1))[0]
        header.append(byte)
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    else:
        raise ValueError("bad remaining length")
    if length > _MAX_CONNECT:
        raise ValueError("CONNECT too large")
    return bytes(header) + await reader.readexactly(length)


def _protocol(raw: bytes) -> tuple[bytes, int]:
    """Protocol name and level of a CONNECT packet."""
    i = 1
    while raw[i] & 0x80:
        i += 1
    body = raw[i + 1 :]
    if len(body) < 3:
        return b"", 0
    size = int.from_bytes(body[:2], "big")
    if len(body) < 3 + size:
        return b"", 0
    return body[2 : 2 + size], body[2 + size]


async def _refuse(out: StreamWriterAdapter, code: int) -> None:
    with contextlib.suppress(Exception):
        await ConnackPacket.build(0, code).to_stream(out)


def _quiet_amqtt() -> None:
    """amqtt logs every connection at INFO; keep it to warnings unless configured."""
    for name in ("amqtt", "transitions"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)
