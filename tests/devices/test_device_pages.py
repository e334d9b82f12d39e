"""Pages of the device list far from its start (read through the sort's index first) and
the search's case folding, on every backend."""

from __future__ import annotations

from conftest import Actor
from fieldwatch.devices.repository import DEEP_OFFSET

COUNT = DEEP_OFFSET + 30


async def test_deep_pages_are_the_pages_of_the_whole_order(client, operator: Actor):
    lines = ["name,type,serial_number,status,location"]
    for i in range(COUNT):
        where = "deployed,Site 1" if i % 3 == 0 else "in_stock,"
        lines.append(f"Dev {i:04d},{'meter' if i % 2 else 'pump'},SN-{i:04d},{where}")
    r = await client.post("/api/v1/devices/import", content="\n".join(lines) + "\n",
                          headers={**operator.headers, "content-type": "text/csv"})  # fmt: skip
    assert r.status_code == 200 and r.json()["created"] == COUNT, r.text

    async def names(**params) -> tuple[list[str], int]:
        r = await client.get("/api/v1/devices", params=params, headers=operator.headers)
        assert r.status_code == 200, r.text
        return [d["name"] for d in r.json()["items"]], r.json()["total"]

    everything = [f"Dev {i:04d}" for i in range(COUNT)]
    assert await names(sort="name", limit=20, offset=DEEP_OFFSET) == (
        everything[DEEP_OFFSET : DEEP_OFFSET + 20], COUNT)  # fmt: skip
    assert await names(sort="-name", limit=50, offset=DEEP_OFFSET) == (
        everything[::-1][DEEP_OFFSET:], COUNT)  # fmt: skip
    assert await names(sort="serial_number", limit=5, offset=COUNT - 2) == (everything[-2:], COUNT)
    # Newest first (imported in file order, one chunk: ties on created_at go by id).
    newest, _ = await names(limit=50, offset=0)
    deep, _ = await names(limit=50, offset=DEEP_OFFSET)
    assert len(deep) == 30 and not set(deep) & set(newest)
    every = []
    for offset in range(0, COUNT, 200):
        every += (await names(limit=200, offset=offset))[0]
    assert every[DEEP_OFFSET:] == deep and sorted(every) == everything
    # Filtered, and past the end.
    meters = [n for i, n in enumerate(everything) if i % 2]
    assert await names(type="meter", sort="name", limit=10, offset=500) == (meters[500:510], 515)
    assert await names(sort="name", offset=COUNT + DEEP_OFFSET) == ([], COUNT)


async def test_the_search_ignores_case(client, operator: Actor):
    for name, serial in [("Pump North", "ab-77"), ("pump south", "AB-78"), ("Valve", "XY-1")]:
        r = await client.post("/api/v1/devices", json={"name": name, "type": "t",
                              "serial_number": serial}, headers=operator.headers)  # fmt: skip
        assert r.status_code == 201, r.text
    both = {"Pump North", "pump south"}
    for q, expected in [("PUMP", both), ("ab-7", both), ("uth", {"pump south"}), ("%", set()),
                        ("_", set())]:  # fmt: skip
        r = await client.get("/api/v1/devices", params={"q": q}, headers=operator.headers)
        assert {d["name"] for d in r.json()["items"]} == expected, q
