"""The devices of ``bench/chaos.py``: each sends readings with unique (device, metric,
timestamp), remembers which ones the server acknowledged, and sends again whatever was
not acknowledged (after an error, a dropped connection, a restart) until it is.

- HTTP: ``POST /api/v1/devices/{id}/data`` with batches of readings; a 2xx answer
  acknowledges the batch; anything else (5xx, a refused or dropped connection) sends
  the same batch again. Answers are counted by status.
- WebSocket: ``/ws/device/<token>``, ``telemetry`` frames with an ``id``, a few
  unacknowledged at a time; an ``ack`` acknowledges a frame; after a reconnect every
  unacknowledged frame is sent again, in order.
- MQTT: paho clients with a persistent session publishing seed 003 readings at QoS 1;
  a PUBACK acknowledges a reading; paho sends unacknowledged ones again after a
  reconnect.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import WebSocketException

METRIC = "temperature"
FIRST_MS = int(time.time() * 1000) - 7_200_000  # two hours ago: inside retention, not future


@dataclass
class Ledger:
    """What one phase's devices sent and what the server acknowledged."""

    sent: int = 0
    acked: dict[str, set[int]] = field(default_factory=lambda: collections.defaultdict(set))
    answers: collections.Counter[str] = field(default_factory=collections.Counter)
    duplicates: int = 0  # readings the server said it already had (resends)
    refused: int = 0  # readings answered with a 4xx (not sent again)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ack(self, device_id: str, stamps: list[int]) -> None:
        with self.lock:
            self.acked[device_id].update(stamps)

    def answer(self, what: str) -> None:
        with self.lock:
            self.answers[what] += 1

    @property
    def acknowledged(self) -> int:
        return sum(len(s) for s in self.acked.values())


class Stamps:
    """A device's next timestamps (ms): 1 ms apart, never repeated (the key is the
    device's, so devices may share timestamps); 7.2 million at most."""

    def __init__(self, index: int) -> None:
        self.next = FIRST_MS

    def take(self, n: int) -> list[int]:
        out = list(range(self.next, self.next + n))
        self.next += n
        return out


def values_body(stamps: list[int]) -> dict[str, Any]:
    return {
        "data_type": METRIC,
        "values": [{"timestamp": ts / 1000, "value": 20 + (ts % 100) / 10} for ts in stamps],
    }


# -- HTTP --------------------------------------------------------------------------------


async def http_device(
    base: str, device_id: str, token: str, index: int, batch: int, ledger: Ledger,
    stop: asyncio.Event, give_up: float,
) -> None:  # fmt: skip
    """Post batches until ``stop``; then finish the batch in hand. Gives up on a batch
    only at ``give_up`` (monotonic), which the report shows as unacknowledged."""
    stamps = Stamps(index)
    url = f"{base}/api/v1/devices/{device_id}/data"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        while not stop.is_set():
            taken = stamps.take(batch)
            body = orjson.dumps(values_body(taken))
            ledger.sent += len(taken)
            while time.monotonic() < give_up:
                delay = await _post(http, url, body, headers, device_id, taken, ledger)
                if delay is None:
                    break
                await asyncio.sleep(delay)


async def _post(
    http: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str],
    device_id: str, taken: list[int], ledger: Ledger,
) -> float | None:  # fmt: skip
    """One attempt: None when acknowledged, else the seconds to wait before the next."""
    try:
        async with http.post(url, data=body, headers=headers) as r:
            ledger.answer(str(r.status))
            if 200 <= r.status < 300:
                result = await r.json()
                ledger.ack(device_id, taken)
                ledger.duplicates += int(result.get("duplicates", 0))
                return None
            await r.read()
            if 400 <= r.status < 500 and r.status != 429:
                ledger.refused += len(taken)  # sending it again would not help
                return None
            retry = r.headers.get("Retry-After", "")
            return float(retry) if retry.isdigit() else 0.2
    except (aiohttp.ClientError, TimeoutError, OSError):
        ledger.answer("connection error")
        return 0.2


# -- WebSocket -----------------------------------------------------------------------------


