"""Connected devices: WebSocket memory, command round trips, MQTT ingest, reconnect storms.

Each part runs against its own ``fieldwatch serve`` process on a scratch PostgreSQL
database (FIELDWATCH_BENCH_DATABASE_URL); the devices are created once through the API
(a CSV import, then one ``POST /api/v1/devices/{id}/tokens`` each).

1. memory: the server's RSS after start-up and warm-up, then with ``--devices`` idle
   WebSocket devices connected (``ws://…/ws/device/<token>``, from ``--client-processes``
   processes using the ``websockets`` client): (RSS after − RSS before) / devices. First
   on the API's port, then for each of ``--memory-variants`` (default ``listener``: the
   device listener, FIELDWATCH_DEVICE_WS_PORT; others change uvicorn's WebSocket
   options, through bench/serve_variant.py, which serves like ``fieldwatch serve``).
2. rtt: ``--rtt-devices`` connected devices answer each ``command`` at once with
   ``command_ack`` and ``command_result``; ``--commands`` commands, one after another, to
   random devices: from just before ``POST /api/v1/devices/{id}/commands`` until the
   device has the server's ``ack`` of its ``command_result`` (sent after the commit).
3. mqtt: Mosquitto (anonymous, unlimited queue) and ``fieldwatch serve`` with
   ``FIELDWATCH_MQTT_URL`` (dynsec off); ``--mqtt-devices`` devices publish ``--readings``
   seed 003 readings at QoS 1 from ``--publishers`` processes; readings committed per
   second (``count(*)`` of ``readings``), against a bare paho subscriber's rate for the
   same load (bench_mqtt_clients' ``paho-asyncio`` subscriber). By default each device
   has its own connection and its packets are encoded beforehand
   (bench/harness/mqtt_devices.py, little CPU, like boards elsewhere; ``--mqtt-load
   paho`` for paho publishers), as fast as the broker takes them or at ``--mqtt-rate``
   readings/s; ``--mqtt-workers`` runs ``serve --workers N`` (shared subscription).
   ``--profile`` samples the server (rtt and mqtt parts) with py-spy meanwhile.
   mqtt-embedded: the same load through the embedded broker ``make run`` starts (amqtt
   in the server process), each device with its own token; ``--mqtt-batch N`` sends N
   readings a message (a JSON array on the sensor topic), in both MQTT parts;
   ``--mqtt-client mqtt5`` runs the server (and the bare subscriber) on the mqtt5 codec.
4. storm: ``--storm-devices`` devices with jittered exponential backoff; one command per
   device completed, one more queued per device just before the server is stopped; the
   server is started again on the same port and database: time until every device is
   connected again, and the command tally (every command completed, none run twice).

Each part is a module of bench/devices/; the harness (database, server, fleet, broker,
results) is bench/harness/.

Usage: .venv/bin/python bench/bench_devices.py [--parts memory,rtt,mqtt,mqtt-embedded,storm]
       [--devices 10000] [--rtt-devices 1000] [--commands 1000] [--mqtt-devices 1000]
       [--readings 300000] [--publishers 2] [--mqtt-load raw|paho] [--mqtt-rate 0]
       [--mqtt-workers 1] [--mqtt-receive-maximum N] [--mqtt-client paho|mqtt5]
       [--mqtt-batch 1] [--storm-devices 5000]
       [--client-processes 4]
       [--memory-variants wsproto,no-deflate] [--ws-compression none|deflate] [--profile]
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

from devices.clients import raise_nofile
from devices.context import Bench
from devices.memory import part_memory
from devices.mqtt import part_mqtt
from devices.mqtt_embedded import part_mqtt_embedded
from devices.options import devices_needed, parse_args
from devices.rtt import part_rtt
from devices.storm import part_storm
from harness.database import ScratchDatabase, env_for, set_up
from harness.fleet import Fleet, make_fleet
from harness.results import RESULTS, figure_table, say, write_json, write_results
from harness.server import Server, login
from harness.timing import now

PARTS: dict[str, Callable[[Bench], None]] = {
    "memory": part_memory,
    "rtt": part_rtt,
    "mqtt": part_mqtt,
    "mqtt-embedded": part_mqtt_embedded,
    "storm": part_storm,
}


def fleet_for(env: dict[str, str], count: int, lines: list[str]) -> Fleet:
    """``count`` devices and their tokens, made through a server of their own."""
    with Server(env) as srv:
        t0 = now()
        fleet = asyncio.run(make_fleet(srv.base, login(srv.base, "bench@example.com"), count))
        say(
            lines,
            f"setup: {count:,} devices (CSV import) and their tokens (one POST each) "
            f"in {now() - t0:.1f} s",
        )
    return fleet


def main() -> None:
    args, parts = parse_args((__doc__ or "").split("\n")[0], tuple(PARTS))
    nofile = raise_nofile()
    RESULTS.mkdir(exist_ok=True)
    needed = devices_needed(args, parts)
    print(
        f"Fieldwatch connected-devices benchmark (PostgreSQL; {os.cpu_count()} CPUs; "
        f"RLIMIT_NOFILE {nofile}); figures print as they are measured.",
        flush=True,
    )
    lines: list[str] = []
    report: dict[str, Any] = {"parts": parts, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with ScratchDatabase("fieldwatch_bench_devices") as db:
        env = env_for(db, FIELDWATCH_MQTT_EMBEDDED="false", FIELDWATCH_ACCESS_TOKEN_TTL_S="86400")
        set_up(env, "bench@example.com", "bench")
        fleet = fleet_for(env, needed, lines)
        bench = Bench(db, env, fleet, args, lines, report=report)
        for name, part in PARTS.items():
            if name in parts:
                part(bench)
    table = figure_table(bench.figures)
    print("\n" + "\n".join(table), flush=True)
    lines += ["", *table]
    write_results(args.name, lines)
    report["figures"] = [f.__dict__ for f in bench.figures]
    write_json(args.name, report)
    print(f"results: {RESULTS / args.name}.txt, .json")


if __name__ == "__main__":
    main()
