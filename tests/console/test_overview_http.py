"""The fleet overview's figures over HTTP: the lifecycle status × connectivity table, the
devices that went offline in the last hour, the recent lifecycle changes."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx

from conftest import Actor, Factory, create_device
from console_helpers import sign_in_http as sign_in
from fieldwatch.runtime import Runtime


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def figure(html: str, element_id: str) -> int:
    found = re.search(rf'id="{element_id}">(\d+)<', html)
    assert found, element_id
    return int(found.group(1))


def section(html: str, heading_id: str) -> str:
    """The overview card whose heading has ``heading_id``."""
    found = re.search(rf'aria-labelledby="{heading_id}">(.*?)</section>', html, re.S)
    assert found, heading_id
    return found.group(1)


async def figures(client: httpx.AsyncClient) -> str:
    r = await client.get("/console/overview/figures")
    assert r.status_code == 200, r.text
    return r.text


async def test_the_cross_table_counts_devices_by_status_and_connectivity(
    client, runtime: Runtime, admin: Actor
):
    deployed = await create_device(client, admin, name="Pump 1", serial_number="SN-D")
    await create_device(client, admin, name="Spare", serial_number="SN-S")
    talking = await create_device(client, admin, name="Bench", serial_number="SN-B")
    r = await client.put(
        f"/api/v1/devices/{deployed['id']}/deploy", json={"location": "Plant A"},
        headers=admin.headers,
    )  # fmt: skip
    assert r.status_code == 200, r.text
    await runtime.presence.seen(admin.workspace_id, [uuid.UUID(deployed["id"])])
    await runtime.presence.seen(admin.workspace_id, [uuid.UUID(talking["id"])])
    await sign_in(client, admin.email)
    html = await figures(client)
    assert figure(html, "status-deployed") == 1
    assert figure(html, "status-deployed-online") == 1
    assert figure(html, "status-deployed-offline") == 0
    assert figure(html, "status-in_stock") == 2
    assert figure(html, "status-in_stock-online") == 1
    assert figure(html, "status-in_stock-offline") == 1
    assert figure(html, "status-retired") == 0 and figure(html, "status-retired-online") == 0
    assert figure(html, "devices-total") == 3
    assert (figure(html, "devices-online"), figure(html, "devices-offline")) == (2, 1)
    assert "By lifecycle status and connectivity" in html and ">Online</th>" in html


async def test_devices_that_went_offline_in_the_last_hour_are_listed(
    client, runtime: Runtime, admin: Actor, factory: Factory
):
    clock = Clock()
    runtime.presence.clock = clock
    ws = admin.workspace_id
    gone = await create_device(client, admin, name="Gone-Recently", serial_number="SN-G")
    old = await create_device(client, admin, name="Gone-Long-Ago", serial_number="SN-O")
    back = await create_device(client, admin, name="Came-Back", serial_number="SN-C")
    other = await factory.user("admin", workspace="globex")
    foreign = await create_device(client, other, name="Theirs", serial_number="SN-F")
    ids = {d["name"]: uuid.UUID(d["id"]) for d in (gone, old, back, foreign)}

    clock.now -= timedelta(hours=2)
    await runtime.presence.seen(ws, [ids["Gone-Long-Ago"]])
    await runtime.presence.gone(ws, ids["Gone-Long-Ago"], "closed")
    clock.now += timedelta(hours=2) - timedelta(minutes=10)
    seen_at = clock.now
    await runtime.presence.seen(ws, [ids["Gone-Recently"], ids["Came-Back"]])
    await runtime.presence.seen(other.workspace_id, [ids["Theirs"]])
    clock.now += timedelta(minutes=5)
    await runtime.presence.gone(ws, ids["Gone-Recently"], "closed")
    await runtime.presence.gone(ws, ids["Came-Back"], "closed")
    await runtime.presence.gone(other.workspace_id, ids["Theirs"], "closed")
    clock.now += timedelta(minutes=1)
    await runtime.presence.seen(ws, [ids["Came-Back"]])  # online again: not listed

    await sign_in(client, admin.email)
    card = section(await figures(client), "h-offline")
    assert figure(card, "went-offline-total") == 1
    rows = re.findall(r'<tr data-device-id="([^"]+)">(.*?)</tr>', card, re.S)
    assert [row_id for row_id, _ in rows] == [gone["id"]]
    row = rows[0][1]
    assert f'<a href="/console/devices/{gone["id"]}">Gone-Recently</a>' in row
    went, last_seen = re.findall(r'<time datetime="([^"]+)" data-local>', row)
    assert datetime.fromisoformat(went) == seen_at + timedelta(minutes=5)
    assert datetime.fromisoformat(last_seen) == seen_at
    for name in ("Gone-Long-Ago", "Came-Back", "Theirs"):
        assert name not in card

    clock.now += timedelta(hours=1)  # an hour later it is no longer recent
    card = section(await figures(client), "h-offline")
    assert figure(card, "went-offline-total") == 0
    assert "No device went offline in the last hour." in card


async def test_recent_lifecycle_changes_are_listed_newest_first(
    client, admin: Actor, operator: Actor, factory: Factory
):
    pump = await create_device(client, admin, name="Pump 7", serial_number="SN-P")
    meter = await create_device(client, admin, name="Meter 3", serial_number="SN-M")
    other = await factory.user("admin", workspace="globex")
    theirs = await create_device(client, other, name="Theirs", serial_number="SN-T")
    for who, device, action in ((admin, pump, "reserve"), (operator, meter, "maintenance"),
                                (other, theirs, "reserve")):  # fmt: skip
        r = await client.put(f"/api/v1/devices/{device['id']}/{action}", headers=who.headers)
        assert r.status_code == 200, r.text
    r = await client.patch(
        f"/api/v1/devices/{pump['id']}", json={"location": "Shelf 2"}, headers=admin.headers
    )
    assert r.status_code == 200, r.text  # an update, not a status change: not listed
    await sign_in(client, admin.email)
    card = section(await figures(client), "h-changes")
    rows = re.findall(r'<tr data-device-id="([^"]+)">(.*?)</tr>', card, re.S)
    assert [row_id for row_id, _ in rows] == [meter["id"], pump["id"]]
    text = [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row)).strip() for _, row in rows]
    assert text[0].startswith("Meter 3 in stock → to maintenance " + operator.email)
    assert text[1].startswith("Pump 7 in stock → to reserved " + admin.email)
    assert f'<a href="/console/devices/{pump["id"]}">Pump 7</a>' in rows[1][1]
    assert "Theirs" not in card


async def test_a_new_workspace_says_there_is_nothing_to_list(client, admin: Actor):
    await sign_in(client, admin.email)
    html = await figures(client)
    assert "No device went offline in the last hour." in html
    assert "No lifecycle changes yet." in html
