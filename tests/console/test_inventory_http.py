"""The console's inventory page over HTTP: the table's paging, sorting and filters in the
URL, the CSV export of the filter, bulk actions with an outcome per device, the CSV
import's dry run then commit, and the refusals (viewer, CSRF)."""

from __future__ import annotations

import html
import re
from typing import Any

import httpx

from conftest import Actor, Factory, create_device
from console_helpers import csrf_of, sign_in_http
from telemetry_helpers import device_with_token

HX_TABLE = {"HX-Request": "true", "HX-Target": "inventory-results"}
HX = {"HX-Request": "true"}


def names(page: str) -> list[str]:
    """The device names in the table, in order."""
    return re.findall(r'<th scope="row"><a href="/console/devices/[^"]+">([^<]+)</a></th>', page)


def flat(page: str) -> str:
    """The page with its runs of white space made one space."""
    return re.sub(r"\s+", " ", page)


def total(page: str) -> int:
    found = re.search(r'id="inventory-total">([\d,]+)<', page)
    assert found, page
    return int(found.group(1).replace(",", ""))


async def table(client: httpx.AsyncClient, **params: Any) -> str:
    r = await client.get("/console/inventory", params=params)
    assert r.status_code == 200, r.text
    return r.text


async def fleet(client: httpx.AsyncClient, who: Actor) -> dict[str, dict[str, Any]]:
    """Five devices: two deployed at Site A (one of them online), one in maintenance,
    one retired, one in stock."""
    made = {}
    for name, type_, serial in [("Echo", "pump", "SN-100"), ("Alpha", "meter", "SN-200"),
                                ("Delta", "meter", "SN-300"), ("Bravo", "pump", "SN-400"),
                                ("Charlie", "valve", "SN-500")]:  # fmt: skip
        made[name] = await create_device(client, who, name=name, type=type_, serial_number=serial)
    h = who.headers
    for name in ("Alpha", "Bravo", "Delta"):
        r = await client.put(f"/api/v1/devices/{made[name]['id']}/deploy",
                             json={"location": "Site A"}, headers=h)  # fmt: skip
        assert r.status_code == 200, r.text
    r = await client.put(f"/api/v1/devices/{made['Delta']['id']}/maintenance", headers=h)
    assert r.status_code == 200, r.text
    r = await client.put(f"/api/v1/devices/{made['Charlie']['id']}/retire", headers=h)
    assert r.status_code == 200, r.text
    return made


async def test_the_table_filters_sorts_and_pages_in_the_url(client, operator: Actor):
    made = await fleet(client, operator)
    online, token = await device_with_token(client, operator, name="Foxtrot", type="valve")
    r = await client.post(f"/api/v1/devices/{online['id']}/heartbeat", json={}, headers=token)
    assert r.status_code == 200, r.text
    await sign_in_http(client, operator.email)

    page = await table(client)
    assert names(page) == ["Foxtrot", "Charlie", "Bravo", "Delta", "Alpha", "Echo"]  # newest first
    assert total(page) == 6 and "Page 1 of 1" in page
    assert '<a href="/console/inventory?sort=name"' in page  # a sortable header
    assert 'hx-push-url="true"' in page and '<div class="table-wrap">' in page
    for label in ("Name", "Serial number", "Status", "Connectivity", "Last seen", "Location",
                  "Firmware"):  # fmt: skip
        assert f">{label}" in page
    row = re.search(rf'<tr data-device-id="{online["id"]}">.*?</tr>', page, re.S)
    assert row and 'data-connectivity="online">online<' in row.group(0)
    assert '<time datetime="' in row.group(0) and "data-local" in row.group(0)

    page = await table(client, sort="name")
    assert names(page) == ["Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot"]
    assert re.search(r'<th scope="col" aria-sort="ascending">\s*<a href="/console/inventory\?'
                     r'sort=-name"', page)  # fmt: skip
    page = await table(client, sort="-type")  # ties: the newer first
    assert names(page) == ["Foxtrot", "Charlie", "Bravo", "Echo", "Delta", "Alpha"]
    assert 'aria-sort="descending"' in page

    # Pages: two rows each, the pager's links keep the sort.
    page = await table(client, sort="name", limit=2)
    assert names(page) == ["Alpha", "Bravo"] and "Page 1 of 3" in page
    assert 'href="/console/inventory?sort=name&amp;limit=2&amp;offset=2"' in page  # Next
    page = await table(client, sort="name", limit=2, offset=4)
    assert names(page) == ["Echo", "Foxtrot"] and "Page 3 of 3" in page
    assert 'href="/console/inventory?sort=name&amp;limit=2&amp;offset=2"' in page  # Previous
    assert '<span aria-disabled="true">Next</span>' in page

    # Filters; an empty field (as the GET form sends it) is no filter.
    page = await table(client, status="deployed", location="Site A", type="", q="")
    assert sorted(names(page)) == ["Alpha", "Bravo"] and total(page) == 2
    assert 'href="/console/inventory/export?status=deployed&amp;location=Site+A"' in page
    assert sorted(names(await table(client, type="meter"))) == ["Alpha", "Delta"]
    assert names(await table(client, q="sn-30")) == ["Delta"]  # serial, any case
    assert names(await table(client, q="HARL")) == ["Charlie"]  # name
    assert names(await table(client, connectivity="online")) == ["Foxtrot"]
    offline = await table(client, connectivity="offline", status="in_stock")
    assert names(offline) == ["Echo"]
    nothing = await table(client, status="reserved")
    assert names(nothing) == [] and "No devices match these filters" in nothing
    assert made  # the fleet's ids are not needed here

    # htmx asks for the table alone.
    r = await client.get("/console/inventory", params={"sort": "name"}, headers=HX_TABLE)
    assert r.status_code == 200 and "<html" not in r.text and "Inventory" not in r.text
    assert names(r.text)[0] == "Alpha"

    # A value the API does not take is a readable page, not a JSON document.
    r = await client.get("/console/inventory", params={"status": "lost"})
    assert r.status_code == 422 and "text/html" in r.headers["content-type"]
    assert "&#39;lost&#39; is not a status" in r.text


