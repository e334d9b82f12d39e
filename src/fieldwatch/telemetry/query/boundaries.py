"""Where the buckets of ``buckets`` begin: the instants at which a zone's local clock
reads a boundary time (minute and hour intervals), or a local day, week or month starts,
across offset changes; and the offsets a zone has within a span. Pure standard library.

Assumption: the UTC offset of a zone does not change twice within 12 hours (true for the
whole tz database); transitions are at whole seconds (true for TZif data).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import MAXYEAR, MINYEAR, UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

IntervalUnit = Literal["minute", "hour", "day", "week", "month"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SECOND = timedelta(seconds=1)
SAMPLE_SECONDS = 12 * 3600  # offsets are assumed not to change twice within this span


def epoch_seconds(value: datetime) -> int:
    """Whole seconds since the epoch, rounded down."""
    return (value - EPOCH) // SECOND


def on_whole(value: datetime, seconds: int) -> bool:
    """True when ``value`` is a whole multiple of ``seconds`` after the epoch (UTC-aligned)."""
    return (value - EPOCH) % timedelta(seconds=seconds) == timedelta(0)


def to_datetime(seconds: int) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


def utc_offset(tz: ZoneInfo, seconds: int) -> int:
    """The UTC offset of ``tz`` (in seconds) at the instant ``seconds``."""
    offset = to_datetime(seconds).astimezone(tz).utcoffset()
    if offset is None:  # pragma: no cover - ZoneInfo always answers for aware datetimes
        raise ValueError(f"time zone {tz} has no UTC offset")
    return offset // SECOND


def first_change(tz: ZoneInfo, lo: int, hi: int, offset: int) -> int:
    """The first instant in ``(lo, hi]`` whose offset differs from ``offset`` (the offset at
    ``lo``; the offset at ``hi`` differs)."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if utc_offset(tz, mid) == offset:
            lo = mid
        else:
            hi = mid
    return hi


def fixed_boundaries(tz: ZoneInfo, step: int, origin: int) -> Iterator[int]:
    """Bucket starts after ``origin`` for a minute/hour interval of ``step`` seconds, which
    divides a day: instants whose local wall time is a multiple of ``step`` (every
    occurrence), plus each transition whose forward jump skips such a wall time."""
    cursor = origin
    offset = utc_offset(tz, cursor)
    while True:
        candidate = cursor + step - (cursor + offset) % step  # next wall-clock multiple
        if utc_offset(tz, candidate) == offset:
            yield candidate
            cursor = candidate
            continue
        change = first_change(tz, cursor, candidate, offset)
        new_offset = utc_offset(tz, change)
        wall_before = change + offset  # the wall time the clock never reaches (or repeats)
        wall_after = change + new_offset
        skipped = -(-wall_before // step) * step <= wall_after  # a multiple in the gap
        if wall_after % step == 0 or skipped:
            yield change
        cursor, offset = change, new_offset


def period_start(day: date, unit: IntervalUnit) -> date:
    if unit == "week":
        return day - timedelta(days=day.weekday())
    if unit == "month":
        return day.replace(day=1)
    return day


def _year(year: int) -> int:
    if not MINYEAR <= year <= MAXYEAR:
        raise OverflowError(f"year {year} is out of range")
    return year


def next_period(day: date, unit: IntervalUnit) -> date:
    if unit == "week":
        return day + timedelta(days=7)
    if unit == "month":
        if day.month == 12:
            return date(_year(day.year + 1), 1, 1)
        return date(day.year, day.month + 1, 1)
    return day + timedelta(days=1)


def prev_period(day: date, unit: IntervalUnit) -> date:
    if unit == "week":
        return day - timedelta(days=7)
    if unit == "month":
        if day.month == 1:
            return date(_year(day.year - 1), 12, 1)
        return date(day.year, day.month - 1, 1)
    return day - timedelta(days=1)


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The first instant (UTC) of the local date ``day``."""
    naive = datetime.combine(day, time())
    first = naive.replace(tzinfo=tz).astimezone(UTC)  # fold=0: the earlier of a repeated time
    if first.astimezone(tz).replace(tzinfo=None) == naive:
        return first
    # midnight falls in a gap: the day starts when the clock jumps forward
    before = epoch_seconds(naive.replace(tzinfo=tz, fold=1).astimezone(UTC))  # pre-jump side
    after = epoch_seconds(first)
    return to_datetime(first_change(tz, before, after, utc_offset(tz, before)))


def calendar_boundaries(tz: ZoneInfo, unit: IntervalUnit, first: date) -> Iterator[datetime]:
    day = first
    while True:
        yield local_midnight(day, tz)
        day = next_period(day, unit)


def sampled_offsets(tz: ZoneInfo, start: datetime, end: datetime) -> Iterator[int]:
    """The offsets in effect within ``[start, end)``, sampled every 12 hours and at the
    last second before ``end``."""
    first = epoch_seconds(start)
    last = -(-(end - EPOCH) // SECOND) - 1  # the last whole second before end
    instant = first
    while instant < last:
        yield utc_offset(tz, instant)
        instant += SAMPLE_SECONDS
    yield utc_offset(tz, max(first, last))
