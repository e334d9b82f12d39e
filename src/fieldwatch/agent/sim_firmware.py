"""Firmware updates in the simulator.

A simulated device takes an update like a real one (download with resume, checksum,
signature when signed) and fakes the rest: "installing" takes ``install_s`` seconds,
then it restarts and comes back on the new version. ``failure_rate`` is the share of
updates that go wrong, half of them at install (``install_failed``), half by coming
back on the old version (the server marks those ``rolled_back``). ``power_loss_rate``
is the share of updates during which the device loses power mid-download: gone for
``power_loss_s`` seconds, it comes back and continues its download by Range. With
``public_keys`` (raw Ed25519 public keys) a device takes only firmware signed with one of
them: any other, or an unsigned one, fails with ``signature_invalid``; without them it
takes unsigned firmware and fails signed firmware (it knows no key to check it with).

What the totals say is what the server says: an update counts as completed or failed
once the API shows it so (``UpdateTally``, with the reason the server gives for each
failure), never because the device thinks so.

Over WebSocket and MQTT updates are pushed; a device over HTTP polls for them
(``GET /api/v1/device/firmware/next``) at the interval the server answers.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fieldwatch.agent.client import DeviceAgent
from fieldwatch.agent.confirm import repeat
from fieldwatch.agent.platform import Platform, Refused, Unreachable

#: How long a simulated device takes to restart on its new firmware.
REBOOT_S = 2.0


@dataclass
class FirmwareSim:
    failure_rate: float = 0.0
    power_loss_rate: float = 0.0
    install_s: float = 3.0
    power_loss_s: float = 3.0
    directory: Path | None = None  # where downloads go (default: a temporary directory)
    public_keys: tuple[bytes, ...] = ()  # the keys firmware must be signed with, when given


class UpdateTally:
    """The updates the fleet was sent, and what the server says became of them."""

    def __init__(self) -> None:
        self.taken: set[str] = set()
        self.outcome: dict[str, str] = {}  # update id -> completed | failed (per the API)
        self.reasons: dict[str, str] = {}  # update id -> why it failed (per the API)
        self.last_error: str | None = None
        self.power_losses = 0

    def seen(self, update_id: str) -> None:
        self.taken.add(update_id)

    @property
    def completed(self) -> int:
        return sum(1 for state in self.outcome.values() if state == "completed")

    @property
    def failed(self) -> int:
        return sum(1 for state in self.outcome.values() if state != "completed")

    def failure_reasons(self) -> list[tuple[str, int]]:
        """The reasons the server gave for the failed updates, most frequent first."""
        return Counter(self.reasons.values()).most_common()

    async def check(self, platform: Platform) -> None:
        """Ask the API about the updates not yet finished."""
        for update_id in sorted(self.taken - set(self.outcome)):
            try:
                final = await platform.update_outcome(update_id)
            except (Unreachable, Refused) as exc:
                self.last_error = str(exc)
                return
            if final is not None:
                self.outcome[update_id], reason = final
                if reason is not None:
                    self.reasons[update_id] = reason
        self.last_error = None

    async def run(self, platform: Platform, every_s: float, stop: asyncio.Event) -> None:
        """Check every ``every_s`` seconds until ``stop``."""
        await repeat(every_s, stop, lambda: self.check(platform))


class SimulatedUpdates:
    """One simulated device's way with updates."""

    def __init__(
        self,
        agent: DeviceAgent,
        name: str,
        sim: FirmwareSim,
        tally: UpdateTally,
        restart: Callable[[float], None],
        rng: random.Random,
    ) -> None:
        self.agent, self.sim, self.tally, self.rng = agent, sim, tally, rng
        self.restart = restart  # the device goes away for that many seconds
        self.doomed: dict[str, str] = {}  # update id -> how it goes wrong
        self.cut_power: set[str] = set()  # updates whose download a power cut interrupts
        root = sim.directory or Path(tempfile.gettempdir()) / "fieldwatch-simulate"
        firmware = agent.enable_firmware_updates(
            root / name, install=self.install, reboot=self.reboot, poll_updates=True,
            public_keys=sim.public_keys, require_signature=bool(sim.public_keys),
        )  # fmt: skip
        self._report = firmware.updater.hooks.report
        firmware.updater.hooks.report = self.report

    async def report(self, update_id: str, state: str, fields: dict[str, Any]) -> None:
        if state == "acknowledged" and update_id not in self.tally.taken:
            self.tally.seen(update_id)
            if self.rng.random() < self.sim.failure_rate:
                self.doomed[update_id] = self.rng.choice(("install_failed", "rolled_back"))
            if self.rng.random() < self.sim.power_loss_rate:
                self.cut_power.add(update_id)
        await self._report(update_id, state, fields)
        if state == "downloading" and update_id in self.cut_power:
            self.cut_power.discard(update_id)
            self.tally.power_losses += 1
            self.restart(self.sim.power_loss_s)  # the agent stops, and the download with it
            await asyncio.Event().wait()  # until that stop cancels this

    async def install(self, path: Path, message: dict[str, Any]) -> None:
        await asyncio.sleep(self.sim.install_s)
        if self.doomed.get(str(message.get("update_id"))) == "install_failed":
            raise RuntimeError("simulated install failure")

    def reboot(self, message: dict[str, Any]) -> None:
        if self.doomed.get(str(message.get("update_id"))) != "rolled_back":
            self.agent.firmware_version = str(message["version"])
        self.restart(REBOOT_S)
