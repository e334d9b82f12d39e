"""4. storm: ``--storm-devices`` devices with jittered exponential backoff; one command per
device completed, one more queued per device just before the server is stopped; the
server is started again on the same port and database: time until every device is
connected again, and the command tally (every command completed, none run twice)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import asyncpg

from devices.clients import DeviceOptions, DeviceProcesses
from devices.commands import (
    api_sample,
    clear_commands,
    command_rows,
    command_statuses,
    post_commands,
    wait_commands,
)
from devices.context import Bench
from harness.results import Figure
from harness.server import Server, login
from harness.timing import now


@dataclass
class Storm:
    """What the storm left: the two batches of commands, the restart's timings, the
    server's view of the commands and the devices' own."""

    first: list[str]
    second: list[str]
    stop_s: float  # the graceful stop
    accept_after_stop: float  # from the old server's exit to the new one accepting
    back: float  # from the new server accepting to the last device connected
    back_count: int  # devices connected again
    statuses: dict[str, int]
    rows: list[asyncpg.Record]
    completed_twice: int  # commands that went to completed more than once
    stats: list[dict[str, Any]]  # each client process's tally

    @property
    def total(self) -> int:
        return len(self.first) + len(self.second)


@dataclass
class Tally:
    """The devices' runs against the commands created, and the server's rows."""

    completed: int  # commands created here that the server has as completed
    run_once: int
    run_twice: int
    never_run: int
    deliveries: int  # command frames the devices received
    resent: int  # commands that needed more than one send
    two_completed: int  # devices with 2 completed commands
    errors: dict[str, int]  # the devices' connection errors by type


def part_storm(bench: Bench) -> None:
    args = bench.args
    count = args.storm_devices
    ids, tokens = bench.fleet.ids[:count], bench.fleet.tokens[:count]
    head = (
        f"4. Reconnect storm: {count:,} devices (backoff uniform(d/2, d), "
        f"d = min({args.backoff_cap:g}, {args.backoff_base:g} × 2^attempt)), "
        f"server restarted"
    )
    bench.say(head)
    asyncio.run(clear_commands(bench.db.dsn))
    storm = _storm(bench, ids, tokens)
    tally = _tally(storm)
    api_check = asyncio.run(api_sample(bench.env, ids, rng_seed=4))
    bench.say(
        f"  tally: {storm.total:,} commands; server {storm.statuses}; {tally.completed:,} "
        f"completed; devices ran {tally.run_once:,} exactly once, {tally.run_twice} more than "
        f"once, {tally.never_run} never; {storm.completed_twice} completed twice on the "
        f"server; {tally.deliveries:,} command frames delivered "
        f"({tally.deliveries - storm.total:,} resends, deduplicated); {tally.resent:,} needed "
        f"more than one send; devices with 2 completed commands: "
        f"{tally.two_completed:,}/{count:,}"
    )
    bench.say(f"  {api_check}")
    if tally.errors:
        bench.say(f"  client-side connection errors (all retried): {tally.errors}")
    bench.report["storm"] = {
        "devices": count,
        "back_seconds": storm.back,
        "back": storm.back_count,
        "accept_after_stop_seconds": storm.accept_after_stop,
        "stop_seconds": storm.stop_s,
        "commands": storm.total,
        "statuses": storm.statuses,
        "run_once": tally.run_once,
        "run_twice": tally.run_twice,
        "never_run": tally.never_run,
        "completed_twice": storm.completed_twice,
        "deliveries": tally.deliveries,
        "resent": tally.resent,
        "errors": tally.errors,
        "api_check": api_check,
    }
    bench.figures += _figures(storm, tally, count)


def _storm(bench: Bench, ids: list[str], tokens: list[str]) -> Storm:
    """Connect the devices, run a batch of commands, queue a second, restart the server
    and wait for the devices and the commands."""
    args, dsn = bench.args, bench.db.dsn
    count = len(ids)
    options = DeviceOptions(
        reconnect=True,
        backoff_base=args.backoff_base,
        backoff_cap=args.backoff_cap,
        compression=args.ws_compression,
        open_timeout=10.0,
    )
    srv = Server(bench.env).start()
    clients: DeviceProcesses | None = None
    try:
        t0 = now()
        clients = DeviceProcesses(srv.ws, tokens, args.client_processes, options)
        latest, n = clients.wait_connected(count, timeout=300, label="storm: first connect")
        print(f"  {n:,} connected in {latest - t0:.1f} s", flush=True)
        first, second, stop_s = _batches(bench, srv, ids)
        t_stopped = now()
        srv.start(wait=False)
        t_accept = srv.wait_ready()
        latest, n = clients.wait_connected(
            count, since=t_stopped, timeout=args.storm_timeout, label="storm: reconnecting"
        )
        back = latest - t_accept
        bench.say(
            f"  restart: the new server accepted {t_accept - t_stopped:.1f} s after the old "
            f"one exited; {n:,}/{count:,} devices back {back:.1f} s after that"
        )
        statuses = wait_commands(dsn, len(first) + len(second), 180)
        rows, completed_twice = asyncio.run(command_rows(dsn))
        stats = clients.stop()
        clients = None
    finally:
        if clients is not None:
            clients.stop()
        srv.stop()
    return Storm(first, second, stop_s, t_accept - t_stopped, back, n, statuses, rows,
                 completed_twice, stats)  # fmt: skip


def _batches(bench: Bench, srv: Server, ids: list[str]) -> tuple[list[str], list[str], float]:
    """A command per device while all are connected, until they finish; another per
    device just before the graceful stop. The two batches, and the stop's seconds."""
    dsn = bench.db.dsn
    admin = login(srv.base, "bench@example.com")
    t1 = now()
    first = asyncio.run(post_commands(srv.base, admin, ids, "before"))
    statuses = wait_commands(dsn, len(first), 180)
    bench.say(
        f"  batch 1 (while connected): {len(first):,} commands queued and finished in "
        f"{now() - t1:.1f} s: {statuses}"
    )
    second = asyncio.run(post_commands(srv.base, admin, ids, "restart"))
    at_stop = asyncio.run(command_statuses(dsn))
    stop_s = srv.stop()
    bench.say(
        f"  batch 2: {len(second):,} more queued just before stopping; at SIGTERM: "
        f"{at_stop}; graceful stop took {stop_s:.1f} s"
    )
    return first, second, stop_s


