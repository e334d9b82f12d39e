"""Telemetry ingest on PostgreSQL: the raw COPY ceiling against Fieldwatch's HTTP path.

1. Raw COPY: the same readings, copied with asyncpg binary COPY into a bare table (no
   index, no partitions, no rollups): the ceiling for this machine.
2. Fieldwatch: ``POST /api/v1/devices/{id}/data`` with 1,000 readings a request from
   several concurrent clients against ``fieldwatch serve``; a reading counts once the
   server has answered 200 (committed, with deduplication, rollups and latest values).

Usage: .venv/bin/python bench/bench_ingest.py [--requests 600] [--clients 16] [--devices 50]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import orjson

sys.path.insert(0, str(Path(__file__).parent))
from common import PASSWORD, ScratchDatabase, cli, env_for, login, server, write_results

PER_REQUEST = 1000


def make_bodies(device_ids: list[str], requests: int) -> list[tuple[str, bytes]]:
    """One metric per request, 1,000 consecutive seconds; no two requests overlap."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    bodies = []
    for i in range(requests):
        device = device_ids[i % len(device_ids)]
        metric = f"m{i // len(device_ids) % 20}"
        offset = (i // (len(device_ids) * 20)) * PER_REQUEST
        values = [
            {"timestamp": (start + timedelta(seconds=offset + s)).isoformat(),
             "value": 20.0 + (s % 97) / 10, "unit": "celsius", "quality": "good"}
            for s in range(PER_REQUEST)
        ]  # fmt: skip
        bodies.append((device, orjson.dumps({"data_type": metric, "values": values})))
    return bodies


async def raw_copy(dsn: str, rows: int) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE TABLE readings_bare (series_id bigint, ts timestamptz, value float8, "
            "text_value text, quality int2)"
        )
        start = datetime.now(UTC)
        records = [(i % 1000, start + timedelta(seconds=i), 20.0 + i % 97 / 10, None, 0)
                   for i in range(rows)]  # fmt: skip
        t0 = time.perf_counter()
        for i in range(0, rows, 20_000):
            await conn.copy_records_to_table(
                "readings_bare", records=records[i : i + 20_000],
                columns=["series_id", "ts", "value", "text_value", "quality"],
            )  # fmt: skip
        return rows / (time.perf_counter() - t0)
    finally:
        await conn.close()


def client_process(base: str, token: str, bodies: list[tuple[str, bytes]], clients: int,
                   out: mp.Queue) -> None:  # fmt: skip
    """Load generator: aiohttp (lighter than httpx, so more of the machine is left to the
    server and the database), keep-alive connections, pre-serialised bodies."""
    import aiohttp

    async def run() -> tuple[int, int, float]:
        queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        for b in bodies:
            queue.put_nowait(b)
        accepted = 0
        errors = 0
        headers = {"Authorization": f"Bearer {token}", "content-type": "application/json"}
        connector = aiohttp.TCPConnector(limit=clients)
        async with aiohttp.ClientSession(base, connector=connector, headers=headers) as session:

            async def worker() -> None:
                nonlocal accepted, errors
                while not queue.empty():
                    device, body = queue.get_nowait()
                    async with session.post(f"/api/v1/devices/{device}/data", data=body) as r:
                        if r.status == 200:
                            accepted += (await r.json())["accepted"]
                        else:
                            errors += 1

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(clients)))
            return accepted, errors, time.perf_counter() - t0

    out.put(asyncio.run(run()))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--client-processes", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    args = parser.parse_args()
    total = args.requests * PER_REQUEST
    print("Fieldwatch ingest benchmark (PostgreSQL); figures print as they are measured.")
    lines = []
    with ScratchDatabase("fieldwatch_bench_ingest") as db:
        ceiling = asyncio.run(raw_copy(db.dsn, total))
        line = f"raw COPY into a bare table        {ceiling:>10,.0f} rows/s   ({total:,} rows)"
        print(line, flush=True)
        lines.append(line)

        env = env_for(db)
        cli(env, "db", "upgrade")
        cli(env, "users", "create", "bench@example.com", "--role", "admin", "--workspace",
            "bench", "--password", PASSWORD)  # fmt: skip
        with server(env, args.workers) as base:
            token = login(base, "bench@example.com")
            h = {"Authorization": f"Bearer {token}"}
            device_ids = [
                httpx.post(f"{base}/api/v1/devices", json={"name": f"d{i}", "type": "meter"},
                           headers=h).json()["id"]
                for i in range(args.devices)
            ]  # fmt: skip
            bodies = make_bodies(device_ids, args.requests)
            # Untimed warm-up: a fleet's series exist already; create them (one reading each
            # from a day earlier) and bring every device online.
            warm_ts = (datetime.now(UTC) - timedelta(days=3)).isoformat()
            metrics = sorted({orjson.loads(b)["data_type"] for _, b in bodies})
            first = {"value": 0.0, "unit": "celsius", "timestamp": warm_ts}
            warm = [{"device_id": d, "metrics": dict.fromkeys(metrics, first)} for d in device_ids]
            httpx.post(f"{base}/api/v1/monitoring/data", json=warm, headers=h, timeout=60)
            n = args.client_processes
            out: mp.Queue = mp.Queue()
            procs = [
                mp.Process(target=client_process,
                           args=(base, token, bodies[i::n], args.clients // n, out))
                for i in range(n)
            ]  # fmt: skip
            t0 = time.perf_counter()
            for p in procs:
                p.start()
            results = [out.get() for _ in procs]
            elapsed = time.perf_counter() - t0
            for p in procs:
                p.join()
        accepted = sum(r[0] for r in results)
        errors = sum(r[1] for r in results)
        rate = accepted / elapsed
        line = (f"Fieldwatch HTTP ingest            {rate:>10,.0f} readings/s committed "
                f"({accepted:,} readings, {args.requests} requests of {PER_REQUEST}, "
                f"{args.clients} concurrent clients, {errors} errors)")  # fmt: skip
        print(line, flush=True)
        lines.append(line)
        line = f"ratio to raw COPY                 {rate / ceiling:>10.0%}"
        print(line, flush=True)
        lines.append(line)
    write_results("ingest", lines)


if __name__ == "__main__":
    main()
