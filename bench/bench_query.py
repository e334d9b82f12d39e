"""Telemetry queries on PostgreSQL, through the HTTP API.

Seeds one device with 30 days of one reading a second (2,592,000 rows, with their
1-minute and 1-hour rollups) and a fleet of 10,000 devices with three metrics each, then
measures (sequential requests, one client, loopback):

* ``GET /devices/{id}/data/aggregate`` — hourly average over 30 days (UTC, and daily in
  Europe/Berlin);
* ``GET /monitoring/latest`` — the latest value of every metric of all 10,000 devices.

Usage: .venv/bin/python bench/bench_query.py [--days 30] [--fleet 10000] [--requests 50]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from fieldwatch.core.ids import new_id
from fieldwatch.telemetry.storage.partitions import PartitionManager, week_start
from harness.database import ScratchDatabase, env_for, set_up
from harness.results import percentile, write_results
from harness.server import login, server
from harness.timing import timed_gets

METRICS = ("temperature", "humidity", "battery_level")


async def seed(dsn: str, days: int, fleet: int, end: datetime) -> str:
    conn = await asyncpg.connect(dsn, server_settings={"timezone": "UTC"})
    try:
        ws = await conn.fetchval("SELECT id FROM workspaces WHERE name = 'bench'")
        now = datetime.now(UTC)
        devices = [(new_id(), ws, f"Device {i:05d}", "meter", f"SN-{i:06d}", "[]", "{}",
                    "deployed", 1, now, now) for i in range(fleet)]  # fmt: skip
        await conn.copy_records_to_table(
            "devices", records=devices,
            columns=["id", "workspace_id", "name", "type", "serial_number", "capabilities",
                     "specs", "status", "version", "created_at", "updated_at"],
        )  # fmt: skip
        series = [(ws, d[0], m, "number", None, now, end, 20.0 + i % 10, None, 0)
                  for i, d in enumerate(devices) for m in METRICS]  # fmt: skip
        await conn.copy_records_to_table(
            "series", records=series,
            columns=["workspace_id", "device_id", "metric", "kind", "unit", "created_at",
                     "last_ts", "last_value", "last_text", "last_quality"],
        )  # fmt: skip
        heavy = devices[0][0]
        sid = await conn.fetchval(
            "SELECT id FROM series WHERE device_id = $1 AND metric = 'temperature'", heavy
        )
        start = end - timedelta(days=days)
        manager = PartitionManager()
        weeks = {week_start(start + timedelta(days=d)) for d in range(days + 1)}
        await manager.ensure(conn, weeks)
        t0 = time.perf_counter()
        await conn.execute(
            """
            INSERT INTO readings (series_id, ts, value, quality)
            SELECT $1, g, 20 + 5 * sin(extract(epoch FROM g) / 3600.0), 0
            FROM generate_series($2::timestamptz, $3::timestamptz - interval '1 second',
                                 interval '1 second') AS g
            """,
            sid, start, end,
        )  # fmt: skip
        # The readings table's trigger has folded them into the rollups.
        await conn.execute("VACUUM ANALYZE")
        rows = await conn.fetchval("SELECT count(*) FROM readings")
        print(f"  seeded {rows:,} readings, {fleet:,} devices and their rollups in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)  # fmt: skip
        return str(heavy)
    finally:
        await conn.close()


def report(name: str, timings: list[float]) -> str:
    p95 = percentile(timings, 95)
    line = f"{name:<62} median {statistics.median(timings):7.1f} ms   p95 {p95:7.1f} ms"
    print(line, flush=True)
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--fleet", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    print("Fieldwatch query benchmark (PostgreSQL); figures print as they are measured.")
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    lines = [f"PostgreSQL; one device with {args.days} days at 1 reading/s; "
             f"{args.fleet:,} devices × {len(METRICS)} metrics"]  # fmt: skip
    with ScratchDatabase("fieldwatch_bench_query") as db:
        env = env_for(db)
        set_up(env, "bench@example.com", "bench")
        heavy = asyncio.run(seed(db.dsn, args.days, args.fleet, end))
        with server(env) as base, httpx.Client(base_url=base, timeout=120) as client:
            client.headers["Authorization"] = f"Bearer {login(base, 'bench@example.com')}"
            window = {"start_time": (end - timedelta(days=args.days)).isoformat(),
                      "end_time": end.isoformat(), "data_type": "temperature"}  # fmt: skip
            url = f"/api/v1/devices/{heavy}/data/aggregate"
            first = client.get(url, params={**window, "interval": "1h", "agg": "avg"}).json()
            assert len(first["buckets"]) == args.days * 24, len(first["buckets"])
            assert first["buckets"][0]["count"] == 3600 and first["sources"] == ["rollup_1h"]
            n = args.requests
            hourly = {**window, "interval": "1h", "agg": "avg"}
            daily = {**window, "interval": "1d", "agg": "max", "tz": "Europe/Berlin"}
            shifted = {
                **hourly,
                "start_time": (end - timedelta(days=args.days) + timedelta(seconds=17)).isoformat(),
                "end_time": (end - timedelta(seconds=23)).isoformat(),
            }
            lines.append(report(f"aggregate: hourly avg over {args.days} days (UTC)",
                                timed_gets(client, [url] * n, hourly)))  # fmt: skip
            lines.append(report(f"aggregate: daily max over {args.days} days (Europe/Berlin)",
                                timed_gets(client, [url] * n, daily)))  # fmt: skip
            lines.append(report("aggregate: same, range not aligned (rollups + raw edges)",
                                timed_gets(client, [url] * n, shifted)))  # fmt: skip
            latest = client.get("/api/v1/monitoring/latest").json()
            assert latest["count"] == args.fleet, latest["count"]
            lines.append(report(f"latest value per metric for {args.fleet:,} devices",
                                timed_gets(client, ["/api/v1/monitoring/latest"] * n)))  # fmt: skip
    write_results("query", lines)


if __name__ == "__main__":
    main()