def _tally(storm: Storm) -> Tally:
    runs: dict[str, int] = {}
    errors: dict[str, int] = {}
    for s in storm.stats:
        for cid, k in s["runs"].items():
            runs[cid] = runs.get(cid, 0) + k
        for k, v in s["errors"].items():
            errors[k] = errors.get(k, 0) + v
    created = set(storm.first) | set(storm.second)
    completed = {str(r["id"]) for r in storm.rows if r["status"] == "completed"}
    per_device: dict[str, int] = {}
    for r in storm.rows:
        if r["status"] == "completed":
            per_device[str(r["device_id"])] = per_device.get(str(r["device_id"]), 0) + 1
    return Tally(
        completed=len(completed & created),
        run_once=sum(1 for c in created if runs.get(c) == 1),
        run_twice=sum(1 for c in created if runs.get(c, 0) > 1),
        never_run=sum(1 for c in created if c not in runs),
        deliveries=sum(s["deliveries"] for s in storm.stats),
        resent=sum(1 for r in storm.rows if r["attempts"] > 1),
        two_completed=sum(1 for v in per_device.values() if v == 2),
        errors=errors,
    )


def _figures(storm: Storm, tally: Tally, count: int) -> list[Figure]:
    n, total = storm.back_count, storm.total
    exactly_once = (
        tally.run_once == total and tally.completed == total and storm.completed_twice == 0
    )
    return [
        Figure(
            f"all {count:,} back online after restart",
            storm.back,
            "s",
            "≤ 15 s",
            n >= count and storm.back <= 15,
            f"{n:,}/{count:,}",
        ),
        Figure(
            "commands completed exactly once",
            float(tally.run_once),
            f"/{total:,}",
            f"{total:,}",
            exactly_once,
            f"{tally.run_twice} run twice, {tally.never_run} never",
        ),
    ]
