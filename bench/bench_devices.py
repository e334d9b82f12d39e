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
   has its own connection and its packets are encoded beforehand (bench/mqtt_devices.py,
   little CPU, like boards elsewhere; ``--mqtt-load paho`` for paho publishers), as
   fast as the broker takes them or at ``--mqtt-rate`` readings/s; ``--mqtt-workers``
   runs ``serve --workers N`` (shared subscription). ``--profile`` samples the server
   (rtt and mqtt parts) with py-spy meanwhile.
4. storm: ``--storm-devices`` devices with jittered exponential backoff; one command per
   device completed, one more queued per device just before the server is stopped; the
   server is started again on the same port and database: time until every device is
   connected again, and the command tally (every command completed, none run twice).

Usage: .venv/bin/python bench/bench_devices.py [--parts memory,rtt,mqtt,storm]
       [--devices 10000] [--rtt-devices 1000] [--commands 1000] [--mqtt-devices 1000]
       [--readings 300000] [--publishers 2] [--mqtt-load raw|paho] [--mqtt-rate 0]
       [--mqtt-workers 1] [--mqtt-receive-maximum N] [--storm-devices 5000]
       [--client-processes 4]
       [--memory-variants wsproto,no-deflate] [--ws-compression none|deflate] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import httpx
import orjson
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bench_mqtt_clients import FILTER, BenchBroker, paho_publish  # noqa: E402
from bench_mqtt_clients import subscriber as bare_subscriber  # noqa: E402
from common import (  # noqa: E402
    CLI,
    PASSWORD,
    ScratchDatabase,
    cli,
    env_for,
    free_port,
    login,
    say,
    write_results,
)

SENSOR = "temperature"  # bench_mqtt_clients' subscriber filter: iot/devices/data/+/temperature
assert f"iot/devices/data/+/{SENSOR}" == FILTER
RESULTS = ROOT / "bench" / "results"

#: uvicorn WebSocket alternatives for the memory part (bench/serve_variant.py options);
#: combine them with "+", e.g. "wsproto+no-ping".
VARIANTS: dict[str, list[str]] = {
    "auto": [],  # what `fieldwatch serve` runs (uvicorn 0.5x: websockets-sansio)
    "websockets": ["--ws", "websockets"],  # uvicorn's legacy websockets implementation
    "sansio": ["--ws", "websockets-sansio"],
    "wsproto": ["--ws", "wsproto"],
    "no-deflate": ["--no-ws-per-message-deflate"],
    "no-ping": ["--ws-ping-interval", "0"],
    "small-buffers": ["--ws-max-size", "65536", "--ws-max-queue", "1"],
    # the devices connect to the device listener (FIELDWATCH_DEVICE_WS_PORT) instead
    "listener": [],
}


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def now() -> float:
    """CLOCK_MONOTONIC: comparable between the processes of this benchmark."""
    return time.perf_counter()


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


# -- the server ---------------------------------------------------------------------------


