from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Uuid, bindparam, func, select, text

from conftest import Actor, create_device, problem
from fieldwatch.telemetry.models import Reading, Rollup1h, Rollup1m, Series
from telemetry_helpers import device_with_token

FULL = {
    "name": "Boiler probe 7",
    "type": "esp32",
    "serial_number": "ESP-0007",
    "manufacturer": "Espressif",
    "model": "DevKitC",
    "firmware_version": "1.4.2",
    "hardware_version": "rev3",
    "capabilities": ["temperature", "humidity", "temperature"],
    "specs": {"flash_mb": 4, "radio": {"wifi": True}},
    "location": "Warehouse B",
    "purchase_date": "2026-01-15",
}


async def test_create_and_read_a_device(client, operator: Actor):
    r = await client.post("/api/v1/devices", json=FULL, headers=operator.headers)
    assert r.status_code == 201, r.text
    device = r.json()
    assert device["status"] == "in_stock"
    assert device["capabilities"] == ["temperature", "humidity"]  # deduplicated, order kept
    assert device["specs"] == FULL["specs"]
    assert device["workspace_id"] == str(operator.workspace_id)
    assert device["deploy_date"] is None and device["last_seen"] is None
    got = await client.get(f"/api/v1/devices/{device['id']}", headers=operator.headers)
    assert got.json() == device


async def test_seed_002_field_names_are_accepted(client, operator: Actor):
    body = {"device_type": "fitbit_charge_5", "device_name": "My Fitbit", "serial_number": "FB1"}
    r = await client.post("/api/v1/devices", json=body, headers=operator.headers)
    assert r.status_code == 201, r.text
    assert (r.json()["type"], r.json()["name"]) == ("fitbit_charge_5", "My Fitbit")


async def test_validation_errors_name_each_field(client, operator: Actor):
    r = await client.post(
        "/api/v1/devices",
        json={"type": "", "capabilities": "temp", "purchase_date": "yesterday"},
        headers=operator.headers,
    )
    body = problem(r, 422)
    fields = {e["field"] for e in body["errors"]}
    assert {"name", "type", "capabilities", "purchase_date"} <= fields


async def test_protected_fields_cannot_be_set(client, operator: Actor):
    for field, value in [("status", "deployed"), ("workspace_id", "x"), ("id", "y")]:
        r = await client.post(
            "/api/v1/devices",
            json={"name": "a", "type": "b", field: value},
            headers=operator.headers,
        )
        assert field in problem(r, 422)["detail"]
    device = await create_device(client, operator)
    for field, value in [("status", "deployed"), ("workspace_id", "x"), ("role", "admin")]:
        r = await client.patch(
            f"/api/v1/devices/{device['id']}", json={field: value}, headers=operator.headers
        )
        problem(r, 422)
    after = (await client.get(f"/api/v1/devices/{device['id']}", headers=operator.headers)).json()
    assert after == device


async def test_duplicate_serial_is_409_and_per_workspace(client, operator: Actor, factory):
    first = await create_device(client, operator, serial_number="SN-1")
    r = await client.post(
        "/api/v1/devices",
        json={"name": "b", "type": "t", "serial_number": "SN-1"},
        headers=operator.headers,
    )
    assert problem(r, 409)["existing_device_id"] == first["id"]
    other = await factory.user("operator", "globex")
    await create_device(client, other, serial_number="SN-1")  # another workspace: fine
    second = await create_device(client, operator, serial_number="SN-2")
    r = await client.patch(
        f"/api/v1/devices/{second['id']}", json={"serial_number": "SN-1"}, headers=operator.headers
    )
    problem(r, 409)
    total = (await client.get("/api/v1/devices", headers=operator.headers)).json()["total"]
    assert total == 2


