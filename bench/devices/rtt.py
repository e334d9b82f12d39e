"""2. rtt: ``--rtt-devices`` connected devices answer each ``command`` at once with
``command_ack`` and ``command_result``; ``--commands`` commands, one after another, to
random devices: from just before ``POST /api/v1/devices/{id}/commands`` until the
device has the server's ``ack`` of its ``command_result`` (sent after the commit)."""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import time
from typing import Any

import aiohttp

from devices.clients import DeviceOptions, Devices
from devices.context import Bench
from devices.profile import start_profile, summarize_profile
from harness.fleet import Fleet
from harness.results import RESULTS, Figure, percentile
from harness.server import Server, login
from harness.timing import now

PROFILE = RESULTS / "devices_rtt_profile.txt"


def part_rtt(bench: Bench) -> None:
    args = bench.args
    head = (
        f"2. Command round trip: {args.rtt_devices:,} connected devices, "
        f"{args.commands:,} commands one after another"
    )
    bench.say(head)
    with Server(bench.env) as srv:
        admin = login(srv.base, "bench@example.com")
        rows, checked, profile = asyncio.run(rtt_run(srv, admin, bench.fleet, args))
    bench.report["rtt"] = rows
    total = [r["total"] * 1000 for r in rows]
    for name, key in (
        ("POST → result acked (total)", "total"),
        ("POST → command frame at device", "to_command"),
        ("command_result sent → its ack", "result_to_ack"),
        ("POST request itself (201)", "post"),
    ):
        values = [r[key] * 1000 for r in rows]
        bench.say(
            f"  {name:<32} p50 {percentile(values, 50):6.1f}  p95 {percentile(values, 95):6.1f}  "
            f"p99 {percentile(values, 99):6.1f}  max {max(values):6.1f} ms"
        )
    bench.say(f"  {checked}")
    if profile is not None:
        profile.wait(timeout=args.profile_seconds + 60)
        bench.say(summarize_profile(PROFILE))
    p99 = percentile(total, 99)
    bench.figures.append(
        Figure(
            "command round trip p99",
            p99,
            "ms",
            "≤ 20 ms",
            p99 <= 20,
            f"p50 {percentile(total, 50):.1f}, p95 {percentile(total, 95):.1f}, "
            f"max {max(total):.1f}",
        )
    )
    bench.report["rtt_checked"] = checked


class RoundTrips:
    """When each command reached its device, when the device sent the result and when
    the server's ack of it came; a future per command that the ack resolves."""

    def __init__(self, devices: Devices) -> None:
        self.loop = asyncio.get_running_loop()
        self.marks: dict[str, dict[str, float]] = {}
        self.done: dict[str, asyncio.Future[dict[str, Any]]] = {}
        devices.on_command, devices.on_result_sent = self.on_command, self.on_result_sent
        devices.on_result_acked = self.on_result_acked

    def future(self, cid: str) -> asyncio.Future[dict[str, Any]]:
        if cid not in self.done:
            self.done[cid] = self.loop.create_future()
        return self.done[cid]

    def on_command(self, cid: str, t: float) -> None:
        self.marks.setdefault(cid, {}).setdefault("command", t)

    def on_result_sent(self, cid: str, t: float) -> None:
        self.marks.setdefault(cid, {}).setdefault("result_sent", t)

    def on_result_acked(self, cid: str, t: float, message: dict[str, Any]) -> None:
        self.marks.setdefault(cid, {}).setdefault("acked", t)
        f = self.future(cid)
        if not f.done():
            f.set_result(message)

    async def one(self, http: aiohttp.ClientSession, device: str) -> tuple[str, dict[str, float]]:
        """One command to ``device``, timed until its result is acknowledged."""
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
        reply = await asyncio.wait_for(self.future(cid), 30)
        if reply.get("status") != "completed":
            raise SystemExit(f"command {cid}: the result's ack says {reply}")
        m = self.marks[cid]
        return cid, {
            "total": m["acked"] - t0,
            "to_command": m["command"] - t0,
            "result_to_ack": m["acked"] - m["result_sent"],
            "post": t_post - t0,
        }


async def rtt_run(
    srv: Server, admin: str, fleet: Fleet, args: argparse.Namespace
) -> tuple[list[dict[str, float]], str, subprocess.Popen[bytes] | None]:
    """The timed commands, what the API says of a sample of them, and the profiler (with
    ``--profile``)."""
    count = args.rtt_devices
    devices = Devices(srv.ws, fleet.tokens[:count], DeviceOptions(compression=args.ws_compression))
    index = {t: fleet.ids[i] for i, t in enumerate(fleet.tokens[:count])}
    trips = RoundTrips(devices)
    await devices.start()
    await _all_connected(devices, count)
    headers = {"Authorization": f"Bearer {admin}"}
    rows: list[dict[str, float]] = []
    rng = random.Random(3)
    profile: subprocess.Popen[bytes] | None = None
    async with aiohttp.ClientSession(srv.base, headers=headers) as http:
        tokens = list(index)
        for _ in range(args.warmup_commands):  # untimed
            await trips.one(http, index[rng.choice(tokens)])
        if args.profile:
            profile = start_profile(srv.pid, args.profile_seconds, PROFILE)
        cids = []
        for _ in range(args.commands):
            cid, row = await trips.one(http, index[rng.choice(tokens)])
            rows.append(row)
            cids.append(cid)
        checked = await _sample_statuses(http, rng.sample(cids, min(50, len(cids))))
    await devices.stop()
    return rows, checked, profile


async def _all_connected(devices: Devices, count: int) -> None:
    deadline = time.monotonic() + 120
    while devices.connected()[0] < count and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    if devices.connected()[0] < count:
        raise SystemExit(f"only {devices.connected()[0]} of {count} devices connected")


async def _sample_statuses(http: aiohttp.ClientSession, sample: list[str]) -> str:
    statuses: dict[str, int] = {}
    for cid in sample:
        async with http.get(f"/api/v1/commands/{cid}") as r:
            status = (await r.json())["status"]
            statuses[status] = statuses.get(status, 0) + 1
    return f"GET /api/v1/commands/{{id}} for {len(sample)} sampled commands: " + ", ".join(
        f"{n} {s}" for s, n in statuses.items()
    )
