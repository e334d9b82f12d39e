"""Garmin's summaries read into samples, and which pull addresses are Garmin's."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from fieldwatch.integrations.connectors.garmin import same_origin
from fieldwatch.integrations.garmin.summaries import summary
from standins.garmin import OFFSET_S, body_comp, daily, sleep


def test_a_day_still_going_gives_heart_rate_but_no_totals() -> None:
    day = date(2026, 11, 30)
    going = summary("dailies", daily("u", day, complete=False))
    assert going is not None
    assert {m for m, _ in going.samples} == {"heart_rate"} and len(going.samples) == 48
    done = summary("dailies", daily("u", day))
    assert done is not None and going.record_id != done.record_id  # a longer day is new
    totals = {m: s.value for m, s in done.samples if m != "heart_rate"}
    assert totals == {"steps": 8000 + day.toordinal() % 1000, "distance": 6100.5,
                      "resting_heart_rate": 54.0}  # fmt: skip
    first = done.samples[0][1]
    assert first.ts.utcoffset() == timedelta(seconds=OFFSET_S)
    assert first.ts.astimezone(UTC) == datetime(2026, 11, 29, 23, tzinfo=UTC)


def test_sleep_is_the_time_asleep_and_weight_is_in_kg() -> None:
    night = summary("sleeps", sleep("u", date(2026, 11, 30)))
    assert night is not None and [(m, s.value) for m, s in night.samples] == \
        [("sleep_duration", 420.0)]  # fmt: skip
    weighed = summary("bodyComps", body_comp("u", date(2026, 11, 30)))
    assert weighed is not None and [(m, s.value) for m, s in weighed.samples] == \
        [("body_weight", 72.35)]  # fmt: skip


@pytest.mark.parametrize("item", [{}, {"summaryId": "x", "userId": "u"},
                                  {"summaryId": "x", "userId": "u", "startTimeInSeconds": "soon"},
                                  {"summaryId": "x", "userId": "u", "startTimeInSeconds": 1,
                                   "startTimeOffsetInSeconds": 10**9}])  # fmt: skip
def test_unreadable_summaries_are_skipped(item: dict[str, object]) -> None:
    assert summary("dailies", item) is None


def test_an_unknown_summary_type_is_skipped() -> None:
    assert summary("epochs", daily("u", date(2026, 11, 30))) is None


@pytest.mark.parametrize(("url", "ok"), [
    ("https://apis.garmin.com/wellness-api/rest/dailies?token=t", True),
    ("https://apis.garmin.com:443/wellness-api/rest/dailies", True),
    ("http://apis.garmin.com/wellness-api/rest/dailies", False),
    ("https://apis.garmin.com:8443/wellness-api/rest/dailies", False),
    ("https://apis.garmin.com.evil.example/x", False),
    ("https://user@apis.garmin.com/x", False),
    ("https://169.254.169.254/latest/meta-data", False),
    ("https://apis.garmin.com:99999/x", False),
])  # fmt: skip
def test_pulls_only_from_the_configured_host(url: str, ok: bool) -> None:
    assert same_origin(url, "https://apis.garmin.com") is ok