async def test_patch_and_put_update_only_given_fields(client, operator: Actor):
    device = await create_device(client, operator, **FULL)
    r = await client.patch(
        f"/api/v1/devices/{device['id']}",
        json={"firmware_version": "1.5.0", "model": None},
        headers=operator.headers,
    )
    assert r.status_code == 200, r.text
    updated = r.json()
    assert updated["firmware_version"] == "1.5.0" and updated["model"] is None
    assert updated["name"] == FULL["name"] and updated["version"] == device["version"] + 1
    r = await client.put(
        f"/api/v1/devices/{device['id']}", json={"location": "Shelf 3"}, headers=operator.headers
    )
    assert r.json()["location"] == "Shelf 3" and r.json()["firmware_version"] == "1.5.0"
    problem(
        await client.patch(
            f"/api/v1/devices/{device['id']}", json={"name": None}, headers=operator.headers
        ),
        422,
    )


async def test_list_filters_search_and_pagination(client, operator: Actor):
    for i in range(7):
        await create_device(
            client,
            operator,
            name=f"Meter {i}",
            type="meter" if i % 2 else "gateway",
            serial_number=f"MTR-{i:03d}",
            location="North" if i < 4 else "South",
        )
    h = operator.headers
    page = (await client.get("/api/v1/devices?limit=3&offset=0&sort=name", headers=h)).json()
    assert page["total"] == 7 and len(page["items"]) == 3
    assert [d["name"] for d in page["items"]] == ["Meter 0", "Meter 1", "Meter 2"]
    last = (await client.get("/api/v1/devices?limit=3&offset=6&sort=name", headers=h)).json()
    assert [d["name"] for d in last["items"]] == ["Meter 6"]
    meters = (await client.get("/api/v1/devices?type=meter", headers=h)).json()
    assert meters["total"] == 3
    north_gw = (await client.get("/api/v1/devices?type=gateway&location=North", headers=h)).json()
    assert sorted(d["name"] for d in north_gw["items"]) == ["Meter 0", "Meter 2"]
    found = (await client.get("/api/v1/devices?q=mtr-005", headers=h)).json()
    assert [d["serial_number"] for d in found["items"]] == ["MTR-005"]
    assert (await client.get("/api/v1/devices?q=%25", headers=h)).json()["total"] == 0
    problem(await client.get("/api/v1/devices?limit=0", headers=h), 422)
    problem(await client.get("/api/v1/devices?status=lost", headers=h), 422)
    problem(await client.get("/api/v1/devices?sort=password", headers=h), 422)


async def test_in_stock_and_deployed_lists(client, operator: Actor):
    a = await create_device(client, operator, name="A")
    await create_device(client, operator, name="B")
    await client.put(
        f"/api/v1/devices/{a['id']}/deploy", json={"location": "Site 1"}, headers=operator.headers
    )
    stock = (await client.get("/api/v1/devices/in_stock", headers=operator.headers)).json()
    deployed = (await client.get("/api/v1/devices/deployed", headers=operator.headers)).json()
    assert [d["name"] for d in stock["items"]] == ["B"]
    assert [d["name"] for d in deployed["items"]] == ["A"]
    both = (
        await client.get(
            "/api/v1/devices?status=in_stock&status=deployed", headers=operator.headers
        )
    ).json()
    assert both["total"] == 2


async def test_delete_retires_and_purge_needs_admin(client, operator: Actor, admin: Actor):
    device = await create_device(client, operator)
    r = await client.delete(f"/api/v1/devices/{device['id']}", headers=operator.headers)
    assert r.status_code == 200 and r.json()["status"] == "retired"
    problem(await client.delete(f"/api/v1/devices/{device['id']}", headers=operator.headers), 409)
    problem(
        await client.delete(f"/api/v1/devices/{device['id']}?purge=true", headers=operator.headers),
        403,
    )
    r = await client.delete(f"/api/v1/devices/{device['id']}?purge=true", headers=admin.headers)
    assert r.status_code == 204
    problem(await client.get(f"/api/v1/devices/{device['id']}", headers=admin.headers), 404)


