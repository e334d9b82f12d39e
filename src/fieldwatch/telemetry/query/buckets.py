"""Calendar- and time-zone-aware time buckets for telemetry aggregate queries.

Pure standard library (``zoneinfo``); no database access. Where boundaries fall across
offset changes is worked out in ``boundaries``.

Intervals
---------
Only this fixed list is accepted (see :data:`ACCEPTED_INTERVALS`), every one dividing the
next larger calendar unit so buckets line up with the local wall clock:

* minutes: ``1m 2m 5m 10m 15m 30m``
* hours: ``1h 2h 3h 4h 6h 8h 12h``
* calendar: ``1d`` (day), ``1w`` (ISO week), ``1mo`` (calendar month)

Bucket rules
------------
Buckets are half-open ``[start, end)`` and returned as timezone-aware UTC datetimes, but they
are aligned to the *local* calendar of the requested zone:

* Minute and hour buckets start whenever the local wall clock reads a multiple of the
  interval counted from local midnight (15m: ``:00 :15 :30 :45`` local, 6h: ``00 06 12 18``
  local). For zones with non-hour offsets (Asia/Kolkata, +05:30) that is the local clock, so
  hourly buckets start at ``:30`` UTC there.
* When the clock is set back (autumn fold) and shows a boundary time again, a new bucket
  starts again: the repeated hour of Europe/Berlin 2026-10-25 gets its own hourly buckets,
  so that day has 25 distinct, consecutive one-hour UTC buckets. A boundary that is not
  repeated (06:00 for 6h buckets) is not duplicated, so that 6h bucket lasts 7 hours.
* When the clock jumps forward (spring gap) over one or more boundary times, a bucket
  starts at the instant of the jump: Europe/Berlin 2026-03-29 has 23 hourly buckets, and
  the 6h bucket 00:00-06:00 local lasts only 5 hours.
* Days start at local midnight (the first occurrence if midnight happens twice; the end of
  the gap if midnight does not exist), so a DST-change day lasts 23 or 25 hours. Weeks
  start on Monday at local midnight (ISO 8601), months on the 1st at local midnight (28-31
  days). A calendar day skipped entirely (Pacific/Apia 2011-12-30) yields no bucket.

Coverage
--------
The first and last buckets are the *full* calendar buckets containing ``start`` and the
last instant before ``end``; they are not clipped to ``[start, end)``. A caller can compare
``buckets[0][0] < start`` or ``buckets[-1][1] > end`` to tell that the edge buckets are only
partly covered by the requested range.

Rollups
-------
Hourly (UTC-aligned) rollups can answer a query exactly when every bucket boundary falls on
a whole UTC hour, which holds for intervals of an hour or more in zones whose offsets are
whole hours (:func:`whole_hours_offset` is the zone-level pre-check,
:func:`rollup_resolution` the exact check on computed buckets); otherwise 1-minute rollups
are used.

Assumption: the UTC offset of a zone does not change twice within 12 hours (true for the
whole tz database); transitions are at whole seconds (true for TZif data).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fieldwatch.telemetry.query.boundaries import (
    IntervalUnit,
    calendar_boundaries,
    epoch_seconds,
    fixed_boundaries,
    on_whole,
    period_start,
    prev_period,
    sampled_offsets,
    to_datetime,
)

Resolution = Literal["minute", "hour"]
Bucket = tuple[datetime, datetime]

DEFAULT_MAX_BUCKETS = 10_000

_SUFFIX: dict[str, IntervalUnit] = {
    "m": "minute",
    "h": "hour",
    "d": "day",
    "w": "week",
    "mo": "month",
}
_LABEL_SUFFIX: dict[IntervalUnit, str] = {unit: suffix for suffix, unit in _SUFFIX.items()}
_ALLOWED: dict[IntervalUnit, tuple[int, ...]] = {
    "minute": (1, 2, 5, 10, 15, 30),
    "hour": (1, 2, 3, 4, 6, 8, 12),
    "day": (1,),
    "week": (1,),
    "month": (1,),
}
_UNIT_SECONDS: dict[IntervalUnit, int] = {
    "minute": 60,
    "hour": 3600,
    "day": 86_400,
    "week": 7 * 86_400,
    "month": 30 * 86_400,  # nominal, only for ordering / estimates
}

#: Every accepted interval text, smallest first.
ACCEPTED_INTERVALS: tuple[str, ...] = tuple(
    f"{count}{_LABEL_SUFFIX[unit]}" for unit, counts in _ALLOWED.items() for count in counts
)


@dataclass(frozen=True, slots=True)
class Interval:
    """A bucket width: ``count`` of ``unit`` (only the combinations in the accepted list)."""

    unit: IntervalUnit
    count: int

    def __post_init__(self) -> None:
        allowed = _ALLOWED.get(self.unit)
        if allowed is None or self.count not in allowed:
            raise ValueError(
                f"unsupported interval {self.count} {self.unit}; "
                f"accepted: {', '.join(ACCEPTED_INTERVALS)}"
            )

    @property
    def label(self) -> str:
        """The canonical text form, e.g. ``15m``, ``1h``, ``1mo``."""
        return f"{self.count}{_LABEL_SUFFIX[self.unit]}"

    @property
    def is_calendar(self) -> bool:
        """True for day, week and month (variable length in UTC)."""
        return self.unit in ("day", "week", "month")

    @property
    def fixed_seconds(self) -> int | None:
        """The wall-clock length of minute/hour intervals; ``None`` for calendar units."""
        return None if self.is_calendar else self.count * _UNIT_SECONDS[self.unit]

    @property
    def nominal_seconds(self) -> int:
        """An approximate length (a month counts as 30 days), for ordering and estimates."""
        return self.count * _UNIT_SECONDS[self.unit]

    def __str__(self) -> str:
        return self.label


def parse_interval(text: str) -> Interval:
    """Parse an interval such as ``15m``, ``1h``, ``1d``, ``1w`` or ``1mo``.

    Surrounding whitespace is ignored; the text is otherwise case-sensitive (``1M`` would be
    ambiguous). Raises :class:`ValueError` listing the accepted values for anything else.
    """
    cleaned = text.strip()
    if cleaned in ACCEPTED_INTERVALS:
        digits = len(cleaned) - len(cleaned.lstrip("0123456789"))
        return Interval(_SUFFIX[cleaned[digits:]], int(cleaned[:digits]))
    raise ValueError(f"invalid interval {text!r}; accepted: {', '.join(ACCEPTED_INTERVALS)}")


def parse_timezone(name: str) -> ZoneInfo:
    """Load an IANA zone (``Europe/Berlin``); :class:`ValueError` if it is unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"unknown time zone {name!r}; use an IANA name such as 'UTC'") from exc


