"""Vendor backfill: how many readings a second the sync engine normalises and commits.

``--connections`` (100) Oura accounts are connected through Fieldwatch's real OAuth
round trip (authorization with PKCE at the stand-in, the callback) and each one's ring
is imported with ``sync_historical_days`` = ``--days`` (30) and auto-sync off; then one
``POST /api/v1/sync/bulk`` queues a sync of every ring, which (never synced before)
fetches the whole history: a minute heart rate each for ``--days`` days, 43,200 readings
a ring at 30 days, 4.32 M in all, in the stand-in's 500-sample pages (and the daily
step totals, a few dozen readings a ring). The benchmark polls ``/sync/history`` until
every run has ended.

The vendor is the test suite's Oura stand-in in a process of its own
(bench/sync/standin.py, its heart-rate pages rendered once and kept), so its CPU is
apart and printed. The server is ``fieldwatch serve`` on a scratch PostgreSQL database
next to ``--database-url``, its Oura app pointed at the stand-in
(``FIELDWATCH_OURA__API_URL``/``__AUTH_URL``); the engine's settings are printed (the
defaults unless ``--server-env`` says otherwise).

With ``--workers N`` (N > 1) the server is ``fieldwatch serve --workers N`` with Redis
and RabbitMQ (``--redis-url``, ``--rabbitmq-url``; a key prefix and an exchange of the
run's own), as the README's configuration asks for several processes: each worker runs
the sync engine, and they share the runs through their claims. Its CPU is that of the
whole process tree.

Printed: readings committed (counted in the database afterwards, against connections ×
days × 1,440) and the runs' records; the wall time from the bulk request to the last
run's end (the server's timestamps) and readings a second; the server process's CPU
seconds and CPU seconds per million readings; the stand-in's CPU; the CPU of the
PostgreSQL backends serving the scratch database; the runs' end states.

Usage: .venv/bin/python bench/bench_sync.py [--connections 100] [--days 30]
       [--server-env FIELDWATCH_SYNC_CONCURRENCY=8] [--workers 2]
       [--database-url postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import asyncpg
import httpx
import psutil

from harness.database import ScratchDatabase, env_for, set_up
from harness.results import RESULTS, Figure, figure_table, say, write_json, write_results
from harness.server import Server, free_port, login
from harness.timing import now
from sync.standin import CLIENT_ID, CLIENT_SECRET

STANDIN = Path(__file__).resolve().parent / "sync" / "standin.py"
ADMIN = "bench@example.com"
API = "/api/v1/integrations"
FINAL = {"completed", "partial", "failed", "auth_required", "cancelled"}
#: ``fieldwatch serve`` under cProfile; uvicorn raises the SIGTERM again once it has
#: shut down: as KeyboardInterrupt, so the profile is written.
PROFILED = (
    "import cProfile, runpy, signal, sys; out = sys.argv.pop(1); "
    "signal.signal(signal.SIGTERM, signal.default_int_handler); "
    "sys.argv = ['fieldwatch', 'serve', *sys.argv[1:]]; "
    'cProfile.run(\'runpy.run_module("fieldwatch", run_name="__main__")\', out)'
)
TARGET = 50_000  # readings a second
#: The engine's settings for the benchmark unless ``--server-env`` changes them: a
#: one-second tick (the default 5 s leaves slots idle between runs of ~1 s).
ENGINE = {"FIELDWATCH_SYNC_TICK_S": "1"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument(
        "--server-env", action="append", default=[], metavar="NAME=VALUE",
        help="a FIELDWATCH_ setting for the server (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "FIELDWATCH_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--workers", type=int, default=1, help="serve --workers N")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--rabbitmq-url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up after (s)")
    parser.add_argument("--name", default="sync", help="results file name")
    parser.add_argument(
        "--profile", metavar="PSTATS", help="cProfile the server into this file (slows it)"
    )
    return parser.parse_args()


class StandIn:
    """bench/sync/standin.py as a subprocess."""

    def __init__(self) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, str(STANDIN), "--port", str(self.port)]
        self.proc = subprocess.Popen(argv)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.base}/v2/usercollection/personal_info", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.05)
        raise SystemExit("the stand-in did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def cpu_s(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def tree_cpu_s(pid: int) -> float:
    """The CPU of ``pid`` and of its descendants alive now (a server's workers)."""
    parent = psutil.Process(pid)
    total = 0.0
    for p in [parent, *parent.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += float(t.user + t.system)
    return total


def several(args: argparse.Namespace) -> dict[str, str]:
    """What ``serve --workers N`` needs to be one installation: Redis and RabbitMQ, with
    a key prefix and an exchange of this run's own."""
    if args.workers <= 1:
        return {}
    tag = f"bench-sync-{os.getpid()}"
    return {"FIELDWATCH_REDIS_URL": args.redis_url, "FIELDWATCH_REDIS_PREFIX": tag,
            "FIELDWATCH_RABBITMQ_URL": args.rabbitmq_url,
            "FIELDWATCH_RABBITMQ_EXCHANGE": f"fieldwatch.{tag}"}  # fmt: skip


class PgBackends:
    """The CPU of the PostgreSQL backends serving ``dbname`` (sampled: a backend that
    ends between samples loses its last second)."""

    def __init__(self, dbname: str) -> None:
        self.dbname = dbname
        self.seen: dict[int, float] = {}
        self.base: dict[int, float] = {}

    def sample(self) -> None:
        for p in psutil.process_iter(["name", "cmdline"]):
            try:
                cmd = " ".join(p.info["cmdline"] or [])
                if cmd.startswith("postgres:") and f" {self.dbname} " in cmd:
                    self.seen[p.pid] = cpu_s(p.pid)
            except (psutil.Error, TypeError):
                continue

    def start(self) -> None:
        self.sample()
        self.base = dict(self.seen)

    def total(self) -> float:
        return sum(v - self.base.get(pid, 0.0) for pid, v in self.seen.items())


def connect(http: httpx.Client, user: str, days: int) -> str:
    """Connect the stand-in's account ``user`` through the OAuth round trip and import
    its ring (auto-sync off); the Fieldwatch device id."""
    started = http.post(f"{API}/oura/auth", json={})
    started.raise_for_status()
    url = started.json()["authorization_url"] + f"&login_hint={user}"
    consent = httpx.get(url)  # the account holder's browser at the vendor
    assert consent.status_code == 302, consent.text
    back = {k: v[0] for k, v in parse_qs(urlparse(consent.headers["location"]).query).items()}
    answer = http.get(f"{API}/oura/callback", params=back)
    answer.raise_for_status()
    connection = answer.json()["id"]
    listed = http.get(f"{API}/oura/devices", params={"connection_id": connection})
    listed.raise_for_status()
    ring = listed.json()["items"][0]["vendor_device_id"]
    body = {"connection_id": connection, "devices": [ring],
            "sync_settings": {"auto_sync": False, "sync_historical_days": days}}  # fmt: skip
    imported = http.post(f"{API}/oura/import", json=body)
    assert imported.status_code == 201, imported.text
    return str(imported.json()[0]["device_id"])


def runs(http: httpx.Client) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        page = http.get("/api/v1/sync/history", params={"limit": 500, "offset": len(out)})
        page.raise_for_status()
        out += page.json()["items"]
        if len(out) >= page.json()["total"]:
            return out


def wait_runs(http: httpx.Client, count: int, timeout: float, pg: PgBackends) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pg.sample()
        got = runs(http)
        if len(got) >= count and all(r["status"] in FINAL for r in got):
            return got
        time.sleep(2)
    raise SystemExit(f"the runs did not end in {timeout:.0f} s")


async def count_readings(dsn: str) -> tuple[dict[str, int], list[int]]:
    """Readings per metric, and how many runs each server process executed."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT s.metric, count(*) AS n FROM readings r "
            "JOIN series s ON s.id = r.series_id GROUP BY s.metric"
        )
        owners = await conn.fetch(
            "SELECT claimed_by, count(*) AS n FROM integration_sync_runs GROUP BY claimed_by"
        )
    finally:
        await conn.close()
    return {r["metric"]: int(r["n"]) for r in rows}, sorted(int(o["n"]) for o in owners)


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def main() -> None:
    args = parse_args()
    lines: list[str] = []
    expected = args.connections * args.days * 1440
    say(
        lines,
        f"Fieldwatch vendor backfill benchmark, {time.strftime('%Y-%m-%d %H:%M %Z')}: "
        f"{args.connections} Oura connections × {args.days} days of minute heart rate "
        f"({expected:,} readings) from the stand-in (PostgreSQL; {os.cpu_count()} CPUs; "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())})",
    )
    report: dict[str, Any] = {"args": vars(args), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    standin = StandIn()
    try:
        with ScratchDatabase("fieldwatch_bench_sync", base=args.database_url) as db:
            settings = ENGINE | several(args)
            settings |= dict(item.split("=", 1) for item in args.server_env)
            env = env_for(
                db, FIELDWATCH_MQTT_EMBEDDED="false", FIELDWATCH_ACCESS_TOKEN_TTL_S="86400",
                FIELDWATCH_OURA__CLIENT_ID=CLIENT_ID, FIELDWATCH_OURA__CLIENT_SECRET=CLIENT_SECRET,
                FIELDWATCH_OURA__API_URL=standin.base, FIELDWATCH_OURA__AUTH_URL=standin.base,
                **settings,
            )  # fmt: skip
            say(lines, f"server: {args.workers} process(es); settings: "
                       + ", ".join(f"{k}={v}" for k, v in settings.items()))  # fmt: skip
            set_up(env, ADMIN, "bench")
            command = None
            if args.profile:
                command = [sys.executable, "-c", PROFILED, args.profile]
            serve_args = ["--workers", str(args.workers)] if args.workers > 1 else None
            with Server(env, command=command, serve_args=serve_args) as srv:
                measure(args, lines, report, srv, standin, db, expected)
    finally:
        standin.stop()
    write_results(args.name, lines)
    write_json(args.name, report)
    print(f"results: {RESULTS / args.name}.txt, .json")


def measure(
    args: argparse.Namespace, lines: list[str], report: dict[str, Any], srv: Server,
    standin: StandIn, db: ScratchDatabase, expected: int,
) -> None:  # fmt: skip
    admin = login(srv.base, ADMIN)
    headers = {"Authorization": f"Bearer {admin}"}
    with httpx.Client(base_url=srv.base, headers=headers, timeout=120) as http:
        t0 = now()
        devices = [connect(http, f"bench-user-{i:04d}", args.days) for i in range(args.connections)]
        say(lines, f"setup: {len(devices)} connections (OAuth round trip) and rings imported "
                   f"in {now() - t0:.1f} s")  # fmt: skip
        pg = PgBackends(db.name)
        pg.start()
        cpu0, vendor0, t1 = tree_cpu_s(srv.pid), cpu_s(standin.proc.pid), now()
        bulk = http.post("/api/v1/sync/bulk", json={"all": True})
        assert bulk.status_code == 202, bulk.text
        queued = len(bulk.json()["runs"])
        done = wait_runs(http, queued, args.timeout, pg)
        polled = now() - t1
        cpu, vendor = tree_cpu_s(srv.pid) - cpu0, cpu_s(standin.proc.pid) - vendor0
    counted, owners = asyncio.run(count_readings(db.dsn))
    say(lines, f"runs executed per server process: {owners}")
    report["runs_per_process"] = owners
    report_figures(lines, report, done, counted, expected, polled, cpu, vendor, pg.total())


def report_figures(
    lines: list[str], report: dict[str, Any], done: list[dict[str, Any]],
    counted: dict[str, int], expected: int, polled: float, cpu: float, vendor: float,
    pg: float,
) -> None:  # fmt: skip
    states = Counter(r["status"] for r in done)
    start = min(when(r["created_at"]) for r in done)
    end = max(when(r["end_time"]) for r in done if r["end_time"])
    wall = (end - start).total_seconds()
    hr = counted.get("heart_rate", 0)
    total = sum(counted.values())
    synced = sum(r["records_synced"] for r in done)
    rate = total / wall if wall else 0.0
    per_m = cpu / (total / 1e6) if total else float("nan")
    say(lines, f"runs: {len(done)} {dict(states)}; records processed "
               f"{sum(r['records_processed'] for r in done):,}, synced {synced:,}, failed "
               f"{sum(r['records_failed'] for r in done):,}")  # fmt: skip
    say(lines, f"readings in the database: {counted} (heart rate expected {expected:,}: "
               f"{'equal' if hr == expected else f'difference {hr - expected:+,}'})")  # fmt: skip
    for r in done:
        if r["status"] != "completed":
            say(lines, f"  run {r['sync_id']}: {r['status']} {r['error_message']}")
    say(lines, f"wall: {wall:.1f} s from the bulk request to the last run's end "
               f"(polled: {polled:.1f} s) → {rate:,.0f} readings/s")  # fmt: skip
    say(lines, f"CPU: server {cpu:.1f} s ({per_m:.1f} s per million readings), stand-in "
               f"{vendor:.1f} s, PostgreSQL backends {pg:.1f} s; load average "
               f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip
    figures = [
        Figure("readings committed per second", rate, "/s", f"≥ {TARGET:,}", rate >= TARGET),
        Figure("server CPU per million readings", per_m, "s"),
        Figure("readings committed", float(total), ""),
        Figure("wall time", wall, "s"),
        Figure("server CPU", cpu, "s"),
        Figure("stand-in CPU", vendor, "s"),
        Figure("PostgreSQL backends CPU", pg, "s"),
    ]
    for row in figure_table(figures):
        say(lines, row)
    report |= {"runs": dict(states), "readings": counted, "expected_heart_rate": expected,
               "wall_s": wall, "polled_s": polled, "readings_per_s": rate,
               "server_cpu_s": cpu, "server_cpu_s_per_million": per_m,
               "standin_cpu_s": vendor, "postgres_cpu_s": pg}  # fmt: skip


if __name__ == "__main__":
    main()
