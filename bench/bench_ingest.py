"""Telemetry ingest on PostgreSQL: the raw COPY ceiling, the least any HTTP path can do,
and Fieldwatch's HTTP path, on the same readings.

1. Raw COPY: the readings copied with asyncpg binary COPY into a bare table (no index,
   no partitions, no rollups) over one connection: the ceiling for this machine.
2. and 3. A minimal HTTP pipeline (bench/ingest_floor_app.py under uvicorn: no
   framework, no authentication, no deduplication, rollups or latest values; msgspec
   decode, COPY, answer) into a bare table, and into one with the ``(series, ts)`` key
   that deduplication needs: what HTTP and JSON alone cost on this machine.
4. Fieldwatch: ``POST /api/v1/devices/{id}/data`` with 1,000 readings a request from
   several concurrent clients against ``fieldwatch serve``; a reading counts once the
   server has answered 200 (committed, with deduplication, rollups and latest values).

Each part also prints the CPU time the server, PostgreSQL and the load generator spent
per million readings: client, server and database share the machine's cores.

Usage: .venv/bin/python bench/bench_ingest.py [--requests 2000] [--clients 32]
       [--devices 50] [--client-processes 1] [--workers 1] [--no-floor]
       [--server-env FIELDWATCH_GC_YOUNG_THRESHOLD=700 ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import orjson
import psutil

from harness.database import ScratchDatabase, env_for, set_up
from harness.results import say, write_results
from harness.server import Server, login, server

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


def cpu_times() -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL process (backends come and go)."""
    out = {}
    for p in psutil.process_iter(["name"]):
        if p.info["name"] == "postgres":
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                out[p.pid] = t.user + t.system
    return out


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def postgres_cpu_since(before: dict[int, float]) -> float:
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in cpu_times().items())


def client_process(base: str, token: str, bodies: list[tuple[str, bytes]], clients: int,
                   out: mp.Queue) -> None:  # fmt: skip
    """Load generator: aiohttp (lighter than httpx, so more of the machine is left to the
    server and the database), keep-alive connections, pre-serialised bodies."""
    import aiohttp  # here, in the load generator: its CPU counts what loading it costs

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


@dataclass
class Run:
    accepted: int
    errors: int
    elapsed: float
    server_cpu: float
    postgres_cpu: float
    client_cpu: float

    @property
    def rate(self) -> float:
        return self.accepted / self.elapsed

    def cpu_line(self) -> str:
        per_m = 1e6 / self.accepted if self.accepted else 0.0
        return (f"    CPU s per million readings: server {self.server_cpu * per_m:.2f}, "
                f"PostgreSQL {self.postgres_cpu * per_m:.2f}, load generator "
                f"{self.client_cpu * per_m:.2f}; wall {self.elapsed * per_m:.2f} s on "
                f"{psutil.cpu_count()} cores")  # fmt: skip


