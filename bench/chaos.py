"""Chaos: does any acknowledged reading get lost, or any reading stored twice, when the
server is killed or the database goes away mid-stream?

On a scratch PostgreSQL database (next to FIELDWATCH_CHAOS_DATABASE_URL, default
postgresql://postgres@127.0.0.1:5432/test, used as the admin connection), with
``fieldwatch serve`` as a child process and devices that resend whatever was not
acknowledged (bench/chaos_clients.py):

1. http:           kill -9 of the server twice during HTTP ingest, restart on the same port;
2. websocket:      the same with WebSocket devices;
3. mqtt-embedded:  the same with MQTT devices (QoS 1, persistent sessions) on the
                   embedded broker, which dies with the server;
4. mqtt-mosquitto: the same through a Mosquitto started here (dynamic security, as
                   ``serve`` manages it), which stays up;
5. pg-outage:      during HTTP ingest, the server's database connections terminated three
                   times, then the database refusing connections for 6 s;
6. mqtt-pg-outage: the same during MQTT ingest through the embedded broker.

Then, from the database: readings acknowledged, stored, acknowledged but lost, counted
twice (the readings key forbids a second row, so: the rollups' counts against the rows,
and each series' latest value against its newest reading), and the HTTP answers by
status (500 and 503 apart). Exit status 1 when a reading was lost or counted twice, 2
when not but some answer was a 500, else 0. Loopback only; a few minutes.

Usage: .venv/bin/python bench/chaos.py [--phases http,websocket,...] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg

from chaos_clients import Ledger, MqttDevice, WsDevice, http_device, publish_mqtt
from harness.broker import Mosquitto
from harness.database import DEFAULT_URL, ScratchDatabase, env_for, set_up
from harness.fleet import Fleet, make_fleet
from harness.results import write_results
from harness.server import Server, free_port, login

PHASES = ("http", "websocket", "mqtt-embedded", "mqtt-mosquitto", "pg-outage", "mqtt-pg-outage")
DEVICES = 6  # per phase
DRAIN_S = 45.0  # after the load stops: time for every reading to be acknowledged


@dataclass
class Outcome:
    phase: str
    ledger: Ledger
    disruptions: list[str] = field(default_factory=list)
    stored: int = 0
    lost: int = 0
    stored_unacked: int = 0
    twice: int = 0  # rollup counts above the rows
    latest_wrong: int = 0  # series whose latest value is not their newest reading
    seconds: float = 0.0


@dataclass
class Stage:
    """What a phase runs against."""

    db: ScratchDatabase
    env: dict[str, str]
    server: Server
    fleet: Fleet
    mqtt_port: int
    seconds: float


# -- disruptions -------------------------------------------------------------------------


def kill_and_restart(server: Server) -> str:
    assert server.proc is not None
    t0 = time.monotonic()
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    server.start()  # same port; waits for /health
    return f"kill -9 (back in {time.monotonic() - t0:.1f} s)"


async def kills(stage: Stage, outcome: Outcome, stop: asyncio.Event) -> None:
    """Kill the server at 30 % and 65 % of the phase."""
    t0 = time.monotonic()
    for fraction in (0.3, 0.65):
        await asyncio.sleep(max(0.0, t0 + stage.seconds * fraction - time.monotonic()))
        if stop.is_set():
            return
        outcome.disruptions.append(await asyncio.to_thread(kill_and_restart, stage.server))


async def pg_outage(stage: Stage, outcome: Outcome, stop: asyncio.Event) -> None:
    """Terminate the server's connections three times, then refuse connections for 6 s."""
    admin = await asyncpg.connect(stage.db.admin_dsn)
    name = stage.db.name
    terminate = (
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = $1 AND pid <> pg_backend_pid()"
    )
    try:
        t0 = time.monotonic()
        for at in (0.15, 0.3, 0.45):
            await asyncio.sleep(max(0.0, t0 + stage.seconds * at - time.monotonic()))
            ended = await admin.fetchval(terminate, name)
            outcome.disruptions.append(f"{ended} connections terminated")
        await asyncio.sleep(max(0.0, t0 + stage.seconds * 0.55 - time.monotonic()))
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            ended = await admin.fetchval(terminate, name)
            await asyncio.sleep(6)
        finally:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        outcome.disruptions.append(f"database refused connections for 6 s ({ended} ended)")
    finally:
        await admin.close()


