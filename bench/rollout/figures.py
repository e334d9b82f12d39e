"""The rollout benchmark's figures: printed, kept for the results files."""

from __future__ import annotations

import argparse
from collections import Counter
from datetime import datetime
from typing import Any, cast

from harness.results import Figure, figure_table, percentile, say
from rollout.watch import Run

STATES = ("acknowledged", "downloading", "downloaded", "verified", "installing", "rebooting")


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _spread(values_s: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values_s]
    if not ms:
        return {"count": 0}
    return {
        "count": len(ms),
        "p50": percentile(ms, 50),
        "p95": percentile(ms, 95),
        "p99": percentile(ms, 99),
        "max": max(ms),
    }


def _line(name: str, s: dict[str, float]) -> str:
    if not s.get("count"):
        return f"    {name:<26} none"
    return (
        f"    {name:<26} {int(s['count']):>7,}  p50 {s['p50']:6.1f}  p95 {s['p95']:6.1f}  "
        f"p99 {s['p99']:6.1f}  max {s['max']:7.1f} ms"
    )


def report_run(
    lines: list[str],
    report: dict[str, Any],
    args: argparse.Namespace,
    run: Run,
    timings: dict[str, list[float]],
    stats: list[dict[str, Any]],
    artifact: dict[str, Any],
) -> None:
    rollout = run.rollout
    expected_s = args.devices / args.rate * 60
    total_s = _seconds(rollout["started_at"], rollout["finished_at"])
    f = rollout["figures"]
    _report_rollout(lines, args, run, expected_s, total_s)
    cpu_pct = _report_machine(lines, run)
    states = _handling(lines, timings, stats)
    _clients(lines, stats, artifact)
    met_time = total_s is not None and total_s <= expected_s * 1.1
    p99 = states.get("p99")
    report.update(
        rollout=rollout,
        server_cpu_s=run.server_cpu_s,
        cpu_pct=cpu_pct,
        run_seconds=run.seconds,
        machine_busy=run.machine_busy,
        loads=run.loads,
        timeline=run.timeline,
        server_state_handling_ms=states,
        clients=[{k: v for k, v in s.items() if k not in ("rtt", "welcome")} for s in stats],
    )
    figures = [
        Figure(
            "start → completed",
            total_s / 60 if total_s else None,
            "min",
            f"≈ {expected_s / 60:.0f} min",
            met_time,
            f"cap alone {expected_s / 60:.1f} min"
            + (f", ratio {total_s / expected_s:.3f}" if total_s else ""),
        ),
        Figure(
            "server CPU, average",
            cpu_pct,
            "% core",
            "",
            None,
            f"{run.server_cpu_s:,.0f} s over {run.seconds / 60:.1f} min",
        ),
        Figure(
            "firmware_state handling p99 (server)",
            p99,
            "ms",
            "≤ 20 ms",
            None if p99 is None else p99 <= 20,
            f"p50 {states.get('p50', 0):.1f}, max {states.get('max', 0):.1f}",
        ),
        Figure(
            "completed / failed (server)",
            float(f["completed"]),
            f"/{f['targets']:,}",
            "",
            None,
            f"{f['failed']} failed",
        ),
    ]
    table = figure_table(figures)
    say(lines, "")
    for row in table:
        say(lines, row)


def _report_rollout(
    lines: list[str],
    args: argparse.Namespace,
    run: Run,
    expected_s: float,
    total_s: float | None,
) -> None:
    rollout = run.rollout
    f = rollout["figures"]
    say(lines, "")
    say(
        lines,
        f"rollout {rollout['status']}"
        + (f" ({rollout['status_reason']})" if rollout["status_reason"] else ""),
    )
    if total_s is not None:
        say(
            lines,
            f"  start → completed (the server's started_at → finished_at): "
            f"{total_s:,.1f} s = {total_s / 60:.1f} min; the cap alone: {args.devices:,} / "
            f"{args.rate} per min = {expected_s / 60:.1f} min; ratio {total_s / expected_s:.3f}",
        )
    else:
        say(lines, f"  NOT completed after {run.seconds:,.0f} s")
    say(
        lines,
        f"  server's figures: {f['targets']:,} targets, {f['completed']:,} completed, "
        f"{f['failed']} failed {f['failed_by_reason']}, {f['expired']} expired, "
        f"{f['cancelled']} cancelled, {f['skipped']} skipped, {f['pending']} unreleased, "
        f"{f['in_progress_total']} in progress {f['in_progress']}",
    )
    for w in rollout["waves"]:
        wf, d = w["figures"], _seconds(w["started_at"], w["completed_at"])
        took = f"{d:,.1f} s" if d is not None else "—"
        say(
            lines,
            f"  wave {w['number']}: {w['size']:,} devices, {w['status']}, started → "
            f"completed {took}; {wf['completed']:,} completed, {wf['failed']} failed",
        )