def drive(base: str, token: str, bodies: list[tuple[str, bytes]], clients: int,
          processes: int, served: list[psutil.Process]) -> Run:  # fmt: skip
    """Send every body from ``processes`` load-generator processes; measure the time and
    the CPU of the server, PostgreSQL and the load generators meanwhile."""
    out: mp.Queue = mp.Queue()
    procs = [
        mp.Process(target=client_process,
                   args=(base, token, bodies[i::processes], clients // processes, out))
        for i in range(processes)
    ]  # fmt: skip
    pg = cpu_times()
    served_cpu = cpu_seconds(served)
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    load = [psutil.Process(p.pid) for p in procs]
    results = [out.get() for _ in procs]
    elapsed = time.perf_counter() - t0
    accepted, errors = sum(r[0] for r in results), sum(r[1] for r in results)
    run = Run(accepted, errors, elapsed, cpu_seconds(served) - served_cpu,
              postgres_cpu_since(pg), cpu_seconds(load))  # fmt: skip
    for p in procs:
        p.join()
    return run


@contextlib.contextmanager
def floor_server(dsn: str, table: str) -> Iterator[tuple[str, psutil.Process]]:
    """bench/ingest_floor_app.py under uvicorn, copying into ``table``."""
    env = {**os.environ, "FLOOR_DSN": dsn, "FLOOR_TABLE": table,
           "PYTHONPATH": str(Path(__file__).parent)}  # fmt: skip
    command = [sys.executable, "-m", "uvicorn", "ingest_floor_app:app",
               "--log-level", "warning", "--no-access-log"]  # fmt: skip
    with Server(env, command=command) as srv:
        yield srv.base, psutil.Process(srv.pid)


async def checkpoint(dsn: str) -> None:
    """Start each part with the WAL of the previous ones written out."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def create_floor_tables(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for name, key in (("floor_bare", ""), ("floor_keyed", ", PRIMARY KEY (series_id, ts)")):
            await conn.execute(
                f"CREATE TABLE {name} (series_id bigint NOT NULL, ts timestamptz NOT NULL, "
                f"value float8, text_value text, quality int2{key})"
            )
    finally:
        await conn.close()


def floors(
    dsn: str, token: str, bodies: list[tuple[str, bytes]], args: argparse.Namespace,
    ceiling: float, lines: list[str],
) -> list[float]:  # fmt: skip
    """Parts 2 and 3: the minimal HTTP pipeline into a bare table, then a keyed one."""
    rates: list[float] = []
    asyncio.run(create_floor_tables(dsn))
    for n, (table, what) in enumerate(
        (("floor_bare", "no index"), ("floor_keyed", "the (series, ts) key")), 2
    ):
        asyncio.run(checkpoint(dsn))
        with floor_server(dsn, table) as (floor_base, proc):
            run = drive(floor_base, token, bodies, args.clients, args.client_processes, [proc])
        rates.append(run.rate)
        say(
            lines,
            f"{n}. minimal HTTP → COPY pipeline          {run.rate:>10,.0f} readings/s"
            f"  ({what}; {run.rate / ceiling:.0%} of raw COPY; {run.errors} errors)",
        )
        say(lines, run.cpu_line())
    return rates


def warm_up(base: str, headers: dict[str, str], device_ids: list[str],
            bodies: list[tuple[str, bytes]]) -> None:  # fmt: skip
    """Untimed: a fleet's series exist already; create them (one reading each from a day
    earlier) and bring every device online."""
    warm_ts = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    metrics = sorted({orjson.loads(b)["data_type"] for _, b in bodies})
    first = {"value": 0.0, "unit": "celsius", "timestamp": warm_ts}
    warm = [{"device_id": d, "metrics": dict.fromkeys(metrics, first)} for d in device_ids]
    httpx.post(f"{base}/api/v1/monitoring/data", json=warm, headers=headers, timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--client-processes", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--no-floor", action="store_true",
                        help="skip the minimal HTTP pipelines (parts 2 and 3)")  # fmt: skip
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="a FIELDWATCH_ setting for the server (repeatable)")  # fmt: skip
    args = parser.parse_args()
    total = args.requests * PER_REQUEST
    print("Fieldwatch ingest benchmark (PostgreSQL); figures print as they are measured.")
    lines: list[str] = []
    with ScratchDatabase("fieldwatch_bench_ingest") as db:
        asyncio.run(checkpoint(db.dsn))
        ceiling = asyncio.run(raw_copy(db.dsn, total))
        say(
            lines,
            f"1. raw COPY into a bare table            {ceiling:>10,.0f} rows/s      "
            f"({total:,} rows, one connection, no index)",
        )

        env = env_for(db) | dict(item.split("=", 1) for item in args.server_env)
        if args.server_env:
            say(lines, "server settings: " + ", ".join(args.server_env))
        set_up(env, "bench@example.com", "bench")
        with server(env, args.workers) as base:
            token = login(base, "bench@example.com")
            h = {"Authorization": f"Bearer {token}"}
            device_ids = [
                httpx.post(f"{base}/api/v1/devices", json={"name": f"d{i}", "type": "meter"},
                           headers=h).json()["id"]
                for i in range(args.devices)
            ]  # fmt: skip
            bodies = make_bodies(device_ids, args.requests)
            rates = [] if args.no_floor else floors(db.dsn, token, bodies, args, ceiling, lines)
            warm_up(base, h, device_ids, bodies)
            served = psutil.Process().children(recursive=True)  # the server (and workers)
            asyncio.run(checkpoint(db.dsn))
            run = drive(base, token, bodies, args.clients, args.client_processes, served)
        say(
            lines,
            f"4. Fieldwatch HTTP ingest                {run.rate:>10,.0f} readings/s  committed "
            f"({run.accepted:,} readings, {args.requests} requests of {PER_REQUEST}, "
            f"{args.clients} concurrent clients, {run.errors} errors)",
        )
        say(lines, run.cpu_line())
        say(lines, f"   ratio to raw COPY (1)                 {run.rate / ceiling:>10.0%}")
        if rates:
            say(lines, f"   ratio to the minimal pipeline (3)     {run.rate / rates[1]:>10.0%}")
    write_results("ingest", lines)


if __name__ == "__main__":
    main()
