"""MQTT subscriber ceilings: how many messages a second one Python subscriber process
receives from a real Mosquitto, for each candidate client library.

Candidates (each runs in its own process, subscribed before the publishers start):

a. paho-threaded: paho-mqtt 2.x with its network thread (``loop_start``); ``on_message``
   appends to a deque.
b. paho-asyncio: paho-mqtt driven from an asyncio event loop through its socket
   callbacks (``add_reader``/``add_writer``, ``loop_read``/``loop_write``/``loop_misc``).
c. aiomqtt: ``async for message in client.messages``.
d. fieldwatch: Fieldwatch's own ``MqttLink`` (paho driven from asyncio, batches to a
   handler that acknowledges each batch: QoS 1 messages are acked by the application).

Publishers are separate processes using paho without a network thread, publishing a
fixed total as fast as they can: JSON readings of about 80 bytes such as
``{"value": 23.5, "unit": "celsius", "quality": "good", "timestamp": 1694678400}`` on
``iot/devices/data/{device_uuid}/temperature`` over 1,000 devices. The rate is counted
from the first to the last message the subscriber receives. The broker's per-client
queue is unlimited here, so a lost message is a client problem, not a broker limit.

Two modes: live (the subscriber reads while the publishers publish, sharing the CPUs
with them) and drain (the subscriber holds its first message until the publishers are
done, then reads what the broker kept: the subscriber's own ceiling).

Usage: .venv/bin/python bench/bench_mqtt_clients.py [--messages 200000] [--publishers 2]
       [--repeat 3] [--qos 0 1] [--modes live drain] [--candidates paho-threaded ...]
       [--broker-inflight N] [--uvloop] [--name mqtt_clients]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import multiprocessing as mp
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from tests.mqtt_helpers import Mosquitto  # noqa: E402

from common import write_results  # noqa: E402

CANDIDATES = ("paho-threaded", "paho-asyncio", "aiomqtt", "fieldwatch")
FILTER = "iot/devices/data/+/temperature"
DEVICES = 1000
IDLE_SECONDS = 3.0  # the subscriber gives up this long after its last message


class BenchBroker(Mosquitto):
    """Mosquitto with an unlimited per-client queue, so the broker never drops; and,
    when given, its QoS 1 in-flight window per client (Mosquitto's default is 20)."""

    def __init__(self, inflight: int | None = None) -> None:
        super().__init__()
        self.inflight = inflight

    def _config(self) -> Path:
        path = super()._config()
        text = path.read_text().replace("max_queued_messages 100000", "max_queued_messages 0")
        if self.inflight is not None:
            text += f"max_inflight_messages {self.inflight}\n"
        path.write_text(text)
        return path


@dataclass
class Run:
    candidate: str
    qos: int
    mode: str
    expected: int
    received: int
    seconds: float
    rate: float
    published_seconds: float

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.received)


# -- publishers -------------------------------------------------------------------------


def messages_for(index: int, count: int) -> list[tuple[str, bytes]]:
    """Pre-built (topic, payload) pairs so publishing costs only the client."""
    devices = [str(uuid.UUID(int=(index + 1) << 64 | d)) for d in range(DEVICES)]
    out = []
    for i in range(count):
        body = {
            "value": round(20.0 + (i % 150) / 10, 1),
            "unit": "celsius",
            "quality": "good",
            "timestamp": 1_694_678_400 + i,
        }
        out.append(
            (f"iot/devices/data/{devices[i % DEVICES]}/temperature", json.dumps(body).encode())
        )
    return out


def paho_publish(
    port: int,
    batch: list[tuple[str, bytes]],
    qos: int,
    client_id: str,
    start: MpEvent | None = None,
) -> float:
    """Publish ``batch`` with paho without a network thread (writes go straight out),
    from when ``start`` is set until the broker has acknowledged everything (QoS 1);
    the seconds that took."""
    done = 0

    def on_publish(*_: Any) -> None:
        nonlocal done
        done += 1

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    client.max_inflight_messages_set(0)  # unlimited: the broker acks as fast as it can
    client.on_publish = on_publish
    client.connect("127.0.0.1", port, keepalive=60)
    while not client.is_connected():
        client.loop(0.1)
    if start is not None:
        start.wait()
    t0 = time.perf_counter()
    for n, (topic, payload) in enumerate(batch, 1):
        client.publish(topic, payload, qos=qos)
        if n % 200 == 0:
            client.loop(0)
    while done < len(batch):
        client.loop(0.05)
    elapsed = time.perf_counter() - t0
    client.disconnect()
    client.loop(0.1)
    return elapsed


def publisher(port: int, index: int, count: int, qos: int, start: MpEvent, out: Any) -> None:
    """Publish ``count`` messages from one process."""
    client_id = f"bench-pub-{index}-{uuid.uuid4().hex[:6]}"
    out.put(paho_publish(port, messages_for(index, count), qos, client_id, start))


# -- subscribers ------------------------------------------------------------------------


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
    import aiomqtt

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


