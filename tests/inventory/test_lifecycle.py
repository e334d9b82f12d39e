from __future__ import annotations

import asyncio
import itertools

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from conftest import Actor, create_device, problem
from fieldwatch.devices.lifecycle import TRANSITIONS, DeviceStatus
from fieldwatch.devices.models import DeviceLog

S = DeviceStatus
# How to bring a new (in_stock) device into each status.
PATH_TO = {
    S.in_stock: [],
    S.reserved: [S.reserved],
    S.deployed: [S.deployed],
    S.maintenance: [S.maintenance],
    S.retired: [S.retired],
}
ALLOWED = {
    (S.in_stock, S.reserved), (S.in_stock, S.deployed), (S.in_stock, S.maintenance),
    (S.in_stock, S.retired), (S.reserved, S.deployed), (S.reserved, S.in_stock),
    (S.reserved, S.retired), (S.deployed, S.in_stock), (S.deployed, S.maintenance),
    (S.deployed, S.retired), (S.maintenance, S.in_stock), (S.maintenance, S.deployed),
    (S.maintenance, S.retired),
}  # fmt: skip


def test_the_matrix_is_the_one_the_issue_asks_for():
    defined = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    assert defined == ALLOWED


async def _status(client, actor: Actor, device_id: str, status: S, location: str = "Site 9"):
    return await client.put(
        f"/api/v1/devices/{device_id}/status",
        json={"status": status.value, "location": location, "notes": f"to {status.value}"},
        headers=actor.headers,
    )


async def _logs(client, actor: Actor, device_id: str) -> list[dict]:
    r = await client.get(f"/api/v1/devices/{device_id}/logs", headers=actor.headers)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def test_every_pair_of_statuses(client, operator: Actor):
    """All 25 (from, to) pairs through PUT /status: allowed ones change the device and
    write one audit row; refused ones answer 409 naming the allowed statuses and change
    nothing."""
    for source, target in itertools.product(S, S):
        device = await create_device(client, operator, name=f"{source}->{target}")
        for step in PATH_TO[source]:
            assert (await _status(client, operator, device["id"], step)).status_code == 200
        before = (
            await client.get(f"/api/v1/devices/{device['id']}", headers=operator.headers)
        ).json()
        logs_before = await _logs(client, operator, device["id"])
        r = await _status(client, operator, device["id"], target)
        if (source, target) in ALLOWED:
            assert r.status_code == 200, (source, target, r.text)
            assert r.json()["status"] == target.value
            logs = await _logs(client, operator, device["id"])
            assert len(logs) == len(logs_before) + 1
            newest = logs[0]
            assert (newest["old_status"], newest["new_status"]) == (source.value, target.value)
            assert newest["performed_by"] == str(operator.user_id)
            assert newest["notes"].startswith(f"to {target.value}")
            assert newest["changes"]["status"] == {"before": source.value, "after": target.value}
        else:
            body = problem(r, 409)
            assert body["current_status"] == source.value
            assert body["requested_status"] == target.value
            expected = sorted(b.value for a, b in ALLOWED if a == source)
            assert sorted(body["allowed_statuses"]) == expected
            after = (
                await client.get(f"/api/v1/devices/{device['id']}", headers=operator.headers)
            ).json()
            assert after == before
            assert len(await _logs(client, operator, device["id"])) == len(logs_before)


async def test_named_actions_and_their_effects(client, operator: Actor):
    h = operator.headers
    device = await create_device(client, operator, location="Warehouse A")
    url = f"/api/v1/devices/{device['id']}"

    problem(await client.put(f"{url}/deploy", json={}, headers=h), 422)  # location required
    r = await client.put(
        f"{url}/deploy", json={"location": "Factory A - Floor 3", "notes": "go"}, headers=h
    )
    d = r.json()
    assert (d["status"], d["location"]) == ("deployed", "Factory A - Floor 3")
    assert d["deploy_date"] is not None

    r = await client.put(f"{url}/maintenance", json={"location": "Workshop"}, headers=h)
    assert r.json()["status"] == "maintenance" and r.json()["last_maintenance"] is not None

    r = await client.put(
        f"{url}/recall", json={"location": "Warehouse B", "status": "in_stock"}, headers=h
    )
    assert (r.json()["status"], r.json()["location"]) == ("in_stock", "Warehouse B")

    # seed 001 body: the status sent along must match the action
    problem(await client.put(f"{url}/reserve", json={"status": "deployed"}, headers=h), 422)
    assert (await client.put(f"{url}/reserve", headers=h)).json()["status"] == "reserved"
    # recall is for deployed or maintenance devices only, even though reserved→in_stock exists
    body = problem(await client.put(f"{url}/recall", json={"location": "W"}, headers=h), 409)
    assert body["current_status"] == "reserved"
    assert (await client.put(f"{url}/retire", json={"notes": "end"}, headers=h)).json()[
        "status"
    ] == "retired"
    problem(await client.put(f"{url}/deploy", json={"location": "x"}, headers=h), 409)

    actions = [row["action"] for row in await _logs(client, operator, device["id"])]
    assert actions == ["retired", "reserved", "recalled", "maintenance", "deployed", "created"]


