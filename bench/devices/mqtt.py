"""3. mqtt: Mosquitto (anonymous, unlimited queue) and ``fieldwatch serve`` with
``FIELDWATCH_MQTT_URL`` (dynsec off); ``--mqtt-devices`` devices publish ``--readings``
readings at QoS 1 from ``--publishers`` processes: readings committed per second
(``count(*)`` of ``readings``), against a bare paho subscriber's rate for the same
load."""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing as mp
import subprocess
import threading
import time
from dataclasses import dataclass

import asyncpg
import psutil

from devices.context import Bench
from devices.mqtt_load import mqtt_messages, publish, publish_list
from devices.profile import start_profile, summarize_profile
from harness.broker import BenchBroker
from harness.results import RESULTS, Figure
from harness.server import Server
from harness.timing import now
from mqtt_clients.subscribers import subscriber as bare_subscriber

PROFILE = RESULTS / "devices_mqtt_profile.txt"


def part_mqtt(bench: Bench) -> None:
    args = bench.args
    ids = bench.fleet.ids[: args.mqtt_devices]
    total = args.readings
    bench.say(_head(bench, len(ids)))
    base_ts = int(time.time()) - 3 * 3600
    with BenchBroker(args.mqtt_inflight) as broker:
        ceiling = _ceiling(bench, broker, ids, base_ts - 86_400)
        run = _gateway(bench, broker, ids, base_ts)
    elapsed = (run.t_done or run.samples[-1][0]) - run.t_start
    rate = run.persisted / elapsed if elapsed > 0 else 0.0
    steady = steady_rate(run.samples)
    bench.say(
        f"  Fieldwatch gateway → PostgreSQL                  {rate:>9,.0f} readings/s "
        f"persisted ({run.persisted:,}/{total:,} in {elapsed:.2f} s from the first publish; "
        f"publishers done after {run.publish_s:.2f} s, the last commit "
        f"{elapsed - run.publish_s:.2f} s later; best 5 s window {steady:,.0f}/s; "
        f"server RSS {run.rss / 2**20:.0f} MiB)"
    )
    per = {k: v / run.persisted * 1e6 for k, v in run.cpu.items()} if run.persisted else {}
    if per:
        bench.say(
            f"  CPU per reading: gateway {per['gateway']:.1f} µs, PostgreSQL "
            f"{per['postgresql']:.1f} µs, Mosquitto {per['mosquitto']:.1f} µs"
            + (f", the devices {per['devices']:.1f} µs" if "devices" in per else "")
        )
    ratio = rate / ceiling if ceiling else 0.0
    bench.say(f"  ratio to the bare subscriber                     {ratio:>9.0%}")
    bench.report["mqtt"] = {
        "readings": total,
        "devices": len(ids),
        "publishers": args.publishers,
        "broker_inflight": args.mqtt_inflight or 20,
        "ceiling_readings_s": ceiling,
        "client": args.mqtt_client,
        "batch": args.mqtt_batch,
        "persisted": run.persisted,
        "seconds": elapsed,
        "rate": rate,
        "best_5s_rate": steady,
        "publish_seconds": run.publish_s,
        "cpu_us_per_reading": per,
        "samples": [(t - run.t_start, n - run.base) for t, n in run.samples],
    }
    if args.profile:
        summary = summarize_profile(PROFILE)
        bench.say(summary)
        bench.report["mqtt"]["profile"] = summary
    bench.figures.append(
        Figure(
            "MQTT readings persisted",
            rate,
            "/s",
            "≥ 150,000" if args.mqtt_batch > 1 else "≥ 30,000",
            rate >= (150_000 if args.mqtt_batch > 1 else 30_000),
            f"bare subscriber {ceiling:,.0f}/s; {run.persisted:,}/{total:,} persisted",
        )
    )


def _head(bench: Bench, devices: int) -> str:
    args = bench.args
    return (
        f"3. MQTT ingest through Mosquitto: {args.readings:,} readings at QoS 1 from "
        f"{devices:,} devices, "
        + (
            f"each on its own connection, pre-encoded packets from {args.publishers} processes"
            if args.mqtt_load == "raw"
            else f"paho clients in {args.publishers} publisher processes"
        )
        + (
            f", offered at {args.mqtt_rate:,.0f} readings/s"
            if args.mqtt_load == "raw" and args.mqtt_rate > 0
            else ", as fast as the broker takes them"
        )
        + (f", {args.mqtt_batch} readings a message" if args.mqtt_batch > 1 else "")
        + f", the server's MQTT client {args.mqtt_client}"
        + (f", {args.mqtt_workers} server workers" if args.mqtt_workers > 1 else "")
        + f" (broker in-flight window {args.mqtt_inflight or 20})"
    )


