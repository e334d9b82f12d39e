"""The device search (``q``): on SQLite an FTS5 trigram index finds its candidates
(migration 0014), the ``LIKE`` decides. Whichever path a search takes, it finds the
rows the ``LIKE`` scan finds, in the same order, with the same total."""

from __future__ import annotations

import sqlite3
import uuid

import pytest
from sqlalchemy import func, select, text

from conftest import Actor
from fieldwatch.db import migrate
from fieldwatch.devices import listing
from fieldwatch.devices.listing import DeviceFilter, filter_clauses
from fieldwatch.devices.models import Device
from fieldwatch.devices.repository import DeviceRepository

DEVICES = [
    ("Pump North", "AB-77"), ("pump south", "ab-78"), ("100% Pure", "PCT-100%"),
    ("under_score", "U_1"), ("underXscore", "UX1"), ('say "hi"', 'Q"1'), ("it's", "APOS-'"),
    ("Café Ünïcode", "CAFÉ-1"), ("CAFÉ upper", "café-2"), ("Straße 5", "STRASSE-5"),
    ("i\u0307stanbul", "IST-1"), ("back\\slash", "BS\\1"), ("日本語デバイス", "JP-日本"),
    ("emoji 🌡️ probe", None),
    ("no serial", None), ("AND OR NOT", "NEAR(x)"), ("col:name", "*star*"), ("  spaced  ", "SP"),
]  # fmt: skip
QUERIES = [
    "pump", "PUMP", "ump", "pu", "p", "ab-7", "AB-77", "100%", "% P", "%", "%%%", "_", "__",
    "r_s", "under_", "_score", 'y "h', '"', '"""', "it's", "'s", "café", "CAFÉ", "Café", "afé",
    "ünï", "ÜNÏ", "straße", "STRASSE", "İST", "İs", "i\u0307st", "ss", "\\", "k\\s", "BS\\1",
    "日本語", "本", "デバイス",
    "🌡️", "🌡️ p", "AND", "and or", "NEAR(", "(x)", "col:", ":name", "*", "*star", "  s",
    "spaced  ", "   ", "serial", "nothing like it", "x" * 100,
]  # fmt: skip


async def _add_devices(client, actor: Actor) -> dict[str, str]:
    ids = {}
    for name, serial in DEVICES:
        r = await client.post("/api/v1/devices", json={"name": name, "type": "t",
                              "serial_number": serial}, headers=actor.headers)  # fmt: skip
        assert r.status_code == 201, r.text
        ids[name] = r.json()["id"]
    return ids


async def _by_scan(session, workspace_id: uuid.UUID, q: str, sort: str) -> tuple[list[str], int]:
    """What the ``LIKE`` alone finds (the path before the index, and for a short ``q``)."""
    where = [Device.workspace_id == workspace_id, *DeviceFilter(q=q).clauses()]
    column = getattr(Device, sort.lstrip("-"))
    desc = sort.startswith("-")
    rows = await session.scalars(
        select(Device.name)
        .where(*where)
        .order_by(
            column.desc() if desc else column.asc(), Device.id.desc() if desc else Device.id.asc()
        )
    )
    total = await session.scalar(select(func.count()).select_from(Device).where(*where))
    return list(rows), int(total or 0)


async def _search_table_exists(runtime) -> bool:
    async with runtime.engine.connect() as conn:
        found = await conn.execute(
            text("SELECT name FROM sqlite_master WHERE name = 'device_search'")
        )
        return found.first() is not None


