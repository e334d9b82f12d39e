"""The MQTT gateway's own cost per message, without a broker: batches of PUBLISH
messages, as the link hands them over, go through the gateway's handler (topic, rate
limit, decoding, ingestion, the commit, the acknowledgements) in this process.

What it prints is measured: the gateway's CPU-seconds per message (this process only;
PostgreSQL's own CPU is printed apart), messages/s end to end, and the readings counted
in the database afterwards. ``--profile`` runs the timed batches under cProfile and
prints where the gateway's time went, function by function.

Set-up (untimed): a scratch database, ``fieldwatch serve`` to import ``--devices``
devices through the API, then the gateway in this process over the same database, and
one warm-up reading per device (every series exists, as in a running fleet).

Usage: .venv/bin/python bench/bench_mqtt_inbound.py [--devices 1000] [--messages 200000]
       [--batch 5000] [--readings-per-message 1] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import asyncpg
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from devices.mqtt import count_readings, cpu_seconds
from fieldwatch.app import device_edge
from fieldwatch.core.settings import Settings
from fieldwatch.runtime import build_runtime
from fieldwatch.transports.mqtt import topics
from fieldwatch.transports.mqtt.gateway import MqttGateway
from fieldwatch.transports.mqtt.link import IncomingMessage
from harness.database import ScratchDatabase, env_for, set_up
from harness.fleet import make_fleet
from harness.server import Server, login

PROFILE = Path(__file__).resolve().parent / "results" / "mqtt_inbound.prof"


class CountingLink:
    """Where the gateway's acknowledgements go: counted, as the broker would get them."""

    def __init__(self) -> None:
        self.acked = 0

    def ack(self, messages: Iterable[IncomingMessage]) -> int:
        n = sum(1 for m in messages if m.qos)
        self.acked += n
        return n

    async def publish(self, topic: str, payload: bytes, qos: int = 0) -> None:
        return None


def messages(ids: list[str], count: int, per_message: int, base_ts: int) -> list[IncomingMessage]:
    """``count`` QoS 1 data messages, the devices in turn, each ``per_message`` readings
    (an array when more than one) a second apart."""
    out, now = [], time.monotonic()
    for i in range(count):
        device = ids[i % len(ids)]
        ts = base_ts + (i // len(ids)) * per_message
        if per_message == 1:
            body = {"value": 20.0 + i % 50 / 10, "unit": "celsius", "timestamp": ts}
            payload = orjson.dumps(body)
        else:
            payload = orjson.dumps(
                [{"value": 20.0 + k % 50 / 10, "timestamp": ts + k} for k in range(per_message)]
            )
        topic = topics.data(device, "temperature")
        out.append(IncomingMessage(topic, payload, 1, False, i % 65535 + 1, False, 0, now))
    return out


async def table_writes(dsn: str) -> dict[str, tuple[int, int]]:
    """Rows inserted and updated so far, by table (PostgreSQL's statistics)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT relname, n_tup_ins, n_tup_upd FROM pg_stat_user_tables")
        return {r["relname"]: (r["n_tup_ins"], r["n_tup_upd"]) for r in rows}
    finally:
        await conn.close()


async def run(args: argparse.Namespace, env: dict[str, str], ids: list[str], dsn: str) -> None:
    os.environ.update(env)
    settings = Settings()
    settings.device_rate_limit = 10**9  # throughput, not the per-device limit
    runtime = build_runtime(settings)
    await runtime.start()
    gateway = MqttGateway(device_edge(runtime))
    link = CountingLink()
    gateway.link = link  # type: ignore[assignment]
    base_ts = int(time.time()) - 6 * 3600
    try:
        warm = messages(ids, len(ids), 1, base_ts - 3600)
        for start in range(0, len(warm), args.batch):
            await gateway.handle(warm[start : start + args.batch])
        before = await count_readings(dsn)
        await asyncio.sleep(1.0)  # the statistics arrive with a delay
        writes0 = await table_writes(dsn)
        load = messages(ids, args.messages, args.readings_per_message, base_ts)
        batches = [load[s : s + args.batch] for s in range(0, len(load), args.batch)]
        profile = cProfile.Profile() if args.profile else None
        pg0 = cpu_seconds(os.getpid())["postgresql"]
        cpu0, t0 = time.process_time(), time.perf_counter()
        if profile is not None:
            profile.enable()
        for batch in batches:
            await gateway.handle(batch)
        if profile is not None:
            profile.disable()
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        pg = cpu_seconds(os.getpid())["postgresql"] - pg0
        stored = await count_readings(dsn) - before
        await asyncio.sleep(1.0)
        writes = await table_writes(dsn)
    finally:
        await runtime.close()
    n, total = args.messages, args.messages * args.readings_per_message
    print(
        f"{n:,} messages ({total:,} readings) from {len(ids):,} devices in batches of "
        f"{args.batch}: {n / wall:,.0f} messages/s, {total / wall:,.0f} readings/s end to end; "
        f"gateway CPU {cpu / n * 1e6:.1f} µs a message ({cpu / total * 1e6:.2f} µs a reading), "
        f"PostgreSQL CPU {pg / total * 1e6:.2f} µs a reading; "
        f"{stored:,} readings counted in the database, {link.acked:,} acknowledged"
    )
    changed = {
        t: (i - writes0.get(t, (0, 0))[0], u - writes0.get(t, (0, 0))[1])
        for t, (i, u) in writes.items()
    }
    busy = sorted(((i + u, t, i, u) for t, (i, u) in changed.items() if i + u), reverse=True)
    print("rows written meanwhile:", ", ".join(f"{t} +{i:,} ins {u:,} upd" for _, t, i, u in busy))
    if stored != total or link.acked < n:
        print("NOT ALL STORED OR ACKNOWLEDGED", file=sys.stderr)
    if profile is not None:
        PROFILE.parent.mkdir(parents=True, exist_ok=True)
        profile.dump_stats(PROFILE)
        out = io.StringIO()
        stats = pstats.Stats(profile, stream=out)
        stats.sort_stats("tottime").print_stats(35)
        print(out.getvalue(), f"(the whole profile: {PROFILE})", sep="\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5000, help="as FIELDWATCH_MQTT_BATCH_SIZE")
    parser.add_argument("--readings-per-message", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    with ScratchDatabase("fieldwatch_bench_inbound") as db:
        env = env_for(db)
        set_up(env, "bench@example.com", "bench")
        with Server(env) as srv:
            fleet = asyncio.run(
                make_fleet(srv.base, login(srv.base, "bench@example.com"), args.devices)
            )
        asyncio.run(run(args, env, fleet.ids, db.dsn))


if __name__ == "__main__":
    main()
