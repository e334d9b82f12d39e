"""The console's alerts page over HTTP: filters and paging, acknowledging and clearing a
selection of mixed states (each alert gets its result), roles and CSRF."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

from conftest import Actor, Factory
from console_helpers import csrf_of
from console_helpers import sign_in_http as sign_in
from fieldwatch.console import alerts as alerts_page
from telemetry_helpers import device_with_token, iso, recent


async def deployed(client: httpx.AsyncClient, actor: Actor, name: str) -> tuple[dict, dict]:
    device, token = await device_with_token(client, actor, name=name, serial_number=f"SN-{name}")
    r = await client.put(
        f"/api/v1/devices/{device['id']}/deploy", json={"location": "Site"}, headers=actor.headers
    )
    assert r.status_code == 200, r.text
    return device, token


async def rule(client: httpx.AsyncClient, actor: Actor, **fields: Any) -> dict[str, Any]:
    body = {"name": "Too hot", "metric": "temperature", "operator": ">", "threshold": 30,
            "severity": "critical", **fields}  # fmt: skip
    r = await client.post("/api/v1/alert-rules", json=body, headers=actor.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def send(client, device: dict, token: dict, value: float, metric: str = "temperature"):
    body = {"data_type": metric, "values": [{"timestamp": iso(recent(5)), "value": value}]}
    r = await client.post(f"/api/v1/devices/{device['id']}/data", json=body, headers=token)
    assert r.status_code == 200, r.text


async def api_alerts(client, actor: Actor, **params: Any) -> dict[str, dict]:
    r = await client.get("/api/v1/alerts", params=params, headers=actor.headers)
    assert r.status_code == 200, r.text
    return {a["device"]["name"]: a for a in r.json()["items"]}


async def three_alerts(client, operator: Actor) -> dict[str, dict]:
    """Pump (critical, active), Fan (critical, acknowledged), Tank (minor, cleared)."""
    await rule(client, operator)
    await rule(client, operator, name="Too damp", metric="humidity", threshold=80,
               severity="minor")  # fmt: skip
    for name, metric, value in (("Pump", "temperature", 40), ("Fan", "temperature", 41),
                                ("Tank", "humidity", 90)):  # fmt: skip
        device, token = await deployed(client, operator, name)
        await send(client, device, token, value, metric)
    found = await api_alerts(client, operator)
    r = await client.post(f"/api/v1/alerts/{found['Fan']['id']}/ack", headers=operator.headers)
    assert r.status_code == 200, r.text
    r = await client.post(f"/api/v1/alerts/{found['Tank']['id']}/clear", headers=operator.headers)
    assert r.status_code == 200, r.text
    return await api_alerts(client, operator)


def rows(html: str) -> dict[str, tuple[str, str]]:
    """The listed alerts: id → (status, acknowledged)."""
    found = re.findall(
        r'<tr id="alert-([0-9a-f-]+)" data-alert-id="[^"]+" data-status="(\w+)" '
        r'data-acknowledged="(\w+)"',
        html,
    )
    return {a: (s, k) for a, s, k in found}


async def listed(client, **params: Any) -> dict[str, tuple[str, str]]:
    r = await client.get("/console/alerts", params=params)
    assert r.status_code == 200, r.text
    return rows(r.text)


async def test_the_filters_show_what_they_say(client, operator: Actor, factory: Factory):
    alerts = await three_alerts(client, operator)
    pump, fan, tank = (alerts[n]["id"] for n in ("Pump", "Fan", "Tank"))
    await sign_in(client, operator.email)

    page = await client.get("/console/alerts")
    assert page.status_code == 200 and 'aria-current="page">Alerts<' in page.text
    assert rows(page.text) == {pump: ("active", "no"), fan: ("active", "yes")}  # active first
    assert f'<a href="/console/devices/{alerts["Pump"]["device_id"]}">Pump</a>' in page.text
    started = alerts["Pump"]["started_at"]
    assert re.search(r'<time datetime="[^"]+" data-local>', page.text) and started[:16] in page.text
    assert "temperature = 40 &gt; 30" in page.text

    assert await listed(client, status="cleared") == {tank: ("cleared", "no")}
    assert set(await listed(client, status="all")) == {pump, fan, tank}
    assert set(await listed(client, status="all", ack="yes")) == {fan}
    assert set(await listed(client, status="all", ack="no")) == {pump, tank}
    assert set(await listed(client, status="all", severity="minor")) == {tank}
    assert set(await listed(client, status="all", severity="critical")) == {pump, fan}
    # Unknown values are the defaults, not errors.
    assert set(await listed(client, status="nope", severity="loud")) == {pump, fan}

    # ?device= (as the device page links it): that device's alerts, named in the filter.
    r = await client.get("/console/alerts", params={"device": alerts["Fan"]["device_id"]})
    assert set(rows(r.text)) == {fan}
    assert 'name="device" value="' + alerts["Fan"]["device_id"] in r.text
    assert ">all devices</a>" in r.text
    # Another workspace's device is a 404 page.
    stranger = await factory.user("operator", "globex")
    theirs, _ = await deployed(client, stranger, "Theirs")
    r = await client.get("/console/alerts", params={"device": theirs["id"]})
    assert r.status_code == 404 and "Device not found" in r.text

    # The list alone (what the page fetches live) with the same filters.
    r = await client.get("/console/alerts/list", params={"status": "cleared"})
    assert r.status_code == 200 and "<html" not in r.text
    assert set(rows(r.text)) == {tank}


async def test_paging(client, operator: Actor, monkeypatch: pytest.MonkeyPatch):
    alerts = await three_alerts(client, operator)
    monkeypatch.setattr(alerts_page, "PAGE_SIZE", 2)
    await sign_in(client, operator.email)
    first = await client.get("/console/alerts", params={"status": "all"})
    assert "3 alerts, 1–2 shown" in first.text and "Page 1 of 2" in first.text
    assert 'href="/console/alerts?status=all&amp;page=2" rel="next"' in first.text
    second = await client.get("/console/alerts", params={"status": "all", "page": 2})
    assert "Page 2 of 2" in second.text and 'rel="prev"' in second.text
    assert 'rel="next"' not in second.text
    together = set(rows(first.text)) | set(rows(second.text))
    assert together == {a["id"] for a in alerts.values()} and len(rows(second.text)) == 1


async def test_acknowledging_and_clearing_a_selection_of_mixed_states(client, operator: Actor):
    alerts = await three_alerts(client, operator)
    pump, fan, tank = (alerts[n]["id"] for n in ("Pump", "Fan", "Tank"))
    await sign_in(client, operator.email)
    page = await client.get("/console/alerts", params={"status": "all"})
    csrf = csrf_of(page.text)
    nowhere = str(uuid.uuid4())

    # Acknowledge all three and an id that is nobody's: each gets its own result.
    form = {"csrf_token": csrf, "status": "all", "ids": [pump, fan, tank, nowhere]}
    r = await client.post("/console/alerts/ack", data=form, headers={"HX-Request": "true"})
    assert r.status_code == 200, r.text
    assert "Acknowledged 2 of 4 selected alerts." in r.text
    results = dict(re.findall(r'<li data-alert-id="([^"]+)" class="\w+">([^<]+)</li>', r.text))
    assert results == {
        pump: "Too hot on Pump: acknowledged",
        fan: "Too hot on Fan: already acknowledged",
        tank: "Too damp on Tank: acknowledged",  # a cleared alert can still be acknowledged
        nowhere: f"{nowhere}: not found",
    }
    assert 'hx-swap-oob="true"' in r.text  # the results go above the list
    assert rows(r.text) == {pump: ("active", "yes"), fan: ("active", "yes"),
                            tank: ("cleared", "yes")}  # fmt: skip
    now = await api_alerts(client, operator)
    assert [now[n]["acknowledged"] for n in ("Pump", "Fan", "Tank")] == [True, True, True]
    assert now["Pump"]["acknowledged_by"] == f"user:{operator.email}"

    # Clear the selection: the cleared one says so, the active ones are cleared.
    form = {"csrf_token": csrf, "status": "all", "ids": [tank, pump, fan]}
    r = await client.post("/console/alerts/clear", data=form, headers={"HX-Request": "true"})
    assert "Cleared 2 of 3 selected alerts." in r.text
    assert "Too damp on Tank: already cleared" in r.text and "Too hot on Pump: cleared" in r.text
    now = await api_alerts(client, operator)
    assert {n: a["status"] for n, a in now.items()} == dict.fromkeys(now, "cleared")
    assert now["Pump"]["cleared_by"] == f"user:{operator.email}"
    assert now["Pump"]["clear_reason"] == "cleared by hand"


async def test_one_row_button_and_plain_form_posts(client, operator: Actor):
    alerts = await three_alerts(client, operator)
    pump, fan = alerts["Pump"]["id"], alerts["Fan"]["id"]
    await sign_in(client, operator.email)
    page = await client.get("/console/alerts")
    assert f'name="one" value="{pump}" formaction="/console/alerts/ack"' in page.text
    assert f'name="one" value="{fan}" formaction="/console/alerts/ack"' not in page.text  # acked
    # The row's button acts on its row only, whatever boxes are ticked; without htmx
    # the answer is the whole page with the results.
    form = {"csrf_token": csrf_of(page.text), "one": fan, "ids": [pump, fan]}
    r = await client.post("/console/alerts/clear", data=form)
    assert r.status_code == 200 and "<html" in r.text
    assert "Cleared 1 of 1 selected alert." in r.text and "Too hot on Fan: cleared" in r.text
    now = await api_alerts(client, operator)
    assert (now["Fan"]["status"], now["Pump"]["status"]) == ("cleared", "active")

    # Nothing selected: a message next to the buttons.
    r = await client.post(
        "/console/alerts/ack",
        data={"csrf_token": csrf_of(page.text)},
        headers={"HX-Request": "true"},
    )
    assert r.status_code == 422 and "Select at least one alert." in r.text


async def test_a_viewer_sees_no_controls_and_writes_are_refused(
    client, operator: Actor, viewer: Actor
):
    alerts = await three_alerts(client, operator)
    pump = alerts["Pump"]["id"]
    await sign_in(client, viewer.email)
    page = await client.get("/console/alerts")
    assert page.status_code == 200 and pump in page.text
    for control in ('name="ids"', 'name="one"', "Acknowledge selected", "Clear selected"):
        assert control not in page.text
    forged = {"csrf_token": csrf_of(page.text), "ids": [pump]}
    r = await client.post("/console/alerts/ack", data=forged)
    assert r.status_code == 403 and "operator" in r.text
    r = await client.post("/console/alerts/clear", data=forged)
    assert r.status_code == 403
    assert (await api_alerts(client, operator))["Pump"]["acknowledged"] is False


async def test_writes_need_the_csrf_token(client, operator: Actor):
    alerts = await three_alerts(client, operator)
    pump = alerts["Pump"]["id"]
    await sign_in(client, operator.email)
    r = await client.post("/console/alerts/ack", data={"ids": [pump]})
    assert r.status_code == 403 and "Reload the page" in r.text
    r = await client.post(
        "/console/alerts/clear", data={"ids": [pump]}, headers={"X-CSRF-Token": "forged"}
    )
    assert r.status_code == 403
    now = (await api_alerts(client, operator))["Pump"]
    assert (now["acknowledged"], now["status"]) == (False, "active")
