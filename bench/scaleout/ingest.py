"""Part ingest: HTTP ingest through nginx (the shipped configuration) in front of one
api process, then two.

Each run is a topology of its own (fresh database; one gateway, as nginx's configuration
needs one; no worker), loaded as bench_ingest loads ``fieldwatch serve``: ``POST
/api/v1/devices/{id}/data`` with 1,000 readings a request from concurrent clients, here
all through nginx. A reading counts once its request was answered 200; the rows added
to ``readings`` meanwhile are counted too.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import asyncpg
import httpx
import psutil

from bench_ingest import PER_REQUEST, checkpoint, drive, make_bodies, warm_up
from harness.topology import cpu_seconds, login, topology


def part_ingest(args: argparse.Namespace, say: Any) -> list[dict[str, Any]]:
    requests = max(1, args.readings // PER_REQUEST)
    say(
        f"Ingest through nginx: {requests:,} requests of {PER_REQUEST:,} readings, "
        f"{args.clients} concurrent clients, {args.devices_ingest} devices; 1 api, then 2"
    )
    rows = [ingest_run(apis, requests, args, say) for apis in (1, 2)]
    if rows[0]["readings_per_s"]:
        ratio = rows[1]["readings_per_s"] / rows[0]["readings_per_s"]
        rows[1]["ratio_to_one"] = ratio
        say(f"  2 api processes / 1: {ratio:.2f}× the readings/s")
    return rows


def ingest_run(apis: int, requests: int, args: argparse.Namespace, say: Any) -> dict[str, Any]:
    with topology(apis=apis, gateways=1) as running:
        base = running.url  # nginx
        token = login(base, running)
        headers = {"Authorization": f"Bearer {token}"}
        device_ids = [
            httpx.post(
                f"{base}/api/v1/devices",
                json={"name": f"d{i}", "type": "meter"},
                headers=headers,
                timeout=30,
            ).json()["id"]
            for i in range(args.devices_ingest)
        ]
        bodies = make_bodies(device_ids, requests)
        warm_up(base, headers, device_ids, bodies)
        procs = {p.name: psutil.Process(p.pid) for p in running.role("api")}
        nginx = running.nginx_processes()
        asyncio.run(checkpoint(running.dsn()))
        api_before = {name: cpu_seconds([p]) for name, p in procs.items()}
        nginx_before = cpu_seconds(nginx)
        stored_before = asyncio.run(stored(running.dsn()))
        machine_before, wall0 = psutil.cpu_times(), time.monotonic()
        run = drive(base, token, bodies, args.clients, args.client_processes, [])
        busy = busy_cores(machine_before, psutil.cpu_times(), time.monotonic() - wall0)
        stored_after = asyncio.run(stored(running.dsn()))
        api_cpu = {name: cpu_seconds([p]) - api_before[name] for name, p in procs.items()}
        nginx_cpu = cpu_seconds(nginx) - nginx_before
    per_m = 1e6 / run.accepted if run.accepted else 0.0
    row = {
        "apis": apis,
        "requests": requests,
        "readings_answered_200": run.accepted,
        "error_answers": run.errors,
        "readings_stored": stored_after - stored_before,
        "seconds": run.elapsed,
        "readings_per_s": run.rate,
        "api_cpu_s": api_cpu,
        "api_cpu_s_per_million": {n: c * per_m for n, c in api_cpu.items()},
        "nginx_cpu_s": nginx_cpu,
        "nginx_cpu_s_per_million": nginx_cpu * per_m,
        "postgres_cpu_s_per_million": run.postgres_cpu * per_m,
        "load_generator_cpu_s_per_million": run.client_cpu * per_m,
        "machine_busy_cores": busy,
    }
    per_api = ", ".join(f"{n} {c:.2f}" for n, c in row["api_cpu_s_per_million"].items())
    say(
        f"  {apis} api: {run.rate:,.0f} readings/s committed ({run.accepted:,} readings "
        f"answered 200, {row['readings_stored']:,} new rows in readings, {run.errors} error "
        f"answers, {run.elapsed:.1f} s)"
    )
    say(
        f"    CPU s per million readings: {per_api}; nginx {row['nginx_cpu_s_per_million']:.2f}; "
        f"PostgreSQL {row['postgres_cpu_s_per_million']:.2f}; load generator "
        f"{row['load_generator_cpu_s_per_million']:.2f}; the machine's {psutil.cpu_count()} "
        f"cores {busy:.2f} busy on average (every process: RabbitMQ, Redis too)"
    )
    return row


def busy_cores(before: Any, after: Any, seconds: float) -> float:
    """Cores kept busy on average between two ``psutil.cpu_times()`` (all but idle and
    I/O wait); the window includes starting the load generator's processes."""
    spent = sum(after) - sum(before)
    idle = (after.idle - before.idle) + (
        getattr(after, "iowait", 0.0) - getattr(before, "iowait", 0.0)
    )
    return (spent - idle) / seconds if seconds else float("nan")


async def stored(dsn: str) -> int:
    """Rows in ``readings``."""
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM readings"))
    finally:
        await conn.close()


def table(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        f"{'apis':>4} {'readings (200)':>15} {'stored':>10} {'readings/s':>11} {'errors':>7}  "
        f"{'api CPU s/M readings':<24} {'nginx CPU s/M':>13} {'ratio':>6}"
    ]
    for row in rows:
        per_api = ", ".join(f"{c:.2f}" for c in row["api_cpu_s_per_million"].values())
        ratio = f"{row['ratio_to_one']:.2f}" if "ratio_to_one" in row else "1.00"
        out.append(
            f"{row['apis']:>4} {row['readings_answered_200']:>15,} {row['readings_stored']:>10,} "
            f"{row['readings_per_s']:>11,.0f} {row['error_answers']:>7}  {per_api:<24} "
            f"{row['nginx_cpu_s_per_million']:>13.2f} {ratio:>6}"
        )
    return out
