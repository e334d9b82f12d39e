"""Request budgets kept before asking a vendor: each quota a connector declares
(``ConnectorInfo.quotas``: requests per window, for the whole app or per user) is a
sliding window, one per (connector, app) or per (connector, connection). A call takes a
place in each of its windows, waiting for one if it must (requests are spread over
the window instead of being refused by the vendor); a wait longer than ``MAX_WAIT_S``
is not waited for: ``BudgetExhausted`` (a 429 of our own, with the wait as its
Retry-After) ends the run and its retry is scheduled like a vendor's 429.

A vendor's ``Retry-After`` (on a 429, or Withings' 601) pauses the connector's app
buckets for that long, so this process's other connections wait too.

The buckets live in the process: with several worker processes each keeps the whole
budget, so set ``FIELDWATCH_SYNC_BUDGET_SHARE`` to the share of the vendor's quota one
process may use (e.g. 0.5 with two workers).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from fieldwatch.integrations.connectors.base import VendorError
from fieldwatch.integrations.connectors.catalogue import CONNECTORS, Quota

#: The longest a call waits for its budget before the run is retried later instead.
MAX_WAIT_S = 30.0
#: Windows are waited out this much longer (a share of the window), for the network.
MARGIN = 0.05


class BudgetExhausted(VendorError):
    """This process's budget for the vendor is spent for longer than ``MAX_WAIT_S``."""

    def __init__(self, wait_s: float) -> None:
        super().__init__(429, wait_s)
        self.args = (f"the request budget is spent for {wait_s:.0f} s",)


@dataclass
class Bucket:
    """The times of the last ``capacity`` requests within a sliding window of ``per_s``
    seconds (how vendors count), with a small margin for the trip to the vendor."""

    capacity: int
    per_s: float
    stamps: deque[float] = field(default_factory=deque)
    paused_until: float = 0.0

    def wait_for_one(self, now: float) -> float:
        """Seconds until one more request fits (0: send it now)."""
        window = self.per_s * (1 + MARGIN)
        while self.stamps and self.stamps[0] <= now - window:
            self.stamps.popleft()
        wait = self.paused_until - now
        if len(self.stamps) >= self.capacity:
            wait = max(wait, self.stamps[0] + window - now)
        return max(0.0, wait)


class Budgets:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.share = 1.0
        self._quotas: dict[str, tuple[Quota, ...]] = {}
        self._buckets: dict[tuple[str, int, str], Bucket] = {}
        self._lock = asyncio.Lock()

    def quotas(self, connector: str) -> tuple[Quota, ...]:
        if connector in self._quotas:
            return self._quotas[connector]
        info = CONNECTORS.get(connector)
        return info.quotas if info is not None else ()

    def configure(self, connector: str, quotas: tuple[Quota, ...] | None) -> None:
        """Use ``quotas`` for ``connector`` instead of its declared ones (None: back to
        those); its buckets start full."""
        if quotas is None:
            self._quotas.pop(connector, None)
        else:
            self._quotas[connector] = quotas
        self._buckets = {k: b for k, b in self._buckets.items() if k[0] != connector}

    def _buckets_of(self, connector: str, connection: str) -> list[Bucket]:
        out = []
        for index, quota in enumerate(self.quotas(connector)):
            key = (connector, index, "app" if quota.scope == "app" else connection)
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = Bucket(max(1, int(quota.requests * self.share)), quota.per_s)
                self._buckets[key] = bucket
            out.append(bucket)
        return out

    async def take(self, connector: str, connection: str) -> None:
        """One request's worth of every budget of the call, waiting while needed."""
        while True:
            async with self._lock:
                buckets = self._buckets_of(connector, connection)
                now = self.clock()
                wait = max((b.wait_for_one(now) for b in buckets), default=0.0)
                if wait <= 0:
                    for bucket in buckets:
                        bucket.stamps.append(now)
                    return
            if wait > MAX_WAIT_S:
                raise BudgetExhausted(wait)
            await asyncio.sleep(wait)

    def reset(self) -> None:
        """Back to the declared quotas, every budget unspent."""
        self._quotas.clear()
        self._buckets.clear()

    def pause(self, connector: str, seconds: float) -> None:
        """The vendor asked to wait ``seconds`` (Retry-After): hold its app buckets."""
        until = self.clock() + seconds
        for (kind, _, scope), bucket in self._buckets.items():
            if kind == connector and scope == "app":
                bucket.paused_until = max(bucket.paused_until, until)


#: This process's budgets.
BUDGETS = Budgets()
