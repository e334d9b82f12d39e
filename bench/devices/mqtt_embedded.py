"""3b. mqtt-embedded: the broker ``make run`` users get (amqtt inside ``fieldwatch serve``,
acknowledging a device's QoS 1 PUBLISH after the commit). ``--mqtt-devices`` devices,
each on its own connection with its own credentials (user name: the device id, password:
its token), publish ``--readings`` readings at QoS 1 (``--mqtt-batch`` to a message),
at most ``WINDOW`` unacknowledged each, each first subscribed to its command,
configuration and firmware topics as the agent is (``--mqtt-subscribe no``: none);
readings committed per second, counted in the database, and the server's CPU;
``--profile``: py-spy samples the server meanwhile."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import psutil

from devices.context import Bench
from devices.mqtt import PollRows, count_readings, steady_rate, wait_rows
from devices.mqtt_load import publish
from devices.profile import start_profile, summarize_profile
from harness.results import Figure
from harness.server import Server, free_port
from harness.timing import now

#: Each device's in-flight window, as a paho client's default: the embedded broker
#: acknowledges after the commit, and a device that wrote all its messages at once would
#: wait past its receipts' timeout (the broker then closes it, and the device resends).
WINDOW = 20
PROFILE = Path(__file__).resolve().parent.parent / "results" / "devices_mqtt_embedded_profile.txt"


def part_mqtt_embedded(bench: Bench) -> None:
    args, dsn, total = bench.args, bench.db.dsn, bench.args.readings
    ids = bench.fleet.ids[: args.mqtt_devices]
    tokens = bench.fleet.tokens[: args.mqtt_devices]
    subscribe = args.mqtt_subscribe == "yes"
    bench.say(
        f"3b. MQTT ingest through the embedded broker: {total:,} readings at QoS 1 from "
        f"{len(ids):,} devices, each on its own connection with its token"
        + (f", {args.mqtt_batch} readings a message" if args.mqtt_batch > 1 else "")
        + (f", offered at {args.mqtt_rate:,.0f} messages/s" if args.mqtt_rate > 0 else "")
        + (", each subscribed to its command, config and firmware topics" if subscribe else "")
    )
    port = free_port()
    env = {**bench.env, "FIELDWATCH_MQTT_EMBEDDED": "true", "FIELDWATCH_MQTT_PORT": str(port),
           "FIELDWATCH_DEVICE_RATE_LIMIT": str(10**9)}  # fmt: skip
    base_ts = int(time.time()) - 6 * 3600  # other times than the Mosquitto part's
    with Server(env) as srv:
        base = asyncio.run(count_readings(dsn))
        # Untimed warm-up: every device's series exists, as in a running fleet.
        publish(
            port, ids, len(ids), args.publishers, base_ts - 7200, tokens=tokens, window=WINDOW,
            subscribe=subscribe,
        )  # fmt: skip
        wait_rows(dsn, base + len(ids), 60)
        base = asyncio.run(count_readings(dsn))
        server = psutil.Process(srv.pid)
        cpu0 = sum(server.cpu_times()[:2])
        samples: list[tuple[float, int]] = []
        poll = PollRows(dsn, base, samples)
        poll.start()
        t_start: list[float] = []
        profile: subprocess.Popen[bytes] | None = None

        def started() -> None:
            nonlocal profile
            t_start.append(now())
            if args.profile:
                profile = start_profile(srv.pid, args.profile_seconds, PROFILE)

        publish_s = publish(
            port, ids, total, args.publishers, base_ts, started,
            rate=args.mqtt_rate, batch=args.mqtt_batch, tokens=tokens, window=WINDOW,
            subscribe=subscribe,
        )  # fmt: skip
        t_done = poll.wait(base + total, idle=args.mqtt_idle)
        cpu = sum(server.cpu_times()[:2]) - cpu0
        rss = srv.rss()
        if profile is not None:
            profile.wait(timeout=args.profile_seconds + 60)
    persisted = samples[-1][1] - base if samples else 0
    elapsed = (t_done or (samples[-1][0] if samples else now())) - t_start[0]
    rate = persisted / elapsed if elapsed > 0 else 0.0
    steady = steady_rate(samples)
    per_core = rate / (cpu / elapsed) if cpu > 0 else 0.0
    bench.say(
        f"  embedded broker + gateway → PostgreSQL           {rate:>9,.0f} readings/s "
        f"persisted ({persisted:,}/{total:,} in {elapsed:.2f} s; publishers done after "
        f"{publish_s:.2f} s; best 5 s window {steady:,.0f}/s; server CPU {cpu:.1f} s "
        f"= {cpu / elapsed:.0%} of a core, {per_core:,.0f} readings per CPU-second; "
        f"RSS {rss / 2**20:.0f} MiB)"
    )
    if args.profile:
        bench.say(summarize_profile(PROFILE))
    bench.report["mqtt_embedded"] = {
        "readings": total, "devices": len(ids), "batch": args.mqtt_batch,
        "subscribed": subscribe,
        "persisted": persisted, "seconds": elapsed, "rate": rate, "best_5s_rate": steady,
        "server_cpu_s": cpu, "publish_seconds": publish_s,
    }  # fmt: skip
    bench.figures.append(
        Figure(
            "MQTT readings persisted, embedded broker",
            rate,
            "/s",
            "",
            None,
            f"{persisted:,}/{total:,} persisted, {len(ids):,} devices",
        )
    )
