"""Reads of health data in the access log, on every path that answers readings (the
telemetry and monitoring APIs, fleet statistics, deletions), and the health metrics'
LOINC codes and UCUM units in those answers and in the catalogue of connectors.

A health device is one fed by a vendor cloud (the Oura stand-in's ring, synced) or
registered as a wearable whose companion app uploads (``integration_type``, or an
upload connector's type); a field sensor's reads are not logged, even of a metric
named like a health one."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from conftest import Actor, create_device, problem
from fieldwatch.integrations.privacy import repository as privacy_repository
from fieldwatch.runtime import Runtime
from integration_helpers import API, connect_as, import_ring
from telemetry_helpers import iso, recent

USER = "oura-user-health-reads"
STANDIN_USERS = [USER]
HEART_RATE = {"name": "heart_rate", "title": "Heart rate", "loinc": "8867-4", "unit": "/min",
              "omh_schema": "omh:heart-rate"}  # fmt: skip


async def send(client: httpx.AsyncClient, actor: Actor, device_id: str, metric: str,
               values: list[float], unit: str | None = None) -> None:  # fmt: skip
    points = [{"timestamp": iso(recent(60 * (len(values) - i))), "value": v, "unit": unit}
              for i, v in enumerate(values)]  # fmt: skip
    r = await client.post(f"/api/v1/devices/{device_id}/data", headers=actor.headers,
                          json={"data_type": metric, "values": points})  # fmt: skip
    assert r.status_code == 200 and r.json()["accepted"] == len(values), r.text


async def access_log(client: httpx.AsyncClient, admin: Actor, **params: str) -> list[Any]:
    r = await client.get(f"{API}/access-log", params={"limit": 500, **params},
                         headers=admin.headers)  # fmt: skip
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def entries(log: list[Any]) -> set[tuple[str, str, str]]:
    return {(e["device_id"], e["action"], e["what"]) for e in log}


async def get(client: httpx.AsyncClient, actor: Actor, url: str, **params: Any) -> Any:
    r = await client.get(url, params=params, headers=actor.headers)
    assert r.status_code == 200, r.text
    return r.json()


async def test_monitoring_reads_of_a_synced_ring_are_logged(
    client, admin, factory, oura, runtime: Runtime
) -> None:
    connection = await connect_as(client, admin, USER)
    ring = await import_ring(client, admin, connection, sync_historical_days=1)
    await runtime.sync.run_once()
    sensor = (await create_device(client, admin, name="Boiler", type="sensor"))["id"]
    await send(client, admin, sensor, "temperature", [20.5, 21.0], "Cel")
    viewer = await factory.user("viewer")
    who = f"user:{viewer.email}"
    assert await access_log(client, admin) == []

    latest = await get(client, viewer, "/api/v1/monitoring/latest", type="oura_ring",
                       data_type="heart_rate")  # fmt: skip
    assert list(latest["devices"]) == [ring] and latest["count"] == 1
    assert latest["health_metrics"] == {"heart_rate": HEART_RATE}
    one = await get(client, viewer, f"/api/v1/monitoring/data/{ring}", data_type="heart_rate",
                    limit=5)  # fmt: skip
    assert len(one["items"]) == 5 and one["health_metrics"] == {"heart_rate": HEART_RATE}
    many = await get(client, viewer, "/api/v1/monitoring/data", device_id=ring,
                     data_type="heart_rate", limit=5)  # fmt: skip
    assert {i["device_id"] for i in many["items"]} == {ring}
    stats = await get(client, viewer, "/api/v1/monitoring/stats", window_s=86400)
    assert "heart_rate" in stats["metrics"] and "temperature" in stats["metrics"]

    log = await access_log(client, admin)
    assert {e["actor"] for e in log} == {who}
    assert sorted(e["what"] for e in log) == [
        "monitoring data heart_rate", "monitoring data heart_rate",
        "monitoring latest heart_rate", "monitoring stats"]  # fmt: skip
    assert {e["device_id"] for e in log} == {ring}

    # The field sensor's readings, alone: nothing logged, no health metrics described.
    theirs = await get(client, viewer, "/api/v1/monitoring/latest", device_id=sensor)
    assert list(theirs["devices"]) == [sensor] and theirs["health_metrics"] == {}
    mine = await get(client, viewer, f"/api/v1/monitoring/data/{sensor}")
    assert len(mine["items"]) == 2 and mine["health_metrics"] == {}
    assert len(await access_log(client, admin)) == 4
    # Everything at once: one row, for the ring only.
    every = await get(client, viewer, "/api/v1/monitoring/latest")
    assert set(every["devices"]) == {ring, sensor}
    assert {"heart_rate", "steps"} <= set(every["health_metrics"])
    assert "temperature" not in every["health_metrics"]
    log = await access_log(client, admin)
    assert len(log) == 5
    assert (log[0]["device_id"], log[0]["what"]) == (ring, "monitoring latest all")
    # Another workspace's reads of its own devices log nothing here.
    other = await factory.user("admin", workspace="elsewhere")
    await get(client, other, "/api/v1/monitoring/latest")
    await get(client, other, "/api/v1/monitoring/stats")
    assert len(await access_log(client, admin)) == 5


async def companion_watch(client: httpx.AsyncClient, admin: Actor) -> str:
    """An Apple Watch registered in the seed's shape (no vendor cloud: its companion app
    uploads), with heart rate readings."""
    body = {"device_type": "smartwatch", "device_name": "Ana's watch", "manufacturer": "Apple",
            "model": "Watch S9", "integration_type": "apple_health"}  # fmt: skip
    r = await client.post("/api/v1/devices", json=body, headers=admin.headers)
    assert r.status_code == 201, r.text
    watch = str(r.json()["device_id"])
    await send(client, admin, watch, "heart_rate", [61, 64, 70], "/min")
    return watch


async def test_a_companion_app_device_is_a_health_device(client, admin, viewer) -> None:
    watch = await companion_watch(client, admin)
    typed = (await create_device(client, admin, name="Ben's", type="apple_health_watch"))["id"]
    await send(client, admin, typed, "steps", [120], "{steps}")
    # A field sensor whose metrics share health metrics' names is not one.
    sensor = (await create_device(client, admin, name="Level", type="ultrasonic"))["id"]
    await send(client, admin, sensor, "distance", [1.5], "m")
    await send(client, admin, sensor, "heart_rate", [3], "/min")

    latest = await get(client, viewer, f"/api/v1/devices/{watch}/data/latest")
    assert latest["health_metrics"] == {"heart_rate": HEART_RATE}
    page = await get(client, viewer, f"/api/v1/devices/{typed}/data")
    assert page["health_metrics"]["steps"]["loinc"] == "55423-8"
    assert page["health_metrics"]["steps"]["unit"] == "{steps}"
    aggregate = await get(client, viewer, f"/api/v1/devices/{watch}/data/aggregate",
                          data_type="heart_rate", interval="1d")  # fmt: skip
    assert aggregate["health_metric"] == HEART_RATE
    assert sum(b["count"] for b in aggregate["buckets"]) == 3
    for path, params in (("data/latest", {}), ("data", {}),
                         ("data/aggregate", {"data_type": "distance"})):  # fmt: skip
        answer = await get(client, viewer, f"/api/v1/devices/{sensor}/{path}", **params)
        assert not answer.get("health_metrics") and answer.get("health_metric") is None
    fleet = await get(client, viewer, "/api/v1/monitoring/latest", data_type="heart_rate")
    assert set(fleet["devices"]) == {watch, sensor}

    assert entries(await access_log(client, admin)) == {
        (watch, "read", "data latest"), (typed, "read", "data all"),
        (watch, "read", "data aggregate heart_rate"),
        (watch, "read", "monitoring latest heart_rate"),
    }  # fmt: skip


async def test_a_list_over_many_devices_logs_a_row_per_health_device(
    client, admin, viewer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``MAX_LISTED`` devices the workspace's health devices are matched instead of
    naming every device in the query: the same rows either way."""
    watches = [await companion_watch(client, admin) for _ in range(3)]
    sensors = [(await create_device(client, admin, name=f"S{i}"))["id"] for i in range(3)]
    for sensor in sensors:
        await send(client, admin, sensor, "temperature", [20.0])
    await get(client, viewer, "/api/v1/monitoring/latest")
    monkeypatch.setattr(privacy_repository, "MAX_LISTED", 2)
    await get(client, viewer, "/api/v1/monitoring/latest", data_type="heart_rate")
    log = await access_log(client, admin)
    assert sorted((e["device_id"], e["what"]) for e in log) == sorted(
        [(w, "monitoring latest all") for w in watches]
        + [(w, "monitoring latest heart_rate") for w in watches])  # fmt: skip
    assert len({e["at"] for e in log if e["what"] == "monitoring latest all"}) == 1


