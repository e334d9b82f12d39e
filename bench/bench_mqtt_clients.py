"""MQTT subscriber ceilings: how many messages a second one Python subscriber process
receives from a real Mosquitto, for each candidate client library.

Candidates (each runs in its own process, subscribed before the publishers start):

a. paho-threaded: paho-mqtt 2.x with its network thread (``loop_start``); ``on_message``
   appends to a deque.
b. paho-asyncio: paho-mqtt driven from an asyncio event loop through its socket
   callbacks (``add_reader``/``add_writer``, ``loop_read``/``loop_write``/``loop_misc``).
c. aiomqtt: ``async for message in client.messages``.
d. gmqtt: gmqtt's asyncio client over MQTT 5 (acknowledges QoS 1 before ``on_message``);
   optional, measured when importable (see mqtt_clients/subscribers.py).
e. fieldwatch: Fieldwatch's own ``MqttLink`` (paho driven from asyncio, batches to a
   handler that acknowledges each batch: QoS 1 messages are acked by the application),
   MQTT 3.1.1.
f. fieldwatch-paho5: the same over MQTT 5 with the gateway's receive maximum (10,000).
g. fieldwatch-mqtt5: ``MqttLink`` on the mqtt5 codec (Rust, sans-IO) over Fieldwatch's
   own asyncio connection, MQTT 5 with the same receive maximum.

Publishers are separate processes using paho without a network thread, publishing a
fixed total as fast as they can: JSON readings of about 80 bytes such as
``{"value": 23.5, "unit": "celsius", "quality": "good", "timestamp": 1694678400}`` on
``iot/devices/data/{device_uuid}/temperature`` over 1,000 devices. The rate is counted
from the first to the last message the subscriber receives. The broker's per-client
queue is unlimited here, so a lost message is a client problem, not a broker limit.

Two modes: live (the subscriber reads while the publishers publish, sharing the CPUs
with them) and drain (the subscriber holds its first message until the publishers are
done, then reads what the broker kept: the subscriber's own ceiling).

Usage: .venv/bin/python bench/bench_mqtt_clients.py [--messages 200000] [--publishers 2]
       [--repeat 3] [--qos 0 1] [--modes live drain] [--candidates paho-threaded ...]
       [--broker-inflight N] [--uvloop] [--name mqtt_clients]
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import time
from dataclasses import asdict
from typing import Any

from harness.broker import BenchBroker
from harness.results import say, write_json, write_results
from mqtt_clients.publishers import messages_for
from mqtt_clients.runs import Run, measure
from mqtt_clients.subscribers import CANDIDATES, available

HEADER = (
    f"{'candidate':<16} {'mode':<5} {'qos':>3} {'received':>10} {'lost':>7} {'seconds':>8} "
    f"{'msg/s':>9}   {'runs msg/s':<28} {'publish s':>9}"
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--messages", type=int, default=200_000, help="total per run")
    parser.add_argument("--publishers", type=int, default=2, help="publisher processes")
    parser.add_argument("--repeat", type=int, default=3, help="runs per row; the median shows")
    parser.add_argument("--qos", type=int, nargs="+", default=[0, 1], choices=[0, 1])
    parser.add_argument(
        "--candidates",
        nargs="+",
        default=available(),
        choices=CANDIDATES,
        help="default: each whose library is installed (gmqtt is optional)",
    )
    parser.add_argument("--modes", nargs="+", default=["live", "drain"], choices=["live", "drain"])
    parser.add_argument(
        "--broker-inflight", type=int, help="Mosquitto max_inflight_messages (default 20)"
    )
    parser.add_argument("--name", default="mqtt_clients", help="results file name")
    parser.add_argument("--uvloop", action="store_true", help="run asyncio candidates on uvloop")
    return parser.parse_args()


def row(runs: list[Run]) -> tuple[str, dict[str, Any]]:
    """A table row for one candidate, mode and QoS: the median run, and each run's rate."""
    mid = sorted(runs, key=lambda r: r.rate)[len(runs) // 2]
    each = ", ".join(f"{r.rate:,.0f}" for r in runs)
    line = (
        f"{mid.candidate:<16} {mid.mode:<5} {mid.qos:>3} {mid.received:>10,} {mid.lost:>7,} "
        f"{mid.seconds:>8.2f} {mid.rate:>9,.0f}   {each:<28} "
        f"{mid.published_seconds:>9.2f}"
    )
    data = {
        **asdict(mid),
        "lost": mid.lost,
        "rates": [r.rate for r in runs],
        "lost_per_run": [r.lost for r in runs],
    }
    return line, data


def main() -> None:
    args = parse_args()
    ctx = mp.get_context("spawn")
    loop_name = "uvloop" if args.uvloop else "asyncio"
    print(
        f"MQTT subscriber ceilings: {args.messages:,} messages a run from {args.publishers} "
        f"publisher processes, {args.repeat} runs a row (median shown), event loop {loop_name}, "
        f"broker in-flight window {args.broker_inflight or 20}"
    )
    lines: list[str] = []
    say(lines, HEADER)
    rows: list[dict[str, Any]] = []
    with BenchBroker(args.broker_inflight) as broker:
        for mode, qos, candidate in itertools.product(args.modes, args.qos, args.candidates):
            setup = (ctx, broker.port, candidate, qos, mode)
            runs = [
                measure(*setup, args.messages, args.publishers, args.uvloop)
                for _ in range(args.repeat)
            ]
            line, data = row(runs)
            say(lines, line)
            rows.append(data)
    write_results(args.name, lines)
    meta = {
        "messages": args.messages,
        "publishers": args.publishers,
        "repeat": args.repeat,
        "event_loop": loop_name,
        "broker_max_inflight_messages": args.broker_inflight or 20,
        "payload_example": messages_for(0, 1)[0][1].decode(),
        "payload_bytes": len(messages_for(0, 1)[0][1]),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out = write_json(args.name, {**meta, "rows": rows})
    print(f"results: {out}")


if __name__ == "__main__":
    main()
