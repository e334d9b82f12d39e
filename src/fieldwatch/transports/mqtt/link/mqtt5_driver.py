"""The socket side of the mqtt5 client: Fieldwatch's own asyncio connection and the
mqtt5 codec (Rust, sans-IO) reading and writing its packets.

An ``asyncio.Protocol`` appends what arrives to a bytearray; the packets in it are read
where they lie (``mqtt5.read`` on a memoryview) and each PUBLISH becomes an
``IncomingMessage`` in the inbox straight away, with one clock reading per chunk. Other
packets go to the link. When the inbox is full, parsing stops at the next PUBLISH (a
CONNACK, PUBACK or PINGRESP before it is still read) and the transport stops reading;
the bytes not yet parsed wait in the buffer.

Keepalive: a PINGREQ goes out when nothing was written for half the keepalive; a
PINGRESP missing for a whole keepalive ends the connection, except while reading is
paused (the PINGRESP then waits unread behind the messages).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from typing import cast

from mqtt5 import ConnectPacket, Packet, PingReqPacket, PubAckPacket, PublishPacket, read

from fieldwatch.transports.mqtt.link.driver import LoopBound
from fieldwatch.transports.mqtt.link.inbox import Inbox
from fieldwatch.transports.mqtt.link.messages import IncomingMessage
from fieldwatch.transports.mqtt.link.options import MqttLinkOptions

log = logging.getLogger(__name__)

PINGREQ = PingReqPacket().write()


class MalformedPacket(ValueError):
    """The broker sent bytes that are not an MQTT 5 packet."""


class _Wire(asyncio.Protocol):
    """One TCP (or TLS) connection; hands what happens on it to the driver."""

    def __init__(self, driver: Mqtt5Driver) -> None:
        self.driver = driver
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's is no subclass of asyncio.Transport)
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.driver.received(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.driver.lost(self, exc)


class Mqtt5Driver(LoopBound):
    """The current connection of an ``Mqtt5Link``: open, read, write, pause, close.

    ``on_packet`` gets every packet but PUBLISH; ``on_error`` a malformed one (the
    connection is then closed); ``on_lost`` the reason when the connection is gone;
    ``generation`` tells which connection of the link this is (``IncomingMessage``).
    ``inbox`` is set by the link once it has made it.
    """

    def __init__(
        self,
        options: MqttLinkOptions,
        *,
        on_packet: Callable[[Packet], None],
        on_error: Callable[[str], None],
        on_lost: Callable[[str], None],
        generation: Callable[[], int],
    ) -> None:
        self.options = options
        self.inbox: Inbox | None = None
        self._on_packet = on_packet
        self._on_error = on_error
        self._on_lost = on_lost
        self._generation = generation
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wire: _Wire | None = None
        self._buffer = bytearray()
        self.paused = False
        self.closing = False
        self.no_connack_hint = (
            " (the mqtt5 client speaks MQTT 5 only: an MQTT 3.1.1 broker such as the "
            "embedded one does not answer it)"
        )
        self._last_pause_log = 0.0
        self._last_write = 0.0
        self._keepalive = 0.0
        self._ping_sent: float | None = None
        self._ticker: asyncio.TimerHandle | None = None

    # -- the connection ------------------------------------------------------------------

    async def open(self) -> None:
        options = self.options
        tls = options.tls
        context = tls if isinstance(tls, ssl.SSLContext) else None
        if tls is True:
            context = ssl.create_default_context()
        wire = _Wire(self)
        self._wire, self._buffer, self.paused = wire, bytearray(), False
        try:
            await asyncio.wait_for(
                self.loop.create_connection(lambda: wire, options.host, options.port, ssl=context),
                options.connect_timeout,
            )
        except BaseException:
            if self._wire is wire:
                self._wire = None
            raise
        self.write(self._connect_packet())

    def _connect_packet(self) -> bytes:
        options = self.options
        assert options.receive_maximum is not None  # MqttLinkOptions checks it
        password = options.password
        return ConnectPacket(
            options.client_id,
            username=options.username,
            password=password.encode() if password is not None else None,
            clean_start=options.clean_session,
            keep_alive=options.keepalive,
            # MQTT 5: the session ends with the connection unless it has an expiry
            session_expiry_interval=0 if options.clean_session else options.session_expiry,
            receive_max=options.receive_maximum,
        ).write()

    def write(self, data: bytes) -> bool:
        """Queue bytes on the connection; False when there is none."""
        wire = self._wire
        if wire is None or wire.transport is None or wire.transport.is_closing():
            return False
        wire.transport.write(data)
        self._last_write = time.monotonic()
        return True

    def end(self, data: bytes) -> None:
        """Write ``data`` (DISCONNECT) and close the connection once it is sent."""
        wire = self._wire
        if self.write(data) and wire is not None and wire.transport is not None:
            wire.transport.close()

    def detach(self) -> None:
        """Drop the current connection without reporting it (a new one comes next)."""
        wire = self._forget()
        if wire is not None and wire.transport is not None:
            wire.transport.abort()

    def close_socket(self, reason: str = "the connection was closed") -> None:
        """Close the current connection at once and report it lost."""
        wire = self._wire
        if wire is not None:
            if wire.transport is not None:
                wire.transport.abort()
            self.lost(wire, reason)

    def lost(self, wire: _Wire, reason: str | Exception | None) -> None:
        if wire is not self._wire:
            return  # detached or reported already
        self._forget()
        self._on_lost(str(reason) if reason is not None else "the connection was closed")

    def _forget(self) -> _Wire | None:
        wire, self._wire = self._wire, None
        self.stop_keepalive()
        self._buffer = bytearray()
        return wire

    # -- reading ---------------------------------------------------------------------------

    def received(self, wire: _Wire, data: bytes) -> None:
        if wire is not self._wire:
            return
        self._buffer += data
        if not self.paused:
            self._parse()

    def _parse(self) -> None:
        """Read the packets in the buffer, up to the inbox's room."""
        wire, inbox, buffer = self._wire, self.inbox, self._buffer
        if wire is None or inbox is None or not buffer:
            return
        size, offset, taken = len(buffer), 0, 0
        room = inbox.limit() - len(inbox)
        put, generation, now = inbox.put, self._generation(), time.monotonic()
        view = memoryview(buffer)
        try:
            while offset < size:
                if taken >= room and view[offset] & 0xF0 == 0x30:  # a PUBLISH: no room
                    self.pause_reading(len(inbox))
                    break
                try:
                    packet, used = read(view[offset:])
                except IndexError:  # the codec's "not enough bytes"
                    if _packet_size(view, offset) is not None:
                        raise MalformedPacket("a packet shorter than its length") from None
                    break  # the rest of the packet is still on its way
                except (KeyboardInterrupt, SystemExit):
                    raise
                except BaseException as exc:  # the codec panics (a BaseException) on some input
                    offset += self._drop_publish(view, offset, exc)
                    continue
                offset += used
                if type(packet) is PublishPacket:
                    put(
                        IncomingMessage(
                            packet.topic,
                            packet.payload,
                            int(packet.qos),
                            packet.retain,
                            packet.packet_id or 0,
                            packet.duplicate,
                            generation,
                            now,
                        )
                    )
                    taken += 1
                else:
                    self._on_packet(packet)
                    if self._wire is not wire:
                        return  # that packet ended the connection
        except MalformedPacket as exc:
            self._malformed(wire, exc, bytes(view[offset : offset + 1]))
            return
        finally:
            view.release()
            inbox.received += taken
        if offset and self._wire is wire:
            del buffer[:offset]

    def _drop_publish(self, view: memoryview, offset: int, exc: BaseException) -> int:
        """A PUBLISH the codec cannot read (a topic that is not UTF-8): drop it, and
        acknowledge it so that it does not come again. Its size; any other packet is
        ``MalformedPacket``."""
        header = _fixed_header(view, offset)
        if view[offset] >> 4 != 3 or header is None or offset + sum(header) > len(view):
            raise MalformedPacket(str(exc) or type(exc).__name__) from None
        start = offset + header[0]
        if view[offset] & 0x06:  # QoS 1: its packet id follows the topic
            at = start + 2 + int.from_bytes(view[start : start + 2], "big")
            self.write(PubAckPacket(int.from_bytes(view[at : at + 2], "big")).write())
        log.warning("MQTT link: dropped a message the codec could not read (%s)", exc)
        return sum(header)

    def _malformed(self, wire: _Wire, exc: BaseException, first: bytes) -> None:
        kind = first[0] >> 4 if first else 0
        reason = f"a malformed MQTT 5 packet (type {kind}) from the broker: {exc}"
        log.error("MQTT link to %s: %s; closing the connection", self.options.where, reason)
        self._on_error(reason)
        if wire is self._wire:
            self.close_socket(reason)

    def pause_reading(self, pending: int) -> None:
        wire = self._wire
        if not self.paused and wire is not None and wire.transport is not None:
            with contextlib.suppress(RuntimeError):  # already closing
                wire.transport.pause_reading()
        self.paused = True
        now = time.monotonic()
        if not self.closing and now - self._last_pause_log > 60:
            self._last_pause_log = now
            log.warning(
                "MQTT link to %s: %d messages wait for the handler; reading paused",
                self.options.where,
                pending,
            )

    def resume_reading(self) -> None:
        if not self.paused or self.closing:
            return
        self.paused = False
        if self._ping_sent is not None:  # its PINGRESP may wait in what was not read
            self._ping_sent = time.monotonic()
        wire = self._wire
        if wire is not None and wire.transport is not None:
            with contextlib.suppress(RuntimeError):
                wire.transport.resume_reading()
        if self._buffer:
            self.loop.call_soon(self._parse)

    # -- keepalive -------------------------------------------------------------------------

    def start_keepalive(self, seconds: int) -> None:
        self.stop_keepalive()
        self._keepalive = float(seconds)
        self._ping_sent = None
        if seconds > 0:
            self._ticker = self.loop.call_later(self._keepalive / 2, self._tick)

    def stop_keepalive(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    def pong(self) -> None:
        self._ping_sent = None

    def _tick(self) -> None:
        self._ticker = None
        wire, now, keepalive = self._wire, time.monotonic(), self._keepalive
        if wire is None or wire.transport is None:
            return
        sent = self._ping_sent
        if sent is not None and not self.paused and now - sent >= keepalive:
            self.close_socket(f"no PINGRESP within {keepalive:g}s")
            return
        if now - self._last_write >= keepalive / 2:
            self.write(PINGREQ)
            if sent is None:
                self._ping_sent = now
        self._ticker = self.loop.call_later(keepalive / 2, self._tick)


def _fixed_header(view: memoryview, offset: int) -> tuple[int, int] | None:
    """(size of the fixed header, remaining length) of the packet at ``offset``, or None
    while its length is not all there."""
    length, shift, pos, end = 0, 0, offset + 1, len(view)
    while pos < end and shift <= 21:
        byte = view[pos]
        length |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return pos - offset, length
        shift += 7
    return None


def _packet_size(view: memoryview, offset: int) -> int | None:
    """The size of the packet at ``offset`` when all of it is in ``view``, else None."""
    header = _fixed_header(view, offset)
    if header is None or offset + sum(header) > len(view):
        return None
    return sum(header)
