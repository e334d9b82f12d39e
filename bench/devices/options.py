"""The options of bench/bench_devices.py."""

from __future__ import annotations

import argparse

from devices.memory import VARIANTS


def parse_args(description: str, known: tuple[str, ...]) -> tuple[argparse.Namespace, list[str]]:
    """The options, and the parts chosen among ``known`` (all by default)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--parts", default=",".join(known))
    _memory_options(parser)
    parser.add_argument("--rtt-devices", type=int, default=1000)
    parser.add_argument("--commands", type=int, default=1000)
    parser.add_argument("--warmup-commands", type=int, default=50)
    _mqtt_options(parser)
    parser.add_argument(
        "--profile", action="store_true", help="rtt, mqtt and mqtt-embedded: py-spy the server"
    )
    parser.add_argument("--profile-seconds", type=float, default=20.0)
    parser.add_argument("--storm-devices", type=int, default=5000)
    parser.add_argument("--backoff-base", type=float, default=1.0)
    parser.add_argument("--backoff-cap", type=float, default=30.0)
    parser.add_argument("--storm-timeout", type=float, default=120.0)
    parser.add_argument("--name", default="devices", help="results file name")
    args = parser.parse_args()
    args.ws_compression = None if args.ws_compression == "none" else args.ws_compression
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(parts) - set(known)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    for variant in [v for v in args.memory_variants.split(",") if v]:
        if any(p not in VARIANTS for p in variant.split("+")):
            parser.error(f"unknown memory variant {variant!r}")
    return args, parts


def _memory_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=int, default=10_000, help="memory: idle devices")
    parser.add_argument("--client-processes", type=int, default=4)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before each RSS")
    parser.add_argument(
        "--memory-variants",
        default="listener",
        help=f"comma list; each of {', '.join(VARIANTS)} or a+b",
    )
    parser.add_argument(
        "--tracemalloc",
        type=int,
        default=0,
        help="memory variants: keep N frames of allocation sites (slow)",
    )
    parser.add_argument(
        "--ws-compression",
        choices=["none", "deflate"],
        default="none",
        help="what the device clients offer (firmware: none)",
    )


def _mqtt_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mqtt-devices", type=int, default=1000)
    parser.add_argument("--readings", type=int, default=300_000)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument(
        "--mqtt-load",
        choices=("raw", "paho"),
        default="raw",
        help="mqtt: the devices as pre-encoded packets on their own connections (raw, "
        "little CPU) or as paho clients sharing a few connections",
    )
    parser.add_argument("--mqtt-inflight", type=int, help="Mosquitto max_inflight_messages")
    parser.add_argument(
        "--mqtt-rate",
        type=float,
        default=0.0,
        help="mqtt (raw load): readings a second the devices publish together, evenly "
        "(0: as fast as the broker takes them)",
    )
    parser.add_argument(
        "--mqtt-workers",
        type=int,
        default=1,
        help="mqtt: server worker processes (`serve --workers`), sharing the load through "
        "the MQTT shared subscription",
    )
    parser.add_argument(
        "--mqtt-receive-maximum",
        type=int,
        help="mqtt: FIELDWATCH_MQTT_RECEIVE_MAXIMUM for the server (default: its default)",
    )
    parser.add_argument(
        "--mqtt-client",
        choices=("paho", "mqtt5"),
        default="mqtt5",
        help="mqtt: the server's MQTT client (FIELDWATCH_MQTT_CLIENT; mqtt5 is what the "
        "default, auto, takes with Mosquitto); the bare subscriber is built on the same "
        "library",
    )
    parser.add_argument(
        "--mqtt-batch",
        type=int,
        default=1,
        help="mqtt (raw load): readings per message, a JSON array on the sensor topic",
    )
    parser.add_argument(
        "--mqtt-subscribe",
        choices=("yes", "no"),
        default="yes",
        help="mqtt-embedded: each device first subscribes to its command, configuration "
        "and firmware topics, as the agent does (the broker then holds 3 subscriptions a "
        "device)",
    )
    parser.add_argument(
        "--mqtt-idle",
        type=float,
        default=20.0,
        help="give up after this many seconds without a new reading",
    )


def devices_needed(args: argparse.Namespace, parts: list[str]) -> int:
    """The fleet the chosen parts need (the memory part: 100 more for its warm-up)."""
    needed = max(
        [
            args.devices if "memory" in parts else 0,
            args.rtt_devices if "rtt" in parts else 0,
            args.mqtt_devices if {"mqtt", "mqtt-embedded"} & set(parts) else 0,
            args.storm_devices if "storm" in parts else 0,
            100,
        ]
    )
    if "memory" in parts:
        needed = max(needed, args.devices + 100)  # 100 more for the warm-up
    return needed