class WsDevice:
    """One WebSocket device: at most ``window`` frames unanswered on the connection,
    at most ``rate`` frames a second (the server allows 50)."""

    def __init__(
        self, ws_base: str, device_id: str, token: str, index: int, batch: int,
        ledger: Ledger, window: int = 4, rate: float = 40.0,
    ) -> None:  # fmt: skip
        self.url = f"{ws_base}/ws/device/{token}"
        self.device_id = device_id
        self.stamps = Stamps(index)
        self.batch = batch
        self.ledger = ledger
        self.window = window
        self.interval = 1 / rate
        self.frames: collections.OrderedDict[int, list[int]] = collections.OrderedDict()
        self.on_wire: set[int] = set()
        self.next_id = 1
        self.not_before = 0.0
        self.give_up = float("inf")

    async def run(self, stop: asyncio.Event, give_up: float) -> None:
        self.give_up = give_up
        while (not stop.is_set() or self.frames) and time.monotonic() < give_up:
            try:
                async with ws_connect(self.url, open_timeout=5, close_timeout=1) as ws:
                    await asyncio.wait_for(ws.recv(), 5)  # welcome
                    self.on_wire.clear()
                    sender = asyncio.create_task(self._send(ws, stop))
                    try:
                        await self._receive(ws, stop)
                    finally:
                        sender.cancel()
                        await asyncio.gather(sender, return_exceptions=True)
            except (OSError, TimeoutError, WebSocketException):
                self.ledger.answer("connection error")
            await asyncio.sleep(0.2)

    def _next_frame(self, stop: asyncio.Event) -> tuple[int, list[int]] | None:
        for frame_id, stamps in self.frames.items():
            if frame_id not in self.on_wire:
                return frame_id, stamps
        if stop.is_set():
            return None
        frame_id, stamps = self.next_id, self.stamps.take(self.batch)
        self.next_id += 1
        self.frames[frame_id] = stamps
        self.ledger.sent += len(stamps)
        return frame_id, stamps

    async def _send(self, ws: Any, stop: asyncio.Event) -> None:
        while True:
            now = time.monotonic()
            if len(self.on_wire) >= self.window or now < self.not_before:
                await asyncio.sleep(max(self.interval, self.not_before - now))
                continue
            picked = self._next_frame(stop)
            if picked is None:
                await asyncio.sleep(0.05)
                continue
            frame_id, stamps = picked
            self.on_wire.add(frame_id)
            frame = {"type": "telemetry", "id": frame_id, **values_body(stamps)}
            await ws.send(orjson.dumps(frame).decode())
            self.not_before = time.monotonic() + self.interval

    async def _receive(self, ws: Any, stop: asyncio.Event) -> None:
        while not (stop.is_set() and not self.frames) and time.monotonic() < self.give_up:
            try:
                reply = orjson.loads(await asyncio.wait_for(ws.recv(), 1.0))
            except TimeoutError:
                continue  # (cancelling recv loses nothing)
            ref = reply.get("ref")
            if reply.get("type") == "ack" and ref in self.frames:
                self.ledger.answer("ack")
                self.ledger.ack(self.device_id, self.frames.pop(ref))
                self.ledger.duplicates += int(reply.get("duplicates", 0))
                self.on_wire.discard(ref)
            elif reply.get("type") == "error":
                self.ledger.answer(f"error {reply.get('code')}")
                self.on_wire.discard(ref)  # sent again
                self.not_before = time.monotonic() + float(reply.get("retry_after", 0.5))


# -- MQTT ----------------------------------------------------------------------------------


class MqttDevice:
    """A paho device (own network thread) with a persistent session: MQTT 3.1.1
    ``clean_session=False``, or MQTT 5 with a session expiry. ``resolve()`` (from the
    publishing thread) turns PUBACKs into acknowledged timestamps."""

    MAX_OPEN = 20_000  # unresolved publishes; keeps message ids unique among them

    def __init__(
        self, port: int, device_id: str, token: str, index: int, ledger: Ledger, v5: bool
    ) -> None:
        self.device_id = device_id
        self.ledger = ledger
        self.stamps = Stamps(index)
        kind: dict[str, Any] = {"protocol": paho.MQTTv5} if v5 else {"clean_session": False}
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=device_id, **kind)
        client.username_pw_set(device_id, token)
        client.reconnect_delay_set(0.2, 2)  # type: ignore[arg-type]  # seconds
        client.max_queued_messages_set(0)
        client.on_publish = lambda _c, _u, mid, _rc, _p: self.pubacks.append(mid)
        client.on_connect = lambda _c, _u, _f, rc, _p: self._connected(rc)
        self.client = client
        self.pubacks: collections.deque[int] = collections.deque()
        self.open: dict[int, int] = {}  # message id -> timestamp
        self.connects = 0
        options: dict[str, Any] = {}
        if v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
            options = {"clean_start": False, "properties": props}
        client.connect_async("127.0.0.1", port, keepalive=15, **options)
        client.loop_start()

    def _connected(self, rc: Any) -> None:
        if not rc.is_failure:
            self.connects += 1

    def publish(self) -> bool:
        if len(self.open) >= self.MAX_OPEN:
            return False
        (ts,) = self.stamps.take(1)
        body = orjson.dumps({"value": 20 + (ts % 100) / 10, "timestamp": ts / 1000})
        info = self.client.publish(f"iot/devices/data/{self.device_id}/{METRIC}", body, qos=1)
        self.open[info.mid] = ts  # kept by paho (and sent later) even when disconnected
        self.ledger.sent += 1
        return True

    def resolve(self) -> None:
        done = []
        while self.pubacks:
            ts = self.open.pop(self.pubacks.popleft(), None)
            if ts is not None:
                done.append(ts)
        if done:
            self.ledger.ack(self.device_id, done)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_mqtt(
    devices: list[MqttDevice], rate: float, stop: threading.Event, drain_until: Callable[[], float]
) -> None:
    """Publish ``rate`` readings a second over all devices until ``stop``, then wait
    (until ``drain_until()``) for every PUBACK."""
    t0, n, turn = time.monotonic(), 0, 0
    while not stop.is_set():
        for _ in range(50):
            turn += 1
            n += devices[turn % len(devices)].publish()  # False while too many are open
        for d in devices:
            d.resolve()
        time.sleep(max(0.001, t0 + n / rate - time.monotonic()))
    while time.monotonic() < drain_until():
        for d in devices:
            d.resolve()
        if not any(d.open for d in devices):
            break
        time.sleep(0.1)