def buckets(
    start: datetime,
    end: datetime,
    interval: Interval,
    tz: ZoneInfo,
    *,
    max_buckets: int = DEFAULT_MAX_BUCKETS,
) -> list[Bucket]:
    """The half-open buckets ``[b_start, b_end)``, in UTC, covering ``[start, end)``.

    Buckets follow the local calendar of ``tz`` (see the module docstring). The first and
    last buckets are the full buckets containing ``start`` and the last instant before
    ``end`` (not clipped), so partial coverage shows as ``buckets[0][0] < start`` or
    ``buckets[-1][1] > end``.

    Raises :class:`ValueError` for naive datetimes, ``start >= end``, or more than
    ``max_buckets`` buckets.
    """
    _require_range(start, end)
    if max_buckets < 1:
        raise ValueError("max_buckets must be at least 1")
    try:
        if interval.is_calendar:
            first = prev_period(
                period_start(start.astimezone(tz).date(), interval.unit), interval.unit
            )
            candidates: Iterable[datetime] = calendar_boundaries(tz, interval.unit, first)
        else:
            step = interval.count * _UNIT_SECONDS[interval.unit]
            # a bucket is shorter than two steps, so its start lies within this lookback
            origin = epoch_seconds(start) - 2 * step - 3600
            candidates = map(to_datetime, fixed_boundaries(tz, step, origin))
        bounds = _collect(candidates, start, end, interval, max_buckets)
    except OverflowError as exc:
        raise ValueError("time range is too close to the limits of datetime") from exc
    return list(pairwise(bounds))


