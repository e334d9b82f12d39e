"""``python -m fieldwatch.devtools topology`` (``make topology``): the scaled-out
installation as local processes behind nginx, up until Ctrl-C (``devtools.topology``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from fieldwatch.devtools.parts import PartFailed
from fieldwatch.devtools.servers import Servers
from fieldwatch.devtools.topology import Layout, Topology


def parse(argv: list[str] | None) -> argparse.Namespace:
    defaults = Servers.from_env()
    parser = argparse.ArgumentParser(prog="python -m fieldwatch.devtools")
    tools = parser.add_subparsers(dest="tool", required=True)
    topology = tools.add_parser(
        "topology",
        help="deploy/compose's installation as local processes behind nginx, until Ctrl-C",
    )
    topology.add_argument("--port", type=int, help="nginx's port (default: a free one)")
    topology.add_argument("--apis", type=int, default=2, help="api processes (2)")
    topology.add_argument("--gateways", type=int, default=1, help="gateway processes (1)")
    topology.add_argument("--workers", type=int, default=1, help="worker processes (1)")
    topology.add_argument("--no-mqtt", dest="mqtt", action="store_false",
                          help="no Mosquitto: devices use WebSocket and HTTP only")  # fmt: skip
    topology.add_argument("--database-url", default=defaults.database_url,
                          help="an admin connection to PostgreSQL (CREATE DATABASE)")  # fmt: skip
    topology.add_argument("--redis-url", default=defaults.redis_url)
    topology.add_argument("--rabbitmq-url", default=defaults.rabbitmq_url)
    return parser.parse_args(argv)


async def run_topology(servers: Servers, layout: Layout) -> int:
    problems = await servers.unavailable()
    if problems:
        print("Cannot start the topology:", *problems, sep="\n  ", file=sys.stderr)
        return 1
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    topology = Topology(servers, layout)
    print(f"Starting run {topology.run_id} (database {topology.database})…", flush=True)
    try:
        await topology.start()
    except PartFailed as exc:
        print(f"The topology did not start: {exc}", file=sys.stderr)
        return 1
    try:
        if not stopping.is_set():
            print(topology.summary(), "Ctrl-C stops it and removes what it made.", sep="\n",
                  flush=True)  # fmt: skip
            await watch(topology, stopping)
    finally:
        print("Stopping…", flush=True)
        await topology.stop()
        print(f"Stopped. Removed: database {topology.database}, Redis keys "
              f"{topology.redis_prefix}:*, RabbitMQ exchange {topology.exchange} and the "
              "temporary directory (a step that failed is logged above).", flush=True)  # fmt: skip
    return 0


async def watch(topology: Topology, stopping: asyncio.Event) -> None:
    """Until Ctrl-C; says when a process exits (its log's end: the log goes at exit)."""
    reported: set[str] = set()
    while not stopping.is_set():
        for part in topology.parts.values():
            if not part.running and part.name not in reported:
                reported.add(part.name)
                print(f"{part.name} exited; the end of its log:\n{part.tail()}", file=sys.stderr)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), 1.0)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)  # the check says it better
    servers = Servers(args.database_url, args.redis_url, args.rabbitmq_url)
    layout = Layout(apis=args.apis, gateways=args.gateways, workers=args.workers, port=args.port,
                    mqtt=args.mqtt)  # fmt: skip
    return asyncio.run(run_topology(servers, layout))


if __name__ == "__main__":
    sys.exit(main())
