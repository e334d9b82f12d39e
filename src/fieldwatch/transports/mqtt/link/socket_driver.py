"""The socket side of the MQTT link: paho-mqtt driven from the event loop.

The socket is watched with ``add_reader``/``add_writer`` and paho parses packets on the
loop thread, so there is no network thread and no lock. Only the blocking TCP (and TLS)
connect runs in a worker thread; the socket events paho reports from that thread are
applied on the loop once it is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fieldwatch.transports.mqtt.link.driver import LoopBound
from fieldwatch.transports.mqtt.link.options import MqttLinkOptions

log = logging.getLogger(__name__)

MISC_INTERVAL = 1.0  # seconds between keepalive checks


class BufferedClient(paho.Client):
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


def new_client(options: MqttLinkOptions) -> BufferedClient:
    """A paho client for ``options`` (its callbacks are set by the link and the driver)."""
    v5 = options.mqtt5
    client = BufferedClient(
        CallbackAPIVersion.VERSION2,
        client_id=options.client_id,
        # MQTT 5 has clean_start on connect instead (see the supervisor).
        clean_session=None if v5 else options.clean_session,
        protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
        reconnect_on_failure=False,  # the link reconnects, never paho inside a read
        manual_ack=True,
    )
    if options.username is not None:
        client.username_pw_set(options.username, options.password)
    tls = options.tls
    if tls is not False:
        client.tls_set_context(tls if isinstance(tls, ssl.SSLContext) else None)
    client.connect_timeout = min(5.0, options.connect_timeout)
    client.max_inflight_messages_set(100)
    return client


class SocketDriver(LoopBound):
    """Watches the client's socket on the event loop and pauses or resumes reading.

    ``on_readable`` is called when the socket (or the client's buffer) has bytes to
    read; ``connected`` tells whether the MQTT connection is up (the keepalive timer
    runs only then). ``closing`` is set while the link stops.
    """

    def __init__(
        self,
        client: BufferedClient,
        options: MqttLinkOptions,
        *,
        on_readable: Callable[[], None],
        connected: Callable[[], bool],
    ) -> None:
        self.client = client
        self.options = options
        self.where = options.where
        self._on_readable = on_readable
        self._connected = connected
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._connecting = False  # paho is being connected in a worker thread
        self._deferred: list[tuple[str, int]] = []  # socket events seen by that thread
        self._fd: int | None = None
        self.reading = False
        self._writing = False
        self.paused = False
        self.closing = False
        self.no_connack_hint = ""
        self._last_pause_log = 0.0
        self._misc_handle: asyncio.TimerHandle | None = None
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Drive the socket from ``loop``, which runs on the calling thread."""
        super().bind(loop)
        self._loop_thread = threading.get_ident()

    async def open(self) -> None:
        """Connect paho (CONNECT is sent; the CONNACK comes through ``loop_read``)."""
        options = self.options
        connect = functools.partial(
            self.client.connect, options.host, options.port, options.keepalive
        )
        if options.receive_maximum is not None:
            properties = Properties(PacketTypes.CONNECT)
            properties.ReceiveMaximum = options.receive_maximum
            if not options.clean_session:  # keep the session (and its queue) across drops
                properties.SessionExpiryInterval = options.session_expiry
            connect = functools.partial(
                connect, clean_start=options.clean_session, properties=properties
            )
        await self._connect(connect)

    async def _connect(self, connect: Callable[[], Any]) -> None:
        """Run paho's blocking ``connect`` in a worker thread, then apply the socket
        events it reported. A cancellation waits for the thread first: nobody may touch
        the client while it runs."""
        self._connecting = True
        work = self.loop.run_in_executor(None, connect)
        try:
            try:
                await asyncio.shield(work)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await work
                raise
        finally:
            self._connecting = False
            deferred, self._deferred = self._deferred, []
            for kind, fd in deferred:
                self._apply_socket_event(kind, fd)

    def detach(self) -> None:
        """Stop watching the socket (and the keepalive timer)."""
        if self._fd is not None and self._loop is not None:
            if self.reading:
                self._loop.remove_reader(self._fd)
            if self._writing:
                self._loop.remove_writer(self._fd)
        self._fd = None
        self.reading = self._writing = False
        self.stop_misc()

    def close_socket(self) -> None:
        sock = self.client.socket()
        self.detach()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def pause_reading(self, pending: int) -> None:
        """Stop reading the socket; ``pending`` messages wait for the handler."""
        if self.reading and self._fd is not None and self._loop is not None:
            self._loop.remove_reader(self._fd)
            self.reading = False
        self.paused = True
        now = time.monotonic()
        if not self.closing and now - self._last_pause_log > 60:
            self._last_pause_log = now
            log.warning(
                "MQTT link to %s: %d messages wait for the handler; reading paused",
                self.where,
                pending,
            )

    def resume_reading(self) -> None:
        self.paused = False
        if not self.reading and not self.closing and self._fd is not None:
            self.loop.add_reader(self._fd, self._on_readable)
            self.reading = True
            if self.client.buffered():  # read before the pause: the reader won't fire
                self.loop.call_soon(self._on_readable)

    def start_misc(self) -> None:
        """Run paho's keepalive checks every ``MISC_INTERVAL`` while connected."""
        if self._misc_handle is None:
            self._misc_handle = self.loop.call_later(MISC_INTERVAL, self._misc)

    def stop_misc(self) -> None:
        if self._misc_handle is not None:
            self._misc_handle.cancel()
            self._misc_handle = None

    def _misc(self) -> None:
        self._misc_handle = None
        if self._fd is None:
            return
        self.client.loop_misc()
        if self._fd is not None and self._connected():
            self._misc_handle = self.loop.call_later(MISC_INTERVAL, self._misc)

    def _on_writable(self) -> None:
        self.client.loop_write()

    def _socket_event(self, kind: str, sock: Any) -> None:
        fd = sock.fileno()
        if threading.get_ident() == self._loop_thread:
            self._apply_socket_event(kind, fd)
        elif self._connecting:
            self._deferred.append((kind, fd))
        elif self._loop is not None:
            self._loop.call_soon_threadsafe(self._apply_socket_event, kind, fd)

    def _apply_socket_event(self, kind: str, fd: int) -> None:
        loop = self.loop
        if kind == "open":
            self.detach()
            self._fd = fd
            self.paused = False
            loop.add_reader(fd, self._on_readable)
            self.reading = True
        elif fd != self._fd:
            return
        elif kind == "close":
            self.detach()
        elif kind == "write" and not self._writing:
            loop.add_writer(fd, self._on_writable)
            self._writing = True
        elif kind == "unwrite" and self._writing:
            loop.remove_writer(fd)
            self._writing = False

    # -- paho's socket callbacks (on the loop thread, or the connecting thread) --------

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._socket_event("open", sock)

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._socket_event("close", sock)

    def _on_socket_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._socket_event("write", sock)

    def _on_socket_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._socket_event("unwrite", sock)
