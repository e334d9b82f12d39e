"""The MQTT part's load: each device's readings, published by processes either as the
devices' own connections with pre-encoded packets (``raw``) or through paho clients
(``paho``)."""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from harness import mqtt_devices
from harness.broker import paho_publish
from mqtt_clients.subscribers import FILTER

SENSOR = "temperature"  # the bare subscriber's filter: iot/devices/data/+/temperature
assert f"iot/devices/data/+/{SENSOR}" == FILTER


def mqtt_messages(
    ids: list[str], first: int, count: int, base_ts: int, every: int
) -> list[tuple[str, bytes]]:
    """Readings ``first``… of the whole run: reading i goes to device i % len(ids) with
    timestamp base_ts + i // len(ids) (distinct per device, so none is a duplicate)."""
    out = []
    n = len(ids)
    for i in range(first, first + count, every):
        body = {
            "value": round(20.0 + (i % 150) / 10, 1),
            "unit": "celsius",
            "quality": "good",
            "timestamp": base_ts + i // n,
        }
        out.append((f"iot/devices/data/{ids[i % n]}/{SENSOR}", orjson.dumps(body)))
    return out


def batched(messages: list[tuple[str, bytes]], batch: int) -> list[tuple[str, bytes]]:
    """One device's messages, ``batch`` readings to a message (a JSON array on the sensor
    topic, as docs/device-protocol.md describes); 1 leaves them as they are."""
    if batch <= 1:
        return messages
    out = []
    for i in range(0, len(messages), batch):
        part = messages[i : i + batch]
        out.append((part[0][0], b"[" + b",".join(body for _, body in part) + b"]"))
    return out


def mqtt_publisher(
    port: int,
    ids: list[str],
    index: int,
    every: int,
    total: int,
    base_ts: int,
    start: Any,
    out: Any,
) -> None:
    """Publish reading index, index + every, … of ``total`` at QoS 1 (paho without a
    network thread, as bench_mqtt_clients' publishers)."""
    batch = mqtt_messages(ids, index, total - index, base_ts, every)
    client_id = f"bench-dev-pub-{index}-{uuid.uuid4().hex[:6]}"
    out.put((len(batch), paho_publish(port, batch, 1, client_id, start)))


def device_filters(device_id: str) -> list[str]:
    """What the agent subscribes to: its commands, configuration and firmware updates."""
    kinds = ("commands", "config", "firmware/update")
    return [f"iot/devices/{device_id}/{what}/+" for what in kinds]


def raw_publisher(
    port: int,
    ids: list[str],
    index: int,
    every: int,
    total: int,
    base_ts: int,
    start: Any,
    out: Any,
    rate: float = 0.0,
    batch: int = 1,
    tokens: list[str] | None = None,
    window: int = 0,
    subscribe: bool = False,
) -> None:
    """Devices index, index + every, … each on its own connection (client id = device
    id), publishing their share of the ``total`` readings at QoS 1 with pre-encoded
    packets (bench/harness/mqtt_devices.py): the load costs little CPU, like real devices.
    ``rate`` counts messages (each of ``batch`` readings); ``subscribe``: each device
    first subscribes to its command, configuration and firmware topics, as the agent
    does."""
    n = len(ids)  # reading i goes to device i % n: device j has j, j + n, j + 2n, …
    devices = [
        mqtt_devices.Device(
            ids[j],
            batched(mqtt_messages(ids, j, total - j, base_ts, n), batch),
            tokens[j] if tokens else None,
            device_filters(ids[j]) if subscribe else (),
        )
        for j in range(index, n, every)
    ]
    for d in devices:
        d.open("127.0.0.1", port)
    out.put(None)  # connected (and subscribed): ready
    start.wait()
    cpu0 = time.process_time()
    seconds = mqtt_devices.run(devices, rate=rate, window=window)
    cpu = time.process_time() - cpu0  # the run's, not the building of the packets
    count = sum(d.count for d in devices)
    mqtt_devices.close(devices)
    out.put((count, seconds, cpu))


def publish(
    port: int,
    ids: list[str],
    total: int,
    publishers: int,
    base_ts: int,
    started: Callable[[], None] | None = None,
    load: str = "raw",
    rate: float = 0.0,
    batch: int = 1,
    tokens: list[str] | None = None,
    window: int = 0,
    subscribe: bool = False,
    cpu: list[float] | None = None,
) -> float:
    """Publish ``total`` readings; ``batch`` readings to a message (raw load only);
    ``tokens``: the devices' credentials (user name: the device id), in ``ids``' order;
    ``window``: each device's in-flight window (0: none, it writes everything at once);
    ``subscribe``: each device holds the agent's subscriptions (raw load only); ``cpu``:
    gets the CPU-seconds the devices (raw load) spent publishing. Returns the seconds
    until the last PUBACK."""
    if batch > 1 and load != "raw":
        raise SystemExit("batched messages need the raw load (--mqtt-load raw)")
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(
            target=raw_publisher,
            args=(
                port,
                ids,
                i,
                publishers,
                total,
                base_ts,
                start,
                out,
                rate / publishers,
                batch,
                tokens,
                window,
                subscribe,
            ),
        )
        if load == "raw"
        else ctx.Process(
            target=mqtt_publisher, args=(port, ids, i, publishers, total, base_ts, start, out)
        )
        for i in range(publishers)
    ]
    for p in procs:
        p.start()
    if load == "raw":  # every device connected, its messages built
        _wait_ready(procs, out)
    else:
        time.sleep(1.0)
    if started:
        started()
    start.set()
    results = [out.get(timeout=900) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    if cpu is not None:
        cpu.extend(r[2] for r in results if len(r) > 2)
    return max(r[1] for r in results)


def _wait_ready(procs: list[Any], out: Any, timeout: float = 300.0) -> None:
    """Until every publisher said it is ready; a publisher that died first ends the run."""
    ready, deadline = 0, time.monotonic() + timeout
    while ready < len(procs):
        try:
            out.get(timeout=1.0)
            ready += 1
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead:
                msg = f"a publisher failed before it was ready (exit {dead[0]})"
                raise SystemExit(msg) from None
            if time.monotonic() > deadline:
                raise SystemExit("the publishers were not ready in time") from None


def publish_list(port: int, messages: list[tuple[str, bytes]]) -> None:
    paho_publish(port, messages, 1, f"bench-warm-{uuid.uuid4().hex}")