async def sub_fieldwatch(
    port: int, qos: int, expected: int, ready: MpEvent, gate: MpEvent | None
) -> Counter:
    from fieldwatch.transports.mqtt.link import IncomingMessage, MqttLink, MqttLinkOptions

    counter = Counter(gate)

    async def handler(batch: list[IncomingMessage]) -> None:
        for message in batch:
            counter.seen(message)
        link.ack(batch)

    options = MqttLinkOptions("127.0.0.1", port, client_id=f"bench-sub-{uuid.uuid4().hex[:8]}")
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
    "fieldwatch": sub_fieldwatch,
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
            import uvloop as uv

            counter = uv.run(coro(port, qos, expected, ready, gate))
        else:
            counter = asyncio.run(coro(port, qos, expected, ready, gate))
    out.put((counter.count, counter.last - counter.first))


# -- driver -----------------------------------------------------------------------------


def measure(
    ctx: Any,
    port: int,
    candidate: str,
    qos: int,
    mode: str,
    total: int,
    publishers: int,
    uvloop: bool,
) -> Run:
    """One run. live: the subscriber reads while the publishers publish. drain: it holds
    its first message until every publisher is done, then reads what the broker kept."""
    per = [total // publishers + (1 if i < total % publishers else 0) for i in range(publishers)]
    ready, start = ctx.Event(), ctx.Event()
    gate = ctx.Event() if mode == "drain" else None
    sub_out, pub_out = ctx.Queue(), ctx.Queue()
    sub = ctx.Process(
        target=subscriber, args=(candidate, port, qos, total, uvloop, ready, gate, sub_out)
    )
    sub.start()
    if not ready.wait(30):
        sub.kill()
        raise RuntimeError(f"{candidate}: the subscriber did not subscribe")
    pubs = [
        ctx.Process(target=publisher, args=(port, i, n, qos, start, pub_out))
        for i, n in enumerate(per)
    ]
    for p in pubs:
        p.start()
    start.set()
    published = max(pub_out.get(timeout=600) for _ in pubs)
    for p in pubs:
        p.join(timeout=30)
    if gate is not None:
        time.sleep(0.5)  # let the broker settle its queue
        gate.set()
    received, seconds = sub_out.get(timeout=900)
    sub.join(timeout=30)
    rate = received / seconds if seconds > 0 else 0.0
    return Run(candidate, qos, mode, total, received, seconds, rate, published)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--messages", type=int, default=200_000, help="total per run")
    parser.add_argument("--publishers", type=int, default=2, help="publisher processes")
    parser.add_argument("--repeat", type=int, default=3, help="runs per row; the median shows")
    parser.add_argument("--qos", type=int, nargs="+", default=[0, 1], choices=[0, 1])
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=CANDIDATES)
    parser.add_argument("--modes", nargs="+", default=["live", "drain"], choices=["live", "drain"])
    parser.add_argument(
        "--broker-inflight", type=int, help="Mosquitto max_inflight_messages (default 20)"
    )
    parser.add_argument("--name", default="mqtt_clients", help="results file name")
    parser.add_argument("--uvloop", action="store_true", help="run asyncio candidates on uvloop")
    args = parser.parse_args()

    ctx = mp.get_context("spawn")
    loop_name = "uvloop" if args.uvloop else "asyncio"
    print(
        f"MQTT subscriber ceilings: {args.messages:,} messages a run from {args.publishers} "
        f"publisher processes, {args.repeat} runs a row (median shown), event loop {loop_name}, "
        f"broker in-flight window {args.broker_inflight or 20}"
    )
    header = (
        f"{'candidate':<15} {'mode':<5} {'qos':>3} {'received':>10} {'lost':>7} {'seconds':>8} "
        f"{'msg/s':>9}   {'runs msg/s':<28} {'publish s':>9}"
    )
    print(header)
    lines = [header]
    rows: list[dict[str, Any]] = []
    with BenchBroker(args.broker_inflight) as broker:
        for mode, qos, candidate in itertools.product(args.modes, args.qos, args.candidates):
            setup = (ctx, broker.port, candidate, qos, mode)
            runs = [
                measure(*setup, args.messages, args.publishers, args.uvloop)
                for _ in range(args.repeat)
            ]
            mid = sorted(runs, key=lambda r: r.rate)[len(runs) // 2]
            each = ", ".join(f"{r.rate:,.0f}" for r in runs)
            line = (
                f"{candidate:<15} {mode:<5} {qos:>3} {mid.received:>10,} {mid.lost:>7,} "
                f"{mid.seconds:>8.2f} {mid.rate:>9,.0f}   {each:<28} "
                f"{mid.published_seconds:>9.2f}"
            )
            print(line, flush=True)
            lines.append(line)
            rows.append(
                {
                    **asdict(mid),
                    "lost": mid.lost,
                    "rates": [r.rate for r in runs],
                    "lost_per_run": [r.lost for r in runs],
                }
            )
    write_results(args.name, lines)
    out = ROOT / "bench" / "results" / f"{args.name}.json"
    meta = {
        "messages": args.messages,
        "publishers": args.publishers,
        "repeat": args.repeat,
        "event_loop": loop_name,
        "broker_max_inflight_messages": args.broker_inflight or 20,
        "payload_example": messages_for(0, 1)[0][1].decode(),
        "payload_bytes": len(messages_for(0, 1)[0][1]),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out.write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