async def test_the_indexed_search_finds_what_the_scan_finds(client, runtime, backend, operator):
    await _add_devices(client, operator)
    sqlite_index = backend.name == "sqlite" and sqlite3.sqlite_version_info >= (3, 34)
    async with runtime.uow() as uow:
        repo = DeviceRepository(uow.session)
        for q in QUERIES:
            flt = DeviceFilter(q=q)
            indexed = len(await filter_clauses(uow.session, flt)) > len(flt.clauses())
            assert indexed == (sqlite_index and len(q.lower()) >= 3), q
            for sort in ("-created_at", "name", "-serial_number"):
                rows, total = await repo.page(
                    operator.workspace_id, flt, limit=100, offset=0, sort=sort
                )
                assert ([d.name for d in rows], total) == await _by_scan(
                    uow.session, operator.workspace_id, q, sort
                ), (q, sort)
            r = await client.get("/api/v1/devices", params={"q": q, "limit": 3, "offset": 1},
                                 headers=operator.headers)  # fmt: skip
            expected, total = await _by_scan(uow.session, operator.workspace_id, q, "-created_at")
            assert r.status_code == 200, r.text
            assert ([d["name"] for d in r.json()["items"]], r.json()["total"]) == (
                expected[1:4], total), q  # fmt: skip
    # Not vacuous: the search finds something, case folded (ASCII on SQLite, as LIKE).
    r = await client.get("/api/v1/devices", params={"q": "UMP NO"}, headers=operator.headers)
    assert [d["name"] for d in r.json()["items"]] == ["Pump North"]
    r = await client.get("/api/v1/devices", params={"q": "100%"}, headers=operator.headers)
    assert [d["name"] for d in r.json()["items"]] == ["100% Pure"]
    r = await client.get("/api/v1/devices", params={"q": "r_s"}, headers=operator.headers)
    assert [d["name"] for d in r.json()["items"]] == ["under_score"]


async def test_the_search_sees_other_filters_and_workspaces(client, factory, operator):
    other = await factory.user("operator", workspace="globex")
    await _add_devices(client, operator)
    await _add_devices(client, other)
    r = await client.post("/api/v1/devices", json={"name": "Pump West", "type": "pump",
                          "serial_number": "PW-1"}, headers=operator.headers)  # fmt: skip
    params = {"q": "pump", "type": "pump"}
    r = await client.get("/api/v1/devices", params=params, headers=operator.headers)
    assert ([d["name"] for d in r.json()["items"]], r.json()["total"]) == (["Pump West"], 1)
    r = await client.get("/api/v1/devices", params={"q": "pump"}, headers=other.headers)
    assert sorted(d["name"] for d in r.json()["items"]) == ["Pump North", "pump south"]


async def _found(client, actor: Actor, q: str) -> set[str]:
    r = await client.get("/api/v1/devices", params={"q": q}, headers=actor.headers)
    assert r.status_code == 200, r.text
    return {d["name"] for d in r.json()["items"]}


async def _indexed_rowids(runtime, q: str) -> set[int]:
    async with runtime.engine.connect() as conn:
        phrase = '"' + q.replace('"', '""') + '"'
        rows = await conn.execute(
            text("SELECT rowid FROM device_search WHERE device_search MATCH :p"), {"p": phrase}
        )
        return {r[0] for r in rows}


async def _check_index(runtime, backend) -> None:
    """On SQLite the index holds exactly the devices' current names and serial numbers."""
    if backend.name != "sqlite" or not await _search_table_exists(runtime):
        return
    async with runtime.engine.connect() as conn:
        await conn.execute(
            text("INSERT INTO device_search(device_search, rank) VALUES ('integrity-check', 1)")
        )
        devices = (await conn.execute(text("SELECT rowid, name, serial_number FROM devices"))).all()
    for rowid, name, serial in devices:
        for value in (name, serial):
            if value and len(value) >= 3:
                assert rowid in await _indexed_rowids(runtime, value), value


