"""Calendar- and time-zone-aware buckets (fieldwatch.telemetry.query.buckets).

Expectations are computed by hand from the tz rules (Europe/Berlin: CET +01, CEST +02,
switching at 01:00 UTC on the last Sundays of March and October) and, for DST edge cases,
checked against a brute-force minute-by-minute reference.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from fieldwatch.telemetry.query.buckets import (
    ACCEPTED_INTERVALS,
    Interval,
    bucket_index,
    buckets,
    parse_interval,
    parse_timezone,
    rollup_resolution,
    whole_hours_offset,
)

BERLIN = ZoneInfo("Europe/Berlin")
KOLKATA = ZoneInfo("Asia/Kolkata")
UTC_ZONE = ZoneInfo("UTC")
HOUR = timedelta(hours=1)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def local(
    tz: ZoneInfo, year: int, month: int, day: int, hour: int = 0, minute: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=tz)


def starts(spans: list[tuple[datetime, datetime]]) -> list[datetime]:
    return [b_start for b_start, _ in spans]


def assert_contiguous(spans: list[tuple[datetime, datetime]]) -> None:
    assert spans
    for b_start, b_end in spans:
        assert b_start.utcoffset() == timedelta(0) and b_end.utcoffset() == timedelta(0)
        assert b_start < b_end
    for (_, prev_end), (next_start, _) in pairwise(spans):
        assert prev_end == next_start


# --- intervals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "unit", "count"),
    [
        ("1m", "minute", 1),
        ("5m", "minute", 5),
        ("15m", "minute", 15),
        ("30m", "minute", 30),
        ("1h", "hour", 1),
        ("6h", "hour", 6),
        ("12h", "hour", 12),
        ("1d", "day", 1),
        ("1w", "week", 1),
        ("1mo", "month", 1),
        (" 2h ", "hour", 2),
    ],
)
def test_parse_interval_accepts(text: str, unit: str, count: int) -> None:
    interval = parse_interval(text)
    assert (interval.unit, interval.count) == (unit, count)
    assert interval.label == text.strip()


def test_accepted_list_is_the_documented_one_and_round_trips() -> None:
    assert ACCEPTED_INTERVALS == (
        "1m", "2m", "5m", "10m", "15m", "30m",
        "1h", "2h", "3h", "4h", "6h", "8h", "12h",
        "1d", "1w", "1mo",
    )  # fmt: skip
    for text in ACCEPTED_INTERVALS:
        assert parse_interval(text).label == text


INVALID = "", "m", "0m", "7m", "45m", "60m", "5h", "24h", "2d", "2w", "3mo", "1M", "1y", "-1h"


@pytest.mark.parametrize("text", [*INVALID, "1.5h", "1 h", "01h", "1hour"])
def test_parse_interval_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="accepted: 1m, 2m, 5m") as excinfo:
        parse_interval(text)
    assert "1mo" in str(excinfo.value)


def test_interval_dataclass_validates_and_is_frozen() -> None:
    with pytest.raises(ValueError, match="accepted"):
        Interval("hour", 5)
    with pytest.raises(ValueError, match="accepted"):
        Interval("day", 2)
    interval = Interval("minute", 15)
    assert interval == parse_interval("15m")
    assert interval.fixed_seconds == 900
    assert Interval("month", 1).fixed_seconds is None
    with pytest.raises(AttributeError):
        interval.count = 5  # type: ignore[misc]


def test_parse_timezone() -> None:
    assert parse_timezone("Europe/Berlin") == BERLIN
    for bad in ["", "Mars/Olympus", "Europe", "../etc/passwd", "europe/berlin"]:
        with pytest.raises(ValueError, match="unknown time zone"):
            parse_timezone(bad)


# --- DST days in Europe/Berlin -------------------------------------------------------------


def test_spring_forward_day_has_23_hourly_buckets() -> None:
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST at 01:00Z; local midnight = 2026-03-28T23:00Z
    spans = buckets(
        local(BERLIN, 2026, 3, 29), local(BERLIN, 2026, 3, 30), parse_interval("1h"), BERLIN
    )
    assert len(spans) == 23
    assert_contiguous(spans)
    assert spans[0] == (utc(2026, 3, 28, 23), utc(2026, 3, 29, 0))
    assert spans[-1] == (utc(2026, 3, 29, 21), utc(2026, 3, 29, 22))
    assert all(b_end - b_start == HOUR for b_start, b_end in spans)
    # local hours 00, 01, 03, 04, ... 23: 02 does not exist
    hours = [s.astimezone(BERLIN).hour for s in starts(spans)]
    assert hours == [0, 1, *range(3, 24)]


def test_spring_forward_day_bucket_is_23_hours() -> None:
    spans = buckets(
        local(BERLIN, 2026, 3, 29, 12), local(BERLIN, 2026, 3, 29, 13), parse_interval("1d"), BERLIN
    )
    assert spans == [(utc(2026, 3, 28, 23), utc(2026, 3, 29, 22))]
    assert spans[0][1] - spans[0][0] == timedelta(hours=23)


def test_autumn_day_has_25_distinct_hourly_buckets() -> None:
    # 2026-10-25: 03:00 CEST falls back to 02:00 CET at 01:00Z; 02:00-03:00 happens twice
    spans = buckets(
        local(BERLIN, 2026, 10, 25), local(BERLIN, 2026, 10, 26), parse_interval("1h"), BERLIN
    )
    assert len(spans) == 25
    assert_contiguous(spans)
    assert spans[0][0] == utc(2026, 10, 24, 22)
    assert spans[-1][1] == utc(2026, 10, 25, 23)
    assert len(set(starts(spans))) == 25
    assert all(b_end - b_start == HOUR for b_start, b_end in spans)
    hours = [s.astimezone(BERLIN).hour for s in starts(spans)]
    assert hours == [0, 1, 2, 2, *range(3, 24)]
    # the two local 02:00 buckets are the consecutive UTC hours 00:00Z and 01:00Z
    assert spans[2] == (utc(2026, 10, 25, 0), utc(2026, 10, 25, 1))
    assert spans[3] == (utc(2026, 10, 25, 1), utc(2026, 10, 25, 2))


def test_autumn_day_bucket_is_25_hours() -> None:
    spans = buckets(
        local(BERLIN, 2026, 10, 25, 1), local(BERLIN, 2026, 10, 25, 5), parse_interval("1d"), BERLIN
    )
    assert spans == [(utc(2026, 10, 24, 22), utc(2026, 10, 25, 23))]
    assert spans[0][1] - spans[0][0] == timedelta(hours=25)


def test_six_hour_buckets_stretch_and_shrink_with_dst() -> None:
    spring = buckets(
        local(BERLIN, 2026, 3, 29), local(BERLIN, 2026, 3, 30), parse_interval("6h"), BERLIN
    )
    # 00:00 CET (23:00Z) .. 06:00 CEST (04:00Z) is 5 hours, then 06/12/18 local
    assert starts(spring) == [
        utc(2026, 3, 28, 23),
        utc(2026, 3, 29, 4),
        utc(2026, 3, 29, 10),
        utc(2026, 3, 29, 16),
    ]
    assert spring[-1][1] == utc(2026, 3, 29, 22)
    autumn = buckets(
        local(BERLIN, 2026, 10, 25), local(BERLIN, 2026, 10, 26), parse_interval("6h"), BERLIN
    )
    # 00:00 CEST (22:00Z) .. 06:00 CET (05:00Z) is 7 hours
    assert starts(autumn) == [
        utc(2026, 10, 24, 22),
        utc(2026, 10, 25, 5),
        utc(2026, 10, 25, 11),
        utc(2026, 10, 25, 17),
    ]
    assert autumn[0][1] - autumn[0][0] == timedelta(hours=7)


def test_fifteen_minute_buckets_in_the_fold_are_distinct() -> None:
    # local 02:00-03:00 twice: 8 quarter-hour buckets from 00:00Z to 02:00Z
    spans = buckets(utc(2026, 10, 25, 0), utc(2026, 10, 25, 2), parse_interval("15m"), BERLIN)
    assert starts(spans) == [utc(2026, 10, 25, 0) + timedelta(minutes=15 * i) for i in range(8)]
    assert [s.astimezone(BERLIN).strftime("%H:%M") for s in starts(spans)] == [
        "02:00",
        "02:15",
        "02:30",
        "02:45",
        "02:00",
        "02:15",
        "02:30",
        "02:45",
    ]


# --- calendar months and weeks -------------------------------------------------------------


def test_calendar_months_in_berlin() -> None:
    spans = buckets(
        local(BERLIN, 2026, 1, 15), local(BERLIN, 2026, 4, 10), parse_interval("1mo"), BERLIN
    )
    assert spans == [
        (utc(2025, 12, 31, 23), utc(2026, 1, 31, 23)),  # January (CET)
        (utc(2026, 1, 31, 23), utc(2026, 2, 28, 23)),  # February
        (utc(2026, 2, 28, 23), utc(2026, 3, 31, 22)),  # March: 1st 00:00 CET, ends in CEST
        (utc(2026, 3, 31, 22), utc(2026, 4, 30, 22)),  # April (CEST)
    ]
    lengths = [b_end - b_start for b_start, b_end in spans]
    assert lengths == [
        timedelta(days=31),
        timedelta(days=28),
        timedelta(days=31) - HOUR,
        timedelta(days=30),
    ]
    assert [(s.astimezone(BERLIN).month, s.astimezone(BERLIN).day) for s in starts(spans)] == [
        (1, 1),
        (2, 1),
        (3, 1),
        (4, 1),
    ]


def test_month_buckets_across_a_year_end() -> None:
    spans = buckets(utc(2025, 12, 10), utc(2026, 1, 2), parse_interval("1mo"), UTC_ZONE)
    assert spans == [(utc(2025, 12, 1), utc(2026, 1, 1)), (utc(2026, 1, 1), utc(2026, 2, 1))]


def test_week_buckets_start_on_monday_local_midnight() -> None:
    # 2026-01-01 is a Thursday; its ISO week starts Monday 2025-12-29
    spans = buckets(
        local(BERLIN, 2026, 1, 1), local(BERLIN, 2026, 1, 20), parse_interval("1w"), BERLIN
    )
    assert starts(spans) == [
        utc(2025, 12, 28, 23),
        utc(2026, 1, 4, 23),
        utc(2026, 1, 11, 23),
        utc(2026, 1, 18, 23),
    ]
    assert spans[-1][1] == utc(2026, 1, 25, 23)
    for s in starts(spans):
        loc = s.astimezone(BERLIN)
        assert loc.weekday() == 0
        assert (loc.hour, loc.minute) == (0, 0)


def test_week_with_spring_forward_is_167_hours() -> None:
    spans = buckets(
        local(BERLIN, 2026, 3, 25), local(BERLIN, 2026, 3, 26), parse_interval("1w"), BERLIN
    )
    assert spans == [(utc(2026, 3, 22, 23), utc(2026, 3, 29, 22))]
    assert spans[0][1] - spans[0][0] == timedelta(hours=167)


# --- non-hour offsets and UTC --------------------------------------------------------------


def test_quarter_hours_in_kolkata_follow_the_local_clock() -> None:
    # IST is +05:30: local 10:07 = 04:37Z, local 11:00 = 05:30Z
    spans = buckets(
        local(KOLKATA, 2026, 1, 1, 10, 7),
        local(KOLKATA, 2026, 1, 1, 11),
        parse_interval("15m"),
        KOLKATA,
    )
    assert starts(spans) == [
        utc(2026, 1, 1, 4, 30),
        utc(2026, 1, 1, 4, 45),
        utc(2026, 1, 1, 5, 0),
        utc(2026, 1, 1, 5, 15),
    ]
    assert spans[-1][1] == utc(2026, 1, 1, 5, 30)
    assert [s.minute for s in starts(spans)] == [30, 45, 0, 15]
    assert [s.astimezone(KOLKATA).minute for s in starts(spans)] == [0, 15, 30, 45]


def test_hours_and_days_in_kolkata() -> None:
    hours = buckets(utc(2026, 1, 1, 0), utc(2026, 1, 1, 2), parse_interval("1h"), KOLKATA)
    assert starts(hours) == [
        utc(2025, 12, 31, 23, 30),
        utc(2026, 1, 1, 0, 30),
        utc(2026, 1, 1, 1, 30),
    ]
    days = buckets(utc(2026, 1, 1, 0), utc(2026, 1, 1, 2), parse_interval("1d"), KOLKATA)
    assert days == [(utc(2025, 12, 31, 18, 30), utc(2026, 1, 1, 18, 30))]


def test_utc_minute_buckets_are_not_clipped() -> None:
    spans = buckets(
        utc(2026, 5, 1, 12, 0, 30), utc(2026, 5, 1, 12, 3), parse_interval("1m"), UTC_ZONE
    )
    assert spans == [
        (utc(2026, 5, 1, 12, 0), utc(2026, 5, 1, 12, 1)),
        (utc(2026, 5, 1, 12, 1), utc(2026, 5, 1, 12, 2)),
        (utc(2026, 5, 1, 12, 2), utc(2026, 5, 1, 12, 3)),
    ]
    # start on a boundary and end just past one: one more (partly covered) bucket
    spans = buckets(
        utc(2026, 5, 1, 12, 0), utc(2026, 5, 1, 12, 1, 0, 1), parse_interval("1m"), UTC_ZONE
    )
    assert spans == [
        (utc(2026, 5, 1, 12, 0), utc(2026, 5, 1, 12, 1)),
        (utc(2026, 5, 1, 12, 1), utc(2026, 5, 1, 12, 2)),
    ]


def test_inputs_in_other_zones_give_utc_output() -> None:
    start = datetime(2026, 5, 1, 14, 0, 30, tzinfo=BERLIN)  # 12:00:30Z
    spans = buckets(start, start + timedelta(seconds=10), parse_interval("1m"), UTC_ZONE)
    assert spans == [(utc(2026, 5, 1, 12, 0), utc(2026, 5, 1, 12, 1))]
    assert spans[0][0].tzinfo is UTC


# --- zones with unusual transitions --------------------------------------------------------


def test_midnight_gap_and_fold_in_sao_paulo() -> None:
    sao_paulo = ZoneInfo("America/Sao_Paulo")
    # 2018-11-04 00:00 -03 jumped to 01:00 -02: the day starts at 01:00 local = 03:00Z
    gap = buckets(utc(2018, 11, 4, 12), utc(2018, 11, 4, 13), parse_interval("1d"), sao_paulo)
    assert gap == [(utc(2018, 11, 4, 3), utc(2018, 11, 5, 2))]
    # 2019-02-17 00:00 -02 fell back to 2019-02-16 23:00 -03: Feb 16 lasts 25 hours
    fold = buckets(utc(2019, 2, 16, 12), utc(2019, 2, 16, 13), parse_interval("1d"), sao_paulo)
    assert fold == [(utc(2019, 2, 16, 2), utc(2019, 2, 17, 3))]


def test_skipped_calendar_day_in_samoa_has_no_bucket() -> None:
    apia = ZoneInfo("Pacific/Apia")
    # 2011-12-29 23:59:59 -10 was followed by 2011-12-31 00:00 +14
    spans = buckets(utc(2011, 12, 29, 12), utc(2011, 12, 31, 12), parse_interval("1d"), apia)
    assert spans == [
        (utc(2011, 12, 29, 10), utc(2011, 12, 30, 10)),  # Dec 29
        (utc(2011, 12, 30, 10), utc(2011, 12, 31, 10)),  # Dec 31
        (utc(2011, 12, 31, 10), utc(2012, 1, 1, 10)),  # Jan 1
    ]
    assert [s.astimezone(apia).date() for s in starts(spans)] == [
        date(2011, 12, 29),
        date(2011, 12, 31),
        date(2012, 1, 1),
    ]


def test_half_hour_dst_in_lord_howe() -> None:
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    # 2026-10-04 02:00 +10:30 jumps to 02:30 +11 (at 15:30Z on Oct 3)
    spans = buckets(utc(2026, 10, 3, 14), utc(2026, 10, 3, 17), parse_interval("1h"), lord_howe)
    assert spans == [
        (utc(2026, 10, 3, 13, 30), utc(2026, 10, 3, 14, 30)),  # 00:00 local
        (utc(2026, 10, 3, 14, 30), utc(2026, 10, 3, 15, 30)),  # 01:00 local
        (utc(2026, 10, 3, 15, 30), utc(2026, 10, 3, 16, 0)),  # 02:30 local, after the jump
        (utc(2026, 10, 3, 16, 0), utc(2026, 10, 3, 17, 0)),  # 03:00 local
    ]


def _reference_boundaries(tz: ZoneInfo, step: int, lo: datetime, hi: datetime) -> list[datetime]:
    """Brute force, minute by minute: a bucket starts where the local wall clock shows a
    multiple of ``step`` or jumps forward past one."""

    def wall(t: datetime) -> int:
        local_t = t.astimezone(tz).replace(tzinfo=UTC)
        return int(local_t.timestamp())

    found = []
    t = lo
    prev = wall(t - timedelta(minutes=1))
    while t < hi:
        w = wall(t)
        if w % step == 0 or w // step > prev // step:
            found.append(t)
        prev = w
        t += timedelta(minutes=1)
    return found


@pytest.mark.parametrize(
    ("zone", "day"),
    [
        ("Europe/Berlin", utc(2026, 3, 29)),
        ("Europe/Berlin", utc(2026, 10, 25)),
        ("America/New_York", utc(2026, 3, 8, 6)),
        ("America/New_York", utc(2026, 11, 1, 5)),
        ("America/St_Johns", utc(2026, 3, 8, 4)),
        ("America/St_Johns", utc(2026, 11, 1, 3)),
        ("Australia/Lord_Howe", utc(2026, 4, 4, 13)),
        ("Australia/Lord_Howe", utc(2026, 10, 3, 13)),
        ("Asia/Kathmandu", utc(2026, 6, 1)),
    ],
)
@pytest.mark.parametrize("text", ["15m", "30m", "1h", "2h", "6h"])
def test_fixed_intervals_match_brute_force(zone: str, day: datetime, text: str) -> None:
    tz = ZoneInfo(zone)
    interval = parse_interval(text)
    assert interval.fixed_seconds is not None
    spans = buckets(day, day + timedelta(hours=30), interval, tz)
    assert_contiguous(spans)
    expected = _reference_boundaries(
        tz, interval.fixed_seconds, spans[0][0] - timedelta(hours=14), spans[-1][1] + HOUR
    )
    window = [b for b in expected if spans[0][0] <= b <= spans[-1][1]]
    assert [*starts(spans), spans[-1][1]] == window
    assert spans[0][0] <= day < spans[0][1]


# --- validation ----------------------------------------------------------------------------


def test_naive_datetimes_are_rejected() -> None:
    naive = datetime(2026, 1, 1)
    with pytest.raises(ValueError, match="start must be a timezone-aware"):
        buckets(naive, utc(2026, 1, 2), parse_interval("1h"), BERLIN)
    with pytest.raises(ValueError, match="end must be a timezone-aware"):
        buckets(utc(2026, 1, 1), naive, parse_interval("1h"), BERLIN)
    with pytest.raises(ValueError, match="timezone-aware"):
        whole_hours_offset(BERLIN, naive, utc(2026, 1, 2))


def test_start_must_be_before_end() -> None:
    with pytest.raises(ValueError, match="start must be before end"):
        buckets(utc(2026, 1, 1), utc(2026, 1, 1), parse_interval("1h"), BERLIN)
    with pytest.raises(ValueError, match="start must be before end"):
        buckets(utc(2026, 1, 2), utc(2026, 1, 1), parse_interval("1d"), BERLIN)


def test_too_many_buckets() -> None:
    # 7 days of 1m buckets = 10,080 > 10,000
    with pytest.raises(ValueError, match=r"more than 10000 1m buckets.*coarser interval"):
        buckets(utc(2026, 1, 1), utc(2026, 1, 8), parse_interval("1m"), UTC_ZONE)
    # a huge range is rejected quickly, not enumerated
    with pytest.raises(ValueError, match="coarser interval"):
        buckets(utc(1900, 1, 1), utc(2100, 1, 1), parse_interval("1m"), BERLIN)
    with pytest.raises(ValueError, match="coarser interval"):
        buckets(utc(1, 6, 1), utc(9999, 1, 1), parse_interval("1d"), BERLIN)
    assert (
        len(
            buckets(
                utc(2026, 1, 1), utc(2026, 1, 1, 3), parse_interval("1h"), UTC_ZONE, max_buckets=3
            )
        )
        == 3
    )
    with pytest.raises(ValueError, match="more than 3 1h buckets"):
        buckets(
            utc(2026, 1, 1), utc(2026, 1, 1, 3, 0, 1), parse_interval("1h"), UTC_ZONE, max_buckets=3
        )


# --- assigning timestamps ------------------------------------------------------------------


def test_bucket_index_is_half_open() -> None:
    spans = buckets(utc(2026, 10, 25, 0), utc(2026, 10, 25, 3), parse_interval("1h"), BERLIN)
    assert starts(spans) == [utc(2026, 10, 25, 0), utc(2026, 10, 25, 1), utc(2026, 10, 25, 2)]
    assert bucket_index(utc(2026, 10, 25, 0), spans) == 0
    assert bucket_index(utc(2026, 10, 25, 0, 59, 59, 999999), spans) == 0
    assert bucket_index(utc(2026, 10, 25, 1), spans) == 1  # boundary goes to the later bucket
    assert bucket_index(utc(2026, 10, 25, 2), spans) == 2
    assert bucket_index(utc(2026, 10, 25, 2, 59), spans) == 2
    assert bucket_index(utc(2026, 10, 25, 3), spans) is None  # end is exclusive
    assert bucket_index(utc(2026, 10, 24, 23, 59), spans) is None
    # same instant in another zone: 02:00 CET (second occurrence) = 01:00Z
    assert bucket_index(datetime(2026, 10, 25, 2, fold=1, tzinfo=BERLIN), spans) == 1
    assert bucket_index(datetime(2026, 10, 25, 2, fold=0, tzinfo=BERLIN), spans) == 0
    assert bucket_index(utc(2026, 10, 25, 1), []) is None
    with pytest.raises(ValueError, match="timezone-aware"):
        bucket_index(datetime(2026, 10, 25, 1), spans)


def test_bucket_index_on_month_boundaries() -> None:
    spans = buckets(
        local(BERLIN, 2026, 1, 15), local(BERLIN, 2026, 4, 10), parse_interval("1mo"), BERLIN
    )
    assert bucket_index(utc(2026, 2, 28, 22, 59, 59), spans) == 1  # still February locally
    assert bucket_index(utc(2026, 2, 28, 23), spans) == 2  # 1 March 00:00 local
    assert bucket_index(utc(2026, 3, 31, 22), spans) == 3  # 1 April 00:00 local


# --- rollup choice -------------------------------------------------------------------------


def test_whole_hours_offset() -> None:
    year = (utc(2026, 1, 1), utc(2027, 1, 1))
    assert whole_hours_offset(BERLIN, *year) is True
    assert whole_hours_offset(KOLKATA, *year) is False
    assert whole_hours_offset(ZoneInfo("Asia/Kathmandu"), *year) is False
    assert whole_hours_offset(UTC_ZONE, *year) is True
    # Lord Howe is +10:30 in winter and +11 in summer: a summer-only range is whole hours
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    assert whole_hours_offset(lord_howe, utc(2026, 1, 1), utc(2026, 2, 1)) is True
    assert whole_hours_offset(lord_howe, utc(2026, 1, 1), utc(2026, 6, 1)) is False


def test_rollup_resolution() -> None:
    berlin_year = (local(BERLIN, 2026, 1, 1), local(BERLIN, 2027, 1, 1))
    for text in ["1h", "6h", "1d", "1w", "1mo"]:
        interval = parse_interval(text)
        spans = buckets(*berlin_year, interval, BERLIN)
        assert rollup_resolution(interval, spans) == "hour", text
    for text in ["1m", "15m", "30m"]:
        interval = parse_interval(text)
        spans = buckets(local(BERLIN, 2026, 3, 29), local(BERLIN, 2026, 3, 30), interval, BERLIN)
        assert rollup_resolution(interval, spans) == "minute", text
    for text in ["1h", "1d", "1mo"]:
        interval = parse_interval(text)
        spans = buckets(utc(2026, 1, 1), utc(2026, 3, 1), interval, KOLKATA)
        assert rollup_resolution(interval, spans) == "minute", text
    with pytest.raises(ValueError, match="no buckets"):
        rollup_resolution(parse_interval("1h"), [])