def bucket_index(ts: datetime, spans: Sequence[Bucket]) -> int | None:
    """The index of the bucket in ``spans`` (as returned by :func:`buckets`) holding ``ts``.

    Buckets are half-open, so a timestamp exactly on a boundary belongs to the later bucket.
    Returns ``None`` when ``ts`` lies outside all buckets. ``ts`` must be timezone-aware.
    """
    _require_aware(ts, "ts")
    i = bisect.bisect_right(spans, ts, key=lambda span: span[0]) - 1
    if i < 0 or ts >= spans[i][1]:
        return None
    return i


def whole_hours_offset(tz: ZoneInfo, start: datetime, end: datetime) -> bool:
    """True when every UTC offset of ``tz`` in effect within ``[start, end)`` is a whole
    number of hours (Europe/Berlin: yes; Asia/Kolkata, +05:30: no).

    Then local hour, day, week and month boundaries fall on whole UTC hours. Pass the outer
    range of the buckets (``spans[0][0]``, ``spans[-1][1]``), which may extend past the query.
    """
    _require_range(start, end)
    try:
        return all(offset % 3600 == 0 for offset in sampled_offsets(tz, start, end))
    except OverflowError as exc:
        raise ValueError("time range is too close to the limits of datetime") from exc


def rollup_resolution(interval: Interval, spans: Sequence[Bucket]) -> Resolution:
    """Which UTC-aligned rollup answers ``spans`` (from :func:`buckets`) exactly.

    ``"hour"`` when the interval is an hour or more and every bucket boundary is a whole UTC
    hour (the case for whole-hour offsets, see :func:`whole_hours_offset`); otherwise
    ``"minute"`` when every boundary is a whole UTC minute. Raises :class:`ValueError` when
    not even minute rollups line up (historic local-mean-time offsets with seconds).
    """
    if not spans:
        raise ValueError("no buckets")
    edges = [spans[0][0], *(b_end for _, b_end in spans)]
    if interval.unit != "minute" and all(on_whole(edge, 3600) for edge in edges):
        return "hour"
    if all(on_whole(edge, 60) for edge in edges):
        return "minute"
    raise ValueError("bucket boundaries do not fall on whole UTC minutes")


# --- internals -----------------------------------------------------------------------------


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")


def _require_range(start: datetime, end: datetime) -> None:
    _require_aware(start, "start")
    _require_aware(end, "end")
    if start >= end:
        raise ValueError("start must be before end")


def _collect(
    candidates: Iterable[datetime],
    start: datetime,
    end: datetime,
    interval: Interval,
    max_buckets: int,
) -> list[datetime]:
    """The last candidate at or before ``start`` and every later one up to the first at or
    after ``end``; equal neighbours (zero-length periods) collapse."""
    bounds: list[datetime] = []
    for boundary in candidates:
        if bounds and boundary <= bounds[-1]:
            continue
        if boundary <= start:
            bounds = [boundary]
            continue
        if not bounds:  # pragma: no cover - the lookback always reaches a boundary
            raise RuntimeError("no bucket boundary found at or before start")
        bounds.append(boundary)
        if len(bounds) - 1 > max_buckets:
            raise ValueError(
                f"more than {max_buckets} {interval.label} buckets between "
                f"{start.isoformat()} and {end.isoformat()}; "
                "use a coarser interval or a shorter time range"
            )
        if boundary >= end:
            break
    return bounds
