"""Confirming readings sent over MQTT by reading them back through the API.

A broker's PUBACK says only that the broker took a message (any broker on that port
would); MQTT has no acknowledgement from the platform behind it. So each reading the
simulator publishes is stamped, remembered as ``(device, metric, timestamp)``, and
counted as confirmed once the API shows it (``GET /monitoring/data`` of the simulated
devices, one query for the whole fleet): the database has committed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from fieldwatch.agent.platform import Platform, Refused, Unreachable

#: A reading the API has not shown this long after it was published is given up on
#: (it stays not confirmed) and no longer looked for.
GIVE_UP_S = 300.0


class Confirmer:
    def __init__(self, platform: Platform, *, give_up_s: float = GIVE_UP_S) -> None:
        self.platform = platform
        self.give_up = timedelta(seconds=give_up_s)
        self.pending: set[tuple[str, str, datetime]] = set()
        self.confirmed = 0
        self.last_error: str | None = None  # why the API could not be asked, last time

    def published(self, device_id: str, metrics: Iterable[str], ts: datetime) -> None:
        """Remember readings about to be published (before: they may arrive even if the
        PUBACK does not)."""
        self.pending.update((device_id, metric, ts) for metric in metrics)

    async def check(self) -> bool:
        """Ask the API once about the readings still to confirm; False if it could not
        be asked (``last_error`` says why)."""
        if self.pending:
            try:
                await self._check(min(ts for _, _, ts in self.pending))
            except (Unreachable, Refused) as exc:
                self.last_error = str(exc)
                return False
        self.last_error = None
        return True

    async def _check(self, since: datetime) -> None:
        async for device_id, metric, ts in self.platform.readings(since):
            key = (device_id, metric, ts.astimezone(UTC))
            if key in self.pending:
                self.pending.discard(key)
                self.confirmed += 1
        cutoff = datetime.now(UTC) - self.give_up
        self.pending.difference_update({key for key in self.pending if key[2] < cutoff})

    async def run(self, every_s: float, stop: asyncio.Event) -> None:
        """Check every ``every_s`` seconds until ``stop``."""
        await repeat(every_s, stop, self.check)

    async def settle(self, timeout_s: float) -> None:
        """Check until every reading is confirmed, or for ``timeout_s`` seconds, or
        until the API cannot be asked."""
        deadline = time.monotonic() + timeout_s
        while True:
            asked = await self.check()
            if not asked or not self.pending or time.monotonic() >= deadline:
                return
            await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


async def repeat(every_s: float, stop: asyncio.Event, work: Callable[[], Awaitable[Any]]) -> None:
    """``work`` every ``every_s`` seconds until ``stop``."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
        if not stop.is_set():
            await work()
