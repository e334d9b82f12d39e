"""Mosquitto's dynamic security: what a device login costs as the broker holds more.

With ``FIELDWATCH_MQTT_DYNSEC`` every device token issued becomes a login in Mosquitto's
dynamic-security plugin (``DynsecSync.credential_issued`` → ``DynsecManager.upsert_device``:
the device's role, then its client). The plugin of Mosquitto 2.0 writes its whole JSON
state file after every command that changes it, so each login costs more than the one
before, and N logins cost O(N²) bytes written.

Each mode runs on a fresh broker (``fieldwatch.devtools.mosquitto``) and prints the
elapsed time at each mark, the state file's size and the broker's CPU seconds:

- ``sync``: one device after another through ``upsert_device``, as the sync does;
- ``batch``: ``--batch`` devices' commands (createRole + createClient each) in one
  ``$CONTROL/dynamic-security/v1`` request: if the plugin saved once per request this
  would be far cheaper; it is not when it saves once per command;
- ``sync-nagle``: ``sync`` on a broker without ``set_tcp_nodelay true`` (Mosquitto's
  default): each answer then waits for the client's delayed ACK.

Usage: .venv/bin/python bench/bench_dynsec.py [--devices 5000] [--marks 1000,2000,5000]
       [--modes sync,batch,sync-nagle] [--batch 500]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
import uuid
from typing import Any

import psutil

from fieldwatch.devtools.mosquitto import Mosquitto
from fieldwatch.transports.mqtt.acl import dynsec_role_acls
from fieldwatch.transports.mqtt.dynsec import DynsecManager, device_role
from harness.results import say, write_json, write_results

MODES = ("sync", "batch", "sync-nagle")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--devices", type=int, default=5000)
    parser.add_argument("--marks", default="1000,2000,5000")
    parser.add_argument("--modes", default="sync,batch")
    parser.add_argument("--batch", type=int, default=500, help="batch: devices a request")
    parser.add_argument("--name", default="dynsec", help="results file name")
    args = parser.parse_args()
    args.mode_list = [m.strip() for m in args.modes.split(",") if m.strip()]
    if set(args.mode_list) - set(MODES):
        parser.error(f"modes: {', '.join(MODES)}")
    args.mark_list = sorted({int(m) for m in args.marks.split(",")} | {args.devices})
    return args


def device_commands(device_id: str) -> list[dict[str, Any]]:
    """What ``upsert_device`` sends for a new device, without its reads."""
    role = device_role(device_id)
    return [
        {"command": "createRole", "rolename": role,
         "acls": dynsec_role_acls("device", device_id)},
        {"command": "createClient", "username": device_id,
         "password": secrets.token_urlsafe(32), "textname": str(uuid.uuid4()),
         "clientid": device_id, "roles": [{"rolename": role}]},
    ]  # fmt: skip


async def run_mode(mode: str, args: argparse.Namespace, tell: Any) -> dict[str, Any]:
    with Mosquitto(dynsec=True, nodelay=mode != "sync-nagle") as broker:
        assert broker.process is not None
        proc = psutil.Process(broker.process.pid)
        manager = DynsecManager.from_url(broker.admin_url, timeout=3600)
        await manager.start()
        await manager.ensure_roles()
        cpu0 = sum(proc.cpu_times()[:2])
        t0 = time.perf_counter()
        marks: dict[int, float] = {}
        done = 0
        step = args.batch if mode == "batch" else 1
        while done < args.devices:
            ids = [str(uuid.uuid4()) for _ in range(min(step, args.devices - done))]
            if mode == "batch":
                await manager.execute([c for d in ids for c in device_commands(d)])
            else:
                await manager.upsert_device(ids[0], secrets.token_urlsafe(32), str(uuid.uuid4()))
            before, done = done, done + len(ids)
            for mark in args.mark_list:
                if before < mark <= done:
                    marks[mark] = time.perf_counter() - t0
                    size = (broker.dir / "dynamic-security.json").stat().st_size
                    tell(f"  {mode}: {mark:,} devices in {marks[mark]:.1f} s (state file "
                         f"{size / 2**20:.1f} MiB)")  # fmt: skip
        cpu = sum(proc.cpu_times()[:2]) - cpu0
        await manager.stop()
    total = marks[args.devices]
    tell(f"  {mode}: Mosquitto CPU {cpu:.1f} s for {args.devices:,} devices "
         f"({cpu / total:.0%} of the elapsed time)")  # fmt: skip
    return {"mode": mode, "marks_s": marks, "mosquitto_cpu_s": cpu, "batch": step}


def main() -> None:
    args = parse_args()
    lines: list[str] = []

    def tell(text: str) -> None:
        say(lines, text)

    tell(f"Mosquitto dynamic security: {args.devices:,} device logins a mode "
         f"({', '.join(args.mode_list)}); {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")  # fmt: skip
    rows = [asyncio.run(run_mode(mode, args, tell)) for mode in args.mode_list]
    header = f"{'mode':<11}" + "".join(f"{f'{m:,} s':>10}" for m in args.mark_list)
    table = [header] + [
        f"{r['mode']:<11}" + "".join(f"{r['marks_s'].get(m, float('nan')):>10.1f}"
                                     for m in args.mark_list)
        for r in rows
    ]  # fmt: skip
    print("\n".join(table))
    lines += table
    write_results(args.name, lines)
    write_json(args.name, {"options": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
