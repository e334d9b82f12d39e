"""Scale-out: gateway processes for idle WebSocket devices, api processes for HTTP ingest.

The processes are the deployment's (``fieldwatch.devtools.topology``, as ``make
topology`` runs them): a scratch PostgreSQL database, the local Redis and RabbitMQ
(FIELDWATCH_TOPOLOGY_*_URL), ``db upgrade``, then ``serve --role api|gateway``
processes and nginx with deploy/nginx/fieldwatch.conf. No MQTT: the devices here use
WebSocket and HTTP, and without a broker their tokens become no Mosquitto logins (which
Mosquitto 2.0's dynamic security makes slower with each one: docs/scaling.md).

1. ``--part gateways``: one api process makes 2 × ``--devices`` devices (a CSV import)
   and a token each. One gateway: ``--devices`` idle WebSocket devices connect to its
   device listener (FIELDWATCH_DEVICE_WS_PORT, as bench_devices measures it), from
   ``--client-processes`` processes; its RSS before (after a warm-up) and after
   (``--settle`` seconds after the last welcome): (after − before) / connected; its CPU
   seconds while they connect, and its share of a core while they sit idle. Then the
   same gateway restarted and a second one, ``--devices`` devices on each. Connected
   means the device received its welcome and is still open. nginx is bypassed for the
   devices (bench/scaleout/gateways.py says why).
2. ``--part ingest``: nginx in front of one api process, then two (a topology each):
   bench_ingest's load (``POST /api/v1/devices/{id}/data``, 1,000 readings a request,
   ``--clients`` concurrent clients) through nginx; readings/s committed (a reading
   counts once its request was answered 200), CPU seconds per million readings of each
   api process and of nginx (PostgreSQL's counts every backend of the server), and the
   machine's busy cores.

Usage: .venv/bin/python bench/bench_scaleout.py [--part gateways,ingest] [--devices 10000]
       [--client-processes 4] [--settle 5] [--readings 2000000] [--clients 32]
       [--devices-ingest 50] [--ingest-client-processes 1]
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from devices.clients import raise_nofile
from harness.results import RESULTS, say, write_json, write_results
from scaleout import gateways, ingest

PARTS = ("gateways", "ingest")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--part", default=",".join(PARTS), help="gateways, ingest or both")
    parser.add_argument("--devices", type=int, default=10_000, help="gateways: per gateway")
    parser.add_argument(
        "--client-processes", type=int, default=4, help="gateways: device client processes in all"
    )
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before each RSS")
    parser.add_argument("--connect-timeout", type=float, default=600.0)
    parser.add_argument("--readings", type=int, default=2_000_000, help="ingest: per run")
    parser.add_argument("--clients", type=int, default=32, help="ingest: concurrent clients")
    parser.add_argument("--devices-ingest", type=int, default=50)
    parser.add_argument("--ingest-client-processes", type=int, default=1)
    parser.add_argument("--name", default="scaleout", help="results file name")
    args = parser.parse_args()
    args.parts = [p.strip() for p in args.part.split(",") if p.strip()]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    return args


def main() -> None:
    args = parse_args()
    nofile = raise_nofile()  # the gateway processes inherit it
    print(
        f"Fieldwatch scale-out benchmark ({os.cpu_count()} CPUs; RLIMIT_NOFILE {nofile}); "
        "figures print as they are measured.",
        flush=True,
    )
    lines: list[str] = []
    report: dict[str, Any] = {
        "parts": args.parts,
        "options": dict(vars(args)),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }

    def tell(text: str) -> None:
        say(lines, text)

    tables: list[str] = []
    if "gateways" in args.parts:
        report["gateways"] = gateways.part_gateways(args, tell)
        tables += [
            "",
            "Idle WebSocket devices per gateway process (device listener)",
            *gateways.table(report["gateways"]),
        ]
    if "ingest" in args.parts:
        ingest_args = argparse.Namespace(
            **{**vars(args), "client_processes": args.ingest_client_processes}
        )
        report["ingest"] = ingest.part_ingest(ingest_args, tell)
        tables += [
            "",
            "HTTP ingest through nginx (readings answered 200)",
            *ingest.table(report["ingest"]),
        ]
    print("\n".join(tables), flush=True)
    lines += tables
    write_results(args.name, lines)
    write_json(args.name, report)
    print(f"results: {RESULTS / args.name}.txt, .json")


if __name__ == "__main__":
    main()
