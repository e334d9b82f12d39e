"""Apple Health exports whose sources overlap, a run resumed after its process stopped,
and the cleanup of kept exports, over real HTTP and the real sync engine:

- steps the iPhone and the Apple Watch both counted are counted once, by Apple's default
  order of sources (watch before phone before apps): a phone record inside a watch one
  is dropped, one that sticks out counts for its uncovered part (pro-rated), records of
  one source never cancel each other; the rule checked on its own too;
- a run stopped halfway and resumed by the engine counts each record once;
- kept exports past ``health_export_keep_hours`` are deleted unless a run of them is
  open, and so are leftovers of unfinished uploads."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from conftest import create_device
from export_helpers import apple_xml, record, upload, values
from fieldwatch.core.settings import Settings
from fieldwatch.integrations.exports import base as export_base
from fieldwatch.integrations.exports.base import exports_dir
from fieldwatch.integrations.exports.overlap import OTHER, PHONE, WATCH, _sweep, rank
from fieldwatch.integrations.models import Segment, SyncRun
from fieldwatch.runtime import Runtime
from sync_helpers import runs

PLUS_ONE = timezone(timedelta(hours=1))
STEPS = "HKQuantityTypeIdentifierStepCount"
HR = "HKQuantityTypeIdentifierHeartRate"
DAY = (datetime.now(PLUS_ONE) - timedelta(days=2)).replace(hour=9, minute=0, second=0,
                                                             microsecond=0)  # fmt: skip


def at(minutes: float) -> datetime:
    return DAY + timedelta(minutes=minutes)


def utc(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat()


async def _phone(client, actor) -> str:
    return str((await create_device(client, actor, name="Ana's phone",
                                    type="apple_health_phone"))["id"])  # fmt: skip


def steps(start: float, end: float, value: int, device: str) -> str:
    source = "Ana's Apple Watch" if device == "Watch" else "Ana's iPhone"
    return record(STEPS, at(start), str(value), "count", end=at(end), source=source,
                  device=device)  # fmt: skip


def test_the_default_order_of_sources() -> None:
    watch = "<<HKDevice: 0x1>, name:Apple Watch, manufacturer:Apple Inc., model:Watch>"
    phone = "<<HKDevice: 0x2>, name:iPhone, manufacturer:Apple Inc., model:iPhone>"
    assert rank("Ana's Apple Watch", watch) == WATCH
    assert rank("Ana's iPhone", phone) == PHONE
    assert rank("Ana's Apple Watch", None) == WATCH  # by its name when no device is given
    assert rank("Health", phone) == PHONE  # the device decides over the name
    assert rank("Strava", None) == OTHER


def test_the_sweep_pro_rates_what_a_higher_source_does_not_cover() -> None:
    rows = [  # start, end, value, rank, source, offset
        (0.0, 600.0, 600.0, PHONE, "phone", 0),  # half covered by the watch: 300 count
        (300.0, 600.0, 400.0, WATCH, "watch", 0),
        (300.0, 400.0, 50.0, PHONE, "phone", 0),  # inside the watch's: dropped
        (700.0, 800.0, 90.0, OTHER, "app", 0),
        (700.0, 800.0, 80.0, OTHER, "app-b", 0),  # same rank: by name, "app" first
        (900.0, 900.0, 7.0, PHONE, "phone", 0),  # an instant nobody covers
    ]
    got = sorted((r.source, start, value) for r, start, value in _sweep(iter(rows)))
    assert got == [("app", 700.0, 90.0), ("phone", 0.0, 300.0), ("phone", 900.0, 7.0),
                   ("watch", 300.0, 400.0)]  # fmt: skip


async def test_a_walk_counted_by_the_phone_and_the_watch_counts_once(
    client, operator, runtime: Runtime
) -> None:
    device = await _phone(client, operator)
    export = apple_xml([
        steps(0, 10, 1000, "Watch"),
        steps(1, 9, 900, "iPhone"),  # inside the watch's: dropped
        steps(5, 15, 1200, "iPhone"),  # 10–15 uncovered: 600 counted at 10
        steps(20, 30, 300, "iPhone"),  # nobody else: counted whole
        steps(20, 30, 200, "iPhone"),  # the same source again: not a rival
        record(HR, at(2), "70", "count/min", device="Watch"),  # not cumulative: kept
        record(HR, at(2.5), "71", "count/min", source="Ana's iPhone", device="iPhone"),
    ])  # fmt: skip
    answer = await upload(client, operator, "apple_health", device, "export.xml", export)
    assert answer.status_code == 202, answer.text
    await runtime.sync.run_once()
    (run,) = await runs(runtime, device)
    assert run.status == "completed", run.error_message
    got = await values(client, operator, device, "steps")
    assert [(t, v) for t, v, _ in got] == [
        (utc(at(0)), 1000.0), (utc(at(10)), 600.0), (utc(at(20)), 300.0)]  # fmt: skip
    # the two iPhone records of 20–30 share a start: one reading per time, as ever
    assert sum(v for _, v, _ in got) == 1900.0  # not 3600: the walk once
    assert len(await values(client, operator, device, "heart_rate")) == 2
    assert run.records_processed == 2 + 4  # the dropped phone record is not processed
    async with runtime.uow() as uow:
        sources = set((await uow.session.scalars(
            select(Segment.source).where(Segment.metric == "steps"))).all())  # fmt: skip
    assert sources == {"Ana's Apple Watch", "Ana's iPhone"}
    assert not [p for p in exports_dir(runtime.settings).iterdir()
                if p.name.startswith(".overlap-")]  # fmt: skip


async def test_a_resumed_run_counts_each_record_once(
    client, operator, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export_base, "CHUNK", 10)
    device = await _phone(client, operator)
    total = 800
    export = apple_xml([record(HR, at(i / 4), str(60 + i % 40), "count/min")
                        for i in range(total)])  # fmt: skip
    answer = await upload(client, operator, "apple_health", device, "export.xml", export)
    assert answer.status_code == 202, answer.text
    run_id = uuid.UUID(answer.json()["sync_id"])
    engine = runtime.sync
    assert await engine.claim() == [run_id]

    async def processed() -> int:
        async with runtime.uow() as uow:
            run = await uow.session.get(SyncRun, run_id, populate_existing=True)
            assert run is not None
            return run.records_processed

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # polls the database: no event tells it
        if await processed() >= 100:
            break
        await asyncio.sleep(0.005)
    await engine.stop()  # the process goes away halfway: its claim is given back
    halfway = await processed()
    assert 100 <= halfway < total, halfway

    await engine.run_once()  # resumed from where it was
    (run,) = await runs(runtime, device)
    assert (run.id, run.status) == (run_id, "completed")
    assert run.records_processed == total  # not halfway + total
    assert len(await values(client, operator, device, "heart_rate")) == total
    async with runtime.uow() as uow:
        segments = await uow.session.scalar(select(func.sum(Segment.count))
                                            .where(Segment.run_id == run_id))  # fmt: skip
    assert segments == total  # each chunk's provenance once


async def test_kept_exports_are_deleted_after_the_keeping_time(
    client, operator, runtime: Runtime, settings: Settings
) -> None:
    device = await _phone(client, operator)
    export = apple_xml([record(HR, at(0), "70", "count/min")])
    answer = await upload(client, operator, "apple_health", device, "export.xml", export)
    queued = answer.json()["bulk_id"]
    folder = exports_dir(settings)
    waiting = folder / f"{queued}.xml"  # its run is queued: kept, however old
    failed = folder / f"{uuid.uuid4()}.zip"  # a failed run's, no run open
    recent = folder / f"{uuid.uuid4()}.db"
    stray = folder / ".upload-abc123"
    other = folder / "notes.txt"
    for path in (failed, recent, stray, other):
        path.write_bytes(b"x")
    week_ago = time.time() - 8 * 24 * 3600
    for path in (waiting, failed, stray, other):
        os.utime(path, (week_ago, week_ago))
    settings.health_export_keep_hours = 7 * 24
    deleted = await runtime.sync.exports.run()
    assert sorted(p.name for p in deleted) == sorted([failed.name, stray.name])
    assert waiting.exists() and recent.exists() and other.exists()
    await runtime.sync.run_once()  # the queued run reads its export, then it goes
    assert not waiting.exists()
    assert runtime.sync.exports._last is not None  # the engine's tick runs it
