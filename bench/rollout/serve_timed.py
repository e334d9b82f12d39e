"""Serve Fieldwatch in one process exactly as ``fieldwatch serve`` does, and time how
long the device gateway takes to handle each WebSocket frame: the rollout benchmark's
server. A benchmark helper, not for production.

The gateway's ``handle`` (the frame decoded → its reply ready: for a ``firmware_state``
frame, parsing the report and the firmware service's transaction up to its commit) is
wrapped with a ``perf_counter`` on each side; the time a frame waits in the socket or the
event loop before it is read, and the sending of the ack, are not in it (the clients
measure the whole round trip). Inside a ``firmware_state`` frame each SQL statement is
timed too (execute → its answer read, the event loop's wait included), and a probe task
records the event loop's lag (how late a 5 ms sleep wakes up), and each garbage
collection's pause is kept by generation: where a report's time goes. Durations are
kept per frame type in memory; a watcher thread writes them to
``<control-dir>/timings.json`` when the file ``dump`` appears there, then writes
``dump.done``. With ``--profile``, cProfile runs from the start and
its statistics go to ``<control-dir>/profile.pstats`` with each dump (the profiler slows
the server down: a profiled run's timings are not the benchmark's).

Usage: python bench/rollout/serve_timed.py --port 8123 --control-dir DIR [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import cProfile
import gc
import json
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from sqlalchemy import event
from sqlalchemy.engine import Engine

import fieldwatch.transports.websocket as gateway
from fieldwatch.app import create_asgi_app, server_options
from fieldwatch.core.observability import configure_logging
from fieldwatch.core.settings import get_settings

TIMINGS: dict[str, list[float]] = {}
#: Counts kept beside the timings (objects a collection looked at, and freed).
COUNTS: dict[str, list[int]] = {}
_handle = gateway.handle
#: The frame type being handled, for the statements it runs ("" outside a frame).
FRAME: contextvars.ContextVar[str] = contextvars.ContextVar("frame", default="")


async def timed_handle(edge: Any, session: Any, frame: gateway.DeviceFrame) -> Any:
    started = time.perf_counter()
    token = FRAME.set(frame.type)
    try:
        return await _handle(edge, session, frame)
    finally:
        FRAME.reset(token)
        took = time.perf_counter() - started
        kind = "version report" if "firmware_version" in frame.body else frame.type
        TIMINGS.setdefault(kind, []).append(took)
        if frame.type == gateway.STATE_FRAME:
            TIMINGS.setdefault(f"state: {frame.body.get('state')}", []).append(took)


def time_phases() -> None:
    """The parts of a ``firmware_state`` frame's unit of work (``phase: checkout`` = the
    pooled connection taken and set to autocommit, ``phase: commit`` = commit and the
    events published to their handlers, ``phase: close`` = the connection given back)."""
    from fieldwatch.db.uow import UnitOfWork

    def wrap(name: str, method: Any) -> Any:
        async def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
            if FRAME.get() != gateway.STATE_FRAME:
                return await method(self, *args, **kwargs)
            started = time.perf_counter()
            try:
                return await method(self, *args, **kwargs)
            finally:
                TIMINGS.setdefault(f"phase: {name}", []).append(time.perf_counter() - started)

        return timed

    UnitOfWork.autocommit = wrap("checkout", UnitOfWork.autocommit)  # type: ignore[method-assign]
    UnitOfWork.commit = wrap("commit", UnitOfWork.commit)  # type: ignore[method-assign]
    UnitOfWork.__aexit__ = wrap("close", UnitOfWork.__aexit__)  # type: ignore[method-assign]


def time_statements() -> None:
    """Each statement a ``firmware_state`` frame runs, timed from its cursor's execute to
    its return (the database's answer and the event loop's wait for it):
    ``statement: SELECT`` and so on in the timings."""

    @event.listens_for(Engine, "before_cursor_execute")
    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if FRAME.get() == gateway.STATE_FRAME:
            conn.info["fw_started"] = time.perf_counter()

    @event.listens_for(Engine, "after_cursor_execute")
    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        started = conn.info.pop("fw_started", None)
        if started is not None:
            kind = "statement: " + statement.lstrip().split(None, 1)[0].upper()
            TIMINGS.setdefault(kind, []).append(time.perf_counter() - started)


async def probe_lag() -> None:
    """The event loop's lag: how late a 5 ms sleep wakes up (``loop lag``)."""
    while True:
        started = time.perf_counter()
        await asyncio.sleep(0.005)
        TIMINGS.setdefault("loop lag", []).append(time.perf_counter() - started - 0.005)


