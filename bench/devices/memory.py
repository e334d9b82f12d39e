"""1. memory: the server's RSS after start-up and warm-up, then with ``--devices`` idle
WebSocket devices connected: (RSS after − RSS before) / devices. First on the API's
port, then for each of ``--memory-variants``."""

from __future__ import annotations

import time
from typing import Any

import httpx

from devices.clients import DeviceOptions, DeviceProcesses
from devices.context import Bench
from harness.results import RESULTS, Figure
from harness.server import Server, free_port
from harness.timing import now

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


def part_memory(bench: Bench) -> None:
    args = bench.args
    head = (
        f"1. Idle WebSocket memory: {args.devices:,} devices on one server process "
        f"(client offers permessage-deflate: {'yes' if args.ws_compression else 'no'})"
    )
    bench.say(head)
    rows = [memory_run(bench, None)]
    for variant in [v for v in args.memory_variants.split(",") if v]:
        rows.append(memory_run(bench, variant))
    bench.report["memory"] = rows
    main = rows[0]
    per_kib = main["per_connection_bytes"] / 1024
    bench.figures.append(
        Figure(
            "idle memory per WebSocket (API port)",
            per_kib,
            "KiB",
            "≤ 20 KB",
            main["per_connection_bytes"] <= 20_000,
            f"{main['connected']:,} devices",
        )
    )
    bench.figures.append(
        Figure(f"connect {main['connected']:,} devices", main["connect_seconds"], "s")
    )
    for row in rows[1:]:
        bench.figures.append(
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


def memory_run(bench: Bench, variant: str | None) -> dict[str, Any]:
    """One server, ``args.devices`` idle devices; RSS before and after."""
    args, fleet = bench.args, bench.fleet
    count = args.devices
    options = DeviceOptions(
        reconnect=True, compression=args.ws_compression, backoff_base=1.0, backoff_cap=10.0
    )
    env, flags, device_port = _variant_server(bench.env, variant)
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
        clients = DeviceProcesses(ws_base, fleet.tokens[:count], args.client_processes, options)
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
    bench.say(
        f"  {label:<28} RSS {before / 2**20:7.1f} → {after / 2**20:7.1f} MiB   "
        f"{per / 1024:6.1f} KiB/connection   {connected:,}/{count:,} connected in "
        f"{connect_s:5.1f} s ({connected / max(connect_s, 1e-9):,.0f}/s)"
    )
    if snapshot:
        path = RESULTS / f"devices_memory_tracemalloc_{variant}.txt"
        path.write_text(snapshot)
        print(f"    tracemalloc (top sites, after − before): {path}", flush=True)
        row["tracemalloc"] = str(path)
    return row


def _variant_server(
    env: dict[str, str], variant: str | None
) -> tuple[dict[str, str], list[str] | None, int | None]:
    """The server's environment, its serve_variant.py options (None: ``fieldwatch
    serve``) and the device listener's port (None: the devices use the API's port)."""
    if variant is None:
        return env, None, None
    flags = [f for part in variant.split("+") for f in VARIANTS[part]]
    if "listener" not in variant.split("+"):
        return env, flags, None
    device_port = free_port()
    return {**env, "FIELDWATCH_DEVICE_WS_PORT": str(device_port)}, flags, device_port
