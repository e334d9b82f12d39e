"""The console's device groups pages over HTTP: creating static and dynamic groups (a
refused form shows each message), a group's devices, adding devices by serial number or
id with an outcome each, removing, editing, deleting; the inventory filtered by a group
and by tags; tags on the device page; and the refusals (viewer, CSRF, another workspace)."""

from __future__ import annotations

import html
import re
from typing import Any

import httpx

from conftest import Actor, Factory, create_device
from console_helpers import csrf_of, sign_in_http

LIST = "/console/groups"


def rows(page: str) -> list[str]:
    """The device names in the group's device table (or the inventory's), in order."""
    return re.findall(r'<th scope="row"><a href="/console/devices/[^"]+">([^<]+)</a></th>', page)


def flat(page: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(page))


async def post(client: httpx.AsyncClient, url: str, data: dict[str, Any]) -> httpx.Response:
    page = await client.get(LIST)
    return await client.post(url, data={"csrf_token": csrf_of(page.text), **data})


async def fleet(client: httpx.AsyncClient, who: Actor) -> dict[str, dict[str, Any]]:
    made = {}
    for name, type_, tags in [("Alpha", "pump", ["roof"]), ("Bravo", "pump", ["roof", "north"]),
                              ("Charlie", "meter", ["north"])]:  # fmt: skip
        made[name] = await create_device(client, who, name=name, type=type_, tags=tags,
                                         serial_number=f"SN-{name}")  # fmt: skip
    return made


async def test_a_dynamic_group_shows_its_devices_and_filters_the_inventory(client, operator: Actor):
    await fleet(client, operator)
    await sign_in_http(client, operator.email)
    form = {"name": "Roof pumps", "kind": "dynamic", "type": "pump", "tags": "roof",
            "firmware_version": "", "status": ["in_stock", "deployed"]}  # fmt: skip
    r = await post(client, LIST, form)
    assert r.status_code == 303, r.text
    url = r.headers["location"].split("?")[0]
    page = (await client.get(r.headers["location"])).text
    assert "The group is created." in page
    assert rows(page) == ["Alpha", "Bravo"]
    assert "type pump · status in stock or deployed · tags roof" in flat(page)
    listing = flat((await client.get(LIST)).text)
    assert "Roof pumps" in listing and "dynamic: type pump" in listing
    group_id = url.rsplit("/", 1)[1]
    inventory = (await client.get("/console/inventory", params={"group": group_id})).text
    assert sorted(rows(inventory)) == ["Alpha", "Bravo"]
    assert f'<option value="{group_id}" selected>Roof pumps</option>' in inventory
    both = await client.get("/console/inventory", params={"group": group_id, "tag": "north"})
    assert rows(both.text) == ["Bravo"]
    export = await client.get("/console/inventory/export", params={"group": group_id})
    assert len(export.text.splitlines()) == 3
    r = await post(client, url, {"name": "Roof meters", "type": "meter", "tags": "north"})
    assert r.status_code == 303
    assert rows((await client.get(url)).text) == ["Charlie"]


async def test_the_inventory_filters_by_tags_in_the_url(client, operator: Actor):
    await fleet(client, operator)
    await sign_in_http(client, operator.email)
    page = (await client.get("/console/inventory", params={"tag": "roof; north"})).text
    assert rows(page) == ["Bravo"]
    assert 'value="roof; north"' in page
    assert "tag=roof&amp;tag=north" in page  # the sort links and pager keep the filter
    r = await client.get("/console/inventory", params={"tag": "x" * 51})
    assert r.status_code == 422 and "at most 50 characters" in html.unescape(r.text)
    r = await client.get("/console/inventory", params={"group": "nope"})
    assert r.status_code == 422


