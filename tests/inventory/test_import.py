from __future__ import annotations

import json

from conftest import Actor, create_device, problem

CSV = """name,type,serial_number,location,capabilities,specs,purchase_date,status
Meter 1,meter,M-1,Warehouse A,temperature;humidity,"{""range"": 100}",2026-01-02,
Meter 2,meter,M-2,Warehouse A,,,not-a-date,
,meter,M-3,Warehouse A,,,,
Meter 4,meter,M-4,Site 4,,,,deployed
Meter 5,meter,M-1,Warehouse B,,,,
Meter 6,meter,M-6,,,{broken,,
Meter 7,meter,M-7,Warehouse A,,,,lost
too,few,cells
Meter 9,meter,,,,,,
"""


async def _import(client, actor: Actor, body: str | bytes, ctype="text/csv", query=""):
    return await client.post(
        f"/api/v1/devices/import{query}",
        content=body,
        headers={**actor.headers, "content-type": ctype},
    )


async def test_csv_import_reports_every_row_and_keeps_good_ones(client, operator: Actor):
    r = await _import(client, operator, CSV)
    assert r.status_code == 200, r.text
    result = r.json()
    by_row = {row["row"]: row for row in result["rows"]}
    assert result["total"] == 9
    assert (result["created"], result["updated"], result["failed"]) == (3, 0, 6)
    assert [by_row[i]["status"] for i in range(1, 10)] == [
        "created",
        "error",
        "error",
        "created",
        "error",
        "error",
        "error",
        "error",
        "created",
    ]
    assert by_row[2]["errors"][0]["field"] == "purchase_date"
    assert by_row[2]["line"] == 3  # the header is line 1
    assert by_row[3]["errors"][0]["field"] == "name"
    assert "repeats row 1" in by_row[5]["errors"][0]["message"]
    assert "specs" in by_row[6]["errors"][0]["message"]
    assert by_row[7]["errors"][0]["field"] == "status"
    assert "cells" in by_row[8]["errors"][0]["message"]

    listing = (await client.get("/api/v1/devices?sort=name", headers=operator.headers)).json()
    assert [d["name"] for d in listing["items"]] == ["Meter 1", "Meter 4", "Meter 9"]
    m1 = next(d for d in listing["items"] if d["name"] == "Meter 1")
    assert m1["capabilities"] == ["temperature", "humidity"] and m1["specs"] == {"range": 100}
    m4 = next(d for d in listing["items"] if d["name"] == "Meter 4")
    assert m4["status"] == "deployed" and m4["deploy_date"]
    logs = (await client.get(f"/api/v1/devices/{m4['id']}/logs", headers=operator.headers)).json()
    assert [(x["action"], x["new_status"]) for x in logs["items"]] == [("imported", "deployed")]


async def test_import_updates_existing_devices_by_serial(client, operator: Actor):
    existing = await create_device(client, operator, name="Old", serial_number="U-1")
    body = (
        "name,type,serial_number,firmware_version,status,location\n"
        "New,sensor,U-1,2.0,deployed,Plant 2\n"
        "Same,sensor,U-1,,,\n"
    )
    result = (await _import(client, operator, body)).json()
    assert result["rows"][0]["status"] == "updated"
    assert result["rows"][1]["status"] == "error"  # same serial twice in one file
    device = (
        await client.get(f"/api/v1/devices/{existing['id']}", headers=operator.headers)
    ).json()
    assert (device["name"], device["firmware_version"], device["status"], device["location"]) == (
        "New",
        "2.0",
        "deployed",
        "Plant 2",
    )
    # A refused transition in an import is that row's error; nothing of the row is applied.
    result = (
        await _import(client, operator, "name,type,serial_number,status\nX,sensor,U-1,reserved\n")
    ).json()
    assert (
        result["failed"] == 1
        and "cannot go from deployed" in result["rows"][0]["errors"][0]["message"]
    )
    again = (await client.get(f"/api/v1/devices/{existing['id']}", headers=operator.headers)).json()
    assert again == device
    unchanged = (
        await _import(client, operator, "name,serial_number,type\nNew,U-1,sensor\n")
    ).json()
    assert unchanged["unchanged"] == 1


async def test_dry_run_changes_nothing(client, operator: Actor):
    result = (await _import(client, operator, CSV, query="?dry_run=true")).json()
    assert result["dry_run"] is True and result["created"] == 3 and result["failed"] == 6
    assert (await client.get("/api/v1/devices", headers=operator.headers)).json()["total"] == 0


async def test_json_array_and_multipart_upload(client, operator: Actor):
    rows = [
        {"name": "J1", "type": "gateway", "serial_number": "J-1", "specs": {"ports": 4}},
        {"name": "J2"},
        "not an object",
    ]
    result = (await _import(client, operator, json.dumps(rows), "application/json")).json()
    assert [r["status"] for r in result["rows"]] == ["created", "error", "error"]
    r = await client.post(
        "/api/v1/devices/import",
        files={"file": ("fleet.csv", b"name,type,serial_number\nF1,meter,F-1\n", "text/csv")},
        headers=operator.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["created"] == 1
    r = await client.post(
        "/api/v1/devices/import",
        files={
            "file": (
                "fleet.json",
                json.dumps([{"name": "F2", "type": "m"}]).encode(),
                "application/json",
            )
        },
        headers=operator.headers,
    )
    assert r.json()["created"] == 1
    assert (await client.get("/api/v1/devices", headers=operator.headers)).json()["total"] == 3


async def test_whole_file_problems(client, operator: Actor, runtime):
    body = problem(await _import(client, operator, "name,type,colour\na,b,red\n"), 422)
    assert body["errors"] == [{"field": "colour", "message": "unknown column"}]
    body = problem(await _import(client, operator, "name,type,Name\na,b,c\n"), 422)
    assert body["errors"] == [{"field": "name", "message": "column named twice"}]
    problem(await _import(client, operator, ""), 400)
    problem(await _import(client, operator, "[1, 2", "application/json"), 400)
    problem(await _import(client, operator, b"name,type\n\xff\xfe,x\n"), 400)
    problem(await _import(client, operator, "<xml/>", "application/xml"), 415)
    runtime.settings.max_import_bytes = 100
    problem(await _import(client, operator, "name,type\n" + "a,b\n" * 100), 413)
    assert (await client.get("/api/v1/devices", headers=operator.headers)).json()["total"] == 0


async def test_export_then_import_round_trips(client, operator: Actor):
    await create_device(
        client,
        operator,
        name="R1",
        serial_number="R-1",
        capabilities=["a", "b"],
        specs={"k": [1, 2]},
        location="Shelf",
    )
    exported = (await client.get("/api/v1/devices/export", headers=operator.headers)).text
    result = (await _import(client, operator, exported)).json()
    assert result["unchanged"] == 1 and result["failed"] == 0, result
