"""``EmbeddedBroker``: the broker's lifecycle (amqtt, the listening socket, the
keep-alive watch) and each connection from its first byte to its end."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Any

from amqtt.adapters import StreamWriterAdapter

from fieldwatch.transports.mqtt.acl import Principal
from fieldwatch.transports.mqtt.embedded.admission import Authority, Gate, read_connect
from fieldwatch.transports.mqtt.embedded.amqtt_glue import (
    LISTENER,
    AmqttBroker,
    amqtt_config,
    quiet_amqtt,
)
from fieldwatch.transports.mqtt.embedded.clients import Client, Clients
from fieldwatch.transports.mqtt.embedded.handover import Handover
from fieldwatch.transports.mqtt.embedded.keepalive import (
    ClientReader,
    idle_limit,
    watch_keepalive,
)
from fieldwatch.transports.mqtt.link import MqttLink
from fieldwatch.transports.mqtt.refusals import RefusedPublishes

log = logging.getLogger(__name__)


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
        refusals: RefusedPublishes | None = None,
    ) -> None:
        self.host = host
        self._port = port
        self.authority = authority
        self.ssl_context = ssl_context
        self.session_expiry = session_expiry
        self.max_packet_size = max_packet_size
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.clients = Clients()  # admitted connections
        self.gate = Gate(authority, self._owner, refusals)
        self._broker: AmqttBroker | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()  # every open socket
        self._watchdog: asyncio.Task[None] | None = None
        self.handover: Handover | None = None  # the gateway's in-process path

    @property
    def port(self) -> int:
        """The listening port (the actual one once started)."""
        return self._port

    @property
    def running(self) -> bool:
        return self._server is not None

    def devices(self) -> int:
        """Devices connected now."""
        return sum(1 for client in self.clients if client.principal.kind == "device")

    async def start(self) -> None:
        """Start amqtt and listen."""
        if self._server is not None:
            return
        quiet_amqtt()
        config = amqtt_config(self, f"{self.host}:{self._port}", self.session_expiry)
        broker = AmqttBroker(config, self.gate)
        broker.handover = self.handover
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
        self._watchdog = asyncio.create_task(
            watch_keepalive(lambda: [client.reader for client in self.clients])
        )
        log.info("embedded MQTT broker listening on %s:%d", self.host, self._port)

    def hand_over(self, link: MqttLink | None) -> Handover | None:
        """Give the messages only the gateway may receive to its ``link`` in-process,
        instead of through amqtt and the link's connection (``handover``); None: no more
        (messages awaiting their commit get no PUBACK). Returns the handover."""
        if self.handover is not None:
            self.handover.close()
        self.handover = Handover(link, self.gate) if link is not None else None
        if self._broker is not None:
            self._broker.handover = self.handover
        return self.handover

    async def stop(self) -> None:
        """Close every connection and stop listening."""
        self.hand_over(None)
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
        self.clients.clear()

    async def disconnect(self, username_or_client_id: str) -> int:
        """Drop the live connections whose username or client id is the given one (e.g.
        when a device's token is revoked); their last will is published. Returns how many
        were dropped."""
        name = username_or_client_id
        clients = self.clients.named(name)
        await self._drop(clients)
        if clients:
            log.info("MQTT: disconnected %d connection(s) of %s", len(clients), name)
        return len(clients)

    async def _drop(self, clients: list[Client]) -> None:
        for client in clients:
            client.reader.expire()
        tasks = [c.task for c in clients if c.task is not asyncio.current_task()]
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    def _owner(self, client_id: str) -> Principal | None:
        return self.clients.owner(client_id, self._broker.sessions if self._broker else None)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        out = StreamWriterAdapter(writer)
        peer = out.get_peer_info()
        client: Client | None = None
        try:
            if peer is None or (self.max_connections and len(self._tasks) > self.max_connections):
                return
            try:
                raw = await asyncio.wait_for(read_connect(reader), self.connect_timeout)
            except (TimeoutError, ValueError, ConnectionError, asyncio.IncompleteReadError):
                return
            admitted = await self.gate.admit(raw, out)
            if admitted is None or self._broker is None:
                return
            principal, connect = admitted
            client_id = None if connect.client_id_is_random else connect.client_id
            # MQTT-3.1.4-2: a new connection with a client id ends the existing one
            if client_id is not None:
                await self._drop(self.clients.with_id(client_id))
            idle = idle_limit(connect.keep_alive)
            stream = ClientReader(raw, reader, idle, self.max_packet_size)
            client = Client(principal, client_id, connect.username, peer, stream, task)
            self.clients.add(client)
            await self._broker.external_connected(stream, out, LISTENER)
        except Exception:
            log.exception("MQTT connection from %s failed", peer)
        finally:
            if client is not None:
                self.clients.remove(client)
            with contextlib.suppress(Exception):
                await out.close()
            self._tasks.discard(task)