Disruption = Callable[[Stage, Outcome, asyncio.Event], Awaitable[None]]


# -- phases ----------------------------------------------------------------------------------


Clients = Callable[[asyncio.Event, float], list[Awaitable[None]]]


async def drive(stage: Stage, outcome: Outcome, clients: Clients, disrupt: Disruption) -> None:
    """Run the clients for the phase's seconds while ``disrupt`` acts, then let them
    finish what is unacknowledged."""
    stop = asyncio.Event()
    give_up = time.monotonic() + stage.seconds + DRAIN_S
    running = [asyncio.ensure_future(c) for c in clients(stop, give_up)]
    chaos = asyncio.ensure_future(disrupt(stage, outcome, stop))
    await asyncio.sleep(stage.seconds)
    stop.set()
    await chaos
    await asyncio.gather(*running)


async def phase_http(stage: Stage, outcome: Outcome, disrupt: Disruption) -> None:
    ids, tokens = stage.fleet.ids, stage.fleet.tokens
    base = stage.server.base

    def clients(stop: asyncio.Event, give_up: float) -> list[Awaitable[None]]:
        return [
            http_device(base, ids[i], tokens[i], i, 200, outcome.ledger, stop, give_up)
            for i in range(len(ids))
        ]

    await drive(stage, outcome, clients, disrupt)


async def phase_websocket(stage: Stage, outcome: Outcome, disrupt: Disruption) -> None:
    ids, tokens = stage.fleet.ids, stage.fleet.tokens
    devices = [
        WsDevice(stage.server.ws, ids[i], tokens[i], i, 100, outcome.ledger, rate=20)
        for i in range(len(ids))
    ]

    def clients(stop: asyncio.Event, give_up: float) -> list[Awaitable[None]]:
        return [d.run(stop, give_up) for d in devices]

    await drive(stage, outcome, clients, disrupt)


async def phase_mqtt(
    stage: Stage, outcome: Outcome, disrupt: Disruption, v5: bool, rate: float
) -> None:
    ids, tokens = stage.fleet.ids, stage.fleet.tokens
    devices = [
        MqttDevice(stage.mqtt_port, ids[i], tokens[i], i, outcome.ledger, v5)
        for i in range(len(ids))
    ]
    stop = threading.Event()
    deadline = [float("inf")]
    publisher = threading.Thread(
        target=publish_mqtt, args=(devices, rate, stop, lambda: deadline[0]), daemon=True
    )
    publisher.start()
    try:
        stop_chaos = asyncio.Event()
        chaos = asyncio.ensure_future(disrupt(stage, outcome, stop_chaos))
        await asyncio.sleep(stage.seconds)
        stop_chaos.set()
        await chaos
        deadline[0] = time.monotonic() + DRAIN_S
        stop.set()
        await asyncio.to_thread(publisher.join)
    finally:
        for device in devices:
            await asyncio.to_thread(device.close)
        outcome.ledger.answers["reconnects"] = sum(d.connects - 1 for d in devices)


# -- counting ---------------------------------------------------------------------------------