async def test_the_export_is_the_apis_csv_of_the_filter(client, operator: Actor):
    await fleet(client, operator)
    await sign_in_http(client, operator.email)
    params = {"status": "deployed", "location": "Site A", "type": ""}
    r = await client.get("/console/inventory/export", params=params)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"].startswith('attachment; filename="devices-acme-')
    lines = r.text.splitlines()
    assert lines[0].startswith("id,name,type,serial_number,")
    assert sorted(line.split(",")[1] for line in lines[1:]) == ["Alpha", "Bravo"]
    api = await client.get("/api/v1/devices/export", params={"status": "deployed",
                           "location": "Site A"}, headers=operator.headers)  # fmt: skip
    assert r.text == api.text


async def bulk(
    client: httpx.AsyncClient, action: str, ids: list[str], headers: dict[str, str] | None = None,
    **fields: str,
) -> httpx.Response:  # fmt: skip
    page = await client.get("/console/inventory")
    data: dict[str, Any] = {"csrf_token": csrf_of(page.text), "action": action, "device": ids,
                            "return": "/console/inventory?status=in_stock", **fields}  # fmt: skip
    return await client.post("/console/inventory/bulk", data=data, headers=headers)


async def status_of(client: httpx.AsyncClient, who: Actor, device: dict[str, Any]) -> str:
    r = await client.get(f"/api/v1/devices/{device['id']}", headers=who.headers)
    return str(r.json()["status"])


async def test_a_bulk_recall_reports_the_refused_devices(client, operator: Actor, factory: Factory):
    made = await fleet(client, operator)
    theirs = await create_device(client, await factory.user("admin", "globex"), name="Theirs")
    await sign_in_http(client, operator.email)
    ids = [made[n]["id"] for n in ("Alpha", "Charlie", "Delta")] + [theirs["id"]]

    r = await bulk(client, "recalled", ids, HX, location="Warehouse B", notes="season over")
    assert r.status_code == 200 and r.headers["hx-trigger"] == "inventory-changed"
    assert "<html" not in r.text
    assert "Recall to a warehouse: 2 of 4 devices changed, 2 refused" in r.text
    outcome = dict(re.findall(r'<tr data-device-id="([^"]+)" data-outcome="(\w+)">', r.text))
    assert outcome == {made["Alpha"]["id"]: "done", made["Delta"]["id"]: "done",
                       made["Charlie"]["id"]: "refused", theirs["id"]: "refused"}  # fmt: skip
    assert "A device that is retired cannot become in_stock" in r.text
    assert "Allowed from retired: none." in r.text
    assert f"No device {theirs['id']} in this workspace." in r.text
    assert [await status_of(client, operator, made[n]) for n in ("Alpha", "Charlie", "Delta")] == [
        "in_stock", "retired", "in_stock"]  # fmt: skip
    r = await client.get(f"/api/v1/devices/{made['Alpha']['id']}", headers=operator.headers)
    assert r.json()["location"] == "Warehouse B"

    # Without JS: the whole page, the outcomes above the table it was sent from.
    r = await bulk(client, "deployed", [made["Echo"]["id"], made["Charlie"]["id"]],
                   location="Site B")  # fmt: skip
    assert r.status_code == 200 and "<html" in r.text
    assert "Deploy: 1 of 2 devices changed, 1 refused" in r.text
    assert names(r.text) == ["Delta", "Alpha"]  # in stock now, as the return URL filters
    assert await status_of(client, operator, made["Echo"]) == "deployed"

    # Deploying needs a location; nothing selected is said so; next to the form for htmx.
    r = await bulk(client, "deployed", [made["Alpha"]["id"]], HX)
    assert r.status_code == 422 and "Deploying needs the location" in r.text
    assert '<div class="problem" role="alert"' in r.text
    r = await bulk(client, "retired", [], HX)
    assert r.status_code == 422 and "Select at least one device." in r.text
    assert await status_of(client, operator, made["Alpha"]) == "in_stock"


