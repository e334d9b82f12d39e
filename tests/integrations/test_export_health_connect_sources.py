"""Health Connect exports whose apps overlap, over real HTTP and the real sync engine:
steps, distance and time asleep that several apps wrote are counted once, by the app
priority the user set in Health Connect (kept in the export's
``health_data_category_priority_table``): a lower app's record inside a higher one's is
dropped, one that sticks out counts for its uncovered part (pro-rated), an app not in
the list comes after those in it, records of one app never cancel each other, other
metrics are all kept; the order read on its own too."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from conftest import create_device
from export_helpers import health_connect_db, upload, values
from fieldwatch.integrations.exports.health_connect import ACTIVITY, SLEEP, _priorities, _rank
from fieldwatch.integrations.models import Segment
from fieldwatch.runtime import Runtime
from sync_helpers import runs

PLUS_ONE = timezone(timedelta(hours=1))
OFFSET_S = 3600
DAY = (datetime.now(PLUS_ONE) - timedelta(days=2)).replace(hour=9, minute=0, second=0,
                                                             microsecond=0)  # fmt: skip
SAMSUNG, FITBIT, STRAVA = 1, 2, 3
APPS = [
    (SAMSUNG, "com.sec.android.app.shealth", "Samsung Health"),
    (FITBIT, "com.fitbit.FitbitMobile", "Fitbit"),
    (STRAVA, "com.strava", "Strava"),
]


def at(minutes: float) -> datetime:
    return DAY + timedelta(minutes=minutes)


def ms(minutes: float) -> int:
    return int(at(minutes).timestamp() * 1000)


def utc(minutes: float) -> str:
    return at(minutes).astimezone(UTC).isoformat()


def steps(row: int, start: float, end: float, count: int, app: int) -> tuple[object, ...]:
    return (row, ms(start), OFFSET_S, ms(end), count, app)


def _export(tmp_path: Path, activity: str | None, sleep: str | None = None) -> bytes:
    priorities = [(None, category, order) for category, order in
                  ((ACTIVITY, activity), (SLEEP, sleep)) if order is not None]  # fmt: skip
    rows = {
        "application_info_table": APPS,
        "steps_record_table": [
            steps(1, 0, 10, 1000, FITBIT),
            steps(2, 1, 9, 900, SAMSUNG),
            steps(3, 5, 15, 1200, SAMSUNG),
            steps(4, 12, 20, 800, STRAVA),  # not in the list: after the others
            steps(5, 30, 40, 300, SAMSUNG),  # nobody else then: counted whole
        ],
        "distance_record_table": [(1, ms(0), OFFSET_S, ms(10), 800.0, FITBIT),
                                  (2, ms(0), OFFSET_S, ms(10), 750.0, SAMSUNG)],
        "sleep_session_record_table": [(1, ms(-480), OFFSET_S, ms(-45), SAMSUNG),
                                       (2, ms(-470), OFFSET_S, ms(-40), FITBIT)],
        "heart_rate_record_table": [(10, b"a", ms(0), OFFSET_S, ms(2), FITBIT, 0),
                                    (11, b"b", ms(0), OFFSET_S, ms(2), SAMSUNG, 0)],
        "heart_rate_record_series_table": [(10, ms(0), 64), (11, ms(0.5), 66)],
        "health_data_category_priority_table": priorities,
    }  # fmt: skip
    return health_connect_db(tmp_path / "health_connect_export.db", rows)


def test_the_priority_read_from_the_export(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    health_connect_db(path, {"health_data_category_priority_table": [
        (None, ACTIVITY, "2,1"), (None, SLEEP, " 3, x,1")]})  # fmt: skip
    with sqlite3.connect(path) as db:
        priorities = _priorities(db, {"health_data_category_priority_table"})
    assert priorities == {ACTIVITY: [2, 1], SLEEP: [3, 1]}  # what is not an id is skipped
    assert [_rank(priorities, "steps", app) for app in (2, 1, 3, None)] == [0, 1, 2, 2]
    assert [_rank(priorities, "sleep_duration", app) for app in (3, 1, 2)] == [0, 1, 2]
    assert _rank({}, "distance", 1) == _rank({}, "distance", 2) == 0  # no order: by name


async def _phone(client, actor) -> str:
    device = await create_device(client, actor, name="Ana's phone", type="health_connect_phone")
    return str(device["id"])


@pytest.mark.parametrize(
    ("activity", "expected"),
    [
        # Fitbit first: Samsung's 1–9 is inside Fitbit's 0–10, its 5–15 counts for
        # 10–15 (600); Strava, unlisted, for 15–20 (500).
        ("2,1", [(0, 1000.0), (10, 600.0), (15, 500.0), (30, 300.0)]),
        # Samsung first: its records both count whole (one app never cancels itself),
        # Fitbit's 0–10 only for 0–1 (100).
        ("1,2", [(0, 100.0), (1, 900.0), (5, 1200.0), (15, 500.0), (30, 300.0)]),
    ],
)
async def test_overlapping_apps_count_once_by_the_users_priority(
    client, operator, runtime: Runtime, tmp_path: Path, activity: str,
    expected: list[tuple[float, float]],
) -> None:  # fmt: skip
    device = await _phone(client, operator)
    export = _export(tmp_path, activity, sleep="1,2")
    answer = await upload(client, operator, "health_connect", device, "export.db", export)
    assert answer.status_code == 202, answer.text
    await runtime.sync.run_once()
    (run,) = await runs(runtime, device)
    assert run.status == "completed", run.error_message
    got = await values(client, operator, device, "steps")
    assert [(t, v) for t, v, _ in got] == [(utc(m), v) for m, v in expected]
    assert sum(v for _, v, _ in got) == sum(v for _, v in expected) < 4200  # not every record
    distance = await values(client, operator, device, "distance")
    assert [(t, v) for t, v, _ in distance] == [(utc(0), 800.0 if activity == "2,1" else 750.0)]
    # Samsung's night first (435 min), Fitbit's only for the 5 minutes after it ends
    sleep = await values(client, operator, device, "sleep_duration")
    assert [(t, v) for t, v, _ in sleep] == [(utc(-480), 435.0), (utc(-45), 5.0)]
    assert len(await values(client, operator, device, "heart_rate")) == 2  # not cumulative
    assert run.records_processed == len(expected) + 1 + 2 + 2  # dropped: not processed
    async with runtime.uow() as uow:
        sources = set((await uow.session.scalars(
            select(Segment.source).where(Segment.metric == "steps"))).all())  # fmt: skip
    assert "com.strava" in sources and "com.fitbit.FitbitMobile" in sources


async def test_without_a_priority_apps_count_by_name(
    client, operator, runtime: Runtime, tmp_path: Path
) -> None:
    device = await _phone(client, operator)
    export = _export(tmp_path, activity=None)  # no order kept: com.fitbit… before com.sec…
    answer = await upload(client, operator, "health_connect", device, "export.db", export)
    assert answer.status_code == 202, answer.text
    await runtime.sync.run_once()
    (run,) = await runs(runtime, device)
    assert run.status == "completed", run.error_message
    got = await values(client, operator, device, "steps")
    # Fitbit, Samsung and Strava rank the same: by package name, Fitbit then Samsung then
    # Strava, as with the order "2,1" above
    assert [(t, v) for t, v, _ in got] == [(utc(0), 1000.0), (utc(10), 600.0),
                                           (utc(15), 500.0), (utc(30), 300.0)]  # fmt: skip
