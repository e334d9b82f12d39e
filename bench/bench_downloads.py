"""Firmware downloads: a 1 MiB artifact to 1,000 devices at once, from Fieldwatch and
from nginx, in the same run, on the same file.

One scratch PostgreSQL database (FIELDWATCH_BENCH_DATABASE_URL), ``--devices`` devices
made through the API (a CSV import, one agent token each) and one artifact of ``--size``
random bytes uploaded through the API. Then, for each mode, every device downloads the
file once, all starting together, each on its own connection, from
``--client-processes`` processes (bench/downloads/client.py: a bare HTTP/1.1 reader on
uvloop that hashes the body as it comes; a download counts only when its SHA-256 is the
artifact's; 503s are retried after ``Retry-After`` and broken transfers resumed with
``Range``, as a device would):

- ``nginx``: nginx (Debian's package) serving the stored file statically: the ceiling,
  and the check that the clients are not the bottleneck;
- ``fieldwatch``: ``fieldwatch serve`` sending it itself to agent-token downloads
  (``GET /api/v1/device/firmware/artifacts/{id}``) with the default download cap
  (FIELDWATCH_FIRMWARE_DOWNLOAD_CONCURRENCY 64, queue 10 s, then 503 + Retry-After);
- ``fieldwatch-cap``: the same with the cap raised to ``--raised-cap``;
- ``accel``: nginx in front of Fieldwatch: Fieldwatch authorises the device and answers
  ``X-Accel-Redirect`` (FIELDWATCH_FIRMWARE_ACCEL_REDIRECT_PREFIX), nginx sends the file.

Per mode: total time (common start to last verified byte), throughput (MiB/s of
verified downloads and downloads/s), per-download latency p50/p99/max (from the common
start, retries and waits included), 503s and retries, errors, and the CPU seconds of
the Fieldwatch process, of nginx (master and workers), of the scratch database's
PostgreSQL backends (Fieldwatch modes) and of the client processes, and how busy the
whole machine was meanwhile (the cores are shared: other work shows there).

Usage: .venv/bin/python bench/bench_downloads.py [--devices 1000] [--size 1048576]
       [--client-processes 2] [--modes nginx,fieldwatch,fieldwatch-cap,accel]
       [--raised-cap 1000] [--name downloads]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from devices.clients import raise_nofile
from downloads.client import Outcome, Target, run_clients
from downloads.nginx import ACCEL_PREFIX, STATIC_PATH, Nginx, nginx_version
from harness.database import ScratchDatabase, env_for, set_up
from harness.fleet import make_fleet
from harness.results import RESULTS, percentile, say, write_json, write_results
from harness.server import Server, login

MIB = 1024 * 1024
EMAIL = "bench@example.com"
MODES = ("nginx", "fieldwatch", "fieldwatch-cap", "accel")


@dataclass
class Artifact:
    id: str
    sha256: str
    size: int
    blob: Path  # where Fieldwatch stored it
    firmware_dir: Path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--size", type=int, default=MIB, help="the artifact's bytes")
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--cap", default="64", help="fieldwatch: the download cap")
    parser.add_argument("--queue-s", default="10", help="fieldwatch modes: the queue's limit")
    parser.add_argument("--raised-cap", type=int, default=1000)
    parser.add_argument("--nginx-workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--name", default="downloads", help="results file name")
    args = parser.parse_args()
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(args.modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes: {', '.join(sorted(unknown))}")
    return args


def upload_artifact(base: str, admin: str, size: int, env: dict[str, str]) -> Artifact:
    data = random.randbytes(size)
    r = httpx.post(
        f"{base}/api/v1/firmware/artifacts",
        headers={"Authorization": f"Bearer {admin}"},
        data={"version": "1.0.0", "device_types": "bench_sensor"},
        files={"file": ("bench-1.0.0.bin", data, "application/octet-stream")},
        timeout=60,
    )
    if r.status_code != 201:
        raise SystemExit(f"the upload failed: {r.status_code} {r.text[:500]}")
    body = r.json()
    sha = hashlib.sha256(data).hexdigest()
    if body["sha256"] != sha or body["size"] != size:
        raise SystemExit(f"the server stored something else: {body}")
    firmware_dir = Path(env["FIELDWATCH_DATA_DIR"]) / "firmware"
    blob = firmware_dir / "sha256" / sha[:2] / sha
    if blob.read_bytes() != data:
        raise SystemExit(f"the stored file {blob} is not the uploaded one")
    return Artifact(str(body["id"]), sha, size, blob, firmware_dir)


def cpu_of(pid: int) -> float:
    """CPU seconds of a process and its live children so far."""
    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        times = p.cpu_times()
        total += times.user + times.system
    return total


def cpu_of_database(name: str) -> float:
    """CPU seconds so far of the PostgreSQL backends serving database ``name`` (those
    alive now; a backend that ended meanwhile is not counted)."""
    total = 0.0
    for p in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(p.info["cmdline"] or [])
        if p.info["name"] == "postgres" and f" {name} " in cmdline:
            with contextlib.suppress(psutil.Error):
                times = p.cpu_times()
                total += times.user + times.system
    return total


def cpu_of_machine() -> float:
    """CPU seconds the whole machine has been busy (everyone's processes, interrupts)."""
    t = psutil.cpu_times()
    return float(sum(getattr(t, f) for f in ("user", "nice", "system", "irq", "softirq")))


def warm_up(target: Target, token: str) -> None:
    """One download outside the measurement (first-request costs), checked."""
    r = httpx.get(
        f"http://{target.host}:{target.port}{target.path}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    if r.status_code != 200 or hashlib.sha256(r.content).hexdigest() != target.sha256:
        raise SystemExit(f"warm-up download failed: {r.status_code} {r.text[:300]}")


def summarise(
    start: float, outcomes: list[Outcome], size: int, cpu: dict[str, float]
) -> dict[str, Any]:
    verified = [o for o in outcomes if o.verified]
    total_s = max((o.end for o in verified), default=start) - start
    latencies = [(o.end - start) * 1000 for o in verified]
    return {
        "devices": len(outcomes),
        "verified": len(verified),
        "total_s": total_s,
        "mib_s": len(verified) * size / MIB / total_s if total_s > 0 else 0.0,
        "downloads_s": len(verified) / total_s if total_s > 0 else 0.0,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies, default=float("nan")),
        "busy_503": sum(o.busy for o in outcomes),
        "devices_with_503": sum(1 for o in outcomes if o.busy),
        "busy_types": dict(sum((Counter(o.busy_types) for o in outcomes), Counter())),
        "retries": sum(o.retries for o in outcomes),
        "resumed_with_range": sum(o.resumed for o in outcomes),
        "errors": dict(Counter(o.error for o in outcomes if not o.verified)),
        "cpu_s": cpu,
    }


def report_mode(lines: list[str], name: str, what: str, m: dict[str, Any]) -> None:
    cpu = m["cpu_s"]
    cpu_text = ", ".join(f"{k} {v:.2f} s" for k, v in cpu.items() if k != "machine")
    ours = sum(v for k, v in cpu.items() if k != "machine")
    cpu_text += (
        f"; the machine was busy {cpu['machine']:.1f} s of {m['cpu_capacity_s']:.1f} s, "
        f"{cpu['machine'] - ours:.1f} s of it not the above (other work, the kernel; load "
        f"average {m['load_before']:.1f} before)"
    )
    errors = sum(m["errors"].values())
    say(lines, f"{name}: {what}")
    say(
        lines,
        f"  {m['verified']:,}/{m['devices']:,} verified in {m['total_s']:.2f} s: "
        f"{m['mib_s']:,.1f} MiB/s, {m['downloads_s']:,.1f} downloads/s; latency p50 "
        f"{m['p50_ms']:,.0f} ms, p99 {m['p99_ms']:,.0f} ms, max {m['max_ms']:,.0f} ms",
    )
    say(
        lines,
        f"  503s {m['busy_503']:,}{' ' + str(m['busy_types']) if m['busy_503'] else ''} "
        f"(devices {m['devices_with_503']:,}), retries "
        f"{m['retries']:,} (with Range {m['resumed_with_range']:,}), errors {errors:,}"
        f"{' ' + str(m['errors']) if errors else ''}; CPU: {cpu_text}",
    )


class Run:
    """The database's environment, the fleet's tokens, the artifact, the figures."""

    def __init__(self, args: argparse.Namespace, env: dict[str, str], database: str) -> None:
        self.args = args
        self.env = env
        self.database = database
        self.tokens: list[str] = []
        self.artifact: Artifact | None = None
        self.lines: list[str] = []
        self.modes: dict[str, Any] = {}

    def prepare(self) -> None:
        with Server(self.env) as srv:
            t0 = time.perf_counter()
            admin = login(srv.base, EMAIL)
            fleet = asyncio.run(make_fleet(srv.base, admin, self.args.devices + 1))
            self.tokens = fleet.tokens
            self.artifact = upload_artifact(srv.base, admin, self.args.size, self.env)
            say(
                self.lines,
                f"setup: {len(self.tokens):,} devices with tokens, artifact of "
                f"{self.args.size:,} bytes (sha256 {self.artifact.sha256[:12]}…) in "
                f"{time.perf_counter() - t0:.1f} s",
            )

    def target(self, port: int, path: str) -> Target:
        assert self.artifact is not None
        return Target("127.0.0.1", port, path, self.artifact.size, self.artifact.sha256)

    def measure(
        self, name: str, what: str, target: Target, meters: dict[str, Callable[[], float]]
    ) -> None:
        warm_up(target, self.tokens[0])
        devices = self.tokens[1:]
        meters = meters | {"machine": cpu_of_machine}
        if any(k == "fieldwatch" for k in meters):
            meters["postgresql"] = lambda: cpu_of_database(self.database)
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        before = {k: f() for k, f in meters.items()}
        start, outcomes, client_cpu = run_clients(target, devices, self.args.client_processes)
        cpu = {k: f() - before[k] for k, f in meters.items()} | {"clients": client_cpu}
        capacity = (time.perf_counter() - t0) * (os.cpu_count() or 1)
        result = summarise(start, outcomes, target.size, cpu)
        result["what"] = what
        result["load_before"] = load
        result["cpu_capacity_s"] = capacity
        self.modes[name] = result
        report_mode(self.lines, name, what, result)

    def fieldwatch(self, **settings: str) -> Server:
        return Server(self.env | settings)

    def mode(self, name: str) -> None:
        assert self.artifact is not None
        art = self.artifact
        device_path = f"/api/v1/device/firmware/artifacts/{art.id}"
        with ExitStack() as stack:
            if name == "nginx":
                ngx = stack.enter_context(Nginx(art.blob, art.firmware_dir,
                                                workers=self.args.nginx_workers))  # fmt: skip
                what = f"nginx {nginx_version()} (Debian) serves the stored file statically"
                target = self.target(ngx.port, STATIC_PATH)
                meters = {"nginx": ngx.cpu_s}
            elif name in ("fieldwatch", "fieldwatch-cap"):
                cap = self.args.cap if name == "fieldwatch" else str(self.args.raised_cap)
                queue = self.args.queue_s
                srv = stack.enter_context(
                    self.fieldwatch(
                        FIELDWATCH_FIRMWARE_DOWNLOAD_CONCURRENCY=cap,
                        FIELDWATCH_FIRMWARE_DOWNLOAD_QUEUE_S=queue,
                    )
                )
                what = (
                    f"Fieldwatch sends the file (agent token; download cap {cap}, queue {queue} s)"
                )
                target = self.target(srv.port, device_path)
                meters = {"fieldwatch": lambda: cpu_of(srv.pid)}
            else:
                srv = stack.enter_context(
                    self.fieldwatch(FIELDWATCH_FIRMWARE_ACCEL_REDIRECT_PREFIX=ACCEL_PREFIX)
                )
                ngx = stack.enter_context(
                    Nginx(art.blob, art.firmware_dir, srv.port, workers=self.args.nginx_workers)
                )
                what = "nginx in front: Fieldwatch authorises (agent token), X-Accel-Redirect"
                target = self.target(ngx.port, device_path)
                meters = {"fieldwatch": lambda: cpu_of(srv.pid), "nginx": ngx.cpu_s}
            self.measure(name, what, target, meters)


def main() -> None:
    args = parse_args()
    nofile = raise_nofile()
    RESULTS.mkdir(exist_ok=True)
    print(
        f"Fieldwatch firmware-download benchmark: {args.devices:,} devices at once, "
        f"{args.size:,}-byte artifact, {args.client_processes} client processes "
        f"(PostgreSQL; {os.cpu_count()} CPUs; RLIMIT_NOFILE {nofile}); nginx "
        f"{nginx_version()}, {args.nginx_workers} workers",
        flush=True,
    )
    report: dict[str, Any] = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "args": vars(args)}
    with ScratchDatabase("fieldwatch_bench_downloads") as db:
        env = env_for(db, FIELDWATCH_MQTT_EMBEDDED="false", FIELDWATCH_ACCESS_TOKEN_TTL_S="86400")
        set_up(env, EMAIL, "bench")
        run = Run(args, env, db.name)
        run.prepare()
        for name in args.modes:
            run.mode(name)
    report["modes"] = run.modes
    report["nginx"] = nginx_version()
    write_results(args.name, run.lines)
    write_json(args.name, report)
    print(f"results: {RESULTS / args.name}.txt, .json")


if __name__ == "__main__":
    main()