async def test_triggers_keep_the_index_in_step(client, runtime, backend, factory, admin):
    ids = await _add_devices(client, admin)
    await _check_index(runtime, backend)
    assert await _found(client, admin, "pump") == {"Pump North", "pump south"}
    # A rename and a new serial number: found by the new, not by the old.
    r = await client.patch(f"/api/v1/devices/{ids['Pump North']}",
                           json={"name": "Valve North", "serial_number": "VN-9"},
                           headers=admin.headers)  # fmt: skip
    assert r.status_code == 200, r.text
    assert await _found(client, admin, "pump") == {"pump south"}
    assert await _found(client, admin, "valve") == {"Valve North"}
    assert await _found(client, admin, "vn-9") == {"Valve North"}
    assert await _found(client, admin, "ab-77") == set()
    # Other changes leave the index alone; a retired device is still found.
    r = await client.patch(f"/api/v1/devices/{ids['pump south']}", json={"location": "Dock"},
                           headers=admin.headers)  # fmt: skip
    assert r.status_code == 200, r.text
    r = await client.delete(f"/api/v1/devices/{ids['pump south']}", headers=admin.headers)
    assert r.status_code == 200, r.text
    assert await _found(client, admin, "pump") == {"pump south"}
    # Purged: gone from the index.
    r = await client.delete(f"/api/v1/devices/{ids['pump south']}", params={"purge": "true"},
                            headers=admin.headers)  # fmt: skip
    assert r.status_code == 204, r.text
    assert await _found(client, admin, "pump") == set()
    await _check_index(runtime, backend)
    # A new device takes the purged one's place in the index, with its own name.
    r = await client.post("/api/v1/devices", json={"name": "Sump pump", "type": "t"},
                          headers=admin.headers)  # fmt: skip
    assert await _found(client, admin, "pump") == {"Sump pump"}
    await _check_index(runtime, backend)
    # A workspace deleted with its devices (the foreign key's cascade) leaves no entries.
    other = await factory.user("operator", workspace="globex")
    await _add_devices(client, other)
    async with runtime.engine.begin() as conn:
        await conn.execute(text("DELETE FROM workspaces WHERE id = :id"),
                           {"id": other.workspace_id.hex if backend.name == "sqlite"
                            else other.workspace_id})  # fmt: skip
    await _check_index(runtime, backend)
    if backend.name == "sqlite" and await _search_table_exists(runtime):
        async with runtime.engine.connect() as conn:
            indexed = await conn.scalar(text("SELECT count(*) FROM device_search_docsize"))
            devices = await conn.scalar(text("SELECT count(*) FROM devices"))
        assert indexed == devices == len(DEVICES)


async def test_migration_down_and_up_on_sqlite(client, runtime, backend, operator):
    if backend.name != "sqlite":
        pytest.skip("the search table is SQLite's")
    if sqlite3.sqlite_version_info < (3, 34):
        pytest.skip("this SQLite has no trigram tokenizer")
    await _add_devices(client, operator)
    assert await _search_table_exists(runtime)
    await migrate.downgrade(runtime.engine, "0013")
    listing.forget_search_table()
    async with runtime.engine.connect() as conn:
        left = await conn.execute(text("SELECT name FROM sqlite_master WHERE name LIKE '%search%'"))
        assert left.all() == []
    async with runtime.uow() as uow:  # without the table, the search is a scan
        flt = DeviceFilter(q="pump")
        assert len(await filter_clauses(uow.session, flt)) == len(flt.clauses())
    # Later migrations add columns the models know: a device of that schema, by hand.
    async with runtime.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO devices (id, workspace_id, name, type, capabilities, specs, status,"
                " version, created_at, updated_at) VALUES (:id, :ws, 'Sump pump', 't', '[]',"
                " '{}', 'in_stock', 1, '2026-12-01 00:00:00', '2026-12-01 00:00:00')"
            ),
            {"id": uuid.uuid4().hex, "ws": operator.workspace_id.hex},
        )
    await migrate.upgrade(runtime.engine)
    listing.forget_search_table()
    assert await _search_table_exists(runtime)
    async with runtime.uow() as uow:
        flt = DeviceFilter(q="pump")
        assert len(await filter_clauses(uow.session, flt)) == len(flt.clauses()) + 1
    # Devices added before the upgrade are in the rebuilt index.
    assert await _found(client, operator, "pump") == {"Pump North", "pump south", "Sump pump"}
    await _check_index(runtime, backend)


async def test_without_the_trigram_tokenizer_the_search_scans(client, runtime, backend, operator,
                                                              monkeypatch):  # fmt: skip
    if backend.name != "sqlite":
        pytest.skip("the search table is SQLite's")
    await _add_devices(client, operator)
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    async with runtime.uow() as uow:
        flt = DeviceFilter(q="pump")
        assert len(await filter_clauses(uow.session, flt)) == len(flt.clauses())
    assert await _found(client, operator, "pump") == {"Pump North", "pump south"}
    # An old SQLite migrates without the table (and downgrades without it).
    await migrate.downgrade(runtime.engine, "0013")
    await migrate.upgrade(runtime.engine)
    listing.forget_search_table()
    assert not await _search_table_exists(runtime)
    assert await _found(client, operator, "pump") == {"Pump North", "pump south"}