async def test_audit_rows_record_who_what_and_request(client, operator: Actor):
    device = await create_device(client, operator, name="Old name")
    await client.patch(
        f"/api/v1/devices/{device['id']}",
        json={"name": "New name", "specs": {"a": 1}},
        headers={**operator.headers, "X-Request-ID": "req-abc-123"},
    )
    # An update that changes nothing writes nothing.
    await client.patch(
        f"/api/v1/devices/{device['id']}", json={"name": "New name"}, headers=operator.headers
    )
    logs = await _logs(client, operator, device["id"])
    assert [row["action"] for row in logs] == ["updated", "created"]
    updated = logs[0]
    assert updated["request_id"] == "req-abc-123"
    assert updated["actor"] == f"user:{operator.email}"
    assert updated["changes"] == {
        "name": {"before": "Old name", "after": "New name"},
        "specs": {"before": {}, "after": {"a": 1}},
    }


async def test_device_logs_are_append_only_in_the_database(client, operator: Actor, runtime):
    device = await create_device(client, operator)
    for statement in ("UPDATE device_logs SET notes = 'x'", "DELETE FROM device_logs"):
        async with runtime.engine.connect() as conn:
            with pytest.raises(DBAPIError, match="append-only"):
                await conn.execute(text(statement))
            await conn.rollback()
    assert len(await _logs(client, operator, device["id"])) == 1


async def test_concurrent_transitions_do_not_both_win(client, operator: Actor, runtime):
    for _ in range(5):
        device = await create_device(client, operator)
        url = f"/api/v1/devices/{device['id']}"
        results = await asyncio.gather(
            client.put(f"{url}/deploy", json={"location": "Site A"}, headers=operator.headers),
            client.put(f"{url}/retire", headers=operator.headers),
            client.put(f"{url}/maintenance", headers=operator.headers),
        )
        codes = sorted(r.status_code for r in results)
        winners = [r for r in results if r.status_code == 200]
        assert codes.count(200) >= 1 and set(codes) <= {200, 409}, codes
        final = (await client.get(url, headers=operator.headers)).json()
        logs = await _logs(client, operator, device["id"])
        transitions = [row for row in logs if row["action"] != "created"]
        # Every success is in the trail, chained: each old_status is the previous new_status.
        assert len(transitions) == len(winners)
        chain = [row for row in reversed(transitions)]
        prev = "in_stock"
        for row in chain:
            assert row["old_status"] == prev
            prev = row["new_status"]
        assert final["status"] == prev


async def test_events_are_published_after_commit_only(client, operator: Actor, runtime):
    seen: list = []

    async def handler(event):
        seen.append(event)

    runtime.bus.subscribe("device.*", handler)
    device = await create_device(client, operator, serial_number="EV-1")
    await client.patch(
        f"/api/v1/devices/{device['id']}", json={"model": "X"}, headers=operator.headers
    )
    await client.put(
        f"/api/v1/devices/{device['id']}/deploy", json={"location": "L"}, headers=operator.headers
    )
    # Refused or failed changes publish nothing.
    await client.put(f"/api/v1/devices/{device['id']}/reserve", headers=operator.headers)
    await client.post(
        "/api/v1/devices",
        json={"name": "dup", "type": "t", "serial_number": "EV-1"},
        headers=operator.headers,
    )
    assert [e.type for e in seen] == ["device.created", "device.updated", "device.status_changed"]
    changed = seen[-1]
    assert (
        changed.payload["old_status"] == "in_stock" and changed.payload["new_status"] == "deployed"
    )
    assert changed.workspace_id == operator.workspace_id
    assert str(changed.subject_id) == device["id"]


async def test_inventory_summary(client, operator: Actor):
    h = operator.headers
    for i, (t, loc) in enumerate(
        [
            ("meter", "North"),
            ("meter", "North"),
            ("meter", "South"),
            ("gateway", "North"),
            ("gateway", None),
        ]
    ):
        d = await create_device(client, operator, type=t, location=loc, name=f"d{i}")
        if i == 0:
            await client.put(
                f"/api/v1/devices/{d['id']}/deploy", json={"location": "Plant 7"}, headers=h
            )
    s = (await client.get("/api/v1/inventory/summary", headers=h)).json()
    assert s["total"] == 5
    assert s["by_status"] == {
        "in_stock": 4,
        "reserved": 0,
        "deployed": 1,
        "maintenance": 0,
        "retired": 0,
    }
    stock = s["breakdown"]["in_stock"]
    assert stock["by_type"] == {"gateway": 2, "meter": 2}
    assert stock["by_location"] == {"(no location)": 1, "North": 2, "South": 1}
    assert s["breakdown"]["deployed"]["by_location"] == {"Plant 7": 1}


async def test_log_rows_survive_a_purge(client, admin: Actor, runtime):
    device = await create_device(client, admin)
    await client.delete(f"/api/v1/devices/{device['id']}?purge=true", headers=admin.headers)
    async with runtime.uow() as uow:
        rows = (await uow.session.scalars(select(DeviceLog).order_by(DeviceLog.id))).all()
    assert [r.action for r in rows] == ["created", "purged"]