CSV = (
    "name,type,serial_number,location,status\n"
    "New pump,pump,SN-900,Warehouse C,in_stock\n"
    "Alpha renamed,meter,SN-200,Site A,deployed\n"
    "Broken,pump,SN-901,,deployed\n"
    "Retired back,valve,SN-500,,in_stock\n"
)


async def test_an_import_is_checked_by_a_dry_run_then_committed(client, operator: Actor):
    made = await fleet(client, operator)
    await sign_in_http(client, operator.email)
    form = await client.get("/console/inventory/import")
    assert form.status_code == 200 and 'enctype="multipart/form-data"' in form.text
    token = csrf_of(form.text)

    r = await client.post("/console/inventory/import", data={"csrf_token": token},
                          files={"file": ("devices.csv", CSV.encode(), "text/csv")})  # fmt: skip
    assert r.status_code == 200, r.text
    assert "Dry run of devices.csv: nothing is saved yet" in r.text
    assert "4 rows: 1 would be created, 1 would be updated, 0 unchanged, 2 with errors" in flat(
        r.text
    )
    results = dict(re.findall(r'<tr data-row="(\d)" data-result="(\w+)">', r.text))
    assert results == {"1": "created", "2": "updated", "3": "error", "4": "error"}
    assert "would create" in r.text and "would update" in r.text
    assert "location: required for a deployed device" in r.text
    assert "cannot go from retired to in_stock (allowed: none)" in r.text
    listed = await client.get("/api/v1/devices", params={"q": "SN-90"}, headers=operator.headers)
    assert listed.json()["total"] == 0  # nothing saved
    assert (await client.get(f"/api/v1/devices/{made['Alpha']['id']}",
                             headers=operator.headers)).json()["name"] == "Alpha"  # fmt: skip

    content = re.search(r'name="content" value="([^"]*)"', r.text)
    assert content and html.unescape(content.group(1)) == CSV
    data = {
        "csrf_token": token,
        "filename": "devices.csv",
        "content": html.unescape(content.group(1)),
    }
    r = await client.post("/console/inventory/import/commit", data=data)
    assert r.status_code == 200, r.text
    assert "Imported devices.csv" in r.text
    assert "4 rows: 1 created, 1 updated, 0 unchanged, 2 with errors (not imported)" in flat(r.text)
    listed = await client.get("/api/v1/devices", params={"q": "SN-90"}, headers=operator.headers)
    assert [d["name"] for d in listed.json()["items"]] == ["New pump"]
    alpha = await client.get(f"/api/v1/devices/{made['Alpha']['id']}", headers=operator.headers)
    assert alpha.json()["name"] == "Alpha renamed"

    # A file the importer cannot read says why, next to the upload form.
    upload = {"file": ("x.csv", b"name,colour\nA,red\n", "text/csv")}
    r = await client.post("/console/inventory/import", data={"csrf_token": token}, files=upload)
    assert r.status_code == 422 and "Unknown column(s): colour" in r.text
    assert 'id="import-upload"' in r.text
    upload = {"file": ("x.csv", "name\n\xe9".encode("latin-1"), "text/csv")}
    r = await client.post("/console/inventory/import", data={"csrf_token": token}, files=upload)
    assert r.status_code == 400 and "not UTF-8" in r.text


async def test_a_viewer_sees_no_write_controls_and_a_forged_write_is_refused(
    client, operator: Actor, viewer: Actor
):
    made = await fleet(client, operator)
    await sign_in_http(client, viewer.email)
    page = await table(client)
    assert names(page) and 'name="device"' not in page and 'id="bulk"' not in page
    assert "/console/inventory/import" not in page and 'id="select-all"' not in page
    assert (await client.get("/console/inventory/export")).status_code == 200  # reading is fine
    r = await bulk(client, "retired", [made["Alpha"]["id"]], location="")
    assert r.status_code == 403 and "This needs the operator role" in r.text
    assert await status_of(client, operator, made["Alpha"]) == "deployed"
    assert (await client.get("/console/inventory/import")).status_code == 403
    r = await client.post("/console/inventory/import/commit",
                          data={"csrf_token": csrf_of(page), "content": CSV})  # fmt: skip
    assert r.status_code == 403
    listed = await client.get("/api/v1/devices", params={"q": "SN-90"}, headers=operator.headers)
    assert listed.json()["total"] == 0


async def test_a_write_without_the_csrf_token_is_refused(client, operator: Actor):
    made = await fleet(client, operator)
    await sign_in_http(client, operator.email)
    body = {"action": "retired", "device": [made["Alpha"]["id"]]}
    r = await client.post("/console/inventory/bulk", data=body)
    assert r.status_code == 403 and "Reload the page" in r.text
    r = await client.post("/console/inventory/bulk", data={**body, "csrf_token": "forged"})
    assert r.status_code == 403
    r = await client.post("/console/inventory/import/commit", data={"content": CSV})
    assert r.status_code == 403
    assert await status_of(client, operator, made["Alpha"]) == "deployed"
