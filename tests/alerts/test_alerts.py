"""Alert rules and alerts: open, repeat, clear, acknowledge; offline; lifecycle; scope."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from conftest import Actor, Factory, problem
from fieldwatch.alerts.service import AlertService
from telemetry_helpers import device_with_token, iso, recent


async def _deployed(client, actor: Actor, **fields):
    device, token = await device_with_token(client, actor, **fields)
    r = await client.put(f"/api/v1/devices/{device['id']}/deploy", json={"location": "Site"},
                         headers=actor.headers)  # fmt: skip
    assert r.status_code == 200
    return device, token


async def _rule(client, actor: Actor, **fields) -> dict:
    body = {"name": "Too hot", "metric": "temperature", "operator": ">", "threshold": 30,
            "severity": "critical", **fields}  # fmt: skip
    r = await client.post("/api/v1/alert-rules", json=body, headers=actor.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _send(client, device: dict, token: dict, *points, metric: str = "temperature"):
    body = {"data_type": metric,
            "values": [{"timestamp": iso(ts), "value": v} for ts, v in points]}  # fmt: skip
    r = await client.post(f"/api/v1/devices/{device['id']}/data", json=body, headers=token)
    assert r.status_code == 200, r.text


async def _alerts(client, actor: Actor, **params) -> list[dict]:
    r = await client.get("/api/v1/alerts", params=params, headers=actor.headers)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def test_rule_crud_roles_and_validation(client, operator: Actor, viewer: Actor):
    rules = (await client.get("/api/v1/alert-rules", headers=viewer.headers)).json()["items"]
    assert [(r["kind"], r["name"]) for r in rules] == [("offline", "Device offline")]
    minimal = {"name": "x", "metric": "t", "operator": ">", "threshold": 1}
    problem(await client.post("/api/v1/alert-rules", json=minimal, headers=viewer.headers), 403)
    bad = await client.post("/api/v1/alert-rules", json={"name": "x", "metric": "t",
                            "operator": "=>", "threshold": 1, "scope": "device",
                            "scope_value": "nope"}, headers=operator.headers)  # fmt: skip
    assert {e["field"] for e in problem(bad, 422)["errors"]} >= {"operator"}
    rule = await _rule(client, operator)
    r = await client.patch(f"/api/v1/alert-rules/{rule['id']}", json={"threshold": 35},
                           headers=operator.headers)  # fmt: skip
    assert r.json()["threshold"] == 35
    offline = rules[0]
    problem(await client.delete(f"/api/v1/alert-rules/{offline['id']}", headers=operator.headers),
            409)  # fmt: skip
    problem(await client.patch(f"/api/v1/alert-rules/{offline['id']}", json={"metric": "x"},
                               headers=operator.headers), 422)  # fmt: skip
    r = await client.patch(f"/api/v1/alert-rules/{offline['id']}", json={"severity": "minor"},
                           headers=operator.headers)  # fmt: skip
    assert r.json()["severity"] == "minor"
    assert (await client.delete(f"/api/v1/alert-rules/{rule['id']}",
                                headers=operator.headers)).status_code == 204  # fmt: skip
    r = await client.get("/api/v1/alert-rules", headers=viewer.headers)
    assert len(r.json()["items"]) == 1


async def test_open_repeat_and_clear_by_itself(client, operator: Actor, runtime):
    seen: list = []

    async def on_alert(event):
        seen.append(event)

    runtime.bus.subscribe("alert.*", on_alert)
    await _rule(client, operator)
    device, token = await _deployed(client, operator)
    await _send(client, device, token, (recent(50), 25.0))
    assert await _alerts(client, operator) == []
    await _send(client, device, token, (recent(40), 31.0))
    await _send(client, device, token, (recent(30), 35.0), (recent(29), 36.0))
    [alert] = await _alerts(client, operator)
    assert (alert["status"], alert["acknowledged"], alert["count"]) == ("active", False, 3)
    assert (alert["first_value"], alert["last_value"]) == (31.0, 36.0)
    assert alert["severity"] == "critical" and alert["message"] == "temperature = 36 > 30"
    active = (await client.get("/api/v1/monitoring/alerts", headers=operator.headers)).json()
    assert [a["id"] for a in active["items"]] == [alert["id"]]

    await _send(client, device, token, (recent(20), 22.0))
    [cleared] = await _alerts(client, operator)
    assert cleared["status"] == "cleared" and cleared["cleared_by"] == "system"
    assert "back to normal" in cleared["clear_reason"]
    assert (await client.get("/api/v1/monitoring/alerts", headers=operator.headers)).json()[
        "items"
    ] == []
    assert [e.type for e in seen] == ["alert.raised", "alert.updated", "alert.cleared"]
    # It can fire again: a new alert.
    await _send(client, device, token, (recent(10), 40.0))
    assert len(await _alerts(client, operator, status="active")) == 1
    assert len(await _alerts(client, operator)) == 2


async def test_only_deployed_devices_raise_alerts(client, operator: Actor):
    await _rule(client, operator)
    device, token = await device_with_token(client, operator)  # in stock
    await _send(client, device, token, (recent(5), 99.0))
    assert await _alerts(client, operator) == []
    # Leaving deployed clears what is open.
    deployed, d_token = await _deployed(client, operator, name="d")
    await _send(client, deployed, d_token, (recent(4), 99.0))
    assert len(await _alerts(client, operator, status="active")) == 1
    await client.put(f"/api/v1/devices/{deployed['id']}/maintenance", headers=operator.headers)
    [alert] = await _alerts(client, operator)
    assert alert["status"] == "cleared" and "no longer deployed" in alert["clear_reason"]


async def test_duration_must_hold(client, operator: Actor):
    await _rule(client, operator, duration_s=60)
    device, token = await _deployed(client, operator)
    t0 = recent(200)
    await _send(client, device, token, (t0, 31.0), (t0 + timedelta(seconds=30), 32.0))
    assert await _alerts(client, operator) == []
    await _send(client, device, token, (t0 + timedelta(seconds=45), 20.0))  # a break
    await _send(client, device, token, (t0 + timedelta(seconds=60), 33.0),
                (t0 + timedelta(seconds=100), 34.0))  # fmt: skip
    assert await _alerts(client, operator) == []  # only 40 s since the break
    await _send(client, device, token, (t0 + timedelta(seconds=120), 35.0))
    [alert] = await _alerts(client, operator)
    assert alert["status"] == "active" and alert["last_value"] == 35.0


async def test_four_states_by_hand(client, operator: Actor, viewer: Actor):
    await _rule(client, operator)
    device, token = await _deployed(client, operator)
    await _send(client, device, token, (recent(9), 50.0))
    [alert] = await _alerts(client, operator)
    url = f"/api/v1/alerts/{alert['id']}"
    problem(await client.post(f"{url}/ack", headers=viewer.headers), 403)
    acked = (
        await client.post(f"{url}/ack", json={"note": "on it"}, headers=operator.headers)
    ).json()
    assert (acked["status"], acked["acknowledged"]) == ("active", True)
    assert acked["acknowledged_by"] == f"user:{operator.email}"
    assert acked["details"]["ack_note"] == "on it"
    cleared = (await client.post(f"{url}/clear", headers=operator.headers)).json()
    assert (cleared["status"], cleared["acknowledged"]) == ("cleared", True)
    problem(await client.post(f"{url}/clear", headers=operator.headers), 409)
    # A new breach opens a fresh, unacknowledged alert.
    await _send(client, device, token, (recent(5), 51.0))
    fresh = await _alerts(client, operator, status="active")
    assert len(fresh) == 1 and fresh[0]["acknowledged"] is False and fresh[0]["id"] != alert["id"]
    # cleared but never acknowledged
    await _send(client, device, token, (recent(4), 10.0))
    unacked = await _alerts(client, operator, status="cleared", acknowledged=False)
    assert [a["id"] for a in unacked] == [fresh[0]["id"]]


async def test_offline_alert_and_back_online(client, operator: Actor, runtime):
    now = datetime.now(UTC)
    runtime.presence.clock = lambda: now
    device, token = await _deployed(client, operator)
    shelf, s_token = await device_with_token(client, operator, name="shelf")  # in stock
    for d, t in ((device, token), (shelf, s_token)):
        await client.post(f"/api/v1/devices/{d['id']}/heartbeat", json={}, headers=t)
    await runtime.presence.sweep(now + timedelta(seconds=181))
    [alert] = await _alerts(client, operator)
    assert alert["rule_name"] == "Device offline" and alert["device_id"] == device["id"]
    assert alert["message"] == "device is offline" and alert["severity"] == "major"
    await client.post(f"/api/v1/devices/{device['id']}/heartbeat", json={}, headers=token)
    [after] = await _alerts(client, operator)
    assert after["status"] == "cleared" and after["clear_reason"] == "back online"


async def test_scope_by_device_type_and_device(client, operator: Actor):
    esp, esp_token = await _deployed(client, operator, type="esp32", name="esp")
    meter, meter_token = await _deployed(client, operator, type="meter", name="meter")
    await _rule(client, operator, name="esp hot", scope="device_type", scope_value="esp32")
    await _rule(client, operator, name="meter cold", operator="<", threshold=0,
                scope="device", scope_value=meter["id"])  # fmt: skip
    await _send(client, esp, esp_token, (recent(9), 40.0), (recent(8), -5.0))
    await _send(client, meter, meter_token, (recent(7), 40.0))
    await _send(client, meter, meter_token, (recent(6), -5.0))
    names = sorted((a["rule_name"], a["device_id"]) for a in await _alerts(client, operator))
    assert names == [("esp hot", esp["id"]), ("meter cold", meter["id"])]


async def test_alerts_are_workspace_scoped(client, factory: Factory):
    a = await factory.user("operator", "acme")
    await _rule(client, a)
    device, token = await _deployed(client, a)
    await _send(client, device, token, (recent(3), 99.0))
    [alert] = await _alerts(client, a)
    b = await factory.user("operator", "globex")
    assert await _alerts(client, b) == []
    for method, url in [("GET", f"/api/v1/alerts/{alert['id']}"),
                        ("POST", f"/api/v1/alerts/{alert['id']}/ack"),
                        ("POST", f"/api/v1/alerts/{alert['id']}/clear"),
                        ("GET", f"/api/v1/alert-rules/{alert['rule_id']}"),
                        ("PATCH", f"/api/v1/alert-rules/{alert['rule_id']}"),
                        ("DELETE", f"/api/v1/alert-rules/{alert['rule_id']}")]:  # fmt: skip
        body = {"enabled": False} if method == "PATCH" else None
        problem(await client.request(method, url, json=body, headers=b.headers), 404)
    # B's rule does not fire on A's device
    await _rule(client, b, threshold=0)
    await _send(client, device, token, (recent(2), 5.0))
    assert await _alerts(client, b) == []
    assert str(uuid.UUID(alert["device_id"])) == device["id"]


async def test_alerts_and_their_events_name_the_device(client, operator: Actor, runtime):
    seen: list = []

    async def on_alert(event):
        seen.append(event)

    runtime.bus.subscribe("alert.*", on_alert)
    await _rule(client, operator)
    device, token = await _deployed(client, operator, name="Boiler 7", type="thermostat",
                                    serial_number="TH-0007")  # fmt: skip
    await _send(client, device, token, (recent(20), 45.0))
    await _send(client, device, token, (recent(10), 46.0))
    expected = {"id": device["id"], "name": "Boiler 7", "serial_number": "TH-0007",
                "type": "thermostat", "location": "Site"}  # fmt: skip
    [alert] = await _alerts(client, operator)
    assert alert["device_id"] == device["id"] and alert["device"] == expected
    r = await client.get(f"/api/v1/alerts/{alert['id']}", headers=operator.headers)
    assert r.json()["device"] == expected
    r = await client.post(f"/api/v1/alerts/{alert['id']}/ack", headers=operator.headers)
    assert r.json()["device"] == expected
    await client.post(f"/api/v1/alerts/{alert['id']}/clear", headers=operator.headers)
    assert [e.type for e in seen] == [
        "alert.raised", "alert.updated", "alert.acknowledged", "alert.cleared",
    ]  # fmt: skip
    assert all(e.payload["device"] == expected for e in seen), [e.payload for e in seen]
    assert all(e.payload["device_id"] == device["id"] for e in seen)


async def test_processes_finding_no_offline_rule_at_once_make_one(runtime, factory) -> None:
    """Workers receive each presence event together: the first for a workspace has them
    all find no offline rule; one is made, and all of them use it."""
    workspace_id = await factory.workspace("racing")

    async def ensure() -> uuid.UUID:
        async with runtime.uow() as uow:
            rule = await AlertService(uow).ensure_offline_rule(workspace_id)
            await uow.commit()
            return rule.id

    made = await asyncio.gather(*(ensure() for _ in range(4)))
    assert len(set(made)) == 1
