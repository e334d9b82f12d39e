"""Per-device rate limits, one mechanism for every transport.

Each device may send ``messages`` per ``window_s`` seconds, on average: a token bucket
that holds up to ``messages`` tokens and refills ``messages / window_s`` a second (a
device may use its whole allowance in a burst, then waits for it to refill). The limit of
a device is, in order: its own (``PUT /devices/{id}/rate-limit``), its type's
(``PUT /device-types/{type}/rate-limit``), else the transport's default: WebSocket frames
``FIELDWATCH_WS_MAX_FRAMES_PER_S`` a second; MQTT messages and HTTP uploads
``FIELDWATCH_DEVICE_RATE_LIMIT`` per ``FIELDWATCH_DEVICE_RATE_WINDOW_S``.

Each transport keeps its own bucket per device (a device that also uploads over HTTP does
not eat into its MQTT allowance). What each transport does with a refusal: the WebSocket
gateway answers an ``error`` frame (``rate_limited``), HTTP a 429 problem with
``Retry-After``, the MQTT gateway drops the message, tells the device on its ``errors``
topic (at most once a second) and disconnects it when it keeps flooding. Refusals and
disconnections are counted (Prometheus: ``fieldwatch_device_messages_refused_total``,
``fieldwatch_device_disconnects_total``).
"""

from __future__ import annotations

import math
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fieldwatch.core.events import Event
from fieldwatch.core.settings import Settings
from fieldwatch.core.ttlcache import TTLCache
from fieldwatch.monitoring.repository import MonitoringRepository

#: The event after a rate limit of a workspace changed (every process drops its copy).
RATE_LIMITS_CHANGED = "device.rate_limits_changed"
TRANSPORTS = ("websocket", "mqtt", "http")
#: Refusals are counted over this window to tell a flooding device (``flooding``).
STRIKE_WINDOW_S = 60.0
NOTIFY_EVERY_S = 1.0
OVERRIDES_CACHE_S = 60.0
SWEEP_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class Rate:
    messages: float
    window_s: float

    @property
    def per_s(self) -> float:
        return self.messages / self.window_s

    def describe(self) -> str:
        return f"{self.messages:g} messages per {self.window_s:g} s"