async def count(stage: Stage, outcome: Outcome, wait_for_broker: bool) -> None:
    """Compare what the devices were told with what the database holds. With an
    external broker (which acknowledged on receipt) first wait for Fieldwatch to drain
    the broker's queue."""
    ids = stage.fleet.ids
    conn = await asyncpg.connect(stage.db.dsn)
    try:
        deadline = time.monotonic() + (DRAIN_S if wait_for_broker else 0)
        while True:
            stored = await stored_stamps(conn, ids)
            missing = sum(len(outcome.ledger.acked[d] - stored.get(d, set())) for d in ids)
            if not missing or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.5)
        outcome.stored = sum(len(s) for s in stored.values())
        outcome.lost = missing
        outcome.stored_unacked = sum(len(stored[d] - outcome.ledger.acked[d]) for d in stored)
        rows = await conn.fetchval(ROWS, ids)
        over = [await conn.fetchval(ROLLUP.format(table=t), ids) - rows for t in ROLLUPS]
        outcome.twice = max(0, *over)
        outcome.latest_wrong = await conn.fetchval(LATEST_WRONG, ids)
    finally:
        await conn.close()


SERIES = "SELECT id FROM series WHERE device_id = ANY($1::text[]::uuid[])"
ROWS = f"SELECT count(*) FROM readings WHERE series_id IN ({SERIES})"
ROLLUPS = ("rollup_1m", "rollup_1h")
ROLLUP = "SELECT coalesce(sum(count), 0) FROM {table} WHERE series_id IN (" + SERIES + ")"
LATEST_WRONG = (
    "SELECT count(*) FROM series s WHERE s.device_id = ANY($1::text[]::uuid[]) AND "
    "s.last_ts IS DISTINCT FROM (SELECT max(ts) FROM readings r WHERE r.series_id = s.id)"
)


async def stored_stamps(conn: asyncpg.Connection, ids: list[str]) -> dict[str, set[int]]:
    rows = await conn.fetch(
        "SELECT s.device_id::text AS d, round(extract(epoch FROM r.ts) * 1000)::bigint AS ms "
        "FROM readings r JOIN series s ON s.id = r.series_id "
        "WHERE s.device_id = ANY($1::text[]::uuid[])",
        ids,
    )
    out: dict[str, set[int]] = {d: set() for d in ids}
    for row in rows:
        out[row["d"]].add(row["ms"])
    return out


# -- the run ------------------------------------------------------------------------------------


def prepare(
    db: ScratchDatabase, broker: Mosquitto, mqtt_port: int
) -> tuple[dict[str, str], dict[str, str], Fleet]:
    """The database, an admin, and every phase's devices with their tokens, issued
    while the server manages Mosquitto's dynamic security (so that the devices of the
    Mosquitto phase can log in there too)."""
    # The devices here publish faster than the default per-device rate limit (which
    # drops the excess on purpose): lifted, so what is counted is what crashes lose.
    env = env_for(
        db, FIELDWATCH_ACCESS_TOKEN_TTL_S="86400", FIELDWATCH_MQTT_PORT=str(mqtt_port),
        FIELDWATCH_DEVICE_RATE_LIMIT=str(10**9),
    )  # fmt: skip
    set_up(env, "chaos@example.com", "chaos")
    url = broker.admin_url
    mosquitto_env = {**env, "FIELDWATCH_MQTT_URL": url}
    with Server(mosquitto_env) as srv:
        admin = login(srv.base, "chaos@example.com")
        fleet = asyncio.run(make_fleet(srv.base, admin, DEVICES * len(PHASES)))
    return env, mosquitto_env, fleet


async def run_phase(name: str, stage: Stage) -> Outcome:
    outcome = Outcome(name, Ledger())
    t0 = time.monotonic()
    if name == "http":
        await phase_http(stage, outcome, kills)
    elif name == "pg-outage":
        await phase_http(stage, outcome, pg_outage)
    elif name == "websocket":
        await phase_websocket(stage, outcome, kills)
    elif name == "mqtt-pg-outage":
        await phase_mqtt(stage, outcome, pg_outage, v5=False, rate=800)
    else:
        v5 = name == "mqtt-mosquitto"
        await phase_mqtt(stage, outcome, kills, v5=v5, rate=2000 if v5 else 800)
    outcome.seconds = time.monotonic() - t0
    await count(stage, outcome, wait_for_broker=name == "mqtt-mosquitto")
    return outcome


