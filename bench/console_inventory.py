"""bench_console.py's inventory part: the console's inventory page with 100,000 devices.

The devices are seeded as bench_registry.py seeds them (statuses 60 % deployed, 25 % in
stock, …; 40 sites and 10 warehouses; 85 % of the deployed devices online), with COPY on
PostgreSQL and bulk inserts on SQLite; then ``fieldwatch serve`` runs on that database
and one client, signed in through the console's login form, requests representative
views of the table one after another: the whole page (what a bookmark or a link opens)
and the table alone (what htmx asks for when a filter, a header or a page link changes).
Each figure is the time from sending the request to having read the whole answer, over
loopback: the server's time plus a fraction of a millisecond.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy import insert, text

import fieldwatch.db.models  # noqa: F401  (every table: the foreign keys get their types)
from bench_registry import ONLINE_SHARE, SITES, STATUS_WEIGHTS, TYPES, WAREHOUSES, seed_workspace
from fieldwatch.core.ids import new_id
from fieldwatch.db.engine import create_engine
from fieldwatch.devices.models import Device
from fieldwatch.monitoring.models import DevicePresence, DeviceTypeSettings
from harness.database import PASSWORD, ScratchDatabase, env_for, set_up
from harness.results import percentile, say, write_results
from harness.server import Server

EMAIL = "bench@example.com"
TARGET_P95_MS = 100.0
#: The header htmx sends when it swaps the table in.
HX_TABLE = {"HX-Request": "true", "HX-Target": "inventory-results"}


# Seeding ------------------------------------------------------------------------------


def _device_rows(workspace_id: uuid.UUID, count: int) -> list[dict[str, Any]]:
    """The devices bench_registry.py seeds on PostgreSQL, as rows for an insert."""
    now = datetime.now(UTC)
    rng = random.Random(7)
    statuses, weights = list(STATUS_WEIGHTS), list(STATUS_WEIGHTS.values())
    rows = []
    for i in range(count):
        status = rng.choices(statuses, weights)[0]
        rows.append({
            "id": new_id(), "workspace_id": workspace_id, "name": f"Device {i:06d}",
            "type": rng.choice(TYPES), "serial_number": f"SN-{i:07d}", "manufacturer": "Acme",
            "model": "M1", "firmware_version": "1.0.0", "hardware_version": "rev1",
            "capabilities": [], "specs": {},
            "location": rng.choice(SITES) if status == "deployed" else rng.choice(WAREHOUSES),
            "status": status, "deploy_date": now.date() if status == "deployed" else None,
            "version": 1, "created_at": now, "updated_at": now,
        })  # fmt: skip
    return rows


async def _seed_sqlite(url: str, count: int) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            found = await conn.execute(text("SELECT id FROM workspaces WHERE name = 'bench'"))
            workspace_id = uuid.UUID(str(found.scalar_one()))
        rows = _device_rows(workspace_id, count)
        rng = random.Random(7)
        now = datetime.now(UTC)
        presence = [
            {"device_id": r["id"], "workspace_id": workspace_id, "last_seen": now,
             "connectivity": "online" if rng.random() < ONLINE_SHARE else "offline",
             "changed_at": now}
            for r in rows if r["status"] == "deployed"
        ]  # fmt: skip
        async with engine.begin() as conn:
            for start in range(0, len(rows), 5000):
                await conn.execute(insert(Device), rows[start : start + 5000])
            for start in range(0, len(presence), 5000):
                await conn.execute(insert(DevicePresence), presence[start : start + 5000])
            await conn.execute(insert(DeviceTypeSettings), [
                {"workspace_id": workspace_id, "type": t, "heartbeat_interval_s": 86_400,
                 "offline_tolerance": 3.0} for t in TYPES
            ])  # fmt: skip
        async with engine.begin() as conn:
            await conn.execute(text("ANALYZE"))
    finally:
        await engine.dispose()


# The measured views ---------------------------------------------------------------------


def _q(value: str) -> str:
    return quote(value, safe="")


def views(rng: random.Random, devices: int) -> dict[str, Callable[[], str]]:
    """Representative URLs of the table, each kind a generator of random instances."""
    statuses = list(STATUS_WEIGHTS)
    last = (devices - 1) // 50 * 50
    return {
        "/console/inventory (newest first, page 1)": lambda: "/console/inventory",
        "?status=&type=&sort=name&offset=0..950": lambda: (
            f"/console/inventory?status={rng.choice(statuses)}&type={rng.choice(TYPES)}"
            f"&sort=name&offset={rng.randrange(0, 20) * 50}"
        ),
        "?status=in_stock&location=<warehouse>&sort=-serial_number": lambda: (
            f"/console/inventory?status=in_stock&location={_q(rng.choice(WAREHOUSES))}"
            "&sort=-serial_number"
        ),
        "?connectivity=online&offset=0..950": lambda: (
            f"/console/inventory?connectivity=online&offset={rng.randrange(0, 20) * 50}"
        ),
        "?status=deployed&connectivity=offline&type=": lambda: (
            f"/console/inventory?status=deployed&connectivity=offline&type={rng.choice(TYPES)}"
        ),
        "?q=<serial fragment>": lambda: f"/console/inventory?q=SN-00{rng.randrange(10, 99)}",
        "?q=<name fragment>&sort=name": lambda: (
            f"/console/inventory?q=device%20{rng.randrange(100, 999)}&sort=name"
        ),
        "?sort=name (all devices), pages 1..20": lambda: (
            f"/console/inventory?sort=name&offset={rng.randrange(0, 20) * 50}"
        ),
        "?sort=-location&limit=200": lambda: "/console/inventory?sort=-location&limit=200",
        "last page (offset ~99,950), newest first": lambda: f"/console/inventory?offset={last}",
    }


def _timed(client: httpx.Client, url: str, headers: dict[str, str] | None) -> float:
    started = time.perf_counter()
    r = client.get(url, headers=headers)
    elapsed = (time.perf_counter() - started) * 1000
    r.raise_for_status()
    if "inventory-total" not in r.text:
        raise SystemExit(f"{url}: not the inventory table")
    return elapsed


def _line(name: str, timings: list[float]) -> str:
    return (
        f"  {name:<62} n={len(timings):<4} median {statistics.median(timings):6.1f} ms   "
        f"p95 {percentile(timings, 95):6.1f} ms"
    )


def sign_in(client: httpx.Client) -> None:
    page = client.get("/console/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf, page.text
    r = client.post(
        "/console/login", data={"csrf_token": csrf.group(1), "email": EMAIL, "password": PASSWORD}
    )
    if r.status_code != 303:
        raise SystemExit(f"the console login failed: {r.status_code}")


def measure(client: httpx.Client, requests: int, devices: int, lines: list[str]) -> list[float]:
    """Every view ``requests`` times as the whole page, and as htmx's table fragment,
    interleaved at random; the figures of each view and of all of them."""
    rng = random.Random(13)
    kinds = views(rng, devices)
    for url in [k() for k in kinds.values()] * 3:  # warm-up
        _timed(client, url, None)
    plan = [(name, fragment) for name in kinds for fragment in (False, True)] * requests
    rng.shuffle(plan)
    timings: dict[tuple[str, bool], list[float]] = {key: [] for key in set(plan)}
    for name, fragment in plan:
        timings[name, fragment].append(
            _timed(client, kinds[name](), HX_TABLE if fragment else None)
        )
    everything: list[float] = []
    for fragment, title in ((False, "the whole page"), (True, "the table alone (htmx)")):
        say(lines, f"GET /console/inventory, {title}:")
        for name in kinds:
            say(lines, _line(name, timings[name, fragment]))
            everything += timings[name, fragment]
    return everything


def measure_stock(client: httpx.Client, requests: int, lines: list[str]) -> None:
    stock = []
    for _ in range(requests):
        started = time.perf_counter()
        client.get("/console/inventory/stock", headers={"HX-Request": "true", "HX-Target": "stock"})
        stock.append((time.perf_counter() - started) * 1000)
    say(lines, "GET /console/inventory/stock (the stock summary, loaded after the page):")
    say(lines, _line("what is in stock where", stock))


def run_server(env: dict[str, str], args: Any, lines: list[str]) -> list[float]:
    with Server(env) as srv, httpx.Client(base_url=srv.base, timeout=60) as client:
        sign_in(client)
        everything = measure(client, args.requests, args.devices, lines)
        measure_stock(client, max(50, args.requests // 4), lines)
    return everything


def verdict(lines: list[str], database: str, everything: list[float]) -> None:
    p95 = percentile(everything, 95)
    met = "met" if p95 <= TARGET_P95_MS else "NOT MET"
    say(lines, f"{database}: all inventory requests, n={len(everything)}: median "
               f"{statistics.median(everything):.1f} ms, p95 {p95:.1f} ms "
               f"(target p95 <= {TARGET_P95_MS:.0f} ms: {met})")  # fmt: skip


def run_postgresql(args: Any) -> list[str]:
    lines = [f"PostgreSQL, {args.devices:,} devices, one client, sequential requests over "
             "loopback HTTP, signed in to the console"]  # fmt: skip
    print(lines[0], flush=True)
    with ScratchDatabase("fieldwatch_bench_console") as db:
        env = env_for(db)
        set_up(env, EMAIL, "bench")
        started = time.perf_counter()
        asyncio.run(seed_workspace(db.dsn, args.devices))
        print(f"  seeded in {time.perf_counter() - started:.1f} s", flush=True)
        verdict(lines, "PostgreSQL", run_server(env, args, lines))
    return lines


def run_sqlite(args: Any) -> list[str]:
    lines = [f"SQLite, {args.devices:,} devices, one client, sequential requests over "
             "loopback HTTP, signed in to the console"]  # fmt: skip
    print(lines[0], flush=True)
    with tempfile.TemporaryDirectory(prefix="fieldwatch-bench-console-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'fieldwatch.db'}"
        env = env_for_sqlite(url, tmp)
        set_up(env, EMAIL, "bench")
        started = time.perf_counter()
        asyncio.run(_seed_sqlite(url, args.devices))
        print(f"  seeded in {time.perf_counter() - started:.1f} s", flush=True)
        verdict(lines, "SQLite", run_server(env, args, lines))
    return lines


def env_for_sqlite(url: str, data_dir: str) -> dict[str, str]:
    """The caller's environment without its FIELDWATCH_ settings, pointed at ``url``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDWATCH_")}
    return env | {
        "FIELDWATCH_DATABASE_URL": url,
        "FIELDWATCH_DATA_DIR": data_dir,
        "FIELDWATCH_LOG_LEVEL": "WARNING",
    }


def part_inventory(args: Any) -> None:
    for database in args.database:
        lines = run_postgresql(args) if database == "postgresql" else run_sqlite(args)
        write_results(f"console-inventory-{database}", lines)
