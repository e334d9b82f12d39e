"""Registry benchmarks on PostgreSQL, through the real HTTP API.

Seeds 100,000 devices into a fresh database, starts `fieldwatch serve` against it and
measures, with sequential requests from one client:

* a filtered, paginated ``GET /api/v1/devices`` (median and p95),
* ``GET /api/v1/inventory/summary`` (median and p95),
* importing 10,000 devices from one CSV (``POST /api/v1/devices/import``).

Usage:  .venv/bin/python bench/bench_registry.py [--devices 100000] [--requests 300]
Env:    FIELDWATCH_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test);
        a database named fieldwatch_bench is created next to it and dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from fieldwatch.core.ids import new_id
from fieldwatch.db.engine import normalize_url

TYPES = ["meter", "gateway", "esp32", "arduino", "thermostat", "camera", "tracker", "pump",
         "valve", "fitbit_charge_5"]  # fmt: skip
SITES = [f"Site {i:02d}" for i in range(40)]
WAREHOUSES = [f"Warehouse {c}" for c in "ABCDEFGHIJ"]
STATUS_WEIGHTS = {"deployed": 60, "in_stock": 25, "maintenance": 7, "reserved": 5, "retired": 3}
PASSWORD = "bench-password-123"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


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
        # A steady-state table: autovacuum would have visited it by now.
        await conn.execute("VACUUM ANALYZE devices")
    finally:
        await conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(client: httpx.Client, urls: list[str]) -> list[float]:
    timings = []
    for url in urls:
        started = time.perf_counter()
        r = client.get(url)
        timings.append((time.perf_counter() - started) * 1000)
        r.raise_for_status()
    return timings


def report(name: str, timings: list[float]) -> str:
    line = (
        f"{name:<58} n={len(timings):<4} median {statistics.median(timings):6.1f} ms   "
        f"p95 {pct(timings, 95):6.1f} ms"
    )
    print(line, flush=True)
    return line


async def recreate_database(admin_dsn: str, name: str, *, create: bool = True) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


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
    measure(client, ["/api/v1/devices?limit=50"] * 20)  # warm-up
    statuses = list(STATUS_WEIGHTS)
    list_urls = [
        f"/api/v1/devices?status={rng.choice(statuses)}&type={rng.choice(TYPES)}"
        f"&limit=50&offset={rng.randrange(0, 20) * 50}"
        for _ in range(n)
    ]
    lines.append(
        report("GET /devices?status=&type=&limit=50&offset=0..950", measure(client, list_urls))
    )
    loc_urls = [
        f"/api/v1/devices?status=deployed&location={rng.choice(SITES).replace(' ', '%20')}"
        "&limit=50&sort=name"
        for _ in range(n)
    ]
    lines.append(
        report("GET /devices?status=deployed&location=&sort=name", measure(client, loc_urls))
    )
    search = [f"/api/v1/devices?q=SN-00{rng.randrange(10, 99)}&limit=50" for _ in range(n)]
    lines.append(report("GET /devices?q=<serial fragment>", measure(client, search)))
    summary = ["/api/v1/inventory/summary"] * n
    lines.append(report("GET /inventory/summary", measure(client, summary)))

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


def wait_for(client: httpx.Client) -> None:
    for _ in range(150):
        try:
            client.get("/health")
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--import-rows", type=int, default=10_000)
    args = parser.parse_args()

    base = os.environ.get(
        "FIELDWATCH_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
    )
    admin_dsn = normalize_url(base).set(drivername="postgresql").render_as_string(False)
    bench_url = normalize_url(base).set(database="fieldwatch_bench")
    bench_dsn = bench_url.set(drivername="postgresql").render_as_string(False)
    print("Fieldwatch registry benchmark: the figures print as they are measured.", flush=True)
    asyncio.run(recreate_database(admin_dsn, "fieldwatch_bench"))

    tmp = Path(tempfile.mkdtemp(prefix="fieldwatch-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDWATCH_")}
    env |= {
        "FIELDWATCH_DATABASE_URL": bench_url.render_as_string(False),
        "FIELDWATCH_DATA_DIR": str(tmp),
        "FIELDWATCH_LOG_LEVEL": "WARNING",
    }
    cli = [sys.executable, "-m", "fieldwatch"]
    server = None
    try:
        subprocess.run([*cli, "db", "upgrade"], env=env, check=True, capture_output=True)
        for workspace in ("bench", "import"):
            subprocess.run(
                [*cli, "users", "create", "bench@example.com", "--role", "admin",
                 "--workspace", workspace, "--password", PASSWORD],
                env=env, check=True, capture_output=True,
            )  # fmt: skip
        print(f"Seeding {args.devices:,} devices with COPY …", flush=True)
        started = time.perf_counter()
        asyncio.run(seed_workspace(bench_dsn, args.devices))
        print(f"  seeded in {time.perf_counter() - started:.1f} s", flush=True)

        port = free_port()
        server = subprocess.Popen(
            [*cli, "serve", "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            wait_for(client)
            token = client.post(
                "/api/v1/auth/login", json={"email": "bench@example.com", "password": PASSWORD}
            ).json()["access_token"]
            client.headers["Authorization"] = f"Bearer {token}"
            lines = run_benchmarks(client, args)
        out = Path(__file__).parent / "results"
        out.mkdir(exist_ok=True)
        (out / "registry.txt").write_text("\n".join(lines) + "\n")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=15)
        asyncio.run(recreate_database(admin_dsn, "fieldwatch_bench", create=False))


if __name__ == "__main__":
    main()
