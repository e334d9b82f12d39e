"""A fleet simulator: virtual devices with plausible sensors, over WebSocket, MQTT or HTTP.

Each device reports temperature (a slow random walk with an occasional spike), humidity
and a draining battery every ``interval`` seconds, through ``DeviceAgent``, and answers
the commands ``ping``, ``reboot`` (it goes away for a few seconds and comes back) and
``set_reporting_interval`` (``{"interval": seconds}``); a pushed configuration's
``data_reporting_interval`` changes its period too. With ``firmware`` it takes firmware
updates (``sim_firmware``).

What the totals mean depends on the transport: over WebSocket and HTTP the server
acknowledges readings after its commit (``Stats.accepted`` are stored readings); over
MQTT only the broker acknowledges them (``accepted`` are published readings), so each
reading is stamped and handed to ``on_published`` for confirmation through the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from fieldwatch.agent.client import AgentError, DeviceAgent, Transport
from fieldwatch.agent.sim_firmware import FirmwareSim, SimulatedUpdates, UpdateTally

#: Told of readings about to be published over MQTT: (device id, metrics, timestamp).
OnPublished = Callable[[str, Iterable[str], datetime], None]
#: What a device's failed attempt to connect or send may raise.
FAILURES = (AgentError, TimeoutError, OSError, httpx.TransportError)


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
    """Running totals of a simulation. ``accepted``: readings the receiving end
    acknowledged (the server after its commit over WebSocket and HTTP; the broker over
    MQTT); ``rejected``: readings the server refused (each with its reason)."""

    transport: Transport = "ws"
    devices: int = 0
    online: int = 0
    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: int = 0
    commands: int = 0
    updates: UpdateTally | None = None  # firmware updates, when the devices take them
    last_error: str | None = None
    started: float = field(default_factory=time.monotonic)

    def failed(self, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = str(exc) or type(exc).__name__


def stamp() -> datetime:
    """Now, to the millisecond (what every database keeps)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


MIN_INTERVAL_S = 0.1
MAX_INTERVAL_S = 24 * 3600.0
REBOOT_S = 3.0
MAX_BACKOFF_S = 30.0


