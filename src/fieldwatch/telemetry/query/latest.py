"""The latest value of every series, in memory, for fleet-wide dashboards.

Updated by this process's writes as they commit, loaded from the database at start-up,
and refreshed from it every few seconds (``series.last_ts`` only moves forward), so
several processes converge on the same view without a shared cache. A request for the
whole fleet is then a filter and one ``orjson.dumps``, not tens of thousands of rows.

With Redis (``FIELDWATCH_REDIS_URL``) the values live there instead, shared by every
process (see ``latest_redis``): each commit writes through (only where newer), a snapshot
reads Redis, and the database is read only to fill a Redis that holds nothing yet.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fieldwatch.core.tasks import cancel, every
from fieldwatch.telemetry.ingest.parse import QUALITY_NAMES
from fieldwatch.telemetry.models import Series

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from fieldwatch.telemetry.query.latest_redis import RedisLatest

log = logging.getLogger(__name__)

Entry = dict[str, Any]  # {"timestamp", "value", "unit", "quality"}
REFRESH_S = 2.0
SKEW = timedelta(seconds=30)


def entry(
    kind: str, unit: str | None, ts: datetime, value: Any, text: Any, q: int | None
) -> tuple[datetime, Entry]:
    if kind == "text":
        out = text
    elif kind == "bool":
        out = None if value is None else bool(value)
    else:
        out = value
    return ts, {
        "timestamp": ts.isoformat(),
        "value": out,
        "unit": unit,
        "quality": QUALITY_NAMES.get(q) if q is not None else None,
    }


#: A series' latest value, as the cache keeps it (after the series' keys).
_LATEST = (
    Series.metric,
    Series.kind,
    Series.unit,
    Series.last_ts,
    Series.last_value,
    Series.last_text,
    Series.last_quality,
)


class LatestValues:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker
        self._by_ws: dict[uuid.UUID, dict[str, dict[str, Entry]]] = {}
        self._ts: dict[tuple[str, str], datetime] = {}
        self._watermark: datetime | None = None
        self._loaded = False
        self._task: asyncio.Task[None] | None = None
        self.redis: RedisLatest | None = None
        self._pending: list[tuple[uuid.UUID, str, str, tuple[datetime, Entry]]] = []
        self._forgotten: list[str] = []
        self._drainer: asyncio.Task[None] | None = None

    def use_redis(self, redis: Redis, prefix: str) -> None:
        """Keep the values in Redis, shared by the processes of the installation.

        ``record`` is synchronous, so it queues the write and a task sends what is
        queued (one round trip per batch); ``flush`` waits for it (the ingest path does,
        before it answers).
        """
        from fieldwatch.telemetry.query.latest_redis import RedisLatest

        self.redis = RedisLatest(redis, prefix)

    async def start(self) -> None:
        if self.redis is not None:
            await self._fill()  # no refresher: every process writes through
            return
        await self.refresh()
        if self._task is None:
            self._task = every(REFRESH_S, self.refresh, name="latest-refresher")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
        await self.flush()

    async def refresh(self) -> None:
        """Load what changed in the database since the last refresh (all, the first time)."""
        stmt = select(Series.workspace_id, Series.device_id, *_LATEST).where(
            Series.last_ts.is_not(None)
        )
        if self._watermark is not None:
            stmt = stmt.where(Series.last_ts > self._watermark - SKEW)
        async with self.sessionmaker() as session:
            rows = (await session.execute(stmt)).tuples().all()
        newest = self._watermark
        loaded: list[tuple[uuid.UUID, str, str, tuple[datetime, Entry]]] = []
        for ws, dev, metric, kind, unit, ts, value, text, q in rows:
            if ts is None:  # excluded by the query; keeps the type checker informed
                continue
            new = entry(kind, unit, ts, value, text, q)
            if self.redis is not None:
                loaded.append((ws, str(dev), metric, new))
            else:
                self._put(ws, str(dev), metric, new)
            if newest is None or ts > newest:
                newest = ts
        if self.redis is not None:
            await self.redis.put(loaded)  # only where newer than what Redis holds
        self._watermark = newest
        self._loaded = True

    async def _fill(self) -> None:
        """Load the database into a Redis that holds nothing of this installation yet."""
        assert self.redis is not None
        if not await self.redis.filled():
            self._watermark = None
            await self.refresh()
            await self.redis.mark_filled()

    def _put(self, ws: uuid.UUID, device: str, metric: str, new: tuple[datetime, Entry]) -> None:
        key = (device, metric)
        old = self._ts.get(key)
        if old is None or new[0] >= old:
            self._ts[key] = new[0]
            self._by_ws.setdefault(ws, {}).setdefault(device, {})[metric] = new[1]

    def record(
        self, workspace_id: uuid.UUID, device: str, metric: str, new: tuple[datetime, Entry]
    ) -> None:
        """A write of this process committed (``device``: the device's id as text)."""
        if self.redis is None:
            self._put(workspace_id, device, metric, new)
            return
        self._pending.append((workspace_id, device, metric, new))
        self._kick()

    def _kick(self) -> None:
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(
                self._drain(), name="latest-write-through"
            )

    async def _drain(self) -> None:
        assert self.redis is not None
        while self._pending or self._forgotten:
            pending, self._pending = self._pending, []
            forgotten, self._forgotten = self._forgotten, []
            try:
                await self.redis.put(pending)
                for device in forgotten:
                    await self.redis.forget(device)
            except Exception:
                # The database has the values; Redis catches up with the next reading.
                log.exception("writing latest values to Redis failed")

    @property
    def writing(self) -> bool:
        """Whether writes of this process are still on their way to Redis."""
        return self._drainer is not None and not self._drainer.done()

    async def flush(self) -> None:
        """Wait until what this process recorded is in Redis (nothing to do without)."""
        while self._drainer is not None and not self._drainer.done():
            await asyncio.shield(self._drainer)

    def forget_device(self, device_id: uuid.UUID) -> None:
        key = str(device_id)
        if self.redis is not None:
            self._forgotten.append(key)
            self._kick()
            return
        for devices in self._by_ws.values():
            for metric in devices.pop(key, {}):
                self._ts.pop((key, metric), None)

    async def reload_device(self, workspace_id: uuid.UUID, device_id: uuid.UUID) -> None:
        """After a delete the latest values may move back: reload them from the database."""
        if self.redis is not None:
            await self.flush()
            await self.redis.forget(str(device_id))
        else:
            self.forget_device(device_id)
        async with self.sessionmaker() as session:
            rows = (
                (
                    await session.execute(
                        select(*_LATEST).where(
                            Series.device_id == device_id, Series.last_ts.is_not(None)
                        )
                    )
                )
                .tuples()
                .all()
            )
        reloaded = [
            (workspace_id, str(device_id), metric, entry(kind, unit, ts, value, text, q))
            for metric, kind, unit, ts, value, text, q in rows
            if ts is not None
        ]
        if self.redis is not None:
            await self.redis.put(reloaded)
            return
        for ws, device, metric, new in reloaded:
            self._put(ws, device, metric, new)

    async def snapshot(
        self,
        workspace_id: uuid.UUID,
        device_ids: Iterable[str] | None = None,
        metrics: Sequence[str] = (),
    ) -> dict[str, dict[str, Entry]]:
        if self.redis is not None:
            await self.flush()  # this process's own writes first
            got = await self.redis.snapshot(workspace_id, device_ids, metrics)
            if got is None:  # Redis holds nothing of this installation yet
                await self._fill()
                got = await self.redis.snapshot(workspace_id, device_ids, metrics) or {}
            return got
        if not self._loaded:
            await self.refresh()
        devices = self._by_ws.get(workspace_id, {})
        chosen = (
            devices if device_ids is None else {d: devices[d] for d in device_ids if d in devices}
        )
        if not metrics:
            return dict(chosen)
        wanted = set(metrics)
        out: dict[str, dict[str, Entry]] = {}
        for device, values in chosen.items():
            picked = {m: e for m, e in values.items() if m in wanted}
            if picked:
                out[device] = picked
        return out