class Server:
    """``fieldwatch serve`` (or bench/serve_variant.py) as a subprocess on a fixed port."""

    def __init__(
        self,
        env: dict[str, str],
        port: int | None = None,
        variant: list[str] | None = None,
        tracemalloc: int = 0,
        serve_args: list[str] | None = None,
    ) -> None:
        self.env = env
        self.serve_args = serve_args or []
        self.port = port or free_port()
        self.variant = variant
        self.tracemalloc = tracemalloc
        self.control = Path(tempfile.mkdtemp(prefix="fw-bench-ctl-"))
        self.log = Path(tempfile.mkstemp(prefix="fw-bench-server-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, wait: bool = True) -> Server:
        if self.variant is None:
            cmd = [*CLI, "serve", "--port", str(self.port), *self.serve_args]
        else:
            cmd = [
                sys.executable,
                str(ROOT / "bench" / "serve_variant.py"),
                "--port",
                str(self.port),
                "--control-dir",
                str(self.control),
                *self.variant,
            ]
            if self.tracemalloc:
                cmd += ["--tracemalloc", str(self.tracemalloc)]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=log)
        if wait:
            self.wait_ready()
        return self

    def accepting(self) -> bool:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
        ):
            return True
        return False

    def wait_ready(self, timeout: float = 60) -> float:
        """Wait until the port accepts connections (uvicorn binds it once start-up is
        done), then until /health answers; returns when the port first accepted."""
        deadline = time.monotonic() + timeout
        while not self.accepting():
            assert self.proc is not None
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start; its log: {self.log}")
            time.sleep(0.01)
        accepted = now()
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.base}/health", timeout=2).status_code < 500:
                    return accepted
            time.sleep(0.05)
        raise SystemExit(f"the server does not answer /health; its log: {self.log}")

    def rss(self) -> int:
        """The server's resident memory (with its worker processes, if any)."""
        proc = psutil.Process(self.pid)
        return sum(int(p.memory_info().rss) for p in [proc, *proc.children(recursive=True)])

    def request(self, what: str, timeout: float = 120) -> str:
        """Ask serve_variant.py's watcher for a gc or a tracemalloc snapshot."""
        if self.variant is None:
            return ""
        done = self.control / f"{what}.done"
        done.unlink(missing_ok=True)
        (self.control / what).write_text("")
        deadline = time.monotonic() + timeout
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        return done.read_text() if done.exists() else ""

    def stop(self) -> float:
        """SIGTERM (uvicorn's graceful shutdown); the seconds it took to exit."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        t0 = now()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return now() - t0

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- devices and their credentials ---------------------------------------------------------


@dataclass
class Fleet:
    ids: list[str]
    tokens: list[str]


async def make_fleet(base: str, admin: str, count: int, concurrency: int = 24) -> Fleet:
    """``count`` devices by one CSV import (status in_stock), then a token for each."""
    headers = {"Authorization": f"Bearer {admin}"}
    ids: list[str] = []
    async with aiohttp.ClientSession(
        base,
        headers=headers,
        connector=aiohttp.TCPConnector(limit=concurrency),
        timeout=aiohttp.ClientTimeout(total=600),
    ) as http:
        for start in range(0, count, 10_000):
            rows = [
                f"bench-{i:06d},bench_sensor,BENCH-{i:06d}"
                for i in range(start, min(count, start + 10_000))
            ]
            body = "name,type,serial_number\n" + "\n".join(rows) + "\n"
            async with http.post(
                "/api/v1/devices/import", data=body.encode(), headers={"content-type": "text/csv"}
            ) as r:
                result = await r.json()
                if r.status != 200 or result["failed"]:
                    raise SystemExit(f"the import failed: {r.status} {str(result)[:500]}")
                ids += [str(row["device_id"]) for row in result["rows"]]
        tokens: list[str] = [""] * len(ids)
        queue = list(enumerate(ids))

        async def worker() -> None:
            while queue:
                i, device = queue.pop()
                for attempt in range(5):
                    async with http.post(
                        f"/api/v1/devices/{device}/tokens", json={"name": "bench"}
                    ) as r:
                        if r.status == 201:
                            tokens[i] = (await r.json())["token"]
                            break
                    await asyncio.sleep(0.2 * (attempt + 1))
                else:
                    raise SystemExit(f"no token for device {device}: {r.status}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Fleet(ids, tokens)


# -- lean WebSocket devices -------------------------------------------------------------------


@dataclass
class DeviceOptions:
    reconnect: bool = False
    backoff_base: float = 1.0  # first wait: uniform(base / 2, base), as the protocol says
    backoff_cap: float = 30.0
    compression: str | None = None  # "deflate": the websockets client's default offer
    open_timeout: float = 30.0


@dataclass
class DeviceState:
    token: str
    welcomes: list[float] = field(default_factory=list)
    open: bool = False
    runs: dict[str, int] = field(default_factory=dict)  # command_id → times run
    deliveries: int = 0
    failures: int = 0


class Devices:
    """Many lean devices in one event loop: each keeps a WebSocket open, answers every
    ``command`` at once with ``command_ack`` then ``command_result`` (deduplicated by
    ``command_id`` as the protocol says) and reconnects with jittered exponential backoff
    (``delay = min(cap, base * 2 ** attempt)``, ``sleep(uniform(delay / 2, delay))``)."""

    def __init__(self, ws_base: str, tokens: list[str], options: DeviceOptions) -> None:
        self.ws_base = ws_base
        self.options = options
        self.states = [DeviceState(t) for t in tokens]
        self.tasks: list[asyncio.Task[None]] = []
        self.stopping = False
        self.errors: dict[str, int] = {}
        # Hooks for the round-trip part (command_id, perf_counter time).
        self.on_command: Callable[[str, float], None] | None = None
        self.on_result_sent: Callable[[str, float], None] | None = None
        self.on_result_acked: Callable[[str, float, dict[str, Any]], None] | None = None

    async def start(self, concurrency: int = 100) -> None:
        gate = asyncio.Semaphore(concurrency)
        self.tasks = [asyncio.create_task(self._run(s, gate)) for s in self.states]

    def connected(self, since: float = 0.0) -> tuple[int, float]:
        """How many devices are connected with a welcome at or after ``since``, and the
        latest of those welcomes."""
        times = [
            s.welcomes[-1] for s in self.states if s.open and s.welcomes and s.welcomes[-1] >= since
        ]
        return len(times), max(times, default=0.0)

    async def stop(self) -> None:
        self.stopping = True
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _open(self, url: str, state: DeviceState) -> Any:
        """Connect and read the welcome frame."""
        from websockets.asyncio.client import connect

        ws = await connect(
            url,
            compression=self.options.compression,
            open_timeout=self.options.open_timeout,
            max_size=2**20,
        )
        try:
            async with asyncio.timeout(self.options.open_timeout):
                welcome = orjson.loads(await ws.recv())
            if welcome.get("type") != "welcome":
                raise RuntimeError(f"no welcome: {welcome}")
        except BaseException:
            await ws.close()
            raise
        state.welcomes.append(now())
        state.open = True
        return ws

    async def _run(self, state: DeviceState, gate: asyncio.Semaphore | None) -> None:
        attempt = 0
        url = f"{self.ws_base}/ws/device/{state.token}"
        while not self.stopping:
            try:
                if gate is not None:  # paces the first connects only
                    async with gate:
                        ws = await self._open(url, state)
                    gate = None
                else:
                    ws = await self._open(url, state)
                attempt = 0
                try:
                    await self._session(ws, state)
                finally:
                    state.open = False
                    await ws.close()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # refused, reset, closed, timed out: back off
                name = type(exc).__name__
                self.errors[name] = self.errors.get(name, 0) + 1
                state.failures += 1
            if not self.options.reconnect or self.stopping:
                return
            delay = min(self.options.backoff_cap, self.options.backoff_base * 2**attempt)
            await asyncio.sleep(random.uniform(delay / 2, delay))
            attempt += 1

    async def _session(self, ws: Any, state: DeviceState) -> None:
        async for raw in ws:
            message = orjson.loads(raw)
            kind = message.get("type")
            if kind == "command":
                await self._command(ws, state, message)
            elif kind == "ack":
                ref = message.get("ref")
                if isinstance(ref, str) and ref.startswith("r:") and self.on_result_acked:
                    self.on_result_acked(ref[2:], now(), message)
            elif kind == "config":
                await ws.send(
                    orjson.dumps({"type": "config_applied", "version": message["version"]}).decode()
                )
            elif kind == "error":
                code = f"error:{message.get('code')}"
                self.errors[code] = self.errors.get(code, 0) + 1

    async def _command(self, ws: Any, state: DeviceState, message: dict[str, Any]) -> None:
        cid = str(message["command_id"])
        if self.on_command:
            self.on_command(cid, now())
        state.deliveries += 1
        await ws.send(
            orjson.dumps({"type": "command_ack", "command_id": cid, "id": f"a:{cid}"}).decode()
        )
        result = {
            "type": "command_result",
            "command_id": cid,
            "status": "completed",
            "result": {"pong": True},
            "id": f"r:{cid}",
        }
        if cid not in state.runs:  # a resend of a known command is not run again
            state.runs[cid] = 1  # "running" a ping: nothing to do
        await ws.send(orjson.dumps(result).decode())
        if self.on_result_sent:
            self.on_result_sent(cid, now())


def device_process(ws_base: str, tokens: list[str], options: DeviceOptions, conn: Any) -> None:
    """A client process holding ``tokens``' devices; answers the driver's requests on
    ``conn``: status [since], stats, stop."""
    raise_nofile()

    async def run() -> None:
        devices = Devices(ws_base, tokens, options)
        await devices.start()
        loop = asyncio.get_running_loop()
        while True:
            request = await loop.run_in_executor(None, conn.recv)
            kind = request[0]
            if kind == "status":
                conn.send((*devices.connected(request[1]), sum(devices.errors.values())))
            elif kind in ("stats", "stop"):
                if kind == "stop":
                    await devices.stop()
                runs: dict[str, int] = {}
                for s in devices.states:
                    runs.update(s.runs)
                conn.send(
                    {
                        "runs": runs,
                        "deliveries": sum(s.deliveries for s in devices.states),
                        "errors": devices.errors,
                        "failures": sum(s.failures for s in devices.states),
                        "welcomes": [s.welcomes for s in devices.states],
                    }
                )
                if kind == "stop":
                    return

    import uvloop

    uvloop.run(run())


class DeviceProcesses:
    """``tokens`` split over ``n`` client processes."""

    def __init__(self, ws_base: str, tokens: list[str], n: int, options: DeviceOptions) -> None:
        ctx = mp.get_context("spawn")
        self.pipes = []
        self.procs = []
        for i in range(n):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=device_process, args=(ws_base, tokens[i::n], options, theirs))
            proc.start()
            self.pipes.append(ours)
            self.procs.append(proc)

    def _ask(self, request: tuple[Any, ...]) -> list[Any]:
        for pipe in self.pipes:
            pipe.send(request)
        return [pipe.recv() for pipe in self.pipes]

    def connected(self, since: float = 0.0) -> tuple[int, float, int]:
        answers = self._ask(("status", since))
        return (sum(a[0] for a in answers), max(a[1] for a in answers), sum(a[2] for a in answers))

    def wait_connected(
        self, count: int, since: float = 0.0, timeout: float = 300, label: str = ""
    ) -> tuple[float, int]:
        """Poll until ``count`` devices have a welcome at/after ``since``; returns the
        latest welcome time and how many were connected at the end."""
        deadline = time.monotonic() + timeout
        last_print = time.monotonic()
        while True:
            n, latest, errors = self.connected(since)
            if n >= count or time.monotonic() > deadline:
                return latest, n
            if label and time.monotonic() - last_print > 5:
                print(
                    f"    {label}: {n:,}/{count:,} connected ({errors} client errors)", flush=True
                )
                last_print = time.monotonic()
            time.sleep(0.05)

    def stats(self) -> list[dict[str, Any]]:
        return self._ask(("stats",))

    def stop(self) -> list[dict[str, Any]]:
        answers = self._ask(("stop",))
        for proc in self.procs:
            proc.join(timeout=30)
        return answers


# -- 1. memory ---------------------------------------------------------------------------------


@dataclass
class Figure:
    name: str
    value: float | None
    unit: str
    target: str = ""
    met: bool | None = None
    note: str = ""


def memory_run(
    env: dict[str, str],
    fleet: Fleet,
    args: argparse.Namespace,
    variant: str | None,
    lines: list[str],
) -> dict[str, Any]:
    """One server, ``args.devices`` idle devices; RSS before and after."""
    count = args.devices
    tokens = fleet.tokens[:count]
    options = DeviceOptions(
        reconnect=True, compression=args.ws_compression, backoff_base=1.0, backoff_cap=10.0
    )
    flags: list[str] | None = None
    device_port: int | None = None
    if variant is not None:
        flags = [f for part in variant.split("+") for f in VARIANTS[part]]
        if "listener" in variant.split("+"):
            device_port = free_port()
            env = {**env, "FIELDWATCH_DEVICE_WS_PORT": str(device_port)}
    label = variant or "fieldwatch serve"
    with Server(env, variant=flags, tracemalloc=args.tracemalloc if variant else 0) as srv:
        ws_base = f"ws://127.0.0.1:{device_port}" if device_port else srv.ws
        # Warm-up: some HTTP, and 100 devices connect and go, so that lazily imported
        # code, caches and pools are in place before the baseline.
        warm = DeviceProcesses(ws_base, fleet.tokens[-100:], 1, options)
        warm.wait_connected(100, timeout=60)
        warm.stop()
        for _ in range(20):
            httpx.get(f"{srv.base}/health")
        time.sleep(args.settle)
        srv.request("gc")
        srv.request("baseline")
        before = srv.rss()
        t0 = now()
        clients = DeviceProcesses(ws_base, tokens, args.client_processes, options)
        latest, connected = clients.wait_connected(count, timeout=600, label=label)
        connect_s = latest - t0
        time.sleep(args.settle)
        srv.request("gc")
        after = srv.rss()
        snapshot = srv.request("snapshot") if args.tracemalloc and variant else ""
        errors = clients.connected()[2]
        clients.stop()
    per = (after - before) / max(1, connected)
    row = {
        "variant": label,
        "devices": count,
        "connected": connected,
        "rss_before": before,
        "rss_after": after,
        "per_connection_bytes": per,
        "connect_seconds": connect_s,
        "client_errors": errors,
        "client_compression": args.ws_compression or "none",
    }
    line = (
        f"  {label:<28} RSS {before / 2**20:7.1f} → {after / 2**20:7.1f} MiB   "
        f"{per / 1024:6.1f} KiB/connection   {connected:,}/{count:,} connected in "
        f"{connect_s:5.1f} s ({connected / max(connect_s, 1e-9):,.0f}/s)"
    )
    say(lines, line)
    if snapshot:
        path = RESULTS / f"devices_memory_tracemalloc_{variant}.txt"
        path.write_text(snapshot)
        print(f"    tracemalloc (top sites, after − before): {path}", flush=True)
        row["tracemalloc"] = str(path)
    return row


def part_memory(
    env: dict[str, str],
    fleet: Fleet,
    args: argparse.Namespace,
    lines: list[str],
    figures: list[Figure],
    report: dict[str, Any],
) -> None:
    head = (
        f"1. Idle WebSocket memory: {args.devices:,} devices on one server process "
        f"(client offers permessage-deflate: {'yes' if args.ws_compression else 'no'})"
    )
    say(lines, head)
    rows = [memory_run(env, fleet, args, None, lines)]
    for variant in [v for v in args.memory_variants.split(",") if v]:
        rows.append(memory_run(env, fleet, args, variant, lines))
    report["memory"] = rows
    main = rows[0]
    per_kib = main["per_connection_bytes"] / 1024
    figures.append(
        Figure(
            "idle memory per WebSocket (API port)",
            per_kib,
            "KiB",
            "≤ 20 KB",
            main["per_connection_bytes"] <= 20_000,
            f"{main['connected']:,} devices",
        )
    )
    figures.append(Figure(f"connect {main['connected']:,} devices", main["connect_seconds"], "s"))
    for row in rows[1:]:
        figures.append(
            Figure(
                "idle memory per WebSocket (device listener)"
                if row["variant"] == "listener"
                else f"  variant {row['variant']}",
                row["per_connection_bytes"] / 1024,
                "KiB",
                "≤ 20 KB",
                row["per_connection_bytes"] <= 20_000,
            )
        )


# -- 2. command round trip -------------------------------------------------------------------


def part_rtt(
    env: dict[str, str],
    fleet: Fleet,
    args: argparse.Namespace,
    lines: list[str],
    figures: list[Figure],
    report: dict[str, Any],
) -> None:
    head = (
        f"2. Command round trip: {args.rtt_devices:,} connected devices, "
        f"{args.commands:,} commands one after another"
    )
    say(lines, head)
    with Server(env) as srv:
        admin = login(srv.base, "bench@example.com")
        rows = asyncio.run(rtt_run(srv, admin, fleet, args))
    report["rtt"] = rows
    total = [r["total"] * 1000 for r in rows]
    to_cmd = [r["to_command"] * 1000 for r in rows]
    to_ack = [r["result_to_ack"] * 1000 for r in rows]
    post = [r["post"] * 1000 for r in rows]
    for name, values in (
        ("POST → result acked (total)", total),
        ("POST → command frame at device", to_cmd),
        ("command_result sent → its ack", to_ack),
        ("POST request itself (201)", post),
    ):
        line = (
            f"  {name:<32} p50 {pct(values, 50):6.1f}  p95 {pct(values, 95):6.1f}  "
            f"p99 {pct(values, 99):6.1f}  max {max(values):6.1f} ms"
        )
        say(lines, line)
    checked = getattr(args, "rtt_checked", "")
    say(lines, f"  {checked}")
    profile = getattr(args, "rtt_profile", None)
    if profile is not None:
        profile.wait(timeout=args.profile_seconds + 60)
        summary = summarize_profile(RESULTS / "devices_rtt_profile.txt")
        say(lines, summary)
    p99 = pct(total, 99)
    figures.append(
        Figure(
            "command round trip p99",
            p99,
            "ms",
            "≤ 20 ms",
            p99 <= 20,
            f"p50 {pct(total, 50):.1f}, p95 {pct(total, 95):.1f}, max {max(total):.1f}",
        )
    )
    report["rtt_checked"] = checked


async def rtt_run(
    srv: Server, admin: str, fleet: Fleet, args: argparse.Namespace
) -> list[dict[str, float]]:
    count = args.rtt_devices
    devices = Devices(srv.ws, fleet.tokens[:count], DeviceOptions(compression=args.ws_compression))
    index = {t: fleet.ids[i] for i, t in enumerate(fleet.tokens[:count])}
    loop = asyncio.get_running_loop()
    marks: dict[str, dict[str, float]] = {}
    done: dict[str, asyncio.Future[dict[str, Any]]] = {}

    def future(cid: str) -> asyncio.Future[dict[str, Any]]:
        if cid not in done:
            done[cid] = loop.create_future()
        return done[cid]

    def on_command(cid: str, t: float) -> None:
        marks.setdefault(cid, {}).setdefault("command", t)

    def on_result_sent(cid: str, t: float) -> None:
        marks.setdefault(cid, {}).setdefault("result_sent", t)

    def on_result_acked(cid: str, t: float, message: dict[str, Any]) -> None:
        marks.setdefault(cid, {}).setdefault("acked", t)
        f = future(cid)
        if not f.done():
            f.set_result(message)

    devices.on_command, devices.on_result_sent = on_command, on_result_sent
    devices.on_result_acked = on_result_acked
    await devices.start()
    deadline = time.monotonic() + 120
    while devices.connected()[0] < count and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    if devices.connected()[0] < count:
        raise SystemExit(f"only {devices.connected()[0]} of {count} devices connected")
    headers = {"Authorization": f"Bearer {admin}"}
    rows: list[dict[str, float]] = []
    rng = random.Random(3)
    async with aiohttp.ClientSession(srv.base, headers=headers) as http:

        async def one(device: str) -> tuple[str, dict[str, float]]:
            t0 = now()
            async with http.post(
                f"/api/v1/devices/{device}/commands",
                json={"command": "ping", "params": {}, "ttl_s": 600},
            ) as r:
                body = await r.json()
                if r.status != 201:
                    raise SystemExit(f"POST command: {r.status} {body}")
            t_post = now()
            cid = body["command_id"]
            reply = await asyncio.wait_for(future(cid), 30)
            if reply.get("status") != "completed":
                raise SystemExit(f"command {cid}: the result's ack says {reply}")
            m = marks[cid]
            return cid, {
                "total": m["acked"] - t0,
                "to_command": m["command"] - t0,
                "result_to_ack": m["acked"] - m["result_sent"],
                "post": t_post - t0,
            }

        tokens = list(index)
        for _ in range(args.warmup_commands):  # untimed
            await one(index[rng.choice(tokens)])
        if args.profile:
            args.rtt_profile = start_profile(
                srv.pid, args.profile_seconds, RESULTS / "devices_rtt_profile.txt"
            )
        cids = []
        for _ in range(args.commands):
            cid, row = await one(index[rng.choice(tokens)])
            rows.append(row)
            cids.append(cid)
        sample = rng.sample(cids, min(50, len(cids)))
        statuses: dict[str, int] = {}
        for cid in sample:
            async with http.get(f"/api/v1/commands/{cid}") as r:
                status = (await r.json())["status"]
                statuses[status] = statuses.get(status, 0) + 1
    await devices.stop()
    args.rtt_checked = (
        f"GET /api/v1/commands/{{id}} for {len(sample)} sampled commands: "
        + ", ".join(f"{n} {s}" for s, n in statuses.items())
    )
    return rows


# -- 3. MQTT ingest ----------------------------------------------------------------------------


def mqtt_messages(
    ids: list[str], first: int, count: int, base_ts: int, every: int
) -> list[tuple[str, bytes]]:
    """Readings ``first``… of the whole run: reading i goes to device i % len(ids) with
    timestamp base_ts + i // len(ids) (distinct per device, so none is a duplicate)."""
    out = []
    n = len(ids)
    for i in range(first, first + count, every):
        body = {
            "value": round(20.0 + (i % 150) / 10, 1),
            "unit": "celsius",
            "quality": "good",
            "timestamp": base_ts + i // n,
        }
        out.append((f"iot/devices/data/{ids[i % n]}/{SENSOR}", orjson.dumps(body)))
    return out


