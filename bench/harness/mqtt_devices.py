"""Many MQTT devices at little CPU cost: a load generator for the MQTT benchmarks.

Each simulated device has its own TCP connection (MQTT 3.1.1, client id = device id)
and publishes its readings at QoS 1. The PUBLISH packets are encoded before the clock
starts and written in chunks, and the broker's PUBACKs are only counted: a device costs
the load generator almost nothing, so on a small machine the CPU goes to the broker and
the system under test, as when the devices are real boards elsewhere. (A Python MQTT
client spends more CPU per message than the subscriber under test does.)

This is a measuring tool, not a client: no retries, no keepalive pings (the run is far
shorter than the keepalive), and it only understands CONNACK and PUBACK.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import time
from collections.abc import Sequence

PUBACK_SIZE = 4  # 0x40, remaining length 2, packet id (2 bytes)


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(value: bytes) -> bytes:
    return struct.pack("!H", len(value)) + value


def connect_packet(client_id: str, keepalive: int = 600, password: str | None = None) -> bytes:
    """CONNECT with a clean session; with ``password``, the client id as user name (a
    device's credentials on Fieldwatch's embedded broker)."""
    flags = 0x02 | (0xC0 if password is not None else 0)
    variable = _string(b"MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive)
    body = variable + _string(client_id.encode())
    if password is not None:
        body += _string(client_id.encode()) + _string(password.encode())
    return b"\x10" + _remaining_length(len(body)) + body


def subscribe_packet(filters: Sequence[str], packet_id: int = 1) -> bytes:
    """SUBSCRIBE to ``filters`` at QoS 1."""
    body = struct.pack("!H", packet_id) + b"".join(_string(f.encode()) + b"\x01" for f in filters)
    return b"\x82" + _remaining_length(len(body)) + body


def publish_packet(topic: str, payload: bytes, packet_id: int) -> bytes:
    body = _string(topic.encode()) + struct.pack("!H", packet_id) + payload
    return b"\x32" + _remaining_length(len(body)) + body


class Device:
    def __init__(
        self,
        client_id: str,
        messages: Sequence[tuple[str, bytes]],
        password: str | None = None,
        subscribe: Sequence[str] = (),
    ) -> None:
        self.client_id = client_id
        self.password = password
        self.subscribe = list(subscribe)  # filters it subscribes to before publishing
        self.count = len(messages)
        # packet ids 1…65535, reused after 65,535 messages (acked long before)
        packets = [publish_packet(t, p, i % 65535 + 1) for i, (t, p) in enumerate(messages)]
        self.data = b"".join(packets)
        self.ends: list[int] = []  # where each packet ends in self.data
        end = 0
        for packet in packets:
            end += len(packet)
            self.ends.append(end)
        self.allowed = len(self.data)  # bytes it may have written so far (pacing)
        self.sent = 0  # bytes of self.data written
        self.acked_bytes = 0
        self.sock: socket.socket | None = None

    @property
    def acked(self) -> int:
        return self.acked_bytes // PUBACK_SIZE

    def open(self, host: str, port: int, timeout: float = 10.0) -> None:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(connect_packet(self.client_id, password=self.password))
        connack = _read(sock, 4, self.client_id)
        if connack[0] != 0x20 or connack[3] != 0:
            raise ConnectionError(f"{self.client_id}: CONNACK refused ({connack.hex()})")
        if self.subscribe:
            sock.sendall(subscribe_packet(self.subscribe))
            suback = _read(sock, 4 + len(self.subscribe), self.client_id)
            if suback[0] != 0x90 or any(code > 2 for code in suback[4:]):
                raise ConnectionError(f"{self.client_id}: SUBACK refused ({suback.hex()})")
        sock.setblocking(False)
        self.sock = sock


def _read(sock: socket.socket, size: int, client_id: str) -> bytes:
    """Exactly ``size`` bytes (a CONNACK, a SUBACK) from a blocking socket."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"{client_id}: the broker closed the connection")
        data += chunk
    return data


def run(
    devices: Sequence[Device],
    chunk: int = 16_384,
    timeout: float = 600.0,
    rate: float = 0.0,
    window: int = 0,
) -> float:
    """Write every device's packets, interleaved across devices, until every PUBACK is
    in. ``rate`` > 0: these devices together publish that many messages a second
    (evenly spread over them), else as fast as the broker takes them. ``window`` > 0: a
    device has at most that many messages unacknowledged (as a client's in-flight
    window), else it writes without waiting. Returns the seconds until the last PUBACK
    came."""

    def cap(d: Device) -> int:  # bytes the device may have written now
        if not window:
            return d.allowed
        return min(d.allowed, d.ends[min(d.acked + window, d.count) - 1])

    socks = {d.sock.fileno(): d for d in devices if d.sock is not None}
    per_device = rate / len(socks) if rate > 0 and socks else 0.0
    poller = select.poll()
    for fd, d in socks.items():
        if per_device:
            d.allowed = 0
        poller.register(fd, select.POLLIN | (select.POLLOUT if d.sent < d.allowed else 0))
    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout
    waiting = sum(1 for d in socks.values() if d.acked < d.count)
    unwritten = sum(1 for d in socks.values() if d.sent < len(d.data))
    while waiting:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{waiting} devices still wait for PUBACKs")
        if per_device and unwritten:  # pacing: what each device may have sent by now
            due = int((time.perf_counter() - t0) * per_device) + 1
            for fd, d in socks.items():
                allowed = d.ends[min(due, d.count) - 1]
                if allowed > d.allowed:
                    if d.sent >= d.allowed:
                        poller.modify(fd, select.POLLIN | select.POLLOUT)
                    d.allowed = allowed
        for fd, mask in poller.poll(5 if per_device and unwritten else 1000):
            d = socks[fd]
            assert d.sock is not None
            limit = cap(d)
            if mask & select.POLLOUT and d.sent < limit:
                with contextlib.suppress(BlockingIOError):
                    d.sent += d.sock.send(d.data[d.sent : min(d.sent + chunk, limit)])
                if d.sent >= limit:
                    poller.modify(fd, select.POLLIN)
                if d.sent >= len(d.data):
                    unwritten -= 1
            if mask & (select.POLLIN | select.POLLHUP | select.POLLERR):
                try:
                    got = d.sock.recv(65_536)
                except BlockingIOError:
                    continue
                if not got:
                    raise ConnectionError(f"{d.client_id}: the broker closed the connection")
                before = d.acked
                d.acked_bytes += len(got)
                if before < d.count <= d.acked:
                    waiting -= 1
                if window and d.sent < cap(d) and d.sent >= limit:  # the window moved on
                    poller.modify(fd, select.POLLIN | select.POLLOUT)
    return time.perf_counter() - t0


def close(devices: Sequence[Device]) -> None:
    for d in devices:
        if d.sock is not None:
            try:
                d.sock.setblocking(True)
                d.sock.sendall(b"\xe0\x00")  # DISCONNECT
            except OSError:
                pass
            d.sock.close()
            d.sock = None
