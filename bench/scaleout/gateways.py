"""Part gateways: idle WebSocket devices on one gateway process, then on two.

The topology runs one api process (it makes the devices and their tokens) and gateway
processes, each with a device listener of its own (FIELDWATCH_DEVICE_WS_PORT). The
devices connect straight to those listeners, not through nginx: the shipped
configuration sends ``/ws/device`` to the gateways' main (ASGI) ports, not to their
listeners, and the measurement is each gateway's memory per connection on the listener,
as bench_devices measures it; nginx would add its own connections (two per device) and
its own memory to the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import psutil

from devices.clients import DeviceOptions, DeviceProcesses
from harness.fleet import make_fleet
from harness.timing import now
from harness.topology import BenchTopology, cpu_seconds, login, rss, topology

WARM_DEVICES = 100


def part_gateways(args: argparse.Namespace, say: Any) -> list[dict[str, Any]]:
    n = args.devices
    say(
        f"Gateways: {n:,} idle WebSocket devices on each gateway's device listener "
        f"(1 gateway, then 2); nginx bypassed for the devices"
    )
    rows = []
    with topology(apis=1, gateways=1) as running:
        api = running.parts["api-1"]
        t0 = now()
        fleet = asyncio.run(make_fleet(api.url, login(api.url, running), 2 * n))
        say(f"  setup: {2 * n:,} devices (CSV import) and their tokens in {now() - t0:.1f} s")
        rows.append(measure(running, {"gateway-1": fleet.tokens[:n]}, args, say))
        running.restart("gateway-1")  # a fresh process, as gateway-2 is
        running.add_gateway("gateway-2")
        split = {"gateway-1": fleet.tokens[:n], "gateway-2": fleet.tokens[n:]}
        rows.append(measure(running, split, args, say))
    return rows


def measure(
    running: BenchTopology, split: dict[str, list[str]], args: argparse.Namespace, say: Any
) -> dict[str, Any]:
    """Each gateway's RSS after a warm-up, then with its devices connected (their
    welcomes received); the time until the last welcome; each gateway's CPU seconds
    from the clients' start to the last welcome, and while its devices sit idle (the
    ``--settle`` seconds before the second RSS)."""
    options = DeviceOptions(reconnect=True, backoff_base=1.0, backoff_cap=10.0)
    per_gateway = max(1, args.client_processes // len(split))
    for name, tokens in split.items():  # lazily loaded code and pools in place first
        warm = DeviceProcesses(running.device_url(name), tokens[-WARM_DEVICES:], 1, options)
        warm.wait_connected(min(WARM_DEVICES, len(tokens)), timeout=60)
        warm.stop()
    time.sleep(args.settle)
    pids = {name: running.parts[name].pid for name in split}
    before = {name: rss(pid) for name, pid in pids.items()}
    procs = {name: [psutil.Process(pid)] for name, pid in pids.items()}
    cpu0 = {name: cpu_seconds(p) for name, p in procs.items()}
    t0 = now()
    clients = {
        name: DeviceProcesses(running.device_url(name), tokens, per_gateway, options)
        for name, tokens in split.items()
    }
    latest = 0.0
    for name, group in clients.items():
        last, _ = group.wait_connected(len(split[name]), timeout=args.connect_timeout, label=name)
        latest = max(latest, last)
    connect_s = latest - t0 if latest else float("nan")
    cpu1 = {name: cpu_seconds(p) for name, p in procs.items()}
    idle_t0 = now()
    time.sleep(args.settle)
    idle_s = now() - idle_t0
    cpu2 = {name: cpu_seconds(p) for name, p in procs.items()}
    after = {name: rss(pid) for name, pid in pids.items()}
    gateways = []
    for name, group in clients.items():
        connected, _, errors = group.connected()
        tallies = group.stop()
        welcomed = sum(1 for t in tallies for w in t["welcomes"] if w)
        kinds: dict[str, int] = {}
        for t in tallies:
            for kind, times in t["errors"].items():
                kinds[kind] = kinds.get(kind, 0) + times
        delta = after[name] - before[name]
        gateways.append(
            {
                "gateway": name,
                "devices": len(split[name]),
                "connected": connected,
                "welcomed": welcomed,
                "client_errors": errors,
                "client_error_kinds": kinds,
                "rss_before": before[name],
                "rss_after": after[name],
                "rss_delta": delta,
                "per_connection_bytes": delta / connected if connected else None,
                "connect_cpu_s": cpu1[name] - cpu0[name],
                "idle_cpu_share": (cpu2[name] - cpu1[name]) / idle_s,
            }
        )
    row = {
        "gateways": len(split),
        "devices": sum(len(t) for t in split.values()),
        "connected": sum(g["connected"] for g in gateways),
        "connect_seconds": connect_s,
        "per_gateway": gateways,
    }
    report(running, row, args, say)
    return row


def report(running: BenchTopology, row: dict[str, Any], args: argparse.Namespace, say: Any) -> None:
    """Print one measurement: each gateway's figures, then the whole."""
    gateways, n = row["per_gateway"], row["gateways"]
    for g in gateways:
        per = g["per_connection_bytes"]
        say(
            f"  {n} gateway(s), {g['gateway']}: RSS {g['rss_before'] / 2**20:.1f} → "
            f"{g['rss_after'] / 2**20:.1f} MiB, "
            f"{'—' if per is None else f'{per / 1024:.1f}'} KiB/connection, "
            f"{g['connected']:,}/{g['devices']:,} connected (welcome received), "
            f"{g['client_errors']} client errors {g['client_error_kinds'] or ''}"
        )
        say(
            f"    CPU: {g['connect_cpu_s']:.1f} s while its devices connected, "
            f"{g['idle_cpu_share']:.1%} of a core while they sat idle ({args.settle:g} s)"
        )
    for name in (g["gateway"] for g in gateways if g["client_errors"]):
        say(f"    {name}'s log (its end), for the client errors:")
        say("\n".join(f"      {line}" for line in running.parts[name].tail(15).splitlines()))
    say(
        f"  {n} gateway(s): {row['connected']:,}/{row['devices']:,} connected; "
        f"last welcome {row['connect_seconds']:.1f} s after the clients started"
    )


def table(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        f"{'gateways':>8} {'devices':>9} {'connected':>10}  {'RSS delta per gateway':<26}"
        f" {'KiB/connection':<18} {'connect s':>9}  {'CPU s connecting':<18}"
        f" {'idle CPU':<16}"
    ]
    for row in rows:
        gws = row["per_gateway"]
        deltas = ", ".join(f"+{g['rss_delta'] / 2**20:.1f} MiB" for g in gws)
        per = ", ".join(
            "—" if g["per_connection_bytes"] is None else f"{g['per_connection_bytes'] / 1024:.1f}"
            for g in gws
        )
        cpu = ", ".join(f"{g['connect_cpu_s']:.1f}" for g in gws)
        idle = ", ".join(f"{g['idle_cpu_share']:.1%}" for g in gws)
        out.append(
            f"{row['gateways']:>8} {row['devices']:>9,} {row['connected']:>10,}  "
            f"{deltas:<26} {per:<18} {row['connect_seconds']:>9.1f}  {cpu:<18} {idle:<16}"
        )
    return out
