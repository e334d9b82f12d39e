"""The console's device page of a health device over HTTP: its latest values and charts
name each health metric's LOINC code, and viewing its values (the page, the state part,
the charts' series, hence "Show as table") is recorded in the access log; a field
sensor's page names no code and logs nothing."""

from __future__ import annotations

import re
from typing import Any

import httpx

from conftest import Actor, create_device
from console_helpers import sign_in_http as sign_in
from telemetry_helpers import iso, recent

API = "/api/v1/integrations"


async def send(client: httpx.AsyncClient, actor: Actor, device_id: str, metric: str,
               value: float, unit: str) -> None:  # fmt: skip
    body = {"data_type": metric, "values": [{"timestamp": iso(recent(60)), "value": value,
                                              "unit": unit}]}  # fmt: skip
    r = await client.post(f"/api/v1/devices/{device_id}/data", json=body, headers=actor.headers)
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text


async def logged(client: httpx.AsyncClient, admin: Actor) -> list[tuple[str, str, str]]:
    r = await client.get(f"{API}/access-log", headers=admin.headers)
    assert r.status_code == 200, r.text
    return sorted((e["device_id"], e["actor"], e["what"]) for e in r.json()["items"])


def latest_row(page: str, metric: str) -> str:
    found = re.search(rf'<tr data-metric="{metric}">.*?</tr>', page, re.S)
    assert found, page
    return found.group(0)


async def test_a_health_devices_page_names_loinc_codes_and_is_logged(
    client, admin: Actor, viewer: Actor
) -> None:
    watch = (await create_device(client, admin, name="Ana's watch", type="smartwatch",
                                 specs={"integration_type": "apple_health"}))["id"]  # fmt: skip
    await send(client, admin, watch, "heart_rate", 64, "/min")
    await send(client, admin, watch, "battery_level", 80, "%")
    sensor = (await create_device(client, admin, name="Boiler", type="sensor"))["id"]
    await send(client, admin, sensor, "temperature", 21.5, "Cel")
    await sign_in(client, viewer.email)
    who = f"user:{viewer.email}"

    page = await client.get(f"/console/devices/{watch}")
    assert page.status_code == 200, page.text
    assert '<span class="metric-code">LOINC 8867-4</span>' in latest_row(page.text, "heart_rate")
    assert "LOINC" not in latest_row(page.text, "battery_level")
    state = await client.get(f"/console/devices/{watch}/state")
    assert "LOINC 8867-4" in state.text
    charts = await client.get(f"/console/devices/{watch}/charts")
    assert "Heart rate · LOINC 8867-4 · UCUM /min" in charts.text
    assert await logged(client, admin) == [(watch, who, "console latest values")] * 2

    series = await client.get(f"/console/devices/{watch}/series", params={"last": "1h"})
    assert series.status_code == 200, series.text
    by_metric: dict[str, Any] = {s["metric"]: s for s in series.json()["series"]}
    assert (by_metric["heart_rate"]["loinc"], by_metric["heart_rate"]["title"]) == (
        "8867-4", "Heart rate")  # fmt: skip
    assert by_metric["heart_rate"]["v"] == [64]
    assert by_metric["battery_level"]["loinc"] is None
    assert (watch, who, "console chart battery_level, heart_rate") in await logged(client, admin)
    assert len(await logged(client, admin)) == 3

    for path in ("", "/state", "/charts"):
        other = await client.get(f"/console/devices/{sensor}{path}")
        assert other.status_code == 200 and "LOINC" not in other.text
    assert (await client.get(f"/console/devices/{sensor}/series")).json()["series"][0][
        "loinc"] is None  # fmt: skip
    assert len(await logged(client, admin)) == 3


async def test_the_access_log_page_names_a_wearable_without_a_sync(client, admin: Actor) -> None:
    watch = (await create_device(client, admin, name="Ana's watch", type="apple_health_watch"))[
        "id"
    ]
    await send(client, admin, watch, "heart_rate", 64, "/min")
    latest = await client.get(f"/api/v1/devices/{watch}/data/latest", headers=admin.headers)
    assert latest.json()["health_metrics"]["heart_rate"]["loinc"] == "8867-4"
    await sign_in(client, admin.email)
    page = await client.get("/console/integrations/access-log")
    assert page.status_code == 200, page.text
    row = re.search(r'<tr id="access-[^"]+" data-action="read">.*?</tr>', page.text, re.S)
    assert row, page.text
    assert f'<a href="/console/devices/{watch}">Ana&#39;s watch</a>' in row.group(0)
    assert "data latest" in row.group(0)
