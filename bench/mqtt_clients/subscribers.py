"""The candidate subscribers, each in a process of its own, counting what they receive.

a. paho-threaded: paho-mqtt 2.x with its network thread (``loop_start``);
b. paho-asyncio: paho-mqtt driven from an asyncio event loop through its socket callbacks;
c. aiomqtt: ``async for message in client.messages``;
d. gmqtt: gmqtt's asyncio client, MQTT 5 (QoS 1 acknowledged before ``on_message``);
   not a dependency: its 0.8.0 wheel installs top-level ``tests`` and ``examples``
   packages, which hide this repository's ``tests``. Measured when importable, for
   example ``pip install --no-deps --target DIR gmqtt==0.8.0``, then delete
   ``DIR/tests`` and ``DIR/examples`` and put DIR on PYTHONPATH;
e. fieldwatch: Fieldwatch's own ``MqttLink`` on paho, MQTT 3.1.1 (batches to a handler
   that acknowledges them);
f. fieldwatch-paho5: the same over MQTT 5, with the gateway's receive maximum;
g. fieldwatch-mqtt5: ``MqttLink`` on the mqtt5 codec (MQTT 5, the same receive maximum).

The MQTT 5 candidates announce a receive maximum of ``WINDOW``; the MQTT 3.1.1 ones get
the broker's ``max_inflight_messages`` (``--broker-inflight``).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import importlib.util
import threading
import time
import uuid
from multiprocessing.synchronize import Event as MpEvent
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
import uvloop as uv
from paho.mqtt.enums import CallbackAPIVersion

from fieldwatch.transports.mqtt.link import IncomingMessage, MqttLink, MqttLinkOptions

CANDIDATES = (
    "paho-threaded",
    "paho-asyncio",
    "aiomqtt",
    "gmqtt",
    "fieldwatch",
    "fieldwatch-paho5",
    "fieldwatch-mqtt5",
)
OPTIONAL = {"gmqtt": "gmqtt"}  # candidate: the library it needs, not a dependency
WINDOW = 10_000  # the gateway's default receive maximum (FIELDWATCH_MQTT_RECEIVE_MAXIMUM)
FILTER = "iot/devices/data/+/temperature"
IDLE_SECONDS = 3.0  # the subscriber gives up this long after its last message


class Counter:
    """What a subscriber saw: how many messages, and when the first and last arrived.

    With a ``gate`` (drain mode) the first message blocks the receiving thread, so the
    client stops reading, until the gate opens; the clock starts then."""

    def __init__(self, gate: MpEvent | None) -> None:
        self.gate = gate
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.messages: collections.deque[Any] = collections.deque(maxlen=10_000)

    def seen(self, message: Any) -> None:
        if self.count == 0 and self.gate is not None:
            self.gate.wait()
        now = time.perf_counter()
        if self.count == 0:
            self.first = now
        self.count += 1
        self.last = now
        self.messages.append(message)

    def finished(self, expected: int) -> bool:
        if self.count >= expected:
            return True
        return self.count > 0 and time.perf_counter() - self.last > IDLE_SECONDS


async def wait_finished(counter: Counter, expected: int) -> None:
    deadline = time.monotonic() + 600
    while True:
        if counter.finished(expected) or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.02)


def sub_paho_threaded(
    port: int, qos: int, expected: int, ready: MpEvent, gate: MpEvent | None
) -> Counter:
    counter = Counter(gate)
    subscribed = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{uuid.uuid4().hex[:8]}")
    client.on_message = lambda _c, _u, message: counter.seen(message)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_connect = lambda c, *_: c.subscribe(FILTER, qos)
    client.connect("127.0.0.1", port, keepalive=60)
    client.loop_start()
    if not subscribed.wait(10):
        raise RuntimeError("no SUBACK")
    ready.set()
    deadline = time.monotonic() + 600
    while not counter.finished(expected) and time.monotonic() < deadline:
        time.sleep(0.02)
    client.disconnect()
    client.loop_stop()
    return counter


async def sub_paho_asyncio(
    port: int, qos: int, expected: int, ready: MpEvent, gate: MpEvent | None
) -> Counter:
    loop = asyncio.get_running_loop()
    counter = Counter(gate)
    subscribed = asyncio.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{uuid.uuid4().hex[:8]}")

    def readable() -> None:
        # loop_read handles one packet a call; keep going while messages come in and
        # let the (level-triggered) reader call again for anything else.
        for _ in range(256):
            before = counter.count
            if client.loop_read() or counter.count == before:
                break

    client.on_socket_open = lambda _c, _u, sock: loop.add_reader(sock, readable)
    client.on_socket_register_write = lambda _c, _u, sock: loop.add_writer(sock, client.loop_write)

    def closed(_c: paho.Client, _u: Any, sock: Any) -> None:
        loop.remove_reader(sock)

    def unregister_write(_c: paho.Client, _u: Any, sock: Any) -> None:
        loop.remove_writer(sock)

    client.on_socket_close = closed
    client.on_socket_unregister_write = unregister_write
    client.on_message = lambda _c, _u, message: counter.seen(message)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_connect = lambda c, *_: c.subscribe(FILTER, qos)

    async def misc() -> None:
        while True:  # keepalive; stops once the connection is gone
            if client.loop_misc() != paho.MQTT_ERR_SUCCESS:
                return
            await asyncio.sleep(1)

    client.connect("127.0.0.1", port, keepalive=60)
    misc_task = asyncio.create_task(misc())
    await asyncio.wait_for(subscribed.wait(), 10)
    ready.set()
    await wait_finished(counter, expected)
    client.disconnect()
    misc_task.cancel()
    return counter


async def sub_aiomqtt(
    port: int, qos: int, expected: int, ready: MpEvent, gate: MpEvent | None
) -> Counter:
    counter = Counter(gate)
    async with aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier=f"bench-sub-{uuid.uuid4().hex[:8]}",
        protocol=aiomqtt.ProtocolVersion.V311,
        keepalive=60,
    ) as client:
        await client.subscribe(FILTER, qos)
        ready.set()

        async def consume() -> None:
            async for message in client.messages:
                counter.seen(message)
                if counter.count >= expected:
                    return

        task = asyncio.create_task(consume())
        await wait_finished(counter, expected)
        task.cancel()
    return counter


def available() -> list[str]:
    """The candidates whose library is installed."""
    return [c for c in CANDIDATES if c not in OPTIONAL or importlib.util.find_spec(OPTIONAL[c])]


async def sub_gmqtt(
    port: int, qos: int, expected: int, ready: MpEvent, gate: MpEvent | None
) -> Counter:
    import gmqtt

    counter = Counter(gate)
    subscribed = asyncio.Event()

    def on_message(_client: Any, topic: str, payload: bytes, qos: int, _props: Any) -> int:
        counter.seen((topic, payload))
        return 0  # PUBACK: success

    client = gmqtt.Client(f"bench-sub-{uuid.uuid4().hex[:8]}", receive_maximum=WINDOW)
    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    await client.connect("127.0.0.1", port, keepalive=60, version=gmqtt.constants.MQTTv50)
    client.subscribe(FILTER, qos=qos)
    await asyncio.wait_for(subscribed.wait(), 10)
    ready.set()
    await wait_finished(counter, expected)
    await client.disconnect()
    return counter


async def sub_fieldwatch(
    port: int,
    qos: int,
    expected: int,
    ready: MpEvent,
    gate: MpEvent | None,
    *,
    client: str = "paho",
    window: int | None = None,
) -> Counter:
    counter = Counter(gate)

    async def handler(batch: list[IncomingMessage]) -> None:
        for message in batch:
            counter.seen(message)
        link.ack(batch)

    options = MqttLinkOptions(
        "127.0.0.1",
        port,
        client_id=f"bench-sub-{uuid.uuid4().hex[:8]}",
        client=client,  # type: ignore[arg-type]
        receive_maximum=window,
    )
    link = MqttLink(options, handler=handler)
    await link.start()
    await link.subscribe(FILTER, qos)
    ready.set()
    await wait_finished(counter, expected)
    await link.stop()
    return counter


ASYNC_SUBSCRIBERS = {
    "paho-asyncio": sub_paho_asyncio,
    "aiomqtt": sub_aiomqtt,
    "gmqtt": sub_gmqtt,
    "fieldwatch": sub_fieldwatch,
    "fieldwatch-paho5": functools.partial(sub_fieldwatch, window=WINDOW),
    "fieldwatch-mqtt5": functools.partial(sub_fieldwatch, client="mqtt5", window=WINDOW),
}


def subscriber(
    candidate: str,
    port: int,
    qos: int,
    expected: int,
    uvloop: bool,
    ready: MpEvent,
    gate: MpEvent | None,
    out: Any,
) -> None:
    """One subscriber process; reports (received, first-to-last seconds)."""
    if candidate == "paho-threaded":
        counter = sub_paho_threaded(port, qos, expected, ready, gate)
    else:
        coro = ASYNC_SUBSCRIBERS[candidate]
        if uvloop:
            counter = uv.run(coro(port, qos, expected, ready, gate))
        else:
            counter = asyncio.run(coro(port, qos, expected, ready, gate))
    out.put((counter.count, counter.last - counter.first))