def time_collections() -> None:
    """Each garbage collection's pause, by generation (``gc gen2`` and so on)."""
    started = [0.0]

    def callback(phase: str, info: dict[str, Any]) -> None:
        generation = info["generation"]
        if phase == "start":
            if generation < 2:  # how many objects the pass will look at (not timed)
                young = sum(len(gc.get_objects(g)) for g in range(generation + 1))
                COUNTS.setdefault(f"gc gen{generation} objects", []).append(young)
            started[0] = time.perf_counter()
        else:
            kind = f"gc gen{generation}"
            TIMINGS.setdefault(kind, []).append(time.perf_counter() - started[0])
            COUNTS.setdefault(f"gc gen{generation} collected", []).append(info["collected"])

    gc.callbacks.append(callback)


class Probed:
    """The ASGI app, with the lag probe started on its first call (in the server's loop)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.probe: asyncio.Task[None] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.probe is None:
            self.probe = asyncio.create_task(probe_lag())
        await self.app(scope, receive, send)


def sample_garbage(control: Path, after_s: float = 60, window_s: float = 10) -> None:
    """``--garbage``: what the cyclic collector frees. After ``after_s`` every freed
    object is kept for ``window_s`` instead (``gc.DEBUG_SAVEALL``), then counted by type
    into ``<control-dir>/garbage.json``: which code leaves reference cycles behind."""
    time.sleep(after_s)
    gc.set_debug(gc.DEBUG_SAVEALL)
    time.sleep(window_s)
    gc.collect()
    gc.set_debug(0)
    kinds: dict[str, int] = {}
    for obj in gc.garbage:
        name = f"{type(obj).__module__}.{type(obj).__qualname__}"
        kinds[name] = kinds.get(name, 0) + 1
    total = len(gc.garbage)
    gc.garbage.clear()
    top = dict(sorted(kinds.items(), key=lambda kv: -kv[1])[:60])
    (control / "garbage.json").write_text(
        json.dumps({"window_s": window_s, "objects": total, "top": top}, indent=1)
    )


def watch(control: Path, profiler: cProfile.Profile | None) -> None:
    request = control / "dump"
    while True:
        time.sleep(0.2)
        if not request.exists():
            continue
        request.unlink()
        copy: dict[str, Any] = {kind: list(values) for kind, values in list(TIMINGS.items())}
        copy["counts"] = {kind: list(values) for kind, values in list(COUNTS.items())}
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
    parser.add_argument(
        "--garbage", action="store_true", help="count the cyclic garbage's types once"
    )
    args = parser.parse_args()
    args.control_dir.mkdir(parents=True, exist_ok=True)
    gateway.handle = timed_handle  # receive_loop looks it up in the module at each frame
    time_statements()
    time_phases()
    time_collections()
    profiler = cProfile.Profile() if args.profile else None
    threading.Thread(target=watch, args=(args.control_dir, profiler), daemon=True).start()
    if args.garbage:
        threading.Thread(target=sample_garbage, args=(args.control_dir,), daemon=True).start()
    if profiler is not None:
        profiler.enable()
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        Probed(create_asgi_app(settings)),
        host=settings.host,
        port=args.port,
        **server_options(settings),
    )


if __name__ == "__main__":
    main()