def _ceiling(bench: Bench, broker: BenchBroker, ids: list[str], base_ts: int) -> float:
    """The ceiling: a subscriber that does nothing with what it gets, on the server's
    MQTT library, for the same load (readings a second)."""
    args, total = bench.args, bench.args.readings
    messages = expected_messages(len(ids), total, args.mqtt_batch)
    candidate = BARE[args.mqtt_client]
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    sub = ctx.Process(
        target=bare_subscriber,
        args=(candidate, broker.port, 1, messages, False, ready, None, out),
    )
    sub.start()
    if not ready.wait(30):
        raise SystemExit("the bare subscriber did not subscribe")
    mosquitto0, devices_cpu = cpu_seconds(None)["mosquitto"], list[float]()
    publish(broker.port, ids, total, args.publishers, base_ts, load=args.mqtt_load,
            batch=args.mqtt_batch, cpu=devices_cpu)  # fmt: skip
    received, seconds = out.get(timeout=900)
    mosquitto = cpu_seconds(None)["mosquitto"] - mosquitto0
    sub.join(timeout=30)
    ceiling = received * total / messages / seconds if seconds else 0.0
    cost = ""
    if received and devices_cpu:
        cost = (f"; CPU a message: Mosquitto {mosquitto / received * 1e6:.1f} µs, the devices "
                f"{sum(devices_cpu) / received * 1e6:.1f} µs")  # fmt: skip
    bench.say(
        f"  bare subscriber ({candidate}, QoS 1, live)  {ceiling:>9,.0f} readings/s "
        f"({received:,} of {messages:,} messages received in {seconds:.2f} s{cost})"
    )
    return ceiling


#: The do-nothing subscriber on each MQTT library the server can use.
BARE = {"paho": "paho-asyncio", "mqtt5": "fieldwatch-mqtt5"}


def expected_messages(devices: int, total: int, batch: int) -> int:
    """Messages ``total`` readings make: reading i goes to device i % devices, and each
    device sends its readings ``batch`` to a message."""
    per_device = (math.ceil((total - j) / devices) for j in range(min(devices, total)))
    return sum(math.ceil(n / batch) for n in per_device)


@dataclass
class GatewayRun:
    base: int  # readings before the timed load
    t_start: float  # the first publish
    t_done: float | None  # every reading committed (None: it stopped short)
    samples: list[tuple[float, int]]  # (time, readings) as they grew
    persisted: int
    publish_s: float
    rss: int
    cpu: dict[str, float]  # CPU-seconds during the timed load: gateway, PostgreSQL, broker