async def test_deleting_a_health_devices_readings_is_logged(client, admin) -> None:
    watch = await companion_watch(client, admin)
    sensor = (await create_device(client, admin))["id"]
    await send(client, admin, sensor, "temperature", [20.0])
    for device in (watch, sensor):
        r = await client.delete(f"/api/v1/devices/{device}/data", headers=admin.headers)
        assert r.status_code == 200 and r.json()["deleted"] > 0, r.text
    again = await client.delete(f"/api/v1/devices/{watch}/data", headers=admin.headers)
    assert again.json()["deleted"] == 0  # nothing deleted: nothing logged
    assert entries(await access_log(client, admin)) == {(watch, "delete", "data all")}


async def test_the_catalogue_names_loinc_codes_and_ucum_units(client, viewer) -> None:
    catalogue = await get(client, viewer, "/api/v1/integrations")
    by_type = {i["type"]: i for i in catalogue["items"]}
    for item in by_type.values():
        assert [m["name"] for m in item["metrics"]] == item["data_types"]
    oura = {m["name"]: m for m in by_type["oura"]["metrics"]}
    assert oura["heart_rate"] == HEART_RATE
    assert list(oura) == ["heart_rate", "steps"]  # what Oura is synced for
    google = {m["name"]: m for m in by_type["google_health"]["metrics"]}
    assert (google["spo2"]["loinc"], google["spo2"]["unit"]) == ("59408-5", "%")
    assert (google["sleep_duration"]["loinc"], google["sleep_duration"]["unit"]) == (
        "93832-4", "min")  # fmt: skip
    withings = {m["name"]: m for m in by_type["withings"]["metrics"]}
    assert (withings["body_weight"]["loinc"], withings["body_weight"]["unit"]) == ("29463-7", "kg")
    assert withings["systolic_bp"]["unit"] == "mm[Hg]"


@pytest.mark.parametrize("path", ["device-usage", "data-quality", "sync-performance"])
async def test_analytics_refuse_an_unknown_connector(client, viewer, path: str) -> None:
    body = problem(await client.get(f"/api/v1/analytics/{path}", params={"connector": "nosuch"},
                                    headers=viewer.headers), 422)  # fmt: skip
    assert body["errors"][0]["field"] == "connector" and "nosuch" in body["detail"]
    assert "oura" in body["connectors"]
    known = await client.get(f"/api/v1/analytics/{path}", params={"connector": "oura"},
                             headers=viewer.headers)  # fmt: skip
    assert known.status_code == 200, known.text