async def test_viewer_reads_but_cannot_write(client, viewer: Actor, operator: Actor):
    device = await create_device(client, operator)
    h = viewer.headers
    assert (await client.get("/api/v1/devices", headers=h)).status_code == 200
    assert (await client.get(f"/api/v1/devices/{device['id']}", headers=h)).status_code == 200
    writes = [
        client.post("/api/v1/devices", json={"name": "x", "type": "y"}, headers=h),
        client.patch(f"/api/v1/devices/{device['id']}", json={"name": "x"}, headers=h),
        client.delete(f"/api/v1/devices/{device['id']}", headers=h),
        client.put(f"/api/v1/devices/{device['id']}/deploy", json={"location": "x"}, headers=h),
        client.put(
            f"/api/v1/devices/{device['id']}/status", json={"status": "reserved"}, headers=h
        ),
        client.post(f"/api/v1/devices/{device['id']}/tokens", headers=h),
        client.post(
            "/api/v1/devices/import",
            content="name,type\na,b\n",
            headers={**h, "content-type": "text/csv"},
        ),
    ]
    for call in writes:
        body = problem(await call, 403)
        assert body["required_role"] == "operator" and body["your_role"] == "viewer"
    after = (await client.get(f"/api/v1/devices/{device['id']}", headers=h)).json()
    assert after == device
    assert (await client.get("/api/v1/devices", headers=h)).json()["total"] == 1


async def test_agent_tokens(client, operator: Actor, runtime):
    device = await create_device(client, operator)
    r = await client.post(
        f"/api/v1/devices/{device['id']}/tokens",
        json={"name": "bench unit"},
        headers=operator.headers,
    )
    assert r.status_code == 201, r.text
    issued = r.json()
    token = issued["token"]
    assert token.startswith("fwd_") and len(token) > 40
    assert set(issued) >= {"id", "token", "created_at"}

    listed = (
        await client.get(f"/api/v1/devices/{device['id']}/tokens", headers=operator.headers)
    ).json()["items"]
    assert [t["id"] for t in listed] == [issued["id"]]
    assert "token" not in listed[0] and token not in str(listed)
    assert listed[0]["last_used_at"] is None

    from sqlalchemy import select

    from fieldwatch.devices.models import AgentToken

    async with runtime.uow() as uow:
        stored = (await uow.session.scalars(select(AgentToken))).one()
    assert stored.token_digest != token and token not in stored.token_digest

    device_headers = {"Authorization": f"Bearer {token}"}
    me = await client.get("/api/v1/device/me", headers=device_headers)
    assert me.status_code == 200 and me.json()["device_id"] == device["id"]
    tokens = (
        await client.get(f"/api/v1/devices/{device['id']}/tokens", headers=operator.headers)
    ).json()["items"]
    assert tokens[0]["last_used_at"] is not None
    # A user token is not a device token.
    problem(await client.get("/api/v1/device/me", headers=operator.headers), 401)

    r = await client.delete(
        f"/api/v1/devices/{device['id']}/tokens/{issued['id']}", headers=operator.headers
    )
    assert r.status_code == 200 and r.json()["revoked_at"]
    problem(await client.get("/api/v1/device/me", headers=device_headers), 401)


async def test_a_token_says_whether_it_was_made_for_mqtt(client, operator: Actor):
    device = await create_device(client, operator)
    url = f"/api/v1/devices/{device['id']}/tokens"
    plain = await client.post(url, headers=operator.headers)
    for_mqtt = await client.post(url, json={"mqtt": True}, headers=operator.headers)
    assert (plain.json()["mqtt"], for_mqtt.json()["mqtt"]) == (False, True)
    for issued, expected in ((plain, False), (for_mqtt, True)):
        bearer = {"Authorization": f"Bearer {issued.json()['token']}"}
        assert (await client.get("/api/v1/device/me", headers=bearer)).json()["mqtt"] is expected
    listed = (await client.get(url, headers=operator.headers)).json()["items"]
    assert {t["id"]: t["mqtt"] for t in listed} == {
        plain.json()["id"]: False,
        for_mqtt.json()["id"]: True,
    }
    problem(await client.post(url, json={"mqtt": "perhaps"}, headers=operator.headers), 422)


