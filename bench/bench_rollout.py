"""A firmware rollout to many devices over WebSocket: is its time set by the rate cap?

One ``--artifact-bytes`` (1 MiB) artifact is rolled out to ``--devices`` (10,000)
simulated devices in ``--canary`` + ``--percentages`` waves (100 devices, then 50 % and
100 % of the rest: three waves), ``--soak`` seconds between waves, at most ``--rate``
(200) devices released a minute. The devices are made through the API (a CSV import,
deployed, on version 1.0.0, and a token each) and run in ``--processes`` client
processes (bench/rollout/: each device speaks the protocol itself: every
``firmware_state`` report, a real HTTP download of the file checked against its
SHA-256, a reboot and a version report on a new connection). The client processes
run at ``--client-nice`` 10: they stand in for devices that are elsewhere, and on one
machine the server and its database come first.

Printed: time from the start to the rollout's completion (the server's own timestamps)
against devices / rate; each wave's; completed and failed as the server's rollout
figures say; the server process's CPU over the run; how long the server takes to handle
a ``firmware_state`` frame (timed inside the server process by bench/rollout/
serve_timed.py, which serves exactly like ``fieldwatch serve``) and the devices' round
trip from sending it to its ack; bytes downloaded and the clients' errors; the
machine's load (the 2 cores are shared).

The server runs on a scratch PostgreSQL database next to ``--database-url``, on a free
port, embedded MQTT broker off.

Usage: .venv/bin/python bench/bench_rollout.py [--devices 10000] [--processes 4]
       [--rate 200] [--canary 100] [--percentages 50,100] [--soak 0]
       [--database-url postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from devices.clients import raise_nofile
from harness.database import ScratchDatabase, env_for, set_up
from harness.fleet import make_fleet
from harness.results import RESULTS, say, write_json, write_results
from harness.server import Server, login
from harness.timing import now
from rollout.api import VERSION_FROM, Operator
from rollout.device import Options
from rollout.figures import report_run
from rollout.processes import ClientProcesses
from rollout.watch import watch

SERVE_TIMED = Path(__file__).resolve().parent / "rollout" / "serve_timed.py"
ADMIN = "bench@example.com"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=4, help="client processes")
    parser.add_argument(
        "--server-env", action="append", default=[], metavar="NAME=VALUE",
        help="a FIELDWATCH_ setting for the server (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--client-nice", type=int, default=10,
        help="niceness of the client processes (0: the server's own priority)",
    )  # fmt: skip
    parser.add_argument("--rate", type=int, default=200, help="devices released a minute")
    parser.add_argument("--canary", type=int, default=100, help="devices in the first wave")
    parser.add_argument(
        "--percentages", default="50,100", help="cumulative %% of the rest, one per wave"
    )
    parser.add_argument("--soak", type=int, default=0, help="seconds after each wave")
    parser.add_argument("--jitter", type=int, default=0, help="the rollout's jitter_s")
    parser.add_argument("--artifact-bytes", type=int, default=2**20)
    parser.add_argument("--install-s", type=float, default=1.0, help="a device's install")
    parser.add_argument("--reboot-s", type=float, default=2.0, help="a device's reboot")
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "FIELDWATCH_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--timeout", type=float, help="give up after (2 × expected + 600 s)")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the server (slows it; see the pstats)"
    )
    parser.add_argument(
        "--garbage", action="store_true",
        help="count the types of the server's cyclic garbage once (see garbage.json)",
    )  # fmt: skip
    parser.add_argument("--name", default="rollout", help="results file name")
    args = parser.parse_args()
    args.percentages = [int(p) for p in args.percentages.split(",") if p.strip()]
    return args


def server_env(db: ScratchDatabase, settings: list[str], lines: list[str]) -> dict[str, str]:
    """The server's environment: the scratch database, no MQTT, day-long tokens, and the
    ``--server-env`` settings (printed)."""
    env = env_for(db, FIELDWATCH_MQTT_EMBEDDED="false", FIELDWATCH_ACCESS_TOKEN_TTL_S="86400")
    env |= dict(item.split("=", 1) for item in settings)
    if settings:
        say(lines, "server settings: " + ", ".join(settings))
    return env


def main() -> None:
    args = parse_args()
    nofile = raise_nofile()
    lines: list[str] = []
    expected_s = args.devices / args.rate * 60
    say(
        lines,
        f"Fieldwatch firmware rollout benchmark, {time.strftime('%Y-%m-%d %H:%M %Z')}: "
        f"{args.devices:,} WebSocket devices in {args.processes} client processes "
        f"(nice {args.client_nice}), a "
        f"{args.artifact_bytes:,}-byte artifact, canary {args.canary} then "
        f"{args.percentages} % of the rest, soak {args.soak} s, {args.rate} devices/min "
        f"(PostgreSQL; {os.cpu_count()} CPUs; RLIMIT_NOFILE {nofile}; load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())})",
    )
    report: dict[str, Any] = {"args": vars(args), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    control = Path(tempfile.mkdtemp(prefix="fw-bench-rollout-"))
    with ScratchDatabase("fieldwatch_bench_rollout", base=args.database_url) as db:
        env = server_env(db, args.server_env, lines)
        set_up(env, ADMIN, "bench")
        command = [sys.executable, str(SERVE_TIMED), "--control-dir", str(control)]
        command += ["--profile"] if args.profile else []
        command += ["--garbage"] if args.garbage else []
        with Server(env, command=command) as srv:
            admin = login(srv.base, ADMIN)
            t0 = now()
            columns = {"status": "deployed", "location": "Bench", "firmware_version": VERSION_FROM}
            fleet = asyncio.run(make_fleet(srv.base, admin, args.devices, columns=columns))
            say(
                lines,
                f"setup: {args.devices:,} deployed devices and their tokens in {now() - t0:.1f} s",
            )
            operator = Operator(srv.base, admin)
            artifact = operator.upload(args.artifact_bytes)
            body = {
                "canary": args.canary,
                "percentages": args.percentages,
                "soak_s": args.soak,
                "rate_per_minute": args.rate,
                "jitter_s": args.jitter,
            }
            made = operator.create(artifact["id"], body)
            plan = made["plan"]
            say(
                lines,
                f"dry run: {plan['included']:,} devices in waves "
                f"{[w['size'] for w in plan['waves']]}, {plan['excluded']} left out "
                f"{plan['excluded_by_reason']}",
            )
            options = Options(
                install_s=args.install_s, reboot_s=args.reboot_s, nice=args.client_nice
            )
            clients = ClientProcesses(srv.base, fleet.tokens, args.processes, options)
            stats: list[dict[str, Any]] = []
            try:
                t1 = now()
                connected = clients.wait_connected(args.devices)
                say(
                    lines,
                    f"{connected:,}/{args.devices:,} devices connected in "
                    f"{now() - t1:.1f} s; rollout started (expected by the cap: "
                    f"{expected_s / 60:.1f} min)",
                )
                run = watch(
                    operator,
                    made["rollout"]["id"],
                    srv.pid,
                    clients,
                    args.timeout or 2 * expected_s + 600,
                )
                time.sleep(3)  # the last version reports' acks
                timings = server_timings(control)
            finally:
                stats = clients.stop()
    report_run(lines, report, args, run, timings, stats, artifact)
    point_at_files(lines, args, control)
    write_results(args.name, lines)
    write_json(args.name, report)
    print(f"results: {RESULTS / args.name}.txt, .json")


def point_at_files(lines: list[str], args: argparse.Namespace, control: Path) -> None:
    """Where ``--garbage`` and ``--profile`` left their files."""
    if args.garbage and (control / "garbage.json").exists():
        say(lines, f"cyclic garbage by type: {control / 'garbage.json'}")
    if args.profile and (control / "profile.pstats").exists():
        say(lines, f"profile: {control / 'profile.pstats'} (python -m pstats)")


def server_timings(control: Path, timeout: float = 30) -> dict[str, list[float]]:
    """The server's frame handling times (serve_timed.py writes them on request)."""
    import json

    (control / "dump").write_text("")
    deadline = time.monotonic() + timeout
    while not (control / "dump.done").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    path = control / "timings.json"
    return dict(json.loads(path.read_text())) if path.exists() else {}


if __name__ == "__main__":
    main()
