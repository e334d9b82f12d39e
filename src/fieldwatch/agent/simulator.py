"""A fleet simulator: virtual devices with plausible sensors, over WebSocket or HTTP.

Each device reports temperature (a slow random walk with an occasional spike), humidity
and a draining battery every ``interval`` seconds, through ``DeviceAgent``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from fieldwatch.agent.client import AgentError, DeviceAgent, Transport


@dataclass
class SensorModel:
    temperature: float = 21.0
    humidity: float = 45.0
    battery: float = 100.0
    rng: random.Random = field(default_factory=random.Random)

    def step(self) -> dict[str, float]:
        self.temperature += self.rng.uniform(-0.3, 0.3) + (21.0 - self.temperature) * 0.05
        self.humidity = min(100.0, max(0.0, self.humidity + self.rng.uniform(-1, 1)))
        self.battery = max(0.0, self.battery - self.rng.uniform(0.005, 0.02))
        reading = {
            "temperature": round(self.temperature, 2),
            "humidity": round(self.humidity, 1),
            "battery_level": round(self.battery, 2),
        }
        if self.rng.random() < 0.01:  # an occasional spike, for alert rules to catch
            reading["temperature"] = round(self.temperature + self.rng.uniform(10, 20), 2)
        return reading


@dataclass
class Stats:
    sent: int = 0
    accepted: int = 0
    errors: int = 0
    started: float = field(default_factory=time.monotonic)


async def run_device(
    server: str,
    token: str,
    transport: Transport,
    interval: float,
    stats: Stats,
    stop: asyncio.Event,
    seed: int,
) -> None:
    model = SensorModel(rng=random.Random(seed))
    await asyncio.sleep(random.Random(seed).uniform(0, interval))  # spread the fleet out
    async with DeviceAgent(server, token, transport=transport) as agent:
        while not stop.is_set():
            try:
                ack = await agent.send(model.step())
                stats.sent += 3
                stats.accepted += int(ack.get("accepted", 0))
            except (AgentError, TimeoutError):
                stats.errors += 1
            with_timeout = asyncio.create_task(stop.wait())
            await asyncio.wait({with_timeout}, timeout=interval)
            with_timeout.cancel()


async def simulate(
    server: str,
    tokens: Sequence[str],
    *,
    transport: Transport = "ws",
    interval: float = 5.0,
    duration: float | None = None,
    report: Callable[[Stats], None] | None = None,
    report_every: float = 10.0,
) -> Stats:
    """Run one virtual device per token until ``duration`` seconds have passed (forever
    without one); ``report`` gets the running totals every ``report_every`` seconds."""
    stats = Stats()
    stop = asyncio.Event()
    devices = [
        asyncio.create_task(run_device(server, t, transport, interval, stats, stop, seed=i))
        for i, t in enumerate(tokens)
    ]
    deadline = None if duration is None else time.monotonic() + duration
    try:
        while deadline is None or time.monotonic() < deadline:
            done = [d for d in devices if d.done()]
            for d in done:
                d.result()  # a device that could not connect: raise its error
            wait = (
                report_every if deadline is None else min(report_every, deadline - time.monotonic())
            )
            await asyncio.sleep(max(0.0, wait))
            if report is not None:
                report(stats)
    finally:
        stop.set()
        await asyncio.gather(*devices, return_exceptions=True)
    return stats