HEAD = (
    f"{'phase':<15} {'sent':>10} {'acked':>10} {'stored':>10} {'lost':>5} {'twice':>5} "
    f"{'latest≠':>7} {'unacked':>7} {'500':>5} {'503':>5}  other answers"
)


def row(o: Outcome) -> str:
    answers = dict(o.ledger.answers)
    e500, e503 = answers.pop("500", 0), answers.pop("503", 0)
    ok = sum(v for k, v in answers.items() if k.startswith("2"))
    answers = {k: v for k, v in answers.items() if not k.startswith("2")}
    other = ", ".join(f"{k}: {v}" for k, v in sorted(answers.items()))
    if ok:
        other = f"2xx: {ok}" + (f", {other}" if other else "")
    unacked = o.ledger.sent - o.ledger.acknowledged - o.ledger.refused
    return (
        f"{o.phase:<15} {o.ledger.sent:>10,} {o.ledger.acknowledged:>10,} {o.stored:>10,} "
        f"{o.lost:>5} {o.twice:>5} {o.latest_wrong:>7} {unacked:>7} {e500:>5} {e503:>5}  "
        f"{other}"
    )


def report(outcomes: list[Outcome]) -> tuple[list[str], int]:
    lines = ["", HEAD, *(row(o) for o in outcomes), ""]
    for o in outcomes:
        lines.append(f"{o.phase}: {o.seconds:.0f} s; " + "; ".join(o.disruptions))
        if o.ledger.refused:
            lines.append(f"  {o.ledger.refused} readings refused with a 4xx answer")
        if o.stored_unacked:
            lines.append(
                f"  {o.stored_unacked} stored but never acknowledged (committed, then the "
                "answer was lost with the server: resent and recognised as duplicates)"
            )
    bad = sum(o.lost + o.twice + o.latest_wrong for o in outcomes)
    e500 = sum(o.ledger.answers.get("500", 0) for o in outcomes)
    lines.append(
        f"verdict: {sum(o.lost for o in outcomes)} acknowledged readings lost, "
        f"{sum(o.twice for o in outcomes)} counted twice, {e500} answers of 500 "
        "(targets: 0, 0, 0)"
    )
    return lines, 1 if bad else 2 if e500 else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--phases", default=",".join(PHASES))
    parser.add_argument("--seconds", type=float, default=20.0, help="load per phase")
    args = parser.parse_args()
    phases = [p for p in args.phases.split(",") if p]
    if set(phases) - set(PHASES):
        parser.error(f"phases are among {', '.join(PHASES)}")
    base = os.environ.get("FIELDWATCH_CHAOS_DATABASE_URL", DEFAULT_URL)
    print(
        f"Fieldwatch chaos run (PostgreSQL next to {base}; phases: {', '.join(phases)})", flush=True
    )
    outcomes: list[Outcome] = []
    with (
        ScratchDatabase(f"fieldwatch_chaos_{os.getpid()}", base) as db,
        Mosquitto(dynsec=True) as broker,
    ):
        mqtt_port = free_port()
        env, mosquitto_env, fleet = prepare(db, broker, mqtt_port)
        for n, name in enumerate(PHASES):
            if name not in phases:
                continue
            mine = Fleet(fleet.ids[n * DEVICES : (n + 1) * DEVICES],
                         fleet.tokens[n * DEVICES : (n + 1) * DEVICES])  # fmt: skip
            external = name == "mqtt-mosquitto"
            port = broker.port if external else mqtt_port
            with Server(mosquitto_env if external else env, port=free_port()) as srv:
                stage = Stage(db, srv.env, srv, mine, port, args.seconds)
                outcome = asyncio.run(run_phase(name, stage))
            outcomes.append(outcome)
            print(row(outcome), flush=True)
    lines, status = report(outcomes)
    print("\n".join(lines), flush=True)
    write_results("chaos", lines)
    sys.exit(status)


if __name__ == "__main__":
    main()
