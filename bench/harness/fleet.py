"""Devices made through the API, the way a fleet is: one CSV import, then a token each."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp

IMPORT_ROWS = 10_000  # devices per CSV import


@dataclass
class Fleet:
    ids: list[str]
    tokens: list[str]


async def make_fleet(
    base: str,
    admin: str,
    count: int,
    concurrency: int = 24,
    columns: dict[str, str] | None = None,
) -> Fleet:
    """``count`` devices by one CSV import (status in_stock unless ``columns``, more CSV
    columns with the same value for every device, say otherwise), then a token for
    each."""
    headers = {"Authorization": f"Bearer {admin}"}
    async with aiohttp.ClientSession(
        base,
        headers=headers,
        connector=aiohttp.TCPConnector(limit=concurrency),
        timeout=aiohttp.ClientTimeout(total=600),
    ) as http:
        ids = await _import_devices(http, count, columns or {})
        tokens = await _issue_tokens(http, ids, concurrency)
    return Fleet(ids, tokens)


async def _import_devices(
    http: aiohttp.ClientSession, count: int, columns: dict[str, str]
) -> list[str]:
    ids: list[str] = []
    extra = "".join(f",{v}" for v in columns.values())
    for start in range(0, count, IMPORT_ROWS):
        rows = [
            f"bench-{i:06d},bench_sensor,BENCH-{i:06d}{extra}"
            for i in range(start, min(count, start + IMPORT_ROWS))
        ]
        header = ",".join(["name", "type", "serial_number", *columns])
        body = header + "\n" + "\n".join(rows) + "\n"
        async with http.post(
            "/api/v1/devices/import", data=body.encode(), headers={"content-type": "text/csv"}
        ) as r:
            result = await r.json()
            if r.status != 200 or result["failed"]:
                raise SystemExit(f"the import failed: {r.status} {str(result)[:500]}")
            ids += [str(row["device_id"]) for row in result["rows"]]
    return ids


async def _issue_tokens(http: aiohttp.ClientSession, ids: list[str], concurrency: int) -> list[str]:
    tokens: list[str] = [""] * len(ids)
    queue = list(enumerate(ids))

    async def worker() -> None:
        while queue:
            i, device = queue.pop()
            for attempt in range(5):
                async with http.post(
                    f"/api/v1/devices/{device}/tokens", json={"name": "bench"}
                ) as r:
                    if r.status == 201:
                        tokens[i] = (await r.json())["token"]
                        break
                await asyncio.sleep(0.2 * (attempt + 1))
            else:
                raise SystemExit(f"no token for device {device}: {r.status}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return tokens
