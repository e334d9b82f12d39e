"""Aggregates over calendar buckets, answered from rollups wherever they cover the range.

The requested range ``[start, end)`` is cut into pieces: whole UTC hours come from the
1-hour rollups (when the buckets' boundaries are whole UTC hours, see
``buckets.rollup_resolution``), whole minutes at the edges from the 1-minute rollups, and
only the sub-minute edges from raw readings. Each piece lies inside one bucket, so the
partial count/sum/min/max combine exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from fieldwatch.telemetry.models import Rollup1h, Rollup1m
from fieldwatch.telemetry.query.buckets import Interval, bucket_index, buckets, rollup_resolution
from fieldwatch.telemetry.storage.repository import TelemetryRepository

Agg = Literal["avg", "min", "max", "sum", "count"]
AGGREGATES: tuple[str, ...] = ("avg", "min", "max", "sum", "count")


@dataclass
class _Acc:
    count: int = 0
    sum: float = 0.0
    min: float | None = None
    max: float | None = None

    def add(self, count: int, total: float, lo: float, hi: float) -> None:
        self.count += count
        self.sum += total
        self.min = lo if self.min is None else min(self.min, lo)
        self.max = hi if self.max is None else max(self.max, hi)

    def value(self, agg: str) -> float | None:
        if agg == "count":
            return float(self.count)
        if self.count == 0:
            return None
        if agg == "avg":
            return self.sum / self.count
        if agg == "sum":
            return self.sum
        return self.min if agg == "min" else self.max


@dataclass
class AggregateResult:
    spans: list[tuple[datetime, datetime]]
    values: list[float | None]
    counts: list[int]
    sources: list[str] = field(default_factory=list)
    #: Each bucket's minimum and maximum (None where it is empty), whatever ``agg`` is.
    lows: list[float | None] = field(default_factory=list)
    highs: list[float | None] = field(default_factory=list)


class _Walk:
    """``bucket_index`` for timestamps that come in ascending order (each piece's rows are
    ordered, and the pieces follow each other): one pass over the buckets instead of a
    search per row; anything out of order falls back to the search."""

    def __init__(self, spans: list[tuple[datetime, datetime]]) -> None:
        self.spans = spans
        self.i = 0

    def index(self, ts: datetime) -> int | None:
        spans, i, n = self.spans, self.i, len(self.spans)
        while i < n and ts >= spans[i][1]:
            i += 1
        self.i = i
        if i < n and ts >= spans[i][0]:
            return i
        return bucket_index(ts, spans)


def _floor(ts: datetime, step: int) -> datetime:
    return datetime.fromtimestamp(int(ts.timestamp()) // step * step, UTC)


def _ceil(ts: datetime, step: int) -> datetime:
    f = _floor(ts, step)
    return f if f == ts else f + timedelta(seconds=step)


def plan(start: datetime, end: datetime, steps: list[int]) -> list[tuple[int, datetime, datetime]]:
    """Cut ``[start, end)`` into pieces: (step, a, b) with step 3600/60 for rollups, 0 for
    raw. Larger steps take the aligned middle; the edges go to the next smaller step."""
    if start >= end:
        return []
    if not steps:
        return [(0, start, end)]
    step, rest = steps[0], steps[1:]
    a, b = _ceil(start, step), _floor(end, step)
    if a >= b:
        return plan(start, end, rest)
    return [*plan(start, a, rest), (step, a, b), *plan(b, end, rest)]


async def aggregate(
    repo: TelemetryRepository,
    series_id: int,
    start: datetime,
    end: datetime,
    interval: Interval,
    tz: ZoneInfo,
    agg: str,
) -> AggregateResult:
    spans = buckets(start, end, interval, tz)
    try:
        resolution = rollup_resolution(interval, spans)
        steps = [3600, 60] if resolution == "hour" else [60]
    except ValueError:
        steps = []
    accs = [_Acc() for _ in spans]
    walk = _Walk(spans)
    used: list[str] = []
    for step, a, b in plan(start, end, steps):
        if step:
            model = Rollup1h if step == 3600 else Rollup1m
            name = "rollup_1h" if step == 3600 else "rollup_1m"
            for bucket, count, total, lo, hi in await repo.rollup_rows(model, series_id, a, b):
                i = walk.index(bucket)
                if i is not None:
                    accs[i].add(count, total, lo, hi)
        else:
            name = "raw"
            for ts, value in await repo.raw_values(series_id, a, b):
                i = walk.index(ts)
                if i is not None and value is not None:
                    accs[i].add(1, value, value, value)
        if name not in used:
            used.append(name)
    return AggregateResult(
        spans=spans,
        values=[acc.value(agg) for acc in accs],
        counts=[acc.count for acc in accs],
        sources=used,
        lows=[acc.min for acc in accs],
        highs=[acc.max for acc in accs],
    )