class VirtualDevice:
    """One simulated device: its sensors, its reporting period, its command handlers."""

    def __init__(
        self,
        agent: DeviceAgent,
        interval: float,
        stats: Stats,
        seed: int,
        on_published: OnPublished | None = None,
        firmware: FirmwareSim | None = None,
    ) -> None:
        self.agent = agent
        self.interval = interval
        self.stats = stats
        self.seed = seed
        self.on_published = on_published
        self.model = SensorModel(rng=random.Random(seed))
        self.booted = time.monotonic()
        self.failures = 0  # attempts to connect that failed
        self.ever_online = False
        self.reboot_requested = asyncio.Event()
        self.down_s = REBOOT_S  # how long the next restart keeps it away
        self.wake = asyncio.Event()
        if firmware is not None and stats.updates is not None:
            SimulatedUpdates(agent, f"device-{seed}", firmware, stats.updates, self.restart,
                             random.Random(seed))  # fmt: skip
        agent.add_command_handler("ping", self.ping)
        agent.add_command_handler("reboot", self.reboot)
        agent.add_command_handler("set_reporting_interval", self.set_reporting_interval)
        agent.on_config(self.configure)

    def ping(self, params: dict[str, Any]) -> dict[str, Any]:
        self.stats.commands += 1
        return {"pong": True, "uptime_s": round(time.monotonic() - self.booted, 1)}

    def reboot(self, params: dict[str, Any]) -> dict[str, Any]:
        self.stats.commands += 1
        self.restart(REBOOT_S)
        return {"rebooting": True, "back_in_s": REBOOT_S}

    def restart(self, down_s: float) -> None:
        """Go away for ``down_s`` seconds (a reboot, a power cut), then connect again."""
        self.down_s = down_s
        self.reboot_requested.set()
        self.wake.set()

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

    # --- running ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, report until ``stop`` (or a reboot), and again; a failed connection
        counts as an error and is retried with a growing pause."""
        await _pause(stop, random.Random(self.seed).uniform(0, self.interval))  # spread out
        backoff = 1.0
        while not stop.is_set():
            try:
                await self.agent.start()
            except FAILURES as exc:
                self.failures += 1
                self.stats.failed(exc)
                await _pause(stop, backoff)
                backoff = min(MAX_BACKOFF_S, backoff * 2)
                continue
            backoff, self.ever_online, self.booted = 1.0, True, time.monotonic()
            try:
                await self._report(stop)
                if self.reboot_requested.is_set():
                    await asyncio.sleep(0.2)  # let the command result go out first
            finally:
                await self.agent.stop()
            if self.reboot_requested.is_set() and not stop.is_set():
                self.reboot_requested.clear()
                await _pause(stop, self.down_s)

    async def _report(self, stop: asyncio.Event) -> None:
        while not stop.is_set() and not self.reboot_requested.is_set():
            await self._send(self.model.step())
            self.wake.clear()
            waits = {asyncio.create_task(stop.wait()), asyncio.create_task(self.wake.wait())}
            await asyncio.wait(waits, timeout=self.interval, return_when=asyncio.FIRST_COMPLETED)
            for task in waits:
                task.cancel()

    async def _send(self, metrics: dict[str, float]) -> None:
        ts = None
        if self.on_published is not None and self.agent.device_id is not None:
            ts = stamp()  # stamped, so that the API can confirm exactly these readings
            self.on_published(self.agent.device_id, list(metrics), ts)
        self.stats.sent += len(metrics)
        try:
            ack = await self.agent.send(metrics, ts)
        except FAILURES as exc:
            self.stats.failed(exc)
            return
        self.stats.accepted += int(ack.get("accepted", 0))
        self.stats.duplicates += int(ack.get("duplicates", 0))
        self.stats.rejected += len(ack.get("rejected") or [])


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``stop`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max(0.0, seconds))


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
    on_published: OnPublished | None = None,
    stop: asyncio.Event | None = None,
    firmware: FirmwareSim | None = None,
    versions: Sequence[str] | None = None,
    tally: UpdateTally | None = None,
) -> Stats:
    """Run one virtual device per token until ``duration`` seconds have passed or
    ``stop`` is set (forever without either); ``report`` gets the running totals every
    ``report_every`` seconds. With ``firmware`` the devices take firmware updates, starting
    from ``versions`` (one per token), counted in ``tally``. Raises ``AgentError`` when
    every device has tried to connect and none could, or when the run ends with none
    ever connected and connection errors seen (the error says why)."""
    stats = Stats(transport=transport, devices=len(tokens))
    stats.updates = (tally or UpdateTally()) if firmware is not None else None
    stop = stop or asyncio.Event()
    running = list(versions) if versions is not None else [None] * len(tokens)
    agents = [
        DeviceAgent(server, t, transport=transport, mqtt_url=mqtt_url, firmware_version=v)
        for t, v in zip(tokens, running, strict=True)
    ]
    fleet = [
        VirtualDevice(agent, interval, stats, seed=i, on_published=on_published, firmware=firmware)
        for i, agent in enumerate(agents)
    ]
    tasks = [asyncio.create_task(device.run(stop)) for device in fleet]
    deadline = None if duration is None else time.monotonic() + duration
    try:
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            left = report_every if deadline is None else deadline - time.monotonic()
            await _pause(stop, min(report_every, left))
            for task in tasks:
                if task.done():
                    task.result()  # a device that failed unexpectedly: raise its error
            stats.online = sum(device.agent.online for device in fleet)
            if all(d.failures for d in fleet) and not any(d.ever_online for d in fleet):
                raise AgentError(stats.last_error or "no device could connect")
            if report is not None:
                report(stats)
        if not any(d.ever_online for d in fleet) and any(d.failures for d in fleet):
            # The run ended before every device's first try had failed (a slow connect):
            # none came online all the same.
            raise AgentError(stats.last_error or "no device could connect")
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        stats.online = 0
    return stats