def mqtt_publisher(
    port: int,
    ids: list[str],
    index: int,
    every: int,
    total: int,
    base_ts: int,
    start: Any,
    out: Any,
) -> None:
    """Publish reading index, index + every, … of ``total`` at QoS 1 (paho without a
    network thread, as bench_mqtt_clients' publishers)."""
    batch = mqtt_messages(ids, index, total - index, base_ts, every)
    client_id = f"bench-dev-pub-{index}-{uuid.uuid4().hex[:6]}"
    out.put((len(batch), paho_publish(port, batch, 1, client_id, start)))


def raw_publisher(
    port: int,
    ids: list[str],
    index: int,
    every: int,
    total: int,
    base_ts: int,
    start: Any,
    out: Any,
    rate: float = 0.0,
) -> None:
    """Devices index, index + every, … each on its own connection (client id = device
    id), publishing their share of the ``total`` readings at QoS 1 with pre-encoded
    packets (bench/mqtt_devices.py): the load costs little CPU, like real devices."""
    from mqtt_devices import Device, close, run

    n = len(ids)  # reading i goes to device i % n: device j has j, j + n, j + 2n, …
    devices = [
        Device(ids[j], mqtt_messages(ids, j, total - j, base_ts, n)) for j in range(index, n, every)
    ]
    for d in devices:
        d.open("127.0.0.1", port)
    start.wait()
    seconds = run(devices, rate=rate)
    count = sum(d.count for d in devices)
    close(devices)
    out.put((count, seconds))


