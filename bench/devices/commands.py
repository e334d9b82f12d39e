"""Commands for the storm part: queued through the API, counted in the database, and a
sample of devices' command lists read back through the API."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time

import aiohttp
import asyncpg

from harness.server import Server, login


async def post_commands(
    base: str, admin: str, ids: list[str], tag: str, concurrency: int = 32
) -> list[str]:
    headers = {"Authorization": f"Bearer {admin}"}
    cids: list[str] = []
    queue = list(ids)
    async with aiohttp.ClientSession(
        base, headers=headers, connector=aiohttp.TCPConnector(limit=concurrency)
    ) as http:

        async def worker() -> None:
            while queue:
                device = queue.pop()
                body = {
                    "command": "ping",
                    "params": {"batch": tag},
                    "ttl_s": 3600,
                    "idempotency_key": f"{tag}-{device}",
                }
                for attempt in range(10):
                    with contextlib.suppress(aiohttp.ClientError):
                        async with http.post(f"/api/v1/devices/{device}/commands", json=body) as r:
                            if r.status in (200, 201):
                                cids.append((await r.json())["command_id"])
                                break
                    await asyncio.sleep(0.1 * (attempt + 1))
                else:
                    raise SystemExit(f"could not queue a command for {device}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return cids


async def command_statuses(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT status, count(*) AS n FROM commands GROUP BY status")
        return {r["status"]: int(r["n"]) for r in rows}
    finally:
        await conn.close()


async def command_rows(dsn: str) -> tuple[list[asyncpg.Record], int]:
    """The commands, and how many of them went to ``completed`` more than once."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = list(await conn.fetch("SELECT id, device_id, status, attempts FROM commands"))
        twice = await conn.fetchval(
            "SELECT count(*) FROM (SELECT command_id FROM command_transitions "
            "WHERE to_status = 'completed' GROUP BY command_id HAVING count(*) > 1) AS t"
        )
        return rows, int(twice)
    finally:
        await conn.close()


def wait_commands(dsn: str, total: int, timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        statuses = asyncio.run(command_statuses(dsn))
        finished = sum(statuses.get(s, 0) for s in ("completed", "failed", "expired"))
        if finished >= total or time.monotonic() > deadline:
            return statuses
        time.sleep(0.25)


async def clear_commands(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE commands CASCADE")
    finally:
        await conn.close()


async def api_sample(env: dict[str, str], ids: list[str], rng_seed: int) -> str:
    """The server's command lists (``GET /api/v1/devices/{id}/commands``) for a sample of
    devices, on a fresh server."""
    with Server(env) as srv:
        admin = login(srv.base, "bench@example.com")
        sample = random.Random(rng_seed).sample(ids, min(100, len(ids)))
        statuses: dict[str, int] = {}
        async with aiohttp.ClientSession(
            srv.base, headers={"Authorization": f"Bearer {admin}"}
        ) as http:
            for device in sample:
                async with http.get(f"/api/v1/devices/{device}/commands") as r:
                    for item in (await r.json())["items"]:
                        statuses[item["status"]] = statuses.get(item["status"], 0) + 1
    return (
        f"API check, GET /api/v1/devices/{{id}}/commands for {len(sample)} devices: "
        + ", ".join(f"{n} {s}" for s, n in statuses.items())
    )
