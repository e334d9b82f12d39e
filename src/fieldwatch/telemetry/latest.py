"""The latest value of every series, in memory, for fleet-wide dashboards.

Updated by this process's writes as they commit, loaded from the database at start-up,
and refreshed from it every few seconds (``series.last_ts`` only moves forward), so
several processes converge on the same view without a shared cache. A request for the
whole fleet is then a filter and one ``orjson.dumps``, not tens of thousands of rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fieldwatch.telemetry.models import Series
from fieldwatch.telemetry.parse import QUALITY_NAMES

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


class LatestValues:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker
        self._by_ws: dict[uuid.UUID, dict[str, dict[str, Entry]]] = {}
        self._ts: dict[tuple[str, str], datetime] = {}
        self._watermark: datetime | None = None
        self._loaded = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.refresh()
        if self._task is None:
            self._task = asyncio.create_task(self._refresher(), name="latest-refresher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _refresher(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            try:
                await self.refresh()
            except Exception:
                log.exception("refreshing latest values failed")

    async def refresh(self) -> None:
        """Load what changed in the database since the last refresh (all, the first time)."""
        stmt = select(
            Series.workspace_id,
            Series.device_id,
            Series.metric,
            Series.kind,
            Series.unit,
            Series.last_ts,
            Series.last_value,
            Series.last_text,
            Series.last_quality,
        ).where(Series.last_ts.is_not(None))
        if self._watermark is not None:
            stmt = stmt.where(Series.last_ts > self._watermark - SKEW)
        async with self.sessionmaker() as session:
            rows = (await session.execute(stmt)).tuples().all()
        newest = self._watermark
        for ws, dev, metric, kind, unit, ts, value, text, q in rows:
            if ts is None:  # excluded by the query; keeps the type checker informed
                continue
            self._put(ws, str(dev), metric, entry(kind, unit, ts, value, text, q))
            if newest is None or ts > newest:
                newest = ts
        self._watermark = newest
        self._loaded = True

    def _put(self, ws: uuid.UUID, device: str, metric: str, new: tuple[datetime, Entry]) -> None:
        key = (device, metric)
        old = self._ts.get(key)
        if old is None or new[0] >= old:
            self._ts[key] = new[0]
            self._by_ws.setdefault(ws, {}).setdefault(device, {})[metric] = new[1]

    def record(
        self,
        workspace_id: uuid.UUID,
        device_id: uuid.UUID,
        metric: str,
        new: tuple[datetime, Entry],
    ) -> None:
        """A write of this process committed."""
        self._put(workspace_id, str(device_id), metric, new)

    def forget_device(self, device_id: uuid.UUID) -> None:
        key = str(device_id)
        for devices in self._by_ws.values():
            for metric in devices.pop(key, {}):
                self._ts.pop((key, metric), None)

    async def reload_device(self, workspace_id: uuid.UUID, device_id: uuid.UUID) -> None:
        """After a delete the latest values may move back: reload them from the database."""
        self.forget_device(device_id)
        async with self.sessionmaker() as session:
            rows = (
                (
                    await session.execute(
                        select(
                            Series.metric,
                            Series.kind,
                            Series.unit,
                            Series.last_ts,
                            Series.last_value,
                            Series.last_text,
                            Series.last_quality,
                        ).where(Series.device_id == device_id, Series.last_ts.is_not(None))
                    )
                )
                .tuples()
                .all()
            )
        for metric, kind, unit, ts, value, text, q in rows:
            if ts is None:
                continue
            self._put(workspace_id, str(device_id), metric, entry(kind, unit, ts, value, text, q))

    async def snapshot(
        self,
        workspace_id: uuid.UUID,
        device_ids: Iterable[str] | None = None,
        metrics: Sequence[str] = (),
    ) -> dict[str, dict[str, Entry]]:
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
