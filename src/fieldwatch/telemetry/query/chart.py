"""A series sized for a chart: the raw readings of a range when it holds few enough of
them, else aggregates over the finest accepted interval that keeps the number of points
within a budget (so a 30-day range of one reading a second still sends ~1,500 points).

The aggregates are the aggregate API's own (``aggregate``), answered from the rollups
where they cover the range, in the caller's time zone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from fieldwatch.telemetry.models import Series
from fieldwatch.telemetry.query.aggregate import aggregate
from fieldwatch.telemetry.query.buckets import ACCEPTED_INTERVALS, Interval, parse_interval
from fieldwatch.telemetry.storage.repository import TelemetryRepository

#: Points per series a chart is sent at most (a chart is rarely wider than 2,000 pixels).
MAX_POINTS = 2000

_INTERVALS: tuple[Interval, ...] = tuple(parse_interval(label) for label in ACCEPTED_INTERVALS)


@dataclass
class ChartSeries:
    """``times`` are the readings' timestamps (raw) or the buckets' starts (aggregated,
    with each bucket's average in ``values``, its minimum, maximum and reading count)."""

    interval: Interval | None  # None: raw readings
    times: list[datetime]
    values: list[float | None]
    lows: list[float | None] = field(default_factory=list)
    highs: list[float | None] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    @property
    def raw(self) -> bool:
        return self.interval is None


def fitting_interval(start: datetime, end: datetime, max_points: int = MAX_POINTS) -> Interval:
    """The finest accepted interval whose buckets over ``[start, end)`` number at most
    ``max_points`` (the coarsest one if none does). Two buckets of slack: the edge
    buckets are whole calendar buckets, and a day with a clock change has one more hour."""
    span = (end - start).total_seconds()
    for interval in _INTERVALS:
        if math.ceil(span / interval.nominal_seconds) + 2 <= max_points:
            return interval
    return _INTERVALS[-1]


def _coarser(interval: Interval) -> Interval | None:
    i = _INTERVALS.index(interval)
    return _INTERVALS[i + 1] if i + 1 < len(_INTERVALS) else None


async def chart_series(
    repo: TelemetryRepository,
    series: Series,
    start: datetime,
    end: datetime,
    tz: ZoneInfo,
    max_points: int = MAX_POINTS,
) -> ChartSeries:
    """The points of a numeric (or boolean, as 0/1) series over ``[start, end)``: raw when
    there are at most ``max_points`` readings, else averages per bucket."""
    rows = await repo.raw_values(series.id, start, end, limit=max_points + 1)
    if len(rows) <= max_points:
        return ChartSeries(None, [ts for ts, _ in rows], [v for _, v in rows], sources=["raw"])
    interval: Interval | None = fitting_interval(start, end, max_points)
    while interval is not None:
        result = await aggregate(repo, series.id, start, end, interval, tz, "avg")
        if len(result.spans) <= max_points:
            return ChartSeries(
                interval,
                [a for a, _ in result.spans],
                result.values,
                result.lows,
                result.highs,
                result.counts,
                result.sources,
            )
        interval = _coarser(interval)  # pragma: no cover - the slack above makes it rare
    raise ValueError("the time range is too long to chart")  # pragma: no cover