def publish(
    port: int,
    ids: list[str],
    total: int,
    publishers: int,
    base_ts: int,
    started: Callable[[], None] | None = None,
    load: str = "raw",
    rate: float = 0.0,
) -> float:
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(
            target=raw_publisher,
            args=(port, ids, i, publishers, total, base_ts, start, out, rate / publishers),
        )
        if load == "raw"
        else ctx.Process(
            target=mqtt_publisher, args=(port, ids, i, publishers, total, base_ts, start, out)
        )
        for i in range(publishers)
    ]
    for p in procs:
        p.start()
    time.sleep(1.0 if load != "raw" else 3.0)  # connected; the messages are built
    if started:
        started()
    start.set()
    results = [out.get(timeout=900) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    return max(r[1] for r in results)


async def count_readings(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM readings"))
    finally:
        await conn.close()


def part_mqtt(
    db: ScratchDatabase,
    env: dict[str, str],
    fleet: Fleet,
    args: argparse.Namespace,
    lines: list[str],
    figures: list[Figure],
    report: dict[str, Any],
) -> None:
    ids = fleet.ids[: args.mqtt_devices]
    total = args.readings
    head = (
        f"3. MQTT ingest through Mosquitto: {total:,} readings at QoS 1 from "
        f"{len(ids):,} devices, "
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
        + (f", {args.mqtt_workers} server workers" if args.mqtt_workers > 1 else "")
        + f" (broker in-flight window {args.mqtt_inflight or 20})"
    )
    say(lines, head)
    ctx = mp.get_context("spawn")
    base_ts = int(time.time()) - 3 * 3600
    with BenchBroker(args.mqtt_inflight) as broker:
        # a. the ceiling: a bare paho subscriber (no processing) for the same load
        ready, out = ctx.Event(), ctx.Queue()
        sub = ctx.Process(
            target=bare_subscriber,
            args=("paho-asyncio", broker.port, 1, total, False, ready, None, out),
        )
        sub.start()
        if not ready.wait(30):
            raise SystemExit("the bare subscriber did not subscribe")
        publish(broker.port, ids, total, args.publishers, base_ts - 86_400, load=args.mqtt_load)
        received, seconds = out.get(timeout=900)
        sub.join(timeout=30)
        ceiling = received / seconds if seconds else 0.0
        line = (
            f"  bare paho subscriber (paho-asyncio, QoS 1, live)  {ceiling:>9,.0f} msg/s "
            f"({received:,} received in {seconds:.2f} s)"
        )
        say(lines, line)

        # b. Fieldwatch: the gateway subscribes, ingests, PUBACKs after the commit
        # Throughput, not the per-device rate limit (1,000 messages a minute by default):
        # the limit is lifted so that every reading published is stored.
        mqtt_env = {**env, "FIELDWATCH_MQTT_URL": broker.url, "FIELDWATCH_MQTT_DYNSEC": "false",
                    "FIELDWATCH_DEVICE_RATE_LIMIT": str(10**9)}  # fmt: skip
        if args.mqtt_receive_maximum is not None:
            mqtt_env["FIELDWATCH_MQTT_RECEIVE_MAXIMUM"] = str(args.mqtt_receive_maximum)
        workers = ["--workers", str(args.mqtt_workers)] if args.mqtt_workers > 1 else []
        with Server(mqtt_env, serve_args=workers) as srv:
            # Untimed warm-up: every device's series exists, as in a running fleet.
            # With several workers, enough readings that each worker has seen each device
            # (the shared subscription hands messages out in turn, not by device).
            rounds = 1 if args.mqtt_workers < 2 else 4 * args.mqtt_workers
            warm = mqtt_messages(ids, 0, rounds * len(ids), base_ts - 3600, 1)
            base = asyncio.run(count_readings(db.dsn))
            publish_list(broker.port, warm)
            wait_rows(db.dsn, base + len(warm), 60)
            base = asyncio.run(count_readings(db.dsn))
            profile: subprocess.Popen[bytes] | None = None
            t_start: list[float] = []

            def started() -> None:
                nonlocal profile
                t_start.append(now())
                if args.profile:
                    profile = start_profile(srv.pid, args.profile_seconds)

            samples: list[tuple[float, int]] = []
            poll = PollRows(db.dsn, base, samples)
            poll.start()
            publish_s = publish(
                broker.port, ids, total, args.publishers, base_ts, started, load=args.mqtt_load,
                rate=args.mqtt_rate,
            )  # fmt: skip
            t_done = poll.wait(base + total, idle=args.mqtt_idle)
            persisted = samples[-1][1] - base if samples else 0
            if profile is not None:
                profile.wait(timeout=args.profile_seconds + 60)
            rss = srv.rss()
    elapsed = (t_done or samples[-1][0]) - t_start[0]
    rate = persisted / elapsed if elapsed > 0 else 0.0
    steady = steady_rate(samples)
    line = (
        f"  Fieldwatch gateway → PostgreSQL                  {rate:>9,.0f} readings/s "
        f"persisted ({persisted:,}/{total:,} in {elapsed:.2f} s from the first publish; "
        f"publishers done after {publish_s:.2f} s, the last commit "
        f"{elapsed - publish_s:.2f} s later; best 5 s window {steady:,.0f}/s; "
        f"server RSS {rss / 2**20:.0f} MiB)"
    )
    say(lines, line)
    ratio = rate / ceiling if ceiling else 0.0
    line = f"  ratio to the bare subscriber                     {ratio:>9.0%}"
    say(lines, line)
    report["mqtt"] = {
        "readings": total,
        "devices": len(ids),
        "publishers": args.publishers,
        "broker_inflight": args.mqtt_inflight or 20,
        "ceiling_msg_s": ceiling,
        "persisted": persisted,
        "seconds": elapsed,
        "rate": rate,
        "best_5s_rate": steady,
        "publish_seconds": publish_s,
        "samples": [(t - t_start[0], n - base) for t, n in samples],
    }
    if args.profile:
        summary = summarize_profile(RESULTS / "devices_mqtt_profile.txt")
        say(lines, summary)
        report["mqtt"]["profile"] = summary
    figures.append(
        Figure(
            "MQTT readings persisted",
            rate,
            "/s",
            "≥ 30,000",
            rate >= 30_000,
            f"bare subscriber {ceiling:,.0f}/s; {persisted:,}/{total:,} persisted",
        )
    )


def publish_list(port: int, messages: list[tuple[str, bytes]]) -> None:
    paho_publish(port, messages, 1, f"bench-warm-{uuid.uuid4().hex}")


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
        import threading

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


def start_profile(
    pid: int, seconds: float, out: Path = RESULTS / "devices_mqtt_profile.txt"
) -> subprocess.Popen[bytes] | None:
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        print("  (py-spy is not installed in the venv: no profile)", flush=True)
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            str(spy),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "200",
            "--format",
            "raw",
            "--nonblocking",
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def summarize_profile(path: Path, top: int = 25) -> str:
    """Self and inclusive shares of the sampled frames (py-spy's collapsed stacks)."""
    if not path.exists():
        return "  (no profile was written)"
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = stack.split(";")
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            incl[frame] = incl.get(frame, 0) + count
    if not total:
        return "  (empty profile)"
    out = [f"  py-spy profile of the server ({total:,} samples; {path}):", "  top self time:"]
    for frame, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"    {n / total:6.1%}  {frame}")
    out.append("  top inclusive time (fieldwatch / sqlalchemy / asyncpg / paho frames):")
    interesting = [
        (f, n)
        for f, n in incl.items()
        if any(k in f for k in ("fieldwatch", "sqlalchemy", "asyncpg", "paho"))
    ]
    for frame, n in sorted(interesting, key=lambda kv: -kv[1])[:top]:
        out.append(f"    {n / total:6.1%}  {frame}")
    return "\n".join(out)


# -- 4. reconnect storm --------------------------------------------------------------------------


async def post_commands(
    base: str, admin: str, ids: list[str], tag: str, concurrency: int = 32
) -> list[str]:
    headers = {"Authorization": f"Bearer {admin}"}
    cids: list[str] = []
    queue = list(ids)
    async with aiohttp.ClientSession(
        base, headers=headers, connector=aiohttp.TCPConnector(limit=concurrency)
    ) as http:

        async def worker() -> None:
            while queue:
                device = queue.pop()
                body = {
                    "command": "ping",
                    "params": {"batch": tag},
                    "ttl_s": 3600,
                    "idempotency_key": f"{tag}-{device}",
                }
                for attempt in range(10):
                    with contextlib.suppress(aiohttp.ClientError):
                        async with http.post(f"/api/v1/devices/{device}/commands", json=body) as r:
                            if r.status in (200, 201):
                                cids.append((await r.json())["command_id"])
                                break
                    await asyncio.sleep(0.1 * (attempt + 1))
                else:
                    raise SystemExit(f"could not queue a command for {device}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return cids


async def command_statuses(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT status, count(*) AS n FROM commands GROUP BY status")
        return {r["status"]: int(r["n"]) for r in rows}
    finally:
        await conn.close()


async def command_rows(dsn: str) -> tuple[list[asyncpg.Record], int]:
    """The commands, and how many of them went to ``completed`` more than once."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = list(await conn.fetch("SELECT id, device_id, status, attempts FROM commands"))
        twice = await conn.fetchval(
            "SELECT count(*) FROM (SELECT command_id FROM command_transitions "
            "WHERE to_status = 'completed' GROUP BY command_id HAVING count(*) > 1) AS t"
        )
        return rows, int(twice)
    finally:
        await conn.close()


def wait_commands(dsn: str, total: int, timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        statuses = asyncio.run(command_statuses(dsn))
        finished = sum(statuses.get(s, 0) for s in ("completed", "failed", "expired"))
        if finished >= total or time.monotonic() > deadline:
            return statuses
        time.sleep(0.25)


def part_storm(
    db: ScratchDatabase,
    env: dict[str, str],
    fleet: Fleet,
    args: argparse.Namespace,
    lines: list[str],
    figures: list[Figure],
    report: dict[str, Any],
) -> None:
    count = args.storm_devices
    ids, tokens = fleet.ids[:count], fleet.tokens[:count]
    head = (
        f"4. Reconnect storm: {count:,} devices (backoff uniform(d/2, d), "
        f"d = min({args.backoff_cap:g}, {args.backoff_base:g} × 2^attempt)), "
        f"server restarted"
    )
    say(lines, head)
    asyncio.run(clear_commands(db.dsn))
    options = DeviceOptions(
        reconnect=True,
        backoff_base=args.backoff_base,
        backoff_cap=args.backoff_cap,
        compression=args.ws_compression,
        open_timeout=10.0,
    )
    srv = Server(env).start()
    clients: DeviceProcesses | None = None
    try:
        t0 = now()
        clients = DeviceProcesses(srv.ws, tokens, args.client_processes, options)
        latest, n = clients.wait_connected(count, timeout=300, label="storm: first connect")
        print(f"  {n:,} connected in {latest - t0:.1f} s", flush=True)
        admin = login(srv.base, "bench@example.com")
        t1 = now()
        first = asyncio.run(post_commands(srv.base, admin, ids, "before"))
        statuses = wait_commands(db.dsn, len(first), 180)
        line = (
            f"  batch 1 (while connected): {len(first):,} commands queued and finished in "
            f"{now() - t1:.1f} s: {statuses}"
        )
        say(lines, line)
        second = asyncio.run(post_commands(srv.base, admin, ids, "restart"))
        at_stop = asyncio.run(command_statuses(db.dsn))
        stop_s = srv.stop()
        line = (
            f"  batch 2: {len(second):,} more queued just before stopping; at SIGTERM: "
            f"{at_stop}; graceful stop took {stop_s:.1f} s"
        )
        say(lines, line)
        t_stopped = now()
        srv.start(wait=False)
        t_accept = srv.wait_ready()
        latest, n = clients.wait_connected(
            count, since=t_stopped, timeout=args.storm_timeout, label="storm: reconnecting"
        )
        back = latest - t_accept
        line = (
            f"  restart: the new server accepted {t_accept - t_stopped:.1f} s after the old "
            f"one exited; {n:,}/{count:,} devices back {back:.1f} s after that"
        )
        say(lines, line)
        total = len(first) + len(second)
        statuses = wait_commands(db.dsn, total, 180)
        rows, completed_twice = asyncio.run(command_rows(db.dsn))
        stats = clients.stop()
        clients = None
    finally:
        if clients is not None:
            clients.stop()
        srv.stop()
    runs: dict[str, int] = {}
    for s in stats:
        for cid, k in s["runs"].items():
            runs[cid] = runs.get(cid, 0) + k
    deliveries = sum(s["deliveries"] for s in stats)
    errors: dict[str, int] = {}
    for s in stats:
        for k, v in s["errors"].items():
            errors[k] = errors.get(k, 0) + v
    created = set(first) | set(second)
    completed = {str(r["id"]) for r in rows if r["status"] == "completed"}
    run_once = sum(1 for c in created if runs.get(c) == 1)
    twice = sum(1 for c in created if runs.get(c, 0) > 1)
    never = sum(1 for c in created if c not in runs)
    resent = sum(1 for r in rows if r["attempts"] > 1)
    per_device: dict[str, int] = {}
    for r in rows:
        if r["status"] == "completed":
            per_device[str(r["device_id"])] = per_device.get(str(r["device_id"]), 0) + 1
    api_check = asyncio.run(api_sample(env, ids, rng_seed=4))
    line = (
        f"  tally: {total:,} commands; server {statuses}; {len(completed & created):,} "
        f"completed; devices ran {run_once:,} exactly once, {twice} more than once, "
        f"{never} never; {completed_twice} completed twice on the server; "
        f"{deliveries:,} command frames delivered ({deliveries - total:,} "
        f"resends, deduplicated); {resent:,} needed more than one send; devices with 2 "
        f"completed commands: {sum(1 for v in per_device.values() if v == 2):,}/{count:,}"
    )
    say(lines, line)
    say(lines, f"  {api_check}")
    if errors:
        line = f"  client-side connection errors (all retried): {errors}"
        say(lines, line)
    exactly_once = run_once == total and len(completed & created) == total and completed_twice == 0
    report["storm"] = {
        "devices": count,
        "back_seconds": back,
        "back": n,
        "accept_after_stop_seconds": t_accept - t_stopped,
        "stop_seconds": stop_s,
        "commands": total,
        "statuses": statuses,
        "run_once": run_once,
        "run_twice": twice,
        "never_run": never,
        "completed_twice": completed_twice,
        "deliveries": deliveries,
        "resent": resent,
        "errors": errors,
        "api_check": api_check,
    }
    figures.append(
        Figure(
            f"all {count:,} back online after restart",
            back,
            "s",
            "≤ 15 s",
            n >= count and back <= 15,
            f"{n:,}/{count:,}",
        )
    )
    figures.append(
        Figure(
            "commands completed exactly once",
            float(run_once),
            f"/{total:,}",
            f"{total:,}",
            exactly_once,
            f"{twice} run twice, {never} never",
        )
    )


async def clear_commands(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE commands CASCADE")
    finally:
        await conn.close()


async def api_sample(env: dict[str, str], ids: list[str], rng_seed: int) -> str:
    """The server's command lists (``GET /api/v1/devices/{id}/commands``) for a sample of
    devices, on a fresh server."""
    with Server(env) as srv:
        admin = login(srv.base, "bench@example.com")
        sample = random.Random(rng_seed).sample(ids, min(100, len(ids)))
        statuses: dict[str, int] = {}
        async with aiohttp.ClientSession(
            srv.base, headers={"Authorization": f"Bearer {admin}"}
        ) as http:
            for device in sample:
                async with http.get(f"/api/v1/devices/{device}/commands") as r:
                    for item in (await r.json())["items"]:
                        statuses[item["status"]] = statuses.get(item["status"], 0) + 1
    return (
        f"API check, GET /api/v1/devices/{{id}}/commands for {len(sample)} devices: "
        + ", ".join(f"{n} {s}" for s, n in statuses.items())
    )


# -- driver ------------------------------------------------------------------------------------


@contextlib.contextmanager
def fleet_server(env: dict[str, str]) -> Iterator[Server]:
    with Server(env) as srv:
        yield srv


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--parts", default="memory,rtt,mqtt,storm")
    parser.add_argument("--devices", type=int, default=10_000, help="memory: idle devices")
    parser.add_argument("--client-processes", type=int, default=4)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before each RSS")
    parser.add_argument(
        "--memory-variants",
        default="listener",
        help=f"comma list; each of {', '.join(VARIANTS)} or a+b",
    )
    parser.add_argument(
        "--tracemalloc",
        type=int,
        default=0,
        help="memory variants: keep N frames of allocation sites (slow)",
    )
    parser.add_argument(
        "--ws-compression",
        choices=["none", "deflate"],
        default="none",
        help="what the device clients offer (firmware: none)",
    )
    parser.add_argument("--rtt-devices", type=int, default=1000)
    parser.add_argument("--commands", type=int, default=1000)
    parser.add_argument("--warmup-commands", type=int, default=50)
    parser.add_argument("--mqtt-devices", type=int, default=1000)
    parser.add_argument("--readings", type=int, default=300_000)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument(
        "--mqtt-load",
        choices=("raw", "paho"),
        default="raw",
        help="mqtt: the devices as pre-encoded packets on their own connections (raw, "
        "little CPU) or as paho clients sharing a few connections",
    )
    parser.add_argument("--mqtt-inflight", type=int, help="Mosquitto max_inflight_messages")
    parser.add_argument(
        "--mqtt-rate",
        type=float,
        default=0.0,
        help="mqtt (raw load): readings a second the devices publish together, evenly "
        "(0: as fast as the broker takes them)",
    )
    parser.add_argument(
        "--mqtt-workers",
        type=int,
        default=1,
        help="mqtt: server worker processes (`serve --workers`), sharing the load through "
        "the MQTT shared subscription",
    )
    parser.add_argument(
        "--mqtt-receive-maximum",
        type=int,
        help="mqtt: FIELDWATCH_MQTT_RECEIVE_MAXIMUM for the server (default: its default)",
    )
    parser.add_argument(
        "--mqtt-idle",
        type=float,
        default=20.0,
        help="give up after this many seconds without a new reading",
    )
    parser.add_argument("--profile", action="store_true", help="rtt and mqtt: py-spy the server")
    parser.add_argument("--profile-seconds", type=float, default=20.0)
    parser.add_argument("--storm-devices", type=int, default=5000)
    parser.add_argument("--backoff-base", type=float, default=1.0)
    parser.add_argument("--backoff-cap", type=float, default=30.0)
    parser.add_argument("--storm-timeout", type=float, default=120.0)
    parser.add_argument("--name", default="devices", help="results file name")
    args = parser.parse_args()
    args.ws_compression = None if args.ws_compression == "none" else args.ws_compression
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(parts) - {"memory", "rtt", "mqtt", "storm"}
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    for variant in [v for v in args.memory_variants.split(",") if v]:
        if any(p not in VARIANTS for p in variant.split("+")):
            parser.error(f"unknown memory variant {variant!r}")
    nofile = raise_nofile()
    RESULTS.mkdir(exist_ok=True)
    needed = max(
        [
            args.devices if "memory" in parts else 0,
            args.rtt_devices if "rtt" in parts else 0,
            args.mqtt_devices if "mqtt" in parts else 0,
            args.storm_devices if "storm" in parts else 0,
            100,
        ]
    )
    if "memory" in parts:
        needed = max(needed, args.devices + 100)  # 100 more for the warm-up
    print(
        f"Fieldwatch connected-devices benchmark (PostgreSQL; {os.cpu_count()} CPUs; "
        f"RLIMIT_NOFILE {nofile}); figures print as they are measured.",
        flush=True,
    )
    lines: list[str] = []
    figures: list[Figure] = []
    report: dict[str, Any] = {"parts": parts, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with ScratchDatabase("fieldwatch_bench_devices") as db:
        env = env_for(db, FIELDWATCH_MQTT_EMBEDDED="false", FIELDWATCH_ACCESS_TOKEN_TTL_S="86400")
        cli(env, "db", "upgrade")
        cli(
            env,
            "users",
            "create",
            "bench@example.com",
            "--role",
            "admin",
            "--workspace",
            "bench",
            "--password",
            PASSWORD,
        )
        with fleet_server(env) as srv:
            t0 = now()
            fleet = asyncio.run(make_fleet(srv.base, login(srv.base, "bench@example.com"), needed))
            line = (
                f"setup: {needed:,} devices (CSV import) and their tokens (one POST each) "
                f"in {now() - t0:.1f} s"
            )
            say(lines, line)
        if "memory" in parts:
            part_memory(env, fleet, args, lines, figures, report)
        if "rtt" in parts:
            part_rtt(env, fleet, args, lines, figures, report)
        if "mqtt" in parts:
            part_mqtt(db, env, fleet, args, lines, figures, report)
        if "storm" in parts:
            part_storm(db, env, fleet, args, lines, figures, report)
    table = [f"{'figure':<40} {'measured':>14}  {'target':>10}  {'':<7} note"]
    for f in figures:
        value = "—" if f.value is None else f"{f.value:,.1f} {f.unit}"
        verdict = "" if f.met is None else ("met" if f.met else "NOT MET")
        table.append(f"{f.name:<40} {value:>14}  {f.target:>10}  {verdict:<7} {f.note}")
    print("\n" + "\n".join(table), flush=True)
    lines += ["", *table]
    write_results(args.name, lines)
    report["figures"] = [f.__dict__ for f in figures]
    (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"results: {RESULTS / args.name}.txt, .json")


if __name__ == "__main__":
    main()