def _report_machine(lines: list[str], run: Run) -> float:
    cpu_pct = run.server_cpu_s / run.seconds * 100 if run.seconds else 0.0
    loads = run.loads or [0.0]
    say(
        lines,
        f"  server process CPU over the run ({run.seconds:,.0f} s, driver's clock): "
        f"{run.server_cpu_s:,.1f} s user+sys = {cpu_pct:.1f} % of one core on average",
    )
    say(
        lines,
        f"  machine (2 cores, shared): {run.machine_busy * 100:.0f} % busy over the run "
        f"(all processes: server, PostgreSQL, clients, others); 1-min load average min "
        f"{min(loads):.2f} / mean {sum(loads) / len(loads):.2f} / max {max(loads):.2f}",
    )
    if run.unavailable:
        say(lines, f"  the driver's GET of the rollout was answered 503 {run.unavailable} times")
    return cpu_pct


def _handling(
    lines: list[str], timings: dict[str, list[float]], stats: list[dict[str, Any]]
) -> dict[str, float]:
    """Server-side handling times, then the devices' round trips; the first's spread."""
    say(
        lines,
        "  firmware_state handling in the server (timed around the gateway's frame "
        "handler: report parsed → the firmware service's transaction committed → ack "
        "ready; not the socket or event-loop wait, not the send):",
    )
    states = _spread(timings.get("firmware_state", []))
    say(lines, _line("firmware_state (all)", states))
    for kind in sorted(k for k in timings if k.startswith("state: ")):
        say(lines, _line(f"  {kind[len('state: ') :]}", _spread(timings[kind])))
    say(lines, _line("heartbeat with the version", _spread(timings.get("version report", []))))
    say(lines, _line("heartbeat (periodic)", _spread(timings.get("heartbeat", []))))
    for kind in sorted(k for k in timings if k.startswith("statement: ")):
        say(lines, _line(f"  {kind[len('statement: ') :]} (in a report)", _spread(timings[kind])))
    for kind in sorted(k for k in timings if k.startswith("phase: ")):
        say(lines, _line(f"  {kind[len('phase: ') :]} (in a report)", _spread(timings[kind])))
    say(lines, _line("event loop lag (5 ms sleep)", _spread(timings.get("loop lag", []))))
    for kind in sorted(k for k in timings if k.startswith("gc gen")):
        say(lines, _line(f"{kind} pause", _spread(timings[kind])))
    counts = cast(dict[str, list[int]], timings.get("counts", {}))
    for kind in sorted(counts):  # objects a pass looked at, objects it freed
        values = sorted(counts[kind])
        say(
            lines,
            f"    {kind:<28}{len(values):>7,}  p50 {values[len(values) // 2]:>9,}  "
            f"max {values[-1]:>9,}",
        )
    rtt: dict[str, list[float]] = {}
    for s in stats:
        for label, values in s["rtt"].items():
            rtt.setdefault(label, []).extend(values)
    say(
        lines,
        "  the devices' round trip (frame sent → its ack read by the client, whose "
        "event loop holds 1/N of the devices):",
    )
    all_states = [v for label in STATES for v in rtt.get(label, [])] + rtt.get("failed", [])
    say(lines, _line("firmware_state (all)", _spread(all_states)))
    for label in STATES:
        say(lines, _line(label, _spread(rtt.get(label, []))))
    say(lines, _line("heartbeat with the version", _spread(rtt.get("heartbeat", []))))
    say(lines, _line("heartbeat (periodic)", _spread(rtt.get("beat", []))))
    welcome: dict[str, list[float]] = {}
    for s in stats:
        for label, values in s["welcome"].items():
            welcome.setdefault(label, []).extend(values)
    say(lines, "  the devices' connects (WebSocket opened → welcome frame read):")
    for label in ("first", "after reboot", "retry"):
        say(lines, _line(label, _spread(welcome.get(label, []))))
    return states


def _clients(lines: list[str], stats: list[dict[str, Any]], artifact: dict[str, Any]) -> None:
    total: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for s in stats:
        for key, value in s.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                total[key] += value
        errors.update(s["errors"])
    size = int(artifact["size"])
    say(
        lines,
        f"  devices: {int(total['updates']):,} firmware_update frames "
        f"({int(total['resends'])} for an update already under way or done), "
        f"{int(total['downloads']):,} downloads checked (size and SHA-256), "
        f"{total['download_bytes'] / 2**20:,.1f} MiB received "
        f"(= {total['download_bytes'] / size:,.2f} × the file), {int(total['busy'])} 503s "
        f"(download cap), {int(total['resumed'])} resumed, {int(total['checksum_mismatch'])} "
        f"checksum mismatches, {int(total['reboots']):,} reboots, "
        f"{int(total['completed']):,} version reports acked",
    )
    say(
        lines,
        f"  client errors: {int(total['reconnects'])} unexpected reconnects; "
        f"{dict(errors) or 'none'}; client processes' CPU {total['cpu_s']:,.0f} s",
    )
