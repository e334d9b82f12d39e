"""One measured run: a subscriber process, then the publishers; the rate the subscriber saw."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from mqtt_clients.publishers import publisher
from mqtt_clients.subscribers import subscriber


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