async def test_a_static_group_adds_by_serial_or_id_and_removes(
    client, operator: Actor, factory: Factory
):
    made = await fleet(client, operator)
    other = await factory.user("operator", workspace="globex")
    theirs = await create_device(client, other, name="Theirs", serial_number="SN-T")
    await sign_in_http(client, operator.email)
    r = await post(client, LIST, {"name": "Spares", "kind": "static"})
    url = r.headers["location"].split("?")[0]
    given = f"SN-Alpha\n{made['Charlie']['id']}, SN-T {theirs['id']} SN-nope"
    r = await post(client, url + "/members", {"devices": given})
    assert r.status_code == 200, r.text
    page = flat(r.text)
    assert "Added 2 of 5." in page
    for ref, outcome in [("SN-Alpha", "Added"), ("SN-T", "Not found"), (theirs["id"], "Not found"),
                         ("SN-nope", "Not found")]:  # fmt: skip
        assert f'<th scope="row">{ref}</th><td' in page and outcome in page
    assert rows(r.text) == ["Alpha", "Charlie"]
    again = flat((await post(client, url + "/members", {"devices": "SN-Alpha"})).text)
    assert "Already in the group" in again
    r = await post(client, url + "/members", {"devices": "  "})
    assert r.status_code == 422 and "at least one serial number" in r.text
    r = await post(client, f"{url}/members/{made['Alpha']['id']}/remove", {})
    assert r.status_code == 303
    page = (await client.get(r.headers["location"])).text
    assert "The device is removed from the group." in page and rows(page) == ["Charlie"]
    assert "1 member" in flat((await client.get(LIST)).text)


async def test_refused_forms_show_each_message(client, operator: Actor):
    await sign_in_http(client, operator.email)
    r = await post(client, LIST, {"name": "Empty", "kind": "dynamic"})
    assert r.status_code == 422
    assert "needs at least one field" in html.unescape(r.text)
    r = await post(client, LIST, {"name": "Bad", "kind": "dynamic", "tags": "a; a"})
    assert r.status_code == 422
    assert 'id="g-tags"' in r.text and "given twice" in html.unescape(r.text)
    assert re.search(r'id="g-tags"[^>]*aria-invalid="true"[^>]*autofocus', r.text)
    assert (await post(client, LIST, {"name": "Taken", "kind": "static"})).status_code == 303
    r = await post(client, LIST, {"name": "Taken", "kind": "static"})
    assert r.status_code == 422 and "already exists" in html.unescape(r.text)
    assert 'value="Taken"' in r.text


async def test_delete_and_the_refusals(client, operator: Actor, viewer: Actor, factory: Factory):
    await sign_in_http(client, operator.email)
    r = await post(client, LIST, {"name": "Doomed", "kind": "static"})
    url = r.headers["location"].split("?")[0]
    page = (await client.get(url)).text
    assert 'data-confirm="Delete the group Doomed? Its devices are kept."' in page
    r = await client.post(url + "/delete", data={})  # no CSRF token
    assert r.status_code == 403
    r = await post(client, url + "/delete", {})
    assert r.status_code == 303 and "deleted" in r.headers["location"]
    assert (await client.get(url)).status_code == 404
    other = await factory.user("operator", workspace="globex")
    theirs = (await client.post("/api/v1/device-groups", json={"name": "Theirs"},
                                headers=other.headers)).json()  # fmt: skip
    assert (await client.get(f"{LIST}/{theirs['id']}")).status_code == 404
    mine = (await client.post("/api/v1/device-groups", json={"name": "Mine"},
                              headers=operator.headers)).json()  # fmt: skip
    client.cookies.clear()
    await sign_in_http(client, viewer.email)
    page = (await client.get(f"{LIST}/{mine['id']}")).text
    assert "Mine" in page and 'id="add-members"' not in page and "Delete group" not in page
    assert "New group" not in (await client.get(LIST)).text
    r = await post(client, LIST, {"name": "Viewer's", "kind": "static"})
    assert r.status_code == 403


async def test_the_device_page_shows_and_saves_tags(client, operator: Actor, viewer: Actor):
    device = await create_device(client, operator, name="Tagged", tags=["roof"])
    await sign_in_http(client, operator.email)
    url = f"/console/devices/{device['id']}"
    page = (await client.get(url)).text
    assert '<span class="tag">roof</span>' in page and 'value="roof"' in page
    r = await client.post(url + "/tags", data={"csrf_token": csrf_of(page), "tags": "b ; c;"})
    assert r.status_code == 303
    got = await client.get(f"/api/v1/devices/{device['id']}", headers=operator.headers)
    assert got.json()["tags"] == ["b", "c"]
    r = await client.post(url + "/tags", data={"csrf_token": csrf_of(page), "tags": "d;d"})
    assert r.status_code == 422 and "given twice" in html.unescape(r.text)
    client.cookies.clear()
    await sign_in_http(client, viewer.email)
    page = (await client.get(url)).text
    assert 'id="tags-form"' not in page and '<span class="tag">b</span>' in page
    r = await client.post(url + "/tags", data={"csrf_token": csrf_of(page), "tags": "x"})
    assert r.status_code == 403
