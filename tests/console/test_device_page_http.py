"""The console's device page over HTTP: identity and specs, the lifecycle forms and their
refusals, connectivity and latest values, alerts, the audit log's pages; roles, CSRF and
another workspace's device."""

from __future__ import annotations

import html
import re
from typing import Any

import httpx
import pytest

from conftest import Actor, Factory, create_device
from console_helpers import csrf_of
from console_helpers import sign_in_http as sign_in
from fieldwatch.auth.roles import Role
from fieldwatch.runtime import Runtime
from telemetry_helpers import device_with_token, iso, recent

HTMX = {"HX-Request": "true"}


async def open_page(client: httpx.AsyncClient, device_id: str, **params: Any) -> str:
    r = await client.get(f"/console/devices/{device_id}", params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    return r.text


async def csrf(client: httpx.AsyncClient, device_id: str) -> dict[str, str]:
    """The htmx headers of a page: the session's CSRF token and ``HX-Request``."""
    return {**HTMX, "X-CSRF-Token": csrf_of(await open_page(client, device_id))}


def section(page: str, part: str) -> str:
    found = re.search(rf'<section id="{part}".*?</section>', page, re.S)
    assert found, part
    return found.group(0)


def actions_of(page: str) -> list[str]:
    return re.findall(r'data-action="([a-z_]+)">', section(page, "lifecycle"))


def text_of(fragment: str) -> str:
    """The fragment's text, tags dropped (block ones leave a space), white space folded."""
    inline = re.sub(r"</?(?:code|span|strong|time|a|em)\b[^>]*>", "", fragment)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", inline)).split())


async def api_device(client: httpx.AsyncClient, actor: Actor, device_id: str) -> dict[str, Any]:
    r = await client.get(f"/api/v1/devices/{device_id}", headers=actor.headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_the_page_shows_identity_and_specs(client, operator: Actor):
    device = await create_device(
        client, operator, name="Boiler probe", serial_number="SN-ID-1", manufacturer="Acme",
        model="T-1000", firmware_version="2.4.1", hardware_version="rev B",
        capabilities=["temperature", "ota"], location="Plant 2",
        specs={"sensor": "BME280", "range": {"min": -40, "max": 85}},
        purchase_date="2024-03-01",
    )  # fmt: skip
    await sign_in(client, operator.email)
    identity = section(await open_page(client, device["id"]), "identity")
    text = text_of(identity)
    for shown in ("Boiler probe", "SN-ID-1", "Acme", "T-1000", "2.4.1", "rev B", "Plant 2",
                  "temperature, ota", "2024-03-01", device["id"]):  # fmt: skip
        assert shown in text, shown
    assert "sensor BME280" in text and 'range {"max": 85, "min": -40}' in text
    created = device["created_at"].replace("Z", "+00:00")
    assert f'<time datetime="{created}" data-local>' in identity
    # The part alone, as the page fetches it again.
    r = await client.get(f"/console/devices/{device['id']}/identity")
    assert r.status_code == 200 and "<html" not in r.text and "SN-ID-1" in r.text


async def test_the_lifecycle_forms_follow_the_status(client, operator: Actor):
    device = await create_device(client, operator, serial_number="SN-LC-1")
    await sign_in(client, operator.email)
    page = await open_page(client, device["id"])
    assert actions_of(page) == ["deploy", "reserve", "maintenance", "retire"]
    lifecycle = text_of(section(page, "lifecycle"))
    assert "Status: in stock" in lifecycle
    assert "From in stock it can go to: reserved, deployed, maintenance, retired." in lifecycle
    assert 'for="deploy-location"' in page and 'id="deploy-location" name="location"' in page
    r = await client.put(f"/api/v1/devices/{device['id']}/reserve", headers=operator.headers)
    assert r.status_code == 200
    # Reserved: back to stock is a plain status change (no named action leads there).
    assert actions_of(await open_page(client, device["id"])) == ["deploy", "release", "retire"]
    r = await client.get(f"/console/devices/{device['id']}/lifecycle")
    assert r.status_code == 200 and "<html" not in r.text and 'data-status="reserved"' in r.text


async def test_deploy_from_the_page_updates_the_status_and_the_audit_log(client, operator: Actor):
    device = await create_device(client, operator, serial_number="SN-DEP-1")
    await sign_in(client, operator.email)
    headers = await csrf(client, device["id"])
    r = await client.post(
        f"/console/devices/{device['id']}/actions/deploy",
        data={"location": "Dock 4", "notes": "first install"},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    assert r.text.lstrip().startswith('<section id="lifecycle"')
    assert 'data-status="deployed"' in section(r.text, "lifecycle")
    assert actions_of(r.text) == ["maintenance", "recall", "retire"]
    # Beside it, out of band: the identity and the newest audit log.
    assert (
        '<section id="identity" class="card" aria-labelledby="h-identity" hx-swap-oob="true">'
        in r.text
    )
    assert "Dock 4" in text_of(section(r.text, "identity"))
    audit = section(r.text, "audit")
    newest = re.search(r'<tr data-log-id="\d+" data-action="deployed">.*?</tr>', audit, re.S)
    assert newest, audit
    row = text_of(newest.group(0))
    assert "in stock → deployed" in row and operator.email in row and "first install" in row
    assert "location: (none) → Dock 4" in row and "status: in_stock → deployed" in row
    stored = await api_device(client, operator, device["id"])
    assert (stored["status"], stored["location"]) == ("deployed", "Dock 4")
    # A plain form (no script): the same action, then back to the page.
    r = await client.post(
        f"/console/devices/{device['id']}/actions/maintenance",
        data={"csrf_token": headers["X-CSRF-Token"], "location": "Workshop"},
    )
    assert r.status_code == 303
    assert r.headers["location"] == f"/console/devices/{device['id']}#lifecycle"
    assert (await api_device(client, operator, device["id"]))["status"] == "maintenance"
    log = text_of(section(await open_page(client, device["id"]), "audit"))
    assert log.index("deployed → maintenance") < log.index("in stock → deployed")  # newest first


async def test_a_refused_transition_says_why_and_which_statuses_are_allowed(
    client, operator: Actor
):
    device = await create_device(client, operator, serial_number="SN-REF-1")
    await sign_in(client, operator.email)
    headers = await csrf(client, device["id"])
    # Someone else deploys it while the page still offers what in_stock allows.
    body = {"location": "Field"}
    r = await client.put(
        f"/api/v1/devices/{device['id']}/deploy", json=body, headers=operator.headers
    )
    assert r.status_code == 200
    url = f"/console/devices/{device['id']}/actions/reserve"
    r = await client.post(url, data={"notes": "for Monday"}, headers=headers)
    assert r.status_code == 409 and r.headers["content-type"].startswith("text/html")
    text = text_of(r.text)
    assert "A device that is deployed cannot become reserved." in text
    assert "Allowed from here: in stock, maintenance, retired." in text
    assert (
        '<strong id="lifecycle-status" class="status" hx-swap-oob="true">deployed</strong>'
        in r.text
    )
    assert "From deployed it can go to: in stock, maintenance, retired." in text
    assert "<html" not in r.text
    # Without htmx: the problem as a page, with the same words.
    r = await client.post(url, data={"csrf_token": headers["X-CSRF-Token"]})
    assert r.status_code == 409 and "<html" in r.text
    assert "Allowed from here: in stock, maintenance, retired." in text_of(r.text)
    # A recall of a device in stock is refused by the named action's own rule.
    other = await create_device(client, operator, serial_number="SN-REF-2")
    r = await client.post(f"/console/devices/{other['id']}/actions/recall", headers=headers)
    assert r.status_code == 409
    assert "cannot become in_stock" in text_of(r.text)
    assert "Allowed from here: reserved, deployed, maintenance, retired." in text_of(r.text)
    # Retired is final.
    r = await client.put(f"/api/v1/devices/{other['id']}/retire", headers=operator.headers)
    r = await client.post(f"/console/devices/{other['id']}/actions/deploy",
                          data={"location": "x"}, headers=headers)  # fmt: skip
    assert r.status_code == 409 and "Allowed from here: nothing (retired is final)." in r.text
    assert (await api_device(client, operator, device["id"]))["status"] == "deployed"


async def test_a_form_the_api_would_refuse_is_answered_next_to_it(client, operator: Actor):
    device = await create_device(client, operator, serial_number="SN-VAL-1")
    await sign_in(client, operator.email)
    headers = await csrf(client, device["id"])
    base = f"/console/devices/{device['id']}/actions"
    r = await client.post(f"{base}/deploy", data={"location": "  "}, headers=headers)
    assert r.status_code == 422 and r.text.lstrip().startswith('<div class="problem"')
    assert "location" in text_of(r.text) and "Field required" in text_of(r.text)
    r = await client.post(f"{base}/reserve", data={"notes": "x" * 2001}, headers=headers)
    assert r.status_code == 422 and "notes" in text_of(r.text)
    r = await client.post(f"{base}/teleport", headers=headers)
    assert r.status_code == 404
    assert (await api_device(client, operator, device["id"]))["status"] == "in_stock"


async def test_connectivity_battery_and_latest_values_with_units(client, operator: Actor):
    device, token = await device_with_token(client, operator, serial_number="SN-VAL-2",
                                            firmware_version="1.9.0")  # fmt: skip
    at = recent(5)
    readings = (("temperature", 21.4567, "celsius"), ("battery_level", 87.5, "%"),
                ("door_open", 1.0, None))  # fmt: skip
    for metric, value, unit in readings:
        body = {
            "data_type": metric,
            "values": [{"timestamp": iso(at), "value": value, "unit": unit}],
        }
        r = await client.post(f"/api/v1/devices/{device['id']}/data", json=body, headers=token)
        assert r.status_code == 200, r.text
    await sign_in(client, operator.email)
    state = section(await open_page(client, device["id"]), "state")
    text = text_of(state)
    assert "Connectivity online" in text and "Firmware 1.9.0" in text
    assert "Battery 87.5 %" in text
    assert '<span id="connectivity" class="connectivity" data-state="online">' in state
    assert re.search(r'id="last-seen"><time datetime="[^"]+" data-local>', state)
    rows = re.findall(r'<tr data-metric="([a-z_]+)">', state)
    assert rows == ["battery_level", "door_open", "temperature"]
    assert "temperature 21.457 celsius" in text and "door_open 1 " in text
    assert f'<time datetime="{at.isoformat()}" data-local>' in state
    r = await client.get(f"/console/devices/{device['id']}/state")
    assert r.status_code == 200 and "<html" not in r.text and "21.457" in r.text
    # A device never heard from.
    quiet = await create_device(client, operator, serial_number="SN-VAL-3")
    text = text_of(section(await open_page(client, quiet["id"]), "state"))
    assert "Connectivity offline" in text and "Last seen never" in text
    assert "Battery –" in text and "No readings yet." in text


async def _rule(client: httpx.AsyncClient, actor: Actor) -> None:
    body = {"name": "Too hot", "metric": "temperature", "operator": ">", "threshold": 30,
            "severity": "critical"}  # fmt: skip
    r = await client.post("/api/v1/alert-rules", json=body, headers=actor.headers)
    assert r.status_code == 201, r.text


async def _send(client, device: dict, token: dict, value: float, seconds_ago: float) -> None:
    body = {"data_type": "temperature",
            "values": [{"timestamp": iso(recent(seconds_ago)), "value": value}]}  # fmt: skip
    r = await client.post(f"/api/v1/devices/{device['id']}/data", json=body, headers=token)
    assert r.status_code == 200, r.text


async def test_the_devices_alerts_active_and_recent(client, operator: Actor):
    await _rule(client, operator)
    device, token = await device_with_token(client, operator, serial_number="SN-AL-1")
    other, other_token = await device_with_token(client, operator, serial_number="SN-AL-2")
    for d in (device, other):
        r = await client.put(f"/api/v1/devices/{d['id']}/deploy", json={"location": "Site"},
                             headers=operator.headers)  # fmt: skip
        assert r.status_code == 200
    await sign_in(client, operator.email)
    alerts = section(await open_page(client, device["id"]), "alerts")
    assert "No active alerts." in alerts
    assert f'href="/console/alerts?device={device["id"]}"' in alerts
    await _send(client, device, token, 35.0, 30)
    await _send(client, other, other_token, 40.0, 30)
    alerts = text_of(section(await open_page(client, device["id"]), "alerts"))
    assert "Active: 1" in alerts and "Too hot: temperature = 35 > 30" in alerts
    assert "40 > 30" not in alerts  # the other device's
    await _send(client, device, token, 22.0, 20)
    r = await client.get(f"/console/devices/{device['id']}/alerts")
    assert r.status_code == 200 and "<html" not in r.text
    alerts = text_of(r.text)
    assert "No active alerts." in alerts and "Recently cleared" in alerts
    assert "Too hot: temperature = 35 > 30" in alerts and "by system" in alerts


async def test_the_audit_log_pages_newest_first_with_before_and_after(client, operator: Actor):
    device = await create_device(client, operator, name="v0", serial_number="SN-LOG-1")
    for n in range(1, 26):
        r = await client.patch(f"/api/v1/devices/{device['id']}", json={"name": f"v{n}"},
                               headers=operator.headers)  # fmt: skip
        assert r.status_code == 200
    await sign_in(client, operator.email)
    audit = section(await open_page(client, device["id"]), "audit")
    rows = re.findall(r'<tr data-log-id="(\d+)" data-action="([a-z_]+)">', audit)
    assert len(rows) == 20 and all(a == "updated" for _, a in rows)
    assert "name: v25 → v24" not in text_of(audit) and "name: v24 → v25" in text_of(audit)
    ids = [int(i) for i, _ in rows]
    assert ids == sorted(ids, reverse=True)
    older = re.search(r'hx-get="/console/devices/[^/]+/log\?before_id=(\d+)"', audit)
    assert older and int(older.group(1)) == ids[-1]
    assert f'href="/console/devices/{device["id"]}?log_before={ids[-1]}#audit"' in audit
    r = await client.get(f"/console/devices/{device['id']}/log", params={"before_id": ids[-1]})
    assert r.status_code == 200 and "<html" not in r.text
    rest = re.findall(r'<tr data-log-id="(\d+)" data-action="([a-z_]+)">', r.text)
    assert [a for _, a in rest] == ["updated"] * 5 + ["created"]
    assert "name: v0 → v1" in text_of(r.text) and 'rel="next"' not in r.text
    assert "Newest entries" in r.text and 'data-newest="false"' in r.text
    # The same page without script.
    page = await open_page(client, device["id"], log_before=ids[-1])
    assert re.findall(r'<tr data-log-id="(\d+)"', section(page, "audit")) == [i for i, _ in rest]


async def test_a_viewer_sees_no_write_controls_and_forged_writes_are_refused(
    client, operator: Actor, viewer: Actor
):
    device = await create_device(client, operator, serial_number="SN-VIEW-1")
    r = await client.post(f"/api/v1/devices/{device['id']}/tokens", headers=operator.headers)
    token_id = r.json()["id"]
    await sign_in(client, viewer.email)
    page = await open_page(client, device["id"])
    assert "SN-VIEW-1" in page and "Status: in stock" in text_of(section(page, "lifecycle"))
    for control in ("hx-post", 'method="post" action="/console/devices', "Create token",
                    ">Revoke<", ">Deploy<"):  # fmt: skip
        assert control not in page, control
    assert "token-list" in page  # the list itself is readable, as in the API
    headers = {**HTMX, "X-CSRF-Token": csrf_of(page)}
    base = f"/console/devices/{device['id']}"
    for url, data in ((f"{base}/actions/deploy", {"location": "x"}), (f"{base}/tokens", {}),
                      (f"{base}/tokens/{token_id}/revoke", {})):  # fmt: skip
        r = await client.post(url, data=data, headers=headers)
        assert r.status_code == 403, url
        assert "This needs the operator role" in r.text
    stored = await api_device(client, operator, device["id"])
    assert stored["status"] == "in_stock"
    r = await client.get(f"/api/v1/devices/{device['id']}/tokens", headers=operator.headers)
    assert r.json()["total"] == 1 and r.json()["items"][0]["revoked_at"] is None


async def test_writes_without_the_csrf_token_are_refused(client, operator: Actor):
    device = await create_device(client, operator, serial_number="SN-CSRF-1")
    await sign_in(client, operator.email)
    await open_page(client, device["id"])
    base = f"/console/devices/{device['id']}"
    for headers in ({}, {**HTMX, "X-CSRF-Token": "forged"}):
        r = await client.post(f"{base}/actions/deploy", data={"location": "x"}, headers=headers)
        assert r.status_code == 403 and "Reload the page" in r.text
        r = await client.post(f"{base}/tokens", data={"name": "x"}, headers=headers)
        assert r.status_code == 403
    assert (await api_device(client, operator, device["id"]))["status"] == "in_stock"
    r = await client.get(f"/api/v1/devices/{device['id']}/tokens", headers=operator.headers)
    assert r.json()["total"] == 0


async def test_another_workspaces_device_is_a_404_in_every_part(
    client, operator: Actor, factory: Factory
):
    other = await factory.user(Role.admin, "elsewhere")
    foreign = await create_device(client, other, serial_number="SN-ELSEWHERE")
    mine = await create_device(client, operator, serial_number="SN-MINE")
    await sign_in(client, operator.email)
    headers = await csrf(client, mine["id"])
    base = f"/console/devices/{foreign['id']}"
    for part in ("", "/identity", "/lifecycle", "/state", "/tokens", "/log", "/alerts"):
        r = await client.get(base + part)
        assert r.status_code == 404, part
        assert r.headers["content-type"].startswith("text/html") and "SN-ELSEWHERE" not in r.text
    for url in (f"{base}/actions/retire", f"{base}/tokens"):
        r = await client.post(url, headers=headers)
        assert r.status_code == 404, url
    assert (await api_device(client, other, foreign["id"]))["status"] == "in_stock"


@pytest.mark.parametrize("logins", ["all", "on_request"])
async def test_a_token_for_mqtt_from_the_page(client, runtime: Runtime, operator: Actor, logins):
    # The MQTT column says whether the token may log in: every one under the default
    # "all" (and the page says so), only those made for MQTT under "on_request".
    runtime.settings.mqtt_device_logins = logins
    device = await create_device(client, operator, serial_number=f"SN-TOK-MQTT-{logins}")
    await sign_in(client, operator.email)
    headers = await csrf(client, device["id"])
    url = f"/console/devices/{device['id']}/tokens"
    for data in ({"name": "web", "expires_in_days": ""},
                 {"name": "radio", "expires_in_days": "", "mqtt": "on"}):  # fmt: skip
        r = await client.post(url, data=data, headers=headers)
        assert r.status_code == 200, r.text
    rows = re.findall(r"<tr data-token-id=.*?</tr>", section(r.text, "tokens"), re.S)
    shown = {text_of(re.findall(r"<th.*?</th>", row, re.S)[0]):
             text_of(re.findall(r"<td.*?</td>", row, re.S)[1]) for row in rows}  # fmt: skip
    assert shown == {"web": "yes" if logins == "all" else "no", "radio": "yes"}
    hint = "FIELDWATCH_MQTT_DEVICE_LOGINS=all" in section(r.text, "tokens")
    assert hint == (logins == "all")
    r = await client.get(f"/api/v1/devices/{device['id']}/tokens", headers=operator.headers)
    assert {t["name"]: t["mqtt"] for t in r.json()["items"]} == {"web": False, "radio": True}
