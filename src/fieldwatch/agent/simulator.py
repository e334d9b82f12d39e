"""A fleet simulator: virtual devices with plausible sensors, over WebSocket or HTTP.

Each device reports temperature (a slow random walk with an occasional spike), humidity
and a draining battery every ``interval`` seconds, through ``DeviceAgent``, and answers
the commands ``ping``, ``reboot`` (it goes away for a few seconds and comes back) and
``set_reporting_interval`` (``{"interval": seconds}``); a pushed configuration's
``data_reporting_interval`` changes its period too.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

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
    commands: int = 0
    started: float = field(default_factory=time.monotonic)


MIN_INTERVAL_S = 0.1
MAX_INTERVAL_S = 24 * 3600.0
REBOOT_S = 3.0


class VirtualDevice:
    """One simulated device: its sensors, its reporting period, its command handlers."""

    def __init__(self, agent: DeviceAgent, interval: float, stats: Stats, seed: int) -> None:
        self.agent = agent
        self.interval = interval
        self.stats = stats
        self.model = SensorModel(rng=random.Random(seed))
        self.booted = time.monotonic()
        self.reboot_requested = asyncio.Event()
        self.wake = asyncio.Event()
        agent.add_command_handler("ping", self.ping)
        agent.add_command_handler("reboot", self.reboot)
        agent.add_command_handler("set_reporting_interval", self.set_reporting_interval)
        agent.on_config(self.configure)

    def ping(self, params: dict[str, Any]) -> dict[str, Any]:
        self.stats.commands += 1
        return {"pong": True, "uptime_s": round(time.monotonic() - self.booted, 1)}

    def reboot(self, params: dict[str, Any]) -> dict[str, Any]:
        self.stats.commands += 1
        self.reboot_requested.set()
        self.wake.set()
        return {"rebooting": True, "back_in_s": REBOOT_S}

    def _set_interval(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("interval is a number of seconds")
        if not MIN_INTERVAL_S <= value <= MAX_INTERVAL_S:
            raise ValueError(f"interval must be {MIN_INTERVAL_S}..{MAX_INTERVAL_S:.0f} s")
        self.interval = float(value)
        self.wake.set()
        return self.interval

    def set_reporting_interval(self, params: dict[str, Any]) -> dict[str, Any]:
        self.stats.commands += 1
        return {"interval": self._set_interval(params.get("interval"))}

    def configure(self, config: dict[str, Any], version: int) -> None:
        if "data_reporting_interval" in config:
            self._set_interval(config["data_reporting_interval"])


async def run_device(
    server: str,
    token: str,
    transport: Transport,
    interval: float,
    stats: Stats,
    stop: asyncio.Event,
    seed: int,
    mqtt_url: str | None = None,
) -> None:
    await asyncio.sleep(random.Random(seed).uniform(0, interval))  # spread the fleet out
    agent = DeviceAgent(server, token, transport=transport, mqtt_url=mqtt_url)
    device = VirtualDevice(agent, interval, stats, seed)
    while not stop.is_set():
        async with agent:
            device.booted = time.monotonic()
            while not stop.is_set() and not device.reboot_requested.is_set():
                try:
                    ack = await agent.send(device.model.step())
                    stats.sent += 3
                    stats.accepted += int(ack.get("accepted", 0))
                except (AgentError, TimeoutError):
                    stats.errors += 1
                device.wake.clear()
                waits = {asyncio.create_task(stop.wait()), asyncio.create_task(device.wake.wait())}
                await asyncio.wait(waits, timeout=device.interval,
                                   return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
                for task in waits:
                    task.cancel()
            if device.reboot_requested.is_set():
                await asyncio.sleep(0.2)  # let the command result go out first
        if device.reboot_requested.is_set() and not stop.is_set():
            device.reboot_requested.clear()
            await asyncio.sleep(REBOOT_S)


async def simulate(
    server: str,
    tokens: Sequence[str],
    *,
    transport: Transport = "ws",
    interval: float = 5.0,
    duration: float | None = None,
    report: Callable[[Stats], None] | None = None,
    report_every: float = 10.0,
    mqtt_url: str | None = None,
) -> Stats:
    """Run one virtual device per token until ``duration`` seconds have passed (forever
    without one); ``report`` gets the running totals every ``report_every`` seconds."""
    stats = Stats()
    stop = asyncio.Event()
    devices = [
        asyncio.create_task(
            run_device(server, t, transport, interval, stats, stop, seed=i, mqtt_url=mqtt_url)
        )
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
