"""What the MqttLink tests share: the ``broker`` fixture (a real Mosquitto), the
``mqtt_client`` fixture that runs a test on each client of the link, ``new_link`` and
``Collector``; a scripted broker for what Mosquitto cannot be made to do (late or
missing PUBACKs, PINGRESPs, bad packets) and a TCP proxy whose connections a test cuts.

Without the ``mosquitto`` binary the tests are skipped, except in CI, where they fail.
A test module imports the fixtures it uses from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fieldwatch.transports.mqtt.link import CLIENTS, IncomingMessage, MqttLink, MqttLinkOptions
from mqtt_helpers import Mosquitto, mosquitto_binary

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
MQTT5_WINDOW = 100  # the receive maximum of an mqtt5 link unless a test sets one

_client = {"name": "paho"}  # the client new_link makes, set by the mqtt_client fixture


def require(what: str, present: bool) -> None:
    if not present:
        message = f"{what} is not installed"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    require("mosquitto", mosquitto_binary() is not None)
    with Mosquitto() as running:
        yield running


@pytest.fixture(params=CLIENTS)
def mqtt_client(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test on each client of the link: ``new_link`` makes links of this one
    (mqtt5 ones speak MQTT 5 with a receive maximum of ``MQTT5_WINDOW``)."""
    _client["name"] = request.param
    try:
        yield request.param
    finally:
        _client["name"] = "paho"


def new_link(port: int, **options: Any) -> MqttLink:
    options.setdefault("client_id", f"fw-test-{uuid.uuid4().hex[:10]}")
    options.setdefault("connect_timeout", 5.0)
    options.setdefault("min_reconnect_delay", 0.1)
    options.setdefault("max_reconnect_delay", 0.5)
    options.setdefault("client", _client["name"])
    if options["client"] == "mqtt5":
        options.setdefault("receive_maximum", MQTT5_WINDOW)
    handler = options.pop("handler", None)
    return MqttLink(MqttLinkOptions("127.0.0.1", port, **options), handler=handler)


class Collector:
    """A handler that records every batch and, unless told otherwise, acks it."""

    def __init__(self, ack: Callable[[IncomingMessage], bool] | None = None) -> None:
        self.link: MqttLink | None = None
        self.batches: list[list[IncomingMessage]] = []
        self.should_ack = ack or (lambda _m: True)
        self.acked = 0

    async def __call__(self, batch: list[IncomingMessage]) -> None:
        self.batches.append(batch)
        assert self.link is not None
        self.acked += self.link.ack([m for m in batch if self.should_ack(m)])

    @property
    def messages(self) -> list[IncomingMessage]:
        return [m for batch in self.batches for m in batch]


async def eventually(condition: Callable[[], bool], what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while True:
        if condition():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def subscriber(
    port: int, topic_filter: str, collector: Collector, **options: Any
) -> MqttLink:
    link = new_link(port, handler=collector, **options)
    collector.link = link
    await link.start()
    await link.subscribe(topic_filter, 1)
    return link


class ScriptedBroker:
    """Just enough MQTT (3.1.1, or 5 when the client asks for it) to accept one client
    at a time: CONNACK at once; PUBACK after ``delays[topic]`` seconds, or never for
    topics not listed; PINGRESP unless ``pong`` is false; ``pushes`` (whole packets)
    written after the CONNACK (with ``trickle``, a byte at a time); over MQTT 5 a
    ``receive_maximum`` in the CONNACK.
    ``kinds`` records the packet types the client sent, ``pubacks`` the packet ids it
    acknowledged; ``published`` counts its QoS 1 messages, ``most_in_flight`` how many
    of them at most waited for their PUBACK at once."""

    def __init__(
        self,
        delays: dict[str, float],
        *,
        pong: bool = True,
        pushes: list[bytes] | None = None,
        receive_maximum: int | None = None,
        trickle: bool = False,
    ) -> None:
        self.delays = delays
        self.trickle = trickle
        self.pong = pong
        self.pushes = pushes or []
        self.receive_maximum = receive_maximum
        self.kinds: list[int] = []
        self.pubacks: list[int] = []
        self.published = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> ScriptedBroker:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                first, body = await self._packet(reader)
                kind = first & 0xF0
                self.kinds.append(kind >> 4)
                if kind == 0x10:  # CONNECT: MQTT 5's CONNACK has properties
                    writer.write(self._connack(mqtt5=body[6] == 5))
                    await self._push(writer)
                elif kind == 0x30 and first & 0x06:  # PUBLISH, QoS > 0
                    self._puback_later(writer, body)
                elif kind == 0x40:  # PUBACK
                    self.pubacks.append(int.from_bytes(body[:2], "big"))
                elif kind == 0xC0 and self.pong:  # PINGREQ
                    writer.write(b"\xd0\x00")
                elif kind == 0xE0:  # DISCONNECT
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _push(self, writer: asyncio.StreamWriter) -> None:
        for push in self.pushes:
            if not self.trickle:
                writer.write(push)
                continue
            for i in range(len(push)):  # a byte at a time, each in a segment of its own
                await writer.drain()
                await asyncio.sleep(0.002)
                writer.write(push[i : i + 1])

    def _connack(self, *, mqtt5: bool) -> bytes:
        if not mqtt5:
            return b"\x20\x02\x00\x00"
        props = b""
        if self.receive_maximum is not None:  # property 0x21: Receive Maximum
            props = b"\x21" + self.receive_maximum.to_bytes(2, "big")
        return bytes([0x20, 3 + len(props), 0, 0, len(props)]) + props

    @staticmethod
    async def _packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
        first = (await reader.readexactly(1))[0]
        length, shift = 0, 0
        while True:
            byte = (await reader.readexactly(1))[0]
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        return first, await reader.readexactly(length)

    def _puback_later(self, writer: asyncio.StreamWriter, body: bytes) -> None:
        size = int.from_bytes(body[:2], "big")
        topic, mid = body[2 : 2 + size].decode(), body[2 + size : 4 + size]
        self.published += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if topic in self.delays:

            def puback() -> None:
                self.in_flight -= 1
                writer.write(b"\x40\x02" + mid)

            asyncio.get_running_loop().call_later(self.delays[topic], puback)


class CutProxy:
    """A TCP proxy in front of a broker; ``cut()`` drops every connection through it at
    once, as a network fault would (no DISCONNECT on either side)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> CutProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        assert self.server is not None
        self.server.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.server.wait_closed()

    def cut(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            self._writers += [writer, up_writer]
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()
