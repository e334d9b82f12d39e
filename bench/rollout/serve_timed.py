"""Serve Fieldwatch in one process exactly as ``fieldwatch serve`` does, and time how
long the device gateway takes to handle each WebSocket frame: the rollout benchmark's
server. A benchmark helper, not for production.

The gateway's ``handle`` (the frame decoded → its reply ready: for a ``firmware_state``
frame, parsing the report and the firmware service's transaction up to its commit) is
wrapped with a ``perf_counter`` on each side; the time a frame waits in the socket or the
event loop before it is read, and the sending of the ack, are not in it (the clients
measure the whole round trip). Durations are kept per frame type in memory; a watcher
thread writes them to ``<control-dir>/timings.json`` when the file ``dump`` appears
there, then writes ``dump.done``. With ``--profile``, cProfile runs from the start and
its statistics go to ``<control-dir>/profile.pstats`` with each dump (the profiler slows
the server down: a profiled run's timings are not the benchmark's).

Usage: python bench/rollout/serve_timed.py --port 8123 --control-dir DIR [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

import fieldwatch.transports.websocket as gateway
from fieldwatch.app import create_asgi_app, server_options
from fieldwatch.core.observability import configure_logging
from fieldwatch.core.settings import get_settings

TIMINGS: dict[str, list[float]] = {}
_handle = gateway.handle


async def timed_handle(edge: Any, session: Any, frame: gateway.DeviceFrame) -> Any:
    started = time.perf_counter()
    try:
        return await _handle(edge, session, frame)
    finally:
        kind = "version report" if "firmware_version" in frame.body else frame.type
        TIMINGS.setdefault(kind, []).append(time.perf_counter() - started)


def watch(control: Path, profiler: cProfile.Profile | None) -> None:
    request = control / "dump"
    while True:
        time.sleep(0.2)
        if not request.exists():
            continue
        request.unlink()
        copy = {kind: list(values) for kind, values in list(TIMINGS.items())}
        (control / "timings.json").write_text(json.dumps(copy))
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(control / "profile.pstats")
        (control / "dump.done").write_text("ok\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--control-dir", type=Path, required=True)
    parser.add_argument("--profile", action="store_true", help="cProfile the event loop")
    args = parser.parse_args()
    args.control_dir.mkdir(parents=True, exist_ok=True)
    gateway.handle = timed_handle  # receive_loop looks it up in the module at each frame
    profiler = cProfile.Profile() if args.profile else None
    threading.Thread(target=watch, args=(args.control_dir, profiler), daemon=True).start()
    if profiler is not None:
        profiler.enable()
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        create_asgi_app(settings), host=settings.host, port=args.port, **server_options(settings)
    )


if __name__ == "__main__":
    main()
