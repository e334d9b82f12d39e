"""Run Fieldwatch in one process exactly as ``fieldwatch serve`` does (workers=1), but
with uvicorn's WebSocket options changed: bench_devices.py measures the memory of idle
device connections under these alternatives. A benchmark helper, not for production.

A watcher thread polls ``--control-dir`` for request files, so the benchmark can ask the
running server for a full garbage collection (``gc``) or, with ``--tracemalloc``, for the
top allocation sites (``snapshot``); it answers with ``<request>.done``.

Usage: python bench/serve_variant.py --port 8123 [--ws wsproto] [--ws-max-size 65536]
       [--ws-max-queue 1] [--ws-ping-interval 0] [--no-ws-per-message-deflate]
       [--control-dir DIR] [--tracemalloc 1]
"""

from __future__ import annotations

import argparse
import gc
import threading
import time
import tracemalloc
from pathlib import Path

import uvicorn

from fieldwatch.app import create_asgi_app
from fieldwatch.core.observability import configure_logging
from fieldwatch.core.settings import get_settings


def watch(control: Path) -> None:
    baseline: tracemalloc.Snapshot | None = None
    while True:
        time.sleep(0.2)
        for request in ("gc", "baseline", "snapshot"):
            path = control / request
            if not path.exists():
                continue
            path.unlink()
            gc.collect()
            out = control / f"{request}.done"
            if request == "baseline" and tracemalloc.is_tracing():
                baseline = tracemalloc.take_snapshot()
            if request == "snapshot" and tracemalloc.is_tracing():
                snap = tracemalloc.take_snapshot()
                stats = (
                    snap.compare_to(baseline, "lineno") if baseline else snap.statistics("lineno")
                )
                lines = [
                    f"{s.size_diff if baseline else s.size:>12,} B  "
                    f"{s.count_diff if baseline else s.count:>9,} blocks  {s.traceback}"
                    for s in stats[:40]
                ]
                by_file = snap.compare_to(baseline, "filename") if baseline else []
                lines += ["", "by file (after − before):"]
                lines += [
                    f"{s.size_diff:>12,} B  {s.count_diff:>9,} blocks  {s.traceback}"
                    for s in by_file[:30]
                ]
                lines.append(f"total: {sum(s.size_diff for s in by_file):,} B")
                out.write_text("\n".join(lines) + "\n")
            else:
                out.write_text("ok\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ws", default="auto")
    parser.add_argument("--ws-max-size", type=int, default=16 * 1024 * 1024)
    parser.add_argument("--ws-max-queue", type=int, default=32)
    parser.add_argument("--ws-ping-interval", type=float, default=20.0, help="0: no pings")
    parser.add_argument(
        "--ws-per-message-deflate", action=argparse.BooleanOptionalAction, default=True
    )
    parser.add_argument("--control-dir", type=Path)
    parser.add_argument("--tracemalloc", type=int, default=0, help="frames to keep (0: off)")
    args = parser.parse_args()
    if args.tracemalloc:
        tracemalloc.start(args.tracemalloc)
    if args.control_dir is not None:
        args.control_dir.mkdir(parents=True, exist_ok=True)
        threading.Thread(target=watch, args=(args.control_dir,), daemon=True).start()
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = create_asgi_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=args.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        ws=args.ws,
        ws_max_size=args.ws_max_size,
        ws_max_queue=args.ws_max_queue,
        ws_ping_interval=args.ws_ping_interval or None,
        ws_ping_timeout=20.0 if args.ws_ping_interval else None,
        ws_per_message_deflate=args.ws_per_message_deflate,
    )


if __name__ == "__main__":
    main()
