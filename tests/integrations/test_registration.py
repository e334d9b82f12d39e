"""The seed's registration shape on POST /api/v1/devices: a device with a vendor token
set (issued by the Oura stand-in) and sync settings; refusals; the device's sync health."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from sqlalchemy import select, update

from conftest import problem
from fieldwatch.core.clock import utcnow
from fieldwatch.core.settings import Settings, VendorApp
from fieldwatch.integrations.models import Connection, DeviceSync
from fieldwatch.runtime import Runtime
from standins.vendor import Grant, Vendor
from sync_helpers import readings

USER = "oura-user-reg"
DEVICES = "/api/v1/devices"
STANDIN_USERS = [USER]


def tokens(vendor: Vendor, user: str = USER) -> dict[str, str]:
    """A token set the stand-in issued (as a companion app would have obtained it)."""
    issued = vendor.issue(Grant(user_id=user, scope="personal heartrate daily"))
    expires = utcnow() + timedelta(seconds=issued["expires_in"])
    return {"access_token": issued["access_token"], "refresh_token": issued["refresh_token"],
            "expires_at": expires.isoformat()}  # fmt: skip


def seed_body(credentials: dict[str, str] | None, **over: object) -> dict[str, object]:
    body: dict[str, object] = {
        "device_type": "oura_ring", "device_name": "My ring", "manufacturer": "Oura",
        "model": "Gen3", "serial_number": f"OR-{uuid.uuid4().hex[:8]}",
        "firmware_version": "2.9.1", "capabilities": ["heart_rate", "steps"],
        "integration_type": "api", "credentials": credentials,
        "sync_settings": {"auto_sync": True, "sync_interval_minutes": 15,
                          "sync_historical_days": 1},
    }  # fmt: skip
    body.update(over)
    return body


async def connections(runtime: Runtime) -> list[Connection]:
    async with runtime.uow() as uow:
        return list((await uow.session.scalars(select(Connection))).all())


async def test_seed_registration_seals_the_tokens_and_syncs(
    client, operator, oura, runtime: Runtime, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    creds = tokens(oura)
    before = utcnow()
    answer = await client.post(DEVICES, json=seed_body(creds), headers=operator.headers)
    assert answer.status_code == 201, answer.text
    made = answer.json()
    assert set(made) >= {"device_id", "status", "sync_status", "last_sync", "next_sync",
                         "created_at"}  # fmt: skip
    assert (made["status"], made["sync_status"], made["last_sync"]) == ("registered", "pending",
                                                                        None)  # fmt: skip
    assert made["connector"] == "oura" and made["next_sync"] is not None
    for secret in (creds["access_token"], creds["refresh_token"]):
        assert secret not in answer.text and secret not in caplog.text
    (row,) = await connections(runtime)
    assert (row.status, row.external_user_id, str(row.id)) == ("active", USER,
                                                               made["connection_id"])  # fmt: skip
    assert row.credentials and creds["access_token"] not in row.credentials
    opened = runtime.key_ring.open(row.credentials, f"{row.workspace_id}:{row.id}:credentials")
    assert creds["access_token"].encode() in opened
    device = await client.get(f"{DEVICES}/{made['device_id']}", headers=operator.headers)
    assert device.json()["type"] == "oura_ring" and device.json()["manufacturer"] == "Oura"
    assert creds["access_token"] not in device.text

    await runtime.sync.run_once()  # the first sync uses the registered tokens
    hr = await readings(runtime, made["device_id"], "heart_rate")
    assert 24 * 60 - 1 <= len(hr) <= 24 * 60 + 2
    health = await client.get(f"{DEVICES}/{made['device_id']}/health", headers=operator.headers)
    assert health.status_code == 200, health.text
    body = health.json()
    assert body["sync_status"] == "ok" and body["last_sync"] >= before.isoformat()[:19]
    assert body["next_sync"] is not None and body["errors"] == []
    assert "lifecycle_status" in body and "battery_level" in body  # the existing fields stay

    # Registering a second device of the same account reuses its connection.
    again = await client.post(DEVICES, json=seed_body(tokens(oura)), headers=operator.headers)
    assert again.status_code == 201 and again.json()["connection_id"] == made["connection_id"]
    assert len(await connections(runtime)) == 1


async def test_refusals(client, operator, oura, runtime: Runtime) -> None:
    fitbit_body = seed_body(tokens(oura), device_type="fitbit_charge_5")
    fitbit = await client.post(DEVICES, headers=operator.headers, json=fitbit_body)
    body = problem(fitbit, 409)
    assert "sunset" in body["detail"] and "google_health" in body["detail"]
    assert body["successor"] == "google_health"
    unknown = await client.post(DEVICES, headers=operator.headers,
                                json=seed_body(tokens(oura), device_type="acme_band"))  # fmt: skip
    assert "acme" in problem(unknown, 400)["detail"]
    bad = await client.post(DEVICES, headers=operator.headers, json=seed_body(
        tokens(oura), sync_settings={"sync_interval_minutes": 0}))  # fmt: skip
    assert problem(bad, 422)["errors"]
    extra = await client.post(DEVICES, headers=operator.headers,
                              json=seed_body(tokens(oura), sync_settings={"every": 5}))  # fmt: skip
    problem(extra, 422)
    refused = await client.post(DEVICES, headers=operator.headers, json=seed_body(
        {"access_token": "not-a-token-the-vendor-issued"}))  # fmt: skip
    assert "refused" in problem(refused, 400)["detail"]
    assert await connections(runtime) == []
    listed = await client.get(DEVICES, headers=operator.headers)
    assert listed.json()["total"] == 0


async def test_unreachable_vendor_leaves_it_pending(client, operator, settings: Settings,
                                                    runtime: Runtime) -> None:  # fmt: skip
    settings.oura = VendorApp(client_id="c", client_secret="s", auth_url="http://127.0.0.1:9",
                              api_url="http://127.0.0.1:9")  # fmt: skip
    given = seed_body({"access_token": "t", "refresh_token": "r"})
    answer = await client.post(DEVICES, headers=operator.headers, json=given)
    assert answer.status_code == 201, answer.text
    assert (answer.json()["sync_status"], answer.json()["next_sync"]) == ("pending", None)
    (row,) = await connections(runtime)
    assert (row.status, row.external_user_id) == ("pending", None)
    health = await client.get(f"{DEVICES}/{answer.json()['device_id']}/health",
                              headers=operator.headers)  # fmt: skip
    assert any("pending" in w for w in health.json()["warnings"])


async def test_shapes_without_credentials_and_the_classic_shape(client, operator) -> None:
    watch = {"device_type": "apple_watch", "device_name": "Watch", "integration_type": "bluetooth"}
    plain = await client.post(DEVICES, headers=operator.headers, json=watch)
    assert plain.status_code == 201, plain.text
    assert (plain.json()["status"], plain.json()["sync_status"]) == ("registered", None)
    classic = await client.post(DEVICES, headers=operator.headers,
                                json={"device_type": "sensor", "device_name": "Probe"})  # fmt: skip
    assert classic.status_code == 201 and classic.json()["name"] == "Probe"
    assert classic.json()["status"] == "in_stock" and "sync_status" not in classic.json()
    wrong = await client.post(DEVICES, headers=operator.headers, json={"name": "x"})
    assert problem(wrong, 422)["errors"]


async def test_health_errors_and_summary(client, operator, factory, oura, runtime: Runtime) -> None:
    made = await client.post(DEVICES, json=seed_body(tokens(oura)), headers=operator.headers)
    device = uuid.UUID(made.json()["device_id"])
    async with runtime.uow() as uow:
        await uow.session.execute(update(DeviceSync).where(DeviceSync.device_id == device).values(
            sync_status="auth_required", failures=3,
            last_sync_at=utcnow() - timedelta(hours=2)))  # fmt: skip
        await uow.commit()
    health = (await client.get(f"{DEVICES}/{device}/health", headers=operator.headers)).json()
    assert health["sync_status"] == "auth_required"
    assert any("auth_required" in e for e in health["errors"])
    assert any("3 failed syncs" in e for e in health["errors"])
    assert any("stale" in w for w in health["warnings"])
    summary = (await client.get(f"{DEVICES}/health/summary", headers=operator.headers)).json()
    assert summary["sync"] == {"auth_required": 1}
    assert str(device) in summary["devices_with_errors"]
    other = await factory.user("admin", workspace="elsewhere")
    theirs = (await client.get(f"{DEVICES}/health/summary", headers=other.headers)).json()
    assert theirs["sync"] == {} and theirs["devices_with_errors"] == []
    hidden = await client.get(f"{DEVICES}/{device}/health", headers=other.headers)
    problem(hidden, 404)


async def test_the_same_account_in_another_workspace_gets_its_own_connection(
    client, operator, factory, oura, runtime: Runtime
) -> None:
    ours = await client.post(DEVICES, json=seed_body(tokens(oura)), headers=operator.headers)
    other = await factory.user("operator", workspace="elsewhere")
    theirs = await client.post(DEVICES, json=seed_body(tokens(oura)), headers=other.headers)
    assert ours.status_code == theirs.status_code == 201, theirs.text
    assert ours.json()["connection_id"] != theirs.json()["connection_id"]
    rows = await connections(runtime)
    assert {r.workspace_id for r in rows} == {operator.workspace_id, other.workspace_id}
    hidden = await client.get(f"{DEVICES}/{ours.json()['device_id']}/health",
                              headers=other.headers)  # fmt: skip
    problem(hidden, 404)


async def test_the_api_description_shows_both_shapes(client) -> None:
    spec = (await client.get("/openapi.json")).json()
    body = spec["paths"]["/api/v1/devices"]["post"]["requestBody"]["content"]["application/json"]
    shapes = {s["title"]: s for s in body["schema"]["anyOf"]}
    assert set(shapes) == {"DeviceCreate", "DeviceRegistration"}
    registration = shapes["DeviceRegistration"]["properties"]
    assert "access_token" in str(registration["credentials"]) and "$ref" not in str(shapes)


async def test_a_registered_ring_is_linked_to_the_vendors_so_import_finds_it(
    client, operator, oura, runtime: Runtime
) -> None:
    made = await client.post(DEVICES, json=seed_body(tokens(oura)), headers=operator.headers)
    assert made.status_code == 201, made.text
    device, connection = made.json()["device_id"], made.json()["connection_id"]
    listed = await client.get("/api/v1/integrations/oura/devices",
                              params={"connection_id": connection},
                              headers=operator.headers)  # fmt: skip
    (ring,) = listed.json()["items"]
    assert ring["device_id"] == device  # the account's one ring is the registered one
    imported = await client.post("/api/v1/integrations/oura/import", json={
        "connection_id": connection, "devices": [ring["vendor_device_id"]]},
        headers=operator.headers)  # fmt: skip
    assert imported.status_code == 201, imported.text
    assert [(i["device_id"], i["created"]) for i in imported.json()] == [(device, False)]
    everything = await client.get(DEVICES, headers=operator.headers)
    assert everything.json()["total"] == 1  # no duplicate
    async with runtime.uow() as uow:
        sync = await uow.session.get(DeviceSync, uuid.UUID(device))
    assert sync is not None and sync.vendor_device_id == ring["vendor_device_id"]

    # A second device of the same account: the ring is taken, nothing else to link to.
    second = await client.post(DEVICES, json=seed_body(tokens(oura)), headers=operator.headers)
    async with runtime.uow() as uow:
        other = await uow.session.get(DeviceSync, uuid.UUID(second.json()["device_id"]))
    assert other is not None and other.vendor_device_id != ring["vendor_device_id"]