def _gateway(bench: Bench, broker: BenchBroker, ids: list[str], base_ts: int) -> GatewayRun:
    """Fieldwatch: the gateway subscribes, ingests, PUBACKs after the commit.

    Throughput, not the per-device rate limit (1,000 messages a minute by default): the
    limit is lifted so that every reading published is stored."""
    args, dsn, total = bench.args, bench.db.dsn, bench.args.readings
    mqtt_env = {**bench.env, "FIELDWATCH_MQTT_URL": broker.url, "FIELDWATCH_MQTT_DYNSEC": "false",
                "FIELDWATCH_DEVICE_RATE_LIMIT": str(10**9),
                "FIELDWATCH_MQTT_CLIENT": args.mqtt_client}  # fmt: skip
    if args.mqtt_receive_maximum is not None:
        mqtt_env["FIELDWATCH_MQTT_RECEIVE_MAXIMUM"] = str(args.mqtt_receive_maximum)
    workers = ["--workers", str(args.mqtt_workers)] if args.mqtt_workers > 1 else []
    with Server(mqtt_env, serve_args=workers) as srv:
        # Untimed warm-up: every device's series exists, as in a running fleet.
        # With several workers, enough readings that each worker has seen each device
        # (the shared subscription hands messages out in turn, not by device).
        rounds = 1 if args.mqtt_workers < 2 else 4 * args.mqtt_workers
        warm = mqtt_messages(ids, 0, rounds * len(ids), base_ts - 3600, 1)
        base = asyncio.run(count_readings(dsn))
        publish_list(broker.port, warm)
        wait_rows(dsn, base + len(warm), 60)
        base = asyncio.run(count_readings(dsn))
        profile: subprocess.Popen[bytes] | None = None
        t_start: list[float] = []

        def started() -> None:
            nonlocal profile
            t_start.append(now())
            if args.profile:
                profile = start_profile(srv.pid, args.profile_seconds, PROFILE)

        samples: list[tuple[float, int]] = []
        poll = PollRows(dsn, base, samples)
        poll.start()
        cpu0 = cpu_seconds(srv.pid)
        devices_cpu: list[float] = []
        publish_s = publish(
            broker.port, ids, total, args.publishers, base_ts, started, load=args.mqtt_load,
            rate=args.mqtt_rate, batch=args.mqtt_batch, cpu=devices_cpu,
        )  # fmt: skip
        t_done = poll.wait(base + total, idle=args.mqtt_idle)
        cpu = {k: v - cpu0.get(k, 0.0) for k, v in cpu_seconds(srv.pid).items()}
        if devices_cpu:
            cpu["devices"] = sum(devices_cpu)
        persisted = samples[-1][1] - base if samples else 0
        if profile is not None:
            profile.wait(timeout=args.profile_seconds + 60)
        rss = srv.rss()
    return GatewayRun(base, t_start[0], t_done, samples, persisted, publish_s, rss, cpu)


def cpu_seconds(server_pid: int | None) -> dict[str, float]:
    """User + system CPU-seconds so far of the server (with its worker processes; None:
    no server), of PostgreSQL's processes and of Mosquitto's."""
    out = {"gateway": 0.0, "postgresql": 0.0, "mosquitto": 0.0}
    server = psutil.Process(server_pid) if server_pid is not None else None
    for proc in [server, *server.children(recursive=True)] if server is not None else []:
        with contextlib.suppress(psutil.Error):
            out["gateway"] += sum(proc.cpu_times()[:2])
    for proc in psutil.process_iter(["name"]):
        name = proc.info["name"] or ""
        key = "postgresql" if name.startswith("postgres") else name if name == "mosquitto" else ""
        if key:
            with contextlib.suppress(psutil.Error):
                out[key] += sum(proc.cpu_times()[:2])
    return out


async def count_readings(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM readings"))
    finally:
        await conn.close()


def wait_rows(dsn: str, target: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    n = asyncio.run(count_readings(dsn))
    while n < target and time.monotonic() < deadline:
        time.sleep(0.2)
        n = asyncio.run(count_readings(dsn))
    return n


class PollRows:
    """Counts ``readings`` every 0.25 s in a thread: (time, rows) samples."""

    def __init__(self, dsn: str, base: int, samples: list[tuple[float, int]]) -> None:
        self.dsn = dsn
        self.base = base
        self.samples = samples
        self.stop_flag = threading.Event()
        self.target = -1
        self.reached: float | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        async def loop() -> None:
            conn = await asyncpg.connect(self.dsn)
            try:
                while not self.stop_flag.is_set():
                    n = int(await conn.fetchval("SELECT count(*) FROM readings"))
                    t = now()
                    if not self.samples or n != self.samples[-1][1]:
                        self.samples.append((t, n))
                    if self.target >= 0 and n >= self.target and self.reached is None:
                        self.reached = t
                    await asyncio.sleep(0.25)
            finally:
                await conn.close()

        asyncio.run(loop())

    def wait(self, target: int, idle: float) -> float | None:
        """Until ``target`` rows, or no new row for ``idle`` seconds."""
        self.target = target
        while self.reached is None:
            time.sleep(0.1)
            if self.samples and now() - self.samples[-1][0] > idle:
                break
        self.stop_flag.set()
        self.thread.join(timeout=10)
        return self.reached


def steady_rate(samples: list[tuple[float, int]], window: float = 5.0) -> float:
    best = 0.0
    for i, (t0, n0) in enumerate(samples):
        for t1, n1 in samples[i + 1 :]:
            if t1 - t0 >= window:
                best = max(best, (n1 - n0) / (t1 - t0))
                break
    return best
