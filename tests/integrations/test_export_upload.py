"""Bulk upload of health exports (Apple Health, Health Connect) over real HTTP: the
readings stored by value and unit through the sync engine, provenance and time zone
kept, refusals as problems (entities, wrong type, oversize), uploads twice adding
nothing, retry reading the kept export again."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from conftest import create_device, problem
from export_helpers import (
    BILLION_LAUGHS,
    apple_xml,
    health_connect_db,
    record,
    upload,
    values,
    zipped,
)
from fieldwatch.core.settings import Settings
from fieldwatch.integrations.exports.base import exports_dir
from fieldwatch.integrations.models import Segment
from fieldwatch.runtime import Runtime
from sync_helpers import device_sync, runs

PLUS_ONE = timezone(timedelta(hours=1))
HK = "HKQuantityTypeIdentifier"
#: Two days ago at 08:00 in +01:00 (inside the retention, not in the future).
DAY = (datetime.now(PLUS_ONE) - timedelta(days=2)).replace(hour=8, minute=0, second=0,
                                                             microsecond=0)  # fmt: skip


def at(minutes: int) -> datetime:
    return DAY + timedelta(minutes=minutes)


def utc(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat()


def apple_records() -> list[str]:
    return [
        record(f"{HK}HeartRate", at(0), "72", "count/min"),
        record(f"{HK}HeartRate", at(1), "75", "count/min"),
        record(f"{HK}StepCount", at(2), "120", "count", source="Ana's iPhone"),
        record(f"{HK}DistanceWalkingRunning", at(3), "1.2", "km"),
        record(f"{HK}DistanceWalkingRunning", at(4), "0.5", "mi"),
        record(f"{HK}OxygenSaturation", at(5), "0.97", "%"),
        record(f"{HK}BodyMass", at(6), "154", "lb", source="Scale"),
        record(f"{HK}RespiratoryRate", at(7), "14.5", "count/min"),
        record(f"{HK}RestingHeartRate", at(8), "58", "count/min"),
        record(f"{HK}BloodPressureSystolic", at(9), "121", "mmHg"),
        record(f"{HK}BloodPressureDiastolic", at(9), "79", "mmHg"),
        record(f"{HK}BodyTemperature", at(10), "98.6", "degF"),
        record("HKCategoryTypeIdentifierSleepAnalysis", at(-480),
               "HKCategoryValueSleepAnalysisAsleepCore", end=at(-390)),
        record("HKCategoryTypeIdentifierSleepAnalysis", at(-390),
               "HKCategoryValueSleepAnalysisAwake", end=at(-385)),
        record("HKCategoryTypeIdentifierSleepAnalysis", at(-385),
               "HKCategoryValueSleepAnalysisInBed", end=at(-300)),
        record(f"{HK}ActiveEnergyBurned", at(11), "12", "kcal"),  # not a catalogue metric
        record(f"{HK}HeartRate", at(12), "80", "furlongs"),  # an unknown unit: refused
    ]  # fmt: skip


#: What apple_records() becomes: metric → [(time, value, unit)].
EXPECTED = {
    "heart_rate": [(utc(at(0)), 72.0, "/min"), (utc(at(1)), 75.0, "/min")],
    "steps": [(utc(at(2)), 120.0, "{steps}")],
    "distance": [(utc(at(3)), 1200.0, "m"), (utc(at(4)), 804.672, "m")],
    "spo2": [(utc(at(5)), 97.0, "%")],
    "body_weight": [(utc(at(6)), 69.8532, "kg")],
    "respiratory_rate": [(utc(at(7)), 14.5, "/min")],
    "resting_heart_rate": [(utc(at(8)), 58.0, "/min")],
    "systolic_bp": [(utc(at(9)), 121.0, "mm[Hg]")],
    "diastolic_bp": [(utc(at(9)), 79.0, "mm[Hg]")],
    "body_temperature": [(utc(at(10)), 37.0, "Cel")],
    "sleep_duration": [(utc(at(-480)), 90.0, "min")],
}
STORED = sum(len(v) for v in EXPECTED.values())


async def _phone(client, actor, kind: str = "apple_health") -> str:
    device = await create_device(client, actor, name="Ana's phone", type=f"{kind}_phone")
    return str(device["id"])


def _kept(settings: Settings) -> list[Path]:
    folder = exports_dir(settings)
    return sorted(folder.iterdir()) if folder.exists() else []


async def test_apple_zip_becomes_readings_with_units_offsets_and_sources(
    client, operator, runtime: Runtime, settings: Settings
) -> None:
    device = await _phone(client, operator)
    export = zipped("apple_health_export/export.xml", apple_xml(apple_records()),
                    ("apple_health_export/export_cda.xml", b"<ClinicalDocument/>"))  # fmt: skip
    answer = await upload(client, operator, "apple_health", device, "export.zip", export)
    assert answer.status_code == 202, answer.text
    run = answer.json()
    assert (run["sync_type"], run["status"], run["device_id"]) == ("bulk", "queued", device)
    assert run["bulk_id"] is not None and run["connection_id"] is None
    assert [p.name for p in _kept(settings)] == [f"{run['bulk_id']}.zip"]

    await runtime.sync.run_once()
    (done,) = await runs(runtime, device)
    assert (done.status, done.records_processed, done.records_synced) == ("completed", 14, STORED)
    assert done.records_failed == 1  # the unknown unit
    for metric, expected in EXPECTED.items():
        assert await values(client, operator, device, metric) == expected, metric
    assert _kept(settings) == []  # read whole: not kept
    async with runtime.uow() as uow:
        segments = (await uow.session.scalars(
            select(Segment).where(Segment.run_id == done.id))).all()  # fmt: skip
    by_metric = {(s.metric, s.source): (s.count, s.tz_offset_min, s.connector) for s in segments}
    assert by_metric[("heart_rate", "Ana's Apple Watch")] == (3, 60, "apple_health")
    assert by_metric[("steps", "Ana's iPhone")] == (1, 60, "apple_health")
    assert by_metric[("body_weight", "Scale")] == (1, 60, "apple_health")
    sync = await device_sync(runtime, device)
    assert (sync.connector, sync.sync_status, sync.auto_sync) == ("apple_health", "ok", False)
    history = await client.get("/api/v1/sync/history", params={"device_id": device},
                               headers=operator.headers)  # fmt: skip
    assert [(r["sync_id"], r["records_synced"]) for r in history.json()["items"]] == [
        (run["sync_id"], STORED)
    ]
    health = await client.get(f"/api/v1/devices/{device}/health", headers=operator.headers)
    assert health.json()["sync_status"] == "ok"
    assert not [e for e in health.json()["errors"] if e.startswith("sync")]


async def test_the_same_export_twice_adds_nothing(client, operator, runtime: Runtime) -> None:
    device = await _phone(client, operator)
    export = apple_xml(apple_records())
    first = await upload(client, operator, "apple_health", device, "export.xml", export)
    assert first.status_code == 202, first.text
    await runtime.sync.run_once()
    second = await upload(client, operator, "apple_health", device, "export.xml", export)
    assert second.status_code == 202, second.text
    await runtime.sync.run_once()
    one, two = await runs(runtime, device)
    assert (one.status, one.records_synced) == ("completed", STORED)
    assert (two.status, two.records_processed, two.records_synced) == ("completed", 14, 0)
    for metric, expected in EXPECTED.items():
        assert await values(client, operator, device, metric) == expected, metric


XXE = '<!DOCTYPE HealthData [ <!ENTITY secret SYSTEM "file:///etc/passwd"> ]>'


@pytest.mark.parametrize("dtd", [BILLION_LAUGHS, XXE], ids=["billion-laughs", "xxe"])
async def test_entity_declarations_are_refused(
    client, operator, runtime: Runtime, settings: Settings, dtd: str
) -> None:
    device = await _phone(client, operator)
    bad = apple_xml([record(f"{HK}HeartRate", at(0), "&lol3;" if "lol" in dtd else "&secret;",
                            "count/min")], dtd=dtd)  # fmt: skip
    for name, data in (("export.xml", bad), ("export.zip", zipped("apple_health_export/export.xml",
                                                                  bad))):  # fmt: skip
        answer = await upload(client, operator, "apple_health", device, name, data)
        body = problem(answer, 422)
        assert body["type"].endswith("invalid-export") and "entities" in body["detail"]
    assert await runs(runtime, device) == [] and _kept(settings) == []


async def test_wrong_types_and_files_are_refused(
    client, operator, factory, tmp_path: Path, settings: Settings
) -> None:
    phone = await _phone(client, operator)
    export = apple_xml(apple_records())
    not_upload = await upload(client, operator, "oura", phone, "export.xml", export)
    assert problem(not_upload, 422)
    database = health_connect_db(tmp_path / "hc.db", {})
    as_apple = await upload(client, operator, "apple_health", phone, "export.db", database)
    assert "Apple Health" in problem(as_apple, 422)["detail"]
    other_root = apple_xml([], root="ClinicalDocument", dtd="")
    assert (
        "<ClinicalDocument>"
        in problem(await upload(client, operator, "apple_health", phone, "x.xml", other_root), 422)[
            "detail"
        ]
    )
    no_member = zipped("photos/cat.jpg", b"\xff\xd8")
    assert (
        "export.xml"
        in problem(await upload(client, operator, "apple_health", phone, "e.zip", no_member), 422)[
            "detail"
        ]
    )
    hc_device = await _phone(client, operator, "health_connect")
    hc_xml = await upload(client, operator, "health_connect", hc_device, "export.xml", export)
    assert "Health Connect" in problem(hc_xml, 422)["detail"]
    empty_db = tmp_path / "empty.db"
    _sqlite_without_tables(empty_db)
    refused = await upload(client, operator, "health_connect", hc_device, "x.db",
                           empty_db.read_bytes())  # fmt: skip
    assert "none of the tables" in problem(refused, 422)["detail"]
    # the device must be one of the integration's
    sensor = (await create_device(client, operator, name="Boiler", type="sensor"))["id"]
    wrong = problem(await upload(client, operator, "apple_health", sensor, "export.xml", export),
                    422)  # fmt: skip
    assert wrong["errors"][0]["field"] == "device_id"
    cross = problem(await upload(client, operator, "health_connect", phone, "x.db", database), 422)
    assert "takes no Health Connect exports: it takes Apple Health exports" in cross["detail"]
    missing = problem(await upload(client, operator, "apple_health", None, "export.xml", export),
                      422)  # fmt: skip
    assert missing["errors"][0]["field"] == "device_id"
    elsewhere = await factory.user("operator", workspace="other")
    theirs = problem(await upload(client, elsewhere, "apple_health", phone, "e.xml", export), 404)
    assert theirs["status"] == 404
    assert _kept(settings) == [] and not list(exports_dir(settings).glob(".upload-*"))


def _sqlite_without_tables(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (id INTEGER)")
    db.commit()
    db.close()


async def test_roles_and_oversize(client, operator, viewer, settings: Settings) -> None:
    device = await _phone(client, operator)
    export = apple_xml(apple_records())
    refused = await upload(client, viewer, "apple_health", device, "export.xml", export)
    assert problem(refused, 403)
    settings.health_export_max_bytes = 2048
    streamed = await upload(client, operator, "apple_health", device, "export.xml", export)
    assert len(export) > 2048 and problem(streamed, 413)["limit"] == 2048
    declared = await upload(client, operator, "apple_health", device, "export.xml",
                            export + b" " * 100_000)  # fmt: skip
    assert problem(declared, 413)["type"].endswith("export-too-large")
    assert list(exports_dir(settings).glob("*")) == []  # the partial file is gone


def _millis(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


async def test_health_connect_db_and_zip(
    client, operator, runtime: Runtime, tmp_path: Path
) -> None:
    device = await _phone(client, operator, "health_connect")
    offset = 3600
    rows = {
        "application_info_table": [(1, "com.sec.android.app.shealth", "Samsung Health"),
                                   (2, "com.withings.wiscale2", "Withings")],
        "heart_rate_record_table": [(10, b"u", _millis(at(0)), offset, _millis(at(2)), 1, 0)],
        "heart_rate_record_series_table": [(10, _millis(at(0)), 64), (10, _millis(at(1)), 66)],
        "steps_record_table": [(1, _millis(at(3)), offset, _millis(at(4)), 250, 1)],
        "weight_record_table": [(1, _millis(at(5)), offset, 71250.0, 2)],
        "oxygen_saturation_record_table": [(1, _millis(at(6)), offset, 96.0, 1)],
        "sleep_session_record_table": [(1, _millis(at(-480)), offset, _millis(at(-45)), 1)],
    }  # fmt: skip
    database = health_connect_db(tmp_path / "health_connect_export.db", rows)
    answer = await upload(client, operator, "health_connect", device, "export.db", database)
    assert answer.status_code == 202, answer.text
    await runtime.sync.run_once()
    (done,) = await runs(runtime, device)
    assert (done.status, done.records_processed, done.records_synced) == ("completed", 6, 6)
    assert await values(client, operator, device, "heart_rate") == [
        (utc(at(0)), 64.0, "/min"), (utc(at(1)), 66.0, "/min")]  # fmt: skip
    assert await values(client, operator, device, "steps") == [(utc(at(3)), 250.0, "{steps}")]
    assert await values(client, operator, device, "body_weight") == [(utc(at(5)), 71.25, "kg")]
    assert await values(client, operator, device, "spo2") == [(utc(at(6)), 96.0, "%")]
    assert await values(client, operator, device, "sleep_duration") == [
        (utc(at(-480)), 435.0, "min")]  # fmt: skip
    async with runtime.uow() as uow:
        segments = (
            await uow.session.scalars(select(Segment).where(Segment.run_id == done.id))
        ).all()
    assert {(s.metric, s.source, s.tz_offset_min) for s in segments} >= {
        ("heart_rate", "com.sec.android.app.shealth", 60),
        ("body_weight", "com.withings.wiscale2", 60),
    }
    again = await upload(client, operator, "health_connect", device, "export.zip",
                         zipped("health_connect_export.db", database))  # fmt: skip
    assert again.status_code == 202, again.text
    await runtime.sync.run_once()
    _, second = await runs(runtime, device)
    assert (second.status, second.records_processed, second.records_synced) == ("completed", 6, 0)


async def test_a_cancelled_upload_is_retried_from_the_kept_file(
    client, operator, runtime: Runtime, settings: Settings
) -> None:
    device = await _phone(client, operator)
    answer = await upload(client, operator, "apple_health", device, "export.xml",
                          apple_xml(apple_records()))  # fmt: skip
    sync_id = answer.json()["sync_id"]
    manual = await client.post(f"/api/v1/devices/{device}/sync", headers=operator.headers)
    assert "upload" in problem(manual, 409)["detail"]
    cancelled = await client.post(f"/api/v1/sync/{sync_id}/cancel", headers=operator.headers)
    assert cancelled.json()["status"] == "cancelled"
    assert len(_kept(settings)) == 1  # kept for a retry
    retry = await client.post(f"/api/v1/sync/retry/{sync_id}", headers=operator.headers)
    assert retry.status_code == 202, retry.text
    assert (retry.json()["retry_of"], retry.json()["bulk_id"]) == (
        sync_id,
        answer.json()["bulk_id"],
    )
    await runtime.sync.run_once()
    first, second = await runs(runtime, device)
    assert (first.status, second.status, second.records_synced) == (
        "cancelled",
        "completed",
        STORED,
    )
    assert _kept(settings) == []
    gone = await client.post(f"/api/v1/sync/retry/{second.id}", headers=operator.headers)
    assert problem(gone, 409)  # a completed run is not retried
    assert uuid.UUID(sync_id) == first.id