async def test_retiring_revokes_tokens_and_refuses_new_ones(client, operator: Actor):
    device = await create_device(client, operator)
    token = (
        await client.post(f"/api/v1/devices/{device['id']}/tokens", headers=operator.headers)
    ).json()["token"]
    await client.put(f"/api/v1/devices/{device['id']}/retire", headers=operator.headers)
    problem(
        await client.get("/api/v1/device/me", headers={"Authorization": f"Bearer {token}"}), 401
    )
    problem(
        await client.post(f"/api/v1/devices/{device['id']}/tokens", headers=operator.headers), 409
    )
    tokens = (
        await client.get(f"/api/v1/devices/{device['id']}/tokens", headers=operator.headers)
    ).json()["items"]
    assert tokens[0]["revoked_at"] is not None


async def test_export_csv(client, operator: Actor):
    await create_device(client, operator, **FULL)
    await create_device(client, operator, name="Plain", type="sensor", serial_number="P-1")
    r = await client.get("/api/v1/devices/export", headers=operator.headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 2
    probe = next(row for row in rows if row["serial_number"] == "ESP-0007")
    assert probe["capabilities"] == "temperature;humidity"
    assert probe["specs"] == '{"flash_mb":4,"radio":{"wifi":true}}'
    assert probe["status"] == "in_stock" and probe["purchase_date"] == "2026-01-15"
    only = await client.get("/api/v1/devices/export?type=sensor", headers=operator.headers)
    assert len(list(csv.DictReader(io.StringIO(only.text)))) == 1


async def _telemetry_rows(runtime, series_ids: list[int]) -> dict[str, int]:
    async with runtime.uow() as uow:
        return {
            model.__tablename__: await uow.session.scalar(
                select(func.count()).select_from(model).where(model.series_id.in_(series_ids))
            )
            for model in (Reading, Rollup1m, Rollup1h)
        } | {
            "series": await uow.session.scalar(
                select(func.count()).select_from(Series).where(Series.id.in_(series_ids))
            )
        }


async def test_purge_takes_the_devices_telemetry_in_the_database(client, admin: Actor, runtime):
    """A device deleted by SQL alone (no service, no repository) takes its series (the
    foreign key's cascade), their readings and their rollups (a trigger) with it."""
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    values = [{"timestamp": (hour + timedelta(seconds=i)).isoformat(), "value": float(i)}
              for i in range(5)]  # fmt: skip
    devices: dict[str, tuple[uuid.UUID, list[int]]] = {}
    for name in ("gone", "kept"):
        device, token = await device_with_token(client, admin, name=name)
        url = f"/api/v1/devices/{device['id']}/data"
        for metric in ("t", "h"):
            r = await client.post(url, json={"data_type": metric, "values": values}, headers=token)
            assert r.json()["accepted"] == 5
        device_id = uuid.UUID(device["id"])
        async with runtime.uow() as uow:
            series = await uow.session.scalars(
                select(Series.id).where(Series.device_id == device_id)
            )
            devices[name] = (device_id, list(series))
    full = {"readings": 10, "rollup_1m": 2, "rollup_1h": 2, "series": 2}
    assert await _telemetry_rows(runtime, devices["gone"][1]) == full
    assert await _telemetry_rows(runtime, devices["kept"][1]) == full

    purge = text("DELETE FROM devices WHERE id = :id").bindparams(bindparam("id", type_=Uuid()))
    async with runtime.engine.begin() as conn:
        await conn.execute(purge, {"id": devices["gone"][0]})
    assert await _telemetry_rows(runtime, devices["gone"][1]) == dict.fromkeys(full, 0)
    assert await _telemetry_rows(runtime, devices["kept"][1]) == full