class TokenBucket:
    """``rate`` tokens a second on average, bursts of up to ``capacity`` (default:
    ``rate``, at least 1)."""

    __slots__ = ("capacity", "clock", "last", "rate", "tokens")

    def __init__(
        self,
        rate: float,
        capacity: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.capacity = max(capacity if capacity is not None else rate, 1.0)
        self.tokens = self.capacity
        self.clock = clock
        self.last = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def retry_after(self) -> float:
        """Seconds until the next token."""
        return max(0.0, (1.0 - self.tokens) / self.rate)

    def full(self, now: float) -> bool:
        return self.tokens + (now - self.last) * self.rate >= self.capacity


@dataclass(slots=True)
class _DeviceState:
    rate: Rate
    bucket: TokenBucket
    strikes: int = 0
    strikes_since: float = 0.0
    told_at: float = -math.inf
    kicked: bool = False


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a message was refused: the limit, when to try again, whether the device should
    be told now (at most once a second) and whether it keeps flooding (more than
    ``device_max_refused`` refusals within a minute, reported once per minute)."""

    rate: Rate
    retry_after: float
    notify: bool
    flooding: bool

    @property
    def message(self) -> str:
        return f"Over the rate limit of {self.rate.describe()}; slow down."


@dataclass(slots=True)
class _Overrides:
    types: dict[str, Rate] = field(default_factory=dict)
    devices: dict[uuid.UUID, Rate] = field(default_factory=dict)


class DeviceLimiter:
    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.clock = clock
        self._states: dict[tuple[str, uuid.UUID], _DeviceState] = {}
        self._overrides: TTLCache[uuid.UUID, _Overrides] = TTLCache(OVERRIDES_CACHE_S)
        self._types: TTLCache[uuid.UUID, str] = TTLCache(OVERRIDES_CACHE_S)
        self._swept = clock()
        #: Counts the changes of limits and devices: what a caller keeps of ``rate`` is
        #: good while it stays the same (and for ``OVERRIDES_CACHE_S`` at most).
        self.generation = 0
        #: (transport, reason) → messages refused; transport → devices disconnected.
        self.refused: Counter[tuple[str, str]] = Counter()
        self.disconnects: Counter[str] = Counter()

    def default(self, transport: str) -> Rate:
        if transport == "websocket":
            return Rate(self.settings.ws_max_frames_per_s, 1.0)
        return Rate(self.settings.device_rate_limit, self.settings.device_rate_window_s)

    async def rate(self, transport: str, workspace_id: uuid.UUID, device_id: uuid.UUID) -> Rate:
        """The device's limit on ``transport``: its own, its type's, or the default."""
        overrides = self._overrides.get(workspace_id)
        if overrides is None:
            overrides = await self._load(workspace_id)
        own = overrides.devices.get(device_id)
        if own is not None:
            return own
        if overrides.types:
            type_ = self._types.get(device_id)
            if type_ is None:
                async with self.sessionmaker() as session:
                    type_ = await MonitoringRepository(session).device_type(device_id) or ""
                self._types.put(device_id, type_)
            if type_ in overrides.types:
                return overrides.types[type_]
        return self.default(transport)

    async def _load(self, workspace_id: uuid.UUID) -> _Overrides:
        async with self.sessionmaker() as session:
            types, devices = await MonitoringRepository(session).rate_limits(workspace_id)
        overrides = _Overrides(
            {t: Rate(m, w) for t, (m, w) in types.items()},
            {d: Rate(m, w) for d, (m, w) in devices.items()},
        )
        self._overrides.put(workspace_id, overrides)
        return overrides

    async def check(
        self, transport: str, workspace_id: uuid.UUID, device_id: uuid.UUID
    ) -> Refusal | None:
        """Take one message of the device's allowance: None when it may go through,
        else the refusal (counted)."""
        return self.take(transport, device_id, await self.rate(transport, workspace_id, device_id))

    def take(self, transport: str, device_id: uuid.UUID, rate: Rate) -> Refusal | None:
        """``check`` with the device's ``rate`` known (a gateway looks it up once per
        batch of messages, and takes a token per message)."""
        now = self.clock()
        if now - self._swept > SWEEP_EVERY_S:
            self._sweep(now)
        key = (transport, device_id)
        state = self._states.get(key)
        if state is None or (state.rate is not rate and state.rate != rate):
            bucket = TokenBucket(rate.per_s, rate.messages, clock=self.clock)
            state = self._states[key] = _DeviceState(rate, bucket, strikes_since=now)
        if state.bucket.take():
            return None
        self.refused[(transport, "rate_limited")] += 1
        if now - state.strikes_since > STRIKE_WINDOW_S:
            state.strikes, state.strikes_since, state.kicked = 0, now, False
        state.strikes += 1
        notify = now - state.told_at >= NOTIFY_EVERY_S
        if notify:
            state.told_at = now
        flooding = state.strikes > self.settings.device_max_refused and not state.kicked
        if flooding:
            state.kicked = True
        return Refusal(rate, state.bucket.retry_after(), notify, flooding)

    def disconnected(self, transport: str) -> None:
        """Count a device the transport disconnected for misbehaving (flooding)."""
        self.disconnects[transport] += 1

    def _sweep(self, now: float) -> None:
        """Forget devices whose bucket is full again and whose strikes are old: a new
        state would be the same."""
        self._swept = now
        idle = [
            k
            for k, s in self._states.items()
            if s.bucket.full(now) and now - s.strikes_since > STRIKE_WINDOW_S
        ]
        for key in idle:
            del self._states[key]

    def forget(self, workspace_id: uuid.UUID) -> None:
        """Read the workspace's rate limits again on the next message."""
        self.generation += 1
        self._overrides.pop(workspace_id)

    async def on_changed(self, event: Event) -> None:
        """A rate limit of the workspace changed (in any process)."""
        if event.workspace_id is not None:
            self.forget(event.workspace_id)

    async def on_device_changed(self, event: Event) -> None:
        """A device was updated (its type may have changed) or deleted."""
        self.generation += 1
        if event.subject_id is not None:
            self._types.pop(event.subject_id)
            for transport in TRANSPORTS:
                self._states.pop((transport, event.subject_id), None)


class LimitsCollector(Collector):
    """The limiter's counters for Prometheus; ``limiter`` returns the process's limiter
    (None before start-up)."""

    def __init__(self, limiter: Callable[[], DeviceLimiter | None]) -> None:
        self.limiter = limiter

    def collect(self) -> Iterator[Any]:
        refused = CounterMetricFamily(
            "fieldwatch_device_messages_refused",
            "Device messages refused by a per-device limit",
            labels=["transport", "reason"],
        )
        disconnects = CounterMetricFamily(
            "fieldwatch_device_disconnects",
            "Devices disconnected for flooding (WebSocket: too many bad frames, which "
            "include rate_limited ones)",
            labels=["transport"],
        )
        limiter = self.limiter()
        if limiter is not None:
            for (transport, reason), n in sorted(limiter.refused.items()):
                refused.add_metric([transport, reason], n)
            for transport, n in sorted(limiter.disconnects.items()):
                disconnects.add_metric([transport], n)
        yield refused
        yield disconnects
