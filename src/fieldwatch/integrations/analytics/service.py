"""Analytics rules: the period (default the last 7 days, at most 366), the figures.

- device usage: per vendor-fed device and metric, readings stored in the period, days
  with data (UTC days) and the last reading;
- data quality: from the sync's segments (one per stored page and metric): the mean
  quality and its parts, pages with implausible readings or gaps, anomalies flagged;
- sync performance: from the sync runs created in the period: runs by status and type,
  success rate (completed among finished runs), duration p50/p95, records synced per
  second of run time, retries (attempts after the first), runs ended in auth_required.

Reads of per-device health figures (usage, quality) are recorded in the access log.
"""

from __future__ import annotations

import statistics
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from fieldwatch.auth.principal import Principal
from fieldwatch.core.clock import utcnow
from fieldwatch.core.errors import ValidationFailed
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.integrations.analytics.repository import AnalyticsRepository
from fieldwatch.integrations.analytics.schemas import (
    DeviceUsage,
    MetricUsage,
    Period,
    QualityRead,
    QualityRow,
    SyncGroup,
    SyncPerformanceRead,
    UsageRead,
)
from fieldwatch.integrations.connectors.catalogue import CONNECTORS
from fieldwatch.integrations.privacy.service import record_reads

DEFAULT_DAYS = 7
MAX_DAYS = 366
FINISHED = ("completed", "partial", "failed", "auth_required")
PARTS = ("completeness", "plausibility", "duplicates", "gaps")


def period(start: datetime | None, end: datetime | None) -> Period:
    end = end or utcnow()
    start = start or end - timedelta(days=DEFAULT_DAYS)
    problem = None
    if start.tzinfo is None or end.tzinfo is None:
        problem = "start and end need a time zone (ISO 8601 with an offset)"
    elif start >= end:
        problem = "start must be before end"
    elif end - start > timedelta(days=MAX_DAYS):
        problem = f"the period is at most {MAX_DAYS} days"
    if problem:
        raise ValidationFailed(f"Bad period: {problem}.",
                               errors=[{"field": "start", "message": problem}])  # fmt: skip
    return Period(start=start, end=end)


def known_connector(connector: str | None) -> str | None:
    """``connector`` if it names one (a 422 naming the field otherwise)."""
    if connector is not None and connector not in CONNECTORS:
        message = f"no connector {connector!r}; one of {', '.join(sorted(CONNECTORS))}"
        raise ValidationFailed(f"Unknown connector: {message}.",
                               errors=[{"field": "connector", "message": message}],
                               connectors=sorted(CONNECTORS))  # fmt: skip
    return connector


def _percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 3)


def _group(rows: Sequence[Any]) -> SyncGroup:
    statuses = Counter(str(r.status) for r in rows)
    finished = sum(statuses[s] for s in FINISHED)
    durations = [float(r.duration_seconds) for r in rows if r.duration_seconds is not None]
    seconds = sum(durations)
    synced = sum(int(r.records_synced or 0) for r in rows if r.duration_seconds is not None)
    return SyncGroup(
        runs=len(rows), by_status=dict(sorted(statuses.items())),
        by_type=dict(sorted(Counter(str(r.sync_type) for r in rows).items())),
        success_rate=round(statuses["completed"] / finished, 4) if finished else None,
        duration_p50_s=_percentile(durations, 0.5), duration_p95_s=_percentile(durations, 0.95),
        records_per_second=round(synced / seconds, 1) if seconds > 0 else None,
        retries=sum(1 for r in rows if r.attempt > 1), auth_required=statuses["auth_required"],
    )  # fmt: skip


class AnalyticsService:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self.repo = AnalyticsRepository(uow.session)

    async def usage(self, principal: Principal, span: Period, device_id: uuid.UUID | None,
                    connector: str | None) -> UsageRead:  # fmt: skip
        ws = principal.workspace_id
        connector = known_connector(connector)
        rows = await self.repo.usage(ws, span.start, span.end, device_id, connector)
        connectors = await self.repo.connectors(ws)
        per: dict[uuid.UUID, list[MetricUsage]] = defaultdict(list)
        for device, metric, count, days, last in rows:
            per[device].append(MetricUsage(metric=metric, readings=count, days_with_data=days,
                                           last_data=last))  # fmt: skip
        days_of = {d: max(m.days_with_data for m in ms) for d, ms in per.items()}
        devices = [
            DeviceUsage(device_id=d, connector=connectors.get(d, "?"),
                        readings=sum(m.readings for m in ms), days_with_data=days_of[d],
                        last_data=max((m.last_data for m in ms if m.last_data), default=None),
                        metrics=ms)
            for d, ms in per.items()
        ]  # fmt: skip
        by_connector: Counter[str] = Counter()
        for item in devices:
            by_connector[item.connector] += item.readings
        await record_reads(self.uow, principal, per, "analytics device-usage")
        return UsageRead(period=span, devices=devices, by_connector=dict(by_connector))

    async def quality(self, principal: Principal, span: Period, device_id: uuid.UUID | None,
                      connector: str | None) -> QualityRead:  # fmt: skip
        connector = known_connector(connector)
        rows = await self.repo.segments(principal.workspace_id, span.start, span.end,
                                        device_id, connector)  # fmt: skip
        groups: dict[tuple[uuid.UUID, str, str], list[Any]] = defaultdict(list)
        for row in rows:
            groups[(row.device_id, row.connector, row.metric)].append(row)
        out = []
        for (device, conn, metric), items in sorted(groups.items(), key=lambda g: str(g[0])):
            parts = {p: round(statistics.fmean(float((i.quality_parts or {}).get(p, 1.0))
                                               for i in items), 4) for p in PARTS}  # fmt: skip
            out.append(QualityRow(
                device_id=device, connector=conn, metric=metric, segments=len(items),
                readings=sum(i.count for i in items),
                mean_quality=round(statistics.fmean(i.quality for i in items), 4), parts=parts,
                implausible_segments=sum(1 for i in items
                                         if (i.quality_parts or {}).get("plausibility", 1) < 1),
                gappy_segments=sum(1 for i in items if (i.quality_parts or {}).get("gaps", 1) < 1),
                anomalies=sum(len(i.anomalies or []) for i in items),
            ))  # fmt: skip
        overall = round(statistics.fmean(r.quality for r in rows), 4) if rows else None
        await record_reads(self.uow, principal, {k[0] for k in groups}, "analytics data-quality")
        return QualityRead(period=span, rows=out, mean_quality=overall)

    async def sync_performance(self, principal: Principal, span: Period,
                               device_id: uuid.UUID | None,
                               connector: str | None) -> SyncPerformanceRead:  # fmt: skip
        connector = known_connector(connector)
        rows = await self.repo.runs(principal.workspace_id, span.start, span.end, device_id,
                                    connector)  # fmt: skip
        by_connector: dict[str, list[Any]] = defaultdict(list)
        for row in rows:
            by_connector[str(row.connector)].append(row)
        return SyncPerformanceRead(
            period=span,
            overall=_group(rows),
            by_connector={c: _group(r) for c, r in sorted(by_connector.items())},
        )
