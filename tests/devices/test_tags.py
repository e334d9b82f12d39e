"""Device tags: validation, the all-of ``tag=`` filter, CSV export and import."""

from __future__ import annotations

import csv
import io

from conftest import Actor, create_device, problem


async def _names(client, who: Actor, **params) -> list[str]:
    r = await client.get("/api/v1/devices", params=params, headers=who.headers)
    assert r.status_code == 200, r.text
    return sorted(d["name"] for d in r.json()["items"])


async def test_tags_are_trimmed_kept_in_order_and_read_back(client, operator: Actor):
    device = await create_device(client, operator, tags=[" roof ", "north", "5G"])
    assert device["tags"] == ["roof", "north", "5G"]
    got = await client.get(f"/api/v1/devices/{device['id']}", headers=operator.headers)
    assert got.json()["tags"] == ["roof", "north", "5G"]
    plain = await create_device(client, operator, name="Plain")
    assert plain["tags"] == []


async def test_bad_tags_are_refused_with_the_reason(client, operator: Actor):
    cases = {
        "twice": (["a", "b", " a"], "given twice"),
        "empty": (["a", "  "], "may not be empty"),
        "long": (["x" * 51], "at most 50 characters"),
        "many": ([f"t{i}" for i in range(21)], "at most 20 tags"),
        "separator": (["a;b"], "may not contain ';'"),
    }
    for tags, message in cases.values():
        body = {"name": "S", "type": "sensor", "tags": tags}
        r = await client.post("/api/v1/devices", json=body, headers=operator.headers)
        errors = problem(r, 422)["errors"]
        assert errors[0]["field"] == "tags" and message in errors[0]["message"], (tags, errors)
    ok = await client.post(
        "/api/v1/devices",
        json={"name": "S", "type": "sensor", "tags": ["x" * 50] + [f"t{i}" for i in range(19)]},
        headers=operator.headers,
    )
    assert ok.status_code == 201, ok.text


async def test_update_replaces_or_clears_tags_and_logs_the_change(client, operator: Actor):
    device = await create_device(client, operator, tags=["a"])
    url = f"/api/v1/devices/{device['id']}"
    r = await client.patch(url, json={"tags": ["b", "c"]}, headers=operator.headers)
    assert r.json()["tags"] == ["b", "c"]
    r = await client.patch(url, json={"tags": None}, headers=operator.headers)
    assert r.json()["tags"] == []
    problem(await client.patch(url, json={"tags": ["d", "d"]}, headers=operator.headers), 422)
    log = (await client.get(f"{url}/logs", headers=operator.headers)).json()["items"]
    changes = [e["changes"]["tags"] for e in log if "tags" in e["changes"]]
    assert {"before": ["a"], "after": ["b", "c"]} in changes
    assert {"before": ["b", "c"], "after": []} in changes


async def test_the_tag_filter_needs_every_tag(client, operator: Actor, factory):
    await create_device(client, operator, name="A", tags=["roof", "north"])
    await create_device(client, operator, name="B", tags=["roof"])
    await create_device(client, operator, name="C", tags=["north", "roofing"])
    await create_device(client, operator, name="D")
    other = await factory.user("operator", workspace="globex")
    await create_device(client, other, name="X", tags=["roof", "north"])
    assert await _names(client, operator, tag="roof") == ["A", "B"]
    assert await _names(client, operator, tag=["roof", "north"]) == ["A"]
    assert await _names(client, operator, tag=["north"]) == ["A", "C"]
    assert await _names(client, operator, tag=["roo"]) == []  # whole tags, not substrings
    assert await _names(client, operator, tag=["roof"], type="sensor", q="a") == ["A"]
    r = await client.get(
        "/api/v1/devices", params={"tag": ["roof", "north"]}, headers=operator.headers
    )
    assert r.json()["total"] == 1


async def test_csv_round_trip_keeps_tags(client, operator: Actor):
    await create_device(client, operator, name="A", serial_number="S-1", tags=["roof", "n|e"])
    export = await client.get("/api/v1/devices/export", headers=operator.headers)
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert rows[0]["tags"] == "roof;n|e"
    edited = export.text.replace("roof;n|e", "roof;south")
    r = await client.post(
        "/api/v1/devices/import",
        files={"file": ("devices.csv", edited.encode(), "text/csv")},
        headers=operator.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["updated"] == 1
    assert await _names(client, operator, tag=["south"]) == ["A"]
    fresh = "name,type,serial_number,tags\nB,sensor,S-2,alpha; beta\n"
    r = await client.post(
        "/api/v1/devices/import",
        files={"file": ("devices.csv", fresh.encode(), "text/csv")},
        headers=operator.headers,
    )
    assert r.json()["created"] == 1, r.text
    items = (await client.get("/api/v1/devices?tag=beta", headers=operator.headers)).json()
    assert [d["tags"] for d in items["items"]] == [["alpha", "beta"]]
    bad = "name,type,serial_number,tags\nC,sensor,S-3,x;x\n"
    r = await client.post(
        "/api/v1/devices/import",
        files={"file": ("devices.csv", bad.encode(), "text/csv")},
        headers=operator.headers,
    )
    assert r.json()["failed"] == 1 and r.json()["rows"][0]["errors"][0]["field"] == "tags"
