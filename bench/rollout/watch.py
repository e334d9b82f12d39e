"""Watching the rollout run: the server's figures every few seconds, the server's CPU
and the machine's load meanwhile."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

from harness.timing import now
from rollout.api import Operator

FINAL = {"completed", "aborted"}


@dataclass
class Run:
    """What the watch saw: the last rollout read, when it ended (driver clock), CPU
    seconds of the server, the machine's busy share, load averages and a timeline."""

    rollout: dict[str, Any]
    started: float
    ended: float | None = None
    server_cpu_s: float = 0.0
    machine_busy: float = 0.0  # all cores' busy share over the run, 0…1
    loads: list[float] = field(default_factory=list)  # 1-min load average samples
    timeline: list[dict[str, Any]] = field(default_factory=list)
    unavailable: int = 0  # 503s to the driver's reads

    @property
    def seconds(self) -> float:
        return (self.ended or now()) - self.started


def _busy(times: Any) -> float:
    return float(times.user + times.nice + times.system + times.irq + times.softirq + times.steal)


def watch(
    operator: Operator,
    rollout_id: str,
    server_pid: int,
    clients: Any,
    timeout: float,
    poll_s: float = 5.0,
    print_s: float = 30.0,
) -> Run:
    """Start the rollout and poll it until it is completed or aborted, paused, or
    ``timeout`` seconds passed."""
    server = psutil.Process(server_pid)
    cpu0 = server.cpu_times()
    sys0 = psutil.cpu_times()
    started = now()
    operator.start(rollout_id)
    run = Run(operator.read(rollout_id), started)
    last_print = -print_s
    last_wave: Any = None
    while True:
        time.sleep(poll_s)
        rollout = run.rollout = operator.read(rollout_id)
        run.loads.append(os.getloadavg()[0])
        f = rollout["figures"]
        elapsed = now() - started
        run.timeline.append(
            {
                "t": round(elapsed, 1),
                "status": rollout["status"],
                "wave": rollout["current_wave"],
                "completed": f["completed"],
                "in_progress": f["in_progress_total"],
                "pending": f["pending"],
                "failed": f["failed"],
            }
        )
        done = rollout["status"] in FINAL or rollout["status"] == "paused"
        if done or elapsed - last_print >= print_s or rollout["current_wave"] != last_wave:
            connected, updated, errors = clients.status()
            cpu = server.cpu_times()
            print(
                f"  {elapsed:7.1f} s  {rollout['status']:<9} wave {rollout['current_wave']}  "
                f"completed {f['completed']:,}  in progress {f['in_progress_total']:,} "
                f"{f['in_progress'] or ''}  "
                f"unreleased {f['pending']:,}  failed {f['failed']}  | devices connected "
                f"{connected:,}, version acked {updated:,}, client errors {errors} | server "
                f"CPU {cpu.user + cpu.system - cpu0.user - cpu0.system:.0f} s | load "
                f"{os.getloadavg()[0]:.2f}",
                flush=True,
            )
            last_print, last_wave = elapsed, rollout["current_wave"]
        if done or elapsed > timeout:
            break
    run.ended = now() if rollout["status"] in FINAL else None
    run.unavailable = operator.unavailable
    cpu = server.cpu_times()
    run.server_cpu_s = cpu.user + cpu.system - cpu0.user - cpu0.system
    sys1 = psutil.cpu_times()
    total = _busy(sys1) + sys1.idle + sys1.iowait - _busy(sys0) - sys0.idle - sys0.iowait
    run.machine_busy = (_busy(sys1) - _busy(sys0)) / total if total else 0.0
    return run
