"""Registry benchmarks on PostgreSQL, through the real HTTP API.

Seeds 100,000 devices into a fresh database, starts `fieldwatch serve` against it and
measures, with sequential requests from one client:

* a filtered, paginated ``GET /api/v1/devices`` (median and p95), also filtered by
  connectivity (most deployed devices are online, as the presence table records),
* ``GET /api/v1/inventory/summary`` (median and p95),
* importing 10,000 devices from one CSV (``POST /api/v1/devices/import``).

Usage:  .venv/bin/python bench/bench_registry.py [--devices 100000] [--requests 300]
Env:    FIELDWATCH_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test);
        a database named fieldwatch_bench is created next to it and dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx

from fieldwatch.core.ids import new_id
from harness.database import ScratchDatabase, env_for, set_up
from harness.results import percentile, write_results
from harness.server import Server, login
from harness.timing import timed_gets

TYPES = ["meter", "gateway", "esp32", "arduino", "thermostat", "camera", "tracker", "pump",
         "valve", "fitbit_charge_5"]  # fmt: skip
SITES = [f"Site {i:02d}" for i in range(40)]
WAREHOUSES = [f"Warehouse {c}" for c in "ABCDEFGHIJ"]
STATUS_WEIGHTS = {"deployed": 60, "in_stock": 25, "maintenance": 7, "reserved": 5, "retired": 3}
#: The share of deployed devices that are online.
ONLINE_SHARE = 0.85


async def seed(dsn: str, workspace_id: uuid.UUID, count: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        now = datetime.now(UTC)
        statuses = list(STATUS_WEIGHTS)
        weights = list(STATUS_WEIGHTS.values())
        rng = random.Random(7)
        records = []
        for i in range(count):
            status = rng.choices(statuses, weights)[0]
            location = rng.choice(SITES) if status == "deployed" else rng.choice(WAREHOUSES)
            deployed_on = now.date() if status == "deployed" else None
            records.append(
                (
                    new_id(),
                    workspace_id,
                    f"Device {i:06d}",
                    rng.choice(TYPES),
                    f"SN-{i:07d}",
                    "Acme",
                    "M1",
                    "1.0.0",
                    "rev1",
                    "[]",
                    "{}",
                    location,
                    status,
                    deployed_on,
                    1,
                    now,
                    now,
                )
            )
        await conn.copy_records_to_table(
            "devices",
            records=records,
            columns=[
                "id",
                "workspace_id",
                "name",
                "type",
                "serial_number",
                "manufacturer",
                "model",
                "firmware_version",
                "hardware_version",
                "capabilities",
                "specs",
                "location",
                "status",
                "deploy_date",
                "version",
                "created_at",
                "updated_at",
            ],
        )
        await seed_presence(conn, workspace_id, records, now, rng)
        # Steady-state tables: autovacuum would have visited them by now.
        await conn.execute("VACUUM ANALYZE devices")
        await conn.execute("VACUUM ANALYZE device_presence")
    finally:
        await conn.close()


async def seed_presence(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, devices: list[tuple[Any, ...]],
    now: datetime, rng: random.Random,
) -> None:  # fmt: skip
    """Presence rows of the deployed devices, most of them online. The device types get
    a day-long heartbeat, so that nobody goes offline while the benchmark runs."""
    rows = [
        (d[0], workspace_id, "online" if rng.random() < ONLINE_SHARE else "offline", now, now)
        for d in devices
        if d[12] == "deployed"
    ]
    await conn.copy_records_to_table(
        "device_presence", records=rows,
        columns=["device_id", "workspace_id", "connectivity", "last_seen", "changed_at"],
    )  # fmt: skip
    await conn.copy_records_to_table(
        "device_type_settings", records=[(workspace_id, t, 86_400, 3.0) for t in TYPES],
        columns=["workspace_id", "type", "heartbeat_interval_s", "offline_tolerance"],
    )  # fmt: skip


def report(name: str, timings: list[float]) -> str:
    line = (
        f"{name:<58} n={len(timings):<4} median {statistics.median(timings):6.1f} ms   "
        f"p95 {percentile(timings, 95):6.1f} ms"
    )
    print(line, flush=True)
    return line


async def seed_workspace(bench_dsn: str, count: int) -> None:
    conn = await asyncpg.connect(bench_dsn)
    workspace_id = await conn.fetchval("SELECT id FROM workspaces WHERE name = 'bench'")
    await conn.close()
    await seed(bench_dsn, workspace_id, count)


def import_csv(client: httpx.Client, body: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    r = client.post(
        "/api/v1/devices/import",
        content=body,
        headers={"content-type": "text/csv", "X-Workspace": "import"},
    )
    elapsed = time.perf_counter() - started
    r.raise_for_status()
    return elapsed, r.json()


def run_benchmarks(client: httpx.Client, args: argparse.Namespace) -> list[str]:
    rng = random.Random(11)
    n = args.requests
    lines = [
        f"PostgreSQL, {args.devices:,} devices in the workspace, one client, "
        "sequential requests over loopback HTTP"
    ]
    timed_gets(client, ["/api/v1/devices?limit=50"] * 20)  # warm-up
    statuses = list(STATUS_WEIGHTS)
    list_urls = [
        f"/api/v1/devices?status={rng.choice(statuses)}&type={rng.choice(TYPES)}"
        f"&limit=50&offset={rng.randrange(0, 20) * 50}"
        for _ in range(n)
    ]
    lines.append(
        report("GET /devices?status=&type=&limit=50&offset=0..950", timed_gets(client, list_urls))
    )
    loc_urls = [
        f"/api/v1/devices?status=deployed&location={rng.choice(SITES).replace(' ', '%20')}"
        "&limit=50&sort=name"
        for _ in range(n)
    ]
    lines.append(
        report("GET /devices?status=deployed&location=&sort=name", timed_gets(client, loc_urls))
    )
    online = [
        f"/api/v1/devices?connectivity=online&limit=50&offset={rng.randrange(0, 20) * 50}"
        for _ in range(n)
    ]
    lines.append(
        report("GET /devices?connectivity=online&limit=50&offset=0..950",
               timed_gets(client, online))
    )  # fmt: skip
    offline = [
        f"/api/v1/devices?status=deployed&connectivity=offline&type={rng.choice(TYPES)}&limit=50"
        for _ in range(n)
    ]
    lines.append(
        report("GET /devices?status=deployed&connectivity=offline&type=",
               timed_gets(client, offline))
    )  # fmt: skip
    search = [f"/api/v1/devices?q=SN-00{rng.randrange(10, 99)}&limit=50" for _ in range(n)]
    lines.append(report("GET /devices?q=<serial fragment>", timed_gets(client, search)))
    summary = ["/api/v1/inventory/summary"] * n
    lines.append(report("GET /inventory/summary", timed_gets(client, summary)))

    rows = ["name,type,serial_number,location,status"]
    for i in range(args.import_rows):
        status = "deployed" if i % 3 == 0 else "in_stock"
        place = rng.choice(SITES if status == "deployed" else WAREHOUSES)
        rows.append(f"Imported {i},{rng.choice(TYPES)},IMP-{i:06d},{place},{status}")
    body = "\n".join(rows) + "\n"
    elapsed, result = import_csv(client, body)
    assert result["created"] == args.import_rows, result["failed"]
    lines.append(
        f"POST /devices/import, {args.import_rows:,} new devices from CSV: {elapsed:.2f} s "
        f"({args.import_rows / elapsed:,.0f} rows/s)"
    )
    print(lines[-1], flush=True)
    elapsed, result = import_csv(client, body)
    lines.append(
        f"POST /devices/import, the same {args.import_rows:,} rows again "
        f"({result['unchanged']:,} unchanged): {elapsed:.2f} s"
    )
    print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--import-rows", type=int, default=10_000)
    args = parser.parse_args()

    print("Fieldwatch registry benchmark: the figures print as they are measured.", flush=True)
    with ScratchDatabase("fieldwatch_bench") as db:
        env = env_for(db)
        set_up(env, "bench@example.com", "bench", "import")
        print(f"Seeding {args.devices:,} devices with COPY …", flush=True)
        started = time.perf_counter()
        asyncio.run(seed_workspace(db.dsn, args.devices))
        print(f"  seeded in {time.perf_counter() - started:.1f} s", flush=True)
        with Server(env) as srv, httpx.Client(base_url=srv.base, timeout=60) as client:
            client.headers["Authorization"] = f"Bearer {login(srv.base, 'bench@example.com')}"
            lines = run_benchmarks(client, args)
        write_results("registry", lines)


if __name__ == "__main__":
    main()
